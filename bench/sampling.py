"""The bench's start-up and sampling figures: train.py's start-up, sample.py's whole
run and its draws at two vocabulary sizes, the costliest rules, serve.py's start-up and
requests.  Each times a real command or a model made for it."""
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def timed(cmd, cwd=ROOT):
    t = time.perf_counter()
    from tfenv import child_environment
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                          env=child_environment())
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd[1:3])} failed: {proc.stderr.strip()[-300:]}")
    return time.perf_counter() - t


def sampling_figures(data, sizes=(6000, 11000), repeats=20):
    """Start-up and sampling: a seed-config model trained for one step on `data`, and a
    2 x 256 LSTM trained one step on a made-up text of each vocabulary size."""
    import numpy as np
    out = {}
    save = os.path.join(data, "save")
    out["startup_s"] = timed([sys.executable, "train.py", "--data_dir", data,
                              "--save_dir", save, "--log_dir", os.path.join(data, "log"),
                              "--max_steps", "1", "--num_epochs", "1", "--val_frac", "0"])
    out["sample_200_s"] = draw_time(save, [], repeats)
    procs = [timed([sys.executable, "sample.py", "--save_dir", save, "--start", "从前",
                    "--n", "200", "--out", ""]) for _ in range(3)]
    out["sample_process_s"] = float(np.median(procs))
    out["serve_startup_s"], out["serve_request_200_s"], out["stream_first_char_s"] = \
        serve_times(save, repeats)
    out["sizes"] = []
    for V in sizes:
        vsave = sized_model(os.path.join(data, f"v{V}"), V)
        out["sizes"].append({
            "vocab_size": V, "sample_200_s": draw_time(vsave, [], repeats),
            # a model trained one step rarely ends a line: --line_len gives it lyric
            # lines, or the 8 lines would be 8 x 40 characters
            "lines_8_rhyme_s": draw_time(vsave, ["--lines", "8", "--line_len", "5-9",
                                                 "--rhyme", "auto"], repeats)})
    # the costliest rule combination known: two-character lines whose forced line end
    # the loop guard refuses (one acrostic character 60 times), 180 characters, per
    # character next to the plain 200
    V = sizes[0]
    worst = draw_time(os.path.join(data, f"v{V}", "save"),
                      ["--acrostic", chr(0x4E00) * 60, "--line_len", "2-2", "--rhyme",
                       "auto"], max(3, repeats // 4))
    out["worst_rules"] = {"vocab_size": V, "flags": "--acrostic 一x60 --line_len 2-2 "
                          "--rhyme auto", "per_char_s": worst / 180,
                          "plain_per_char_s": out["sizes"][0]["sample_200_s"] / 200}
    return out


def sized_model(d, V, seed=0):
    """A 2 x 256 LSTM (emb 128: the base recipe's shape) trained one step on a made-up
    text of V distinct CJK characters in lines of 4-9: what sampling costs at V."""
    import numpy as np
    rng = np.random.default_rng(seed)
    chars = [chr(0x4E00 + i) for i in range(V)]
    ids = np.concatenate([rng.permutation(V), rng.integers(0, V, max(2 * V, 20000))])
    lines, at = [], 0
    while at < len(ids):
        k = int(rng.integers(4, 10))
        lines.append("".join(chars[i] for i in ids[at:at + k]))
        at += k
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "lyrics.txt"), "w", encoding="utf-8") as f:
        f.write(" ".join(lines))
    save = os.path.join(d, "save")
    timed([sys.executable, "train.py", "--data_dir", d, "--save_dir", save, "--log_dir",
           os.path.join(d, "log"), "--max_steps", "1", "--num_epochs", "1", "--rnn_size",
           "256", "--num_layers", "2", "--embedding_size", "128"])
    return save


def draw_time(save, flags, repeats=20):
    """Median seconds of one sample.py sample of 200 characters (or as flags say) after
    the model is loaded, the default rules on: write_one(), as sample.py and serve.py
    draw.  Timed in a child process, so TensorFlow runs as it does in sample.py (the
    sampling role's settings, tfenv.ONEDNN_BY_ROLE), not as in this training bench."""
    from tfenv import child_environment
    code = ("import json, sys\nsys.path.insert(0, sys.argv[1])\n"
            "from bench.sampling import draw_time_here\n"
            "print(json.dumps(draw_time_here(sys.argv[2], json.loads(sys.argv[3]), "
            "int(sys.argv[4]))))")
    proc = subprocess.run([sys.executable, "-c", code, ROOT, save, json.dumps(flags),
                           str(repeats)], cwd=ROOT, capture_output=True, text=True,
                          env=child_environment())
    if proc.returncode != 0:
        raise SystemExit(f"bench: timing sample.py failed: {proc.stderr.strip()[-300:]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1]))


def draw_time_here(save, flags, repeats=20):
    """draw_time() in this process."""
    import numpy as np
    from craft import DEFAULT_MAX_COPY
    from sampler import Sampler, build_parser, start_ids, write_one
    args = build_parser().parse_args(["--start", "从前"] + flags)
    s = Sampler(save, max_copy=DEFAULT_MAX_COPY, warn=lambda m: None)
    kept, ids = start_ids(args.start, s.vocab, warn=lambda m: None)
    write_one(s, args, ids, kept, 0)                        # the first run warms up
    times = []
    for k in range(repeats):
        t = time.perf_counter()
        write_one(s, args, ids, kept, k)
        times.append(time.perf_counter() - t)
    s.close()
    return float(np.median(times))


def serve_times(save, repeats=20):
    """serve.py's start-up (the process started to its URL printed, the first model
    loaded), then median wall times over HTTP on loopback, warmed up: one request for 200
    characters (plain weighted, the default rules), and the first drawn character of the
    same request streamed (/api/stream: its first line is the start text, the second the
    first character drawn)."""
    import re
    import urllib.request
    import numpy as np
    t0 = time.perf_counter()
    from tfenv import child_environment
    proc = subprocess.Popen([sys.executable, "serve.py", "--save_dir", save, "--port", "0"],
                            cwd=ROOT, env=child_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        url = None
        for line in proc.stdout:
            m = re.search(r"open (http://[^ ]+/)", line)
            if m:
                url = m.group(1) + "api/"
                startup = time.perf_counter() - t0
                break
        if url is None:
            raise SystemExit(f"bench: serve.py did not start: {proc.stderr.read()[-300:]}")
        name = os.path.basename(os.path.abspath(save))

        def once(seed, path="generate"):
            body = json.dumps({"model": name, "start": "从前", "n": 200, "seed": seed})
            req = urllib.request.Request(url + path, data=body.encode(),
                                         headers={"Content-Type": "application/json"})
            t = time.perf_counter()
            with urllib.request.urlopen(req, timeout=60) as r:
                if path == "stream":
                    r.readline()                     # the start text
                    r.readline()                     # the first character drawn
                    first = time.perf_counter() - t
                    r.read()
                    return first
                r.read()
            return time.perf_counter() - t
        once(0)                                      # the first request warms up
        whole = float(np.median([once(k + 1) for k in range(repeats)]))
        first = float(np.median([once(k + 1, "stream") for k in range(repeats)]))
        return startup, whole, first
    finally:
        proc.terminate()
        proc.wait(timeout=10)
