"""Speed benchmark, side by side with the PyTorch reference in the same run.

    python bench/speed.py [--text data/lyrics.txt ...] [--rnncell lstm|gru|rnn|all]
                          [--config seed|large|base|all] [--steps N] [--repeats 3]
    python bench/speed.py --suite      # the cases users meet, lstm (README "Speed")

--suite fetches and cleans three texts into data/bench/ once (from the cached tarball of
data/fetch_corpus.py): a lyrics-size text (宋词三百首, V ~ 2 k) and the default Song ci
(V ~ 6 k), each at the seed and the large config, and the base recipe's verse corpus
(~21 M characters, V ~ 11 k) at the base config (scripts/base.sh's CPU model).

Measures, on this machine:
  * training throughput: median chars/s over --steps steps after --warmup, state carried
    from batch to batch, at the seed config (emb 100, 2 x 128, batch 32, seq 16), the
    large config (2 x 512, batch 64, seq 64) and the base config (emb 128, 2 x 256,
    batch 32, seq 16, Adam 0.0005); and the same for ../shared/bench/torch_reference.py
    run now, on the same text and hyperparameters (skipped with a note when its venv is
    missing: see ../shared/bench/README.md); --repeats rounds of both, alternating, and
    the median of each (the machine is shared: single runs vary by 10 % and more);
  * the machine's limit in the same run: TensorFlow's matmul throughput on the model's
    own shapes (float32, and bfloat16 where the CPU has it), against which each row
    prints its achieved GFLOP/s (FLOPs per character counted from the shapes) as a share;
  * the ceiling: the chars/s no build of the same training step could pass here, every
    FLOP at that limit plus the work besides matmuls that cannot be skipped, timed in
    TensorFlow (clip + Adam over the model's weights, one exp over the logits); the most
    any build could lead the reference by is the ceiling over the reference's chars/s;
  * quality at equal work: validation loss on the held-out 5 % tail after the timed steps,
    for our build and for the straightforward build (TF-cell-style [x, h] x kernel each
    step, `rnn_impl=plain`) from the same seed: the faster path must learn the same;
    and, on CPUs with native bfloat16, the opt-in `train.py --bf16` (lstm) with its loss;
  * start-up: the whole `train.py --max_steps 1` process (import, graph, one step, save);
  * sampling, through the engine sample.py and serve.py use: 200 characters after load
    with the default rules (the first text's model, and 2 x 256 LSTMs at V = 6,000 and
    11,000, the sizes of the base and of a model fine-tuned from it), 8 lines of 5-9
    characters with --rhyme auto, one serve.py request for 200 characters over HTTP, the first drawn
    character of a streamed request (/api/stream), and the whole `sample.py --n 200`
    process;
  * preprocessing of the text from scratch; peak memory (RSS).

Prints a table, and as the last line one JSON object with every figure.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from statistics import median

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils import ArgumentParser  # noqa: E402
from bench.limits import add_limits, gap_split, matmul_peak  # noqa: E402
from bench.cases import CONFIGS, SUITE, capped_text, load_ids, suite_text  # noqa: E402
from bench.sampling import sampling_figures  # noqa: E402
from config import CELL_TYPES  # noqa: E402

# Other programs' share of the CPU above which a row is flagged as measured beside other
# work (an idle 2-core machine shows 0-3 %: the system's own daemons).
IDLE_SHARE = 0.05
DEFAULT_TORCH = os.path.expanduser("~/.torchref/bin/python")
TORCH_REF = os.path.join(os.path.dirname(ROOT), "shared", "bench", "torch_reference.py")


def parse_args():
    p = ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--text", nargs="+", default=[os.path.join(ROOT, "data", "lyrics.txt")],
                   help="cleaned training text(s) (data/lyrics.txt)")
    p.add_argument("--suite", action="store_true",
                   help="instead of --text and --config: the three cases of the module doc "
                   "(texts prepared once in data/bench/)")
    p.add_argument("--rnncell", default=None, choices=[*CELL_TYPES, "all"],
                   help="cell types to measure (default: all; lstm with --suite)")
    p.add_argument("--config", default="all", choices=[*CONFIGS, "all"],
                   help="model sizes to measure (all: seed and large; sampled: the base "
                        "with train.py's --sampled_softmax, as the base-cpu preset trains)")
    p.add_argument("--steps", type=int, default=200, help="timed training steps (seed and "
                   "base config; the large config uses a fifth, at least 30)")
    p.add_argument("--repeats", type=int, default=3,
                   help="rounds of ours and the reference per row; medians are reported")
    p.add_argument("--no_sampling", action="store_true",
                   help="skip the start-up and sampling figures")
    p.add_argument("--warmup", type=int, default=20, help="untimed first steps")
    p.add_argument("--torch_python", default=DEFAULT_TORCH,
                   help="python of the venv with PyTorch for the reference ('' = skip)")
    p.add_argument("--no_quality", action="store_true",
                   help="skip the plain-build comparison of validation loss")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.steps < 1 or a.repeats < 1 or a.warmup < 0:
        p.error("--steps and --repeats must be at least 1, --warmup at least 0")
    return a


class CpuWatch:
    """How much of the CPU other programs used while a row ran: the machine's busy time
    (/proc/stat) minus this process's and its children's (getrusage), over the wall time
    of all cores; and the 1-minute load average before and after, which counts the bench
    itself too.  A row measured beside other work is slower than the machine: the row says
    so rather than the reader guessing.  others_share is None where /proc/stat is missing."""

    def __init__(self):
        self.wall, self.busy, self.own = time.monotonic(), self._busy(), self._own()
        self.load_before = os.getloadavg()[0]

    @staticmethod
    def _busy():
        """Busy CPU seconds of the whole machine so far (None: no /proc/stat)."""
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)     # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")   # not guest (in user)

    @staticmethod
    def _own():
        s, c = resource.getrusage(resource.RUSAGE_SELF), \
            resource.getrusage(resource.RUSAGE_CHILDREN)
        return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

    def stop(self):
        """{'load_before', 'load_after', 'others_share'} since the watch began."""
        wall = time.monotonic() - self.wall
        busy = self._busy()
        share = None
        if busy is not None and self.busy is not None and wall > 0:
            others = (busy - self.busy) - (self._own() - self.own)
            share = min(max(others / (wall * (os.cpu_count() or 1)), 0.0), 1.0)
        return dict(load_before=self.load_before, load_after=os.getloadavg()[0],
                    others_share=share)


def measure_tf(ids, vocab_size, cell, cfg, steps, warmup, seed, impl="hoisted", bf16=False):
    """Median training chars/s over `steps` after `warmup`; then held-out loss."""
    import numpy as np
    from preprocess import make_batches
    from tfenv import import_tensorflow, session_config
    tf = import_tensorflow()
    tf1 = tf.compat.v1
    from seq2seq_rnn import Model

    n_val = int(len(ids) * 0.05)
    train, val = ids[:-n_val], ids[-n_val:]
    B, T = cfg["batch_size"], cfg["seq_length"]
    n, xs, ys = make_batches(train, B, T)
    _, vxs, vys = make_batches(val, B, T)
    args = dict(cfg, vocab_size=vocab_size, rnncell=cell, grad_clip=5.0,
                attention=False, rnn_impl=impl)
    g = tf.Graph()
    with g.as_default():
        tf1.set_random_seed(seed)
        m = Model(args)
        init = tf1.global_variables_initializer()
    g.finalize()
    sess = tf1.Session(graph=g, config=session_config(bf16))
    sess.run(init)
    from training import run_epoch
    times, losses = [], []
    state = sess.run(m.initial_state)
    fetches = [m.train_cost, m.final_state, m.train_op]    # the sampled loss if sampled
    for i in range(warmup + steps):
        k = i % n
        if k == 0:
            state = sess.run(m.initial_state)
        t = time.perf_counter()
        feed = {m.input_data: xs[k], m.targets: ys[k]}
        feed.update(m.state_feed(state))
        loss, state, _ = sess.run(fetches, feed)
        if i >= warmup:
            times.append(time.perf_counter() - t)
        losses.append(float(loss))
    med = float(np.median(times))
    val_loss = None
    if vxs:
        val_loss, _ = run_epoch(sess, m, vxs[:50], vys[:50])
    sess.close()
    return dict(chars_per_s=B * T / med, median_step_s=med, loss_last=losses[-1],
                val_loss=float(val_loss) if val_loss is not None else None)


def measure_torch(torch_python, text, cell, cfg, steps, warmup, seed):
    cmd = [torch_python, TORCH_REF, "--text", text, "--rnncell", cell, "--steps", str(steps),
           "--warmup", str(warmup), "--seed", str(seed)]
    for k, v in cfg.items():
        if k != "max_vocab":                    # the text is capped already (capped_text)
            cmd += [f"--{k}", str(v)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def train_row(a, text, chars, ids, conf, cell, torch_ok, has_bf16):
    """One row: ours and the reference --repeats times, alternating; medians, shares of
    the measured peak, and (first round only) the quality checks."""
    cfg = CONFIGS[conf]
    if cfg.get("max_vocab") and len(chars) > cfg["max_vocab"]:
        text = capped_text(text, chars, ids, cfg["max_vocab"])
        chars, ids = load_ids(text)
    V = len(chars)
    steps = a.steps if conf != "large" else max(min(30, a.steps), a.steps // 5)
    warm = a.warmup if conf != "large" else max(min(5, a.warmup), a.warmup // 4)
    ours_runs, ref_runs, row = [], [], {"config": conf, "rnncell": cell, "text": text}
    watch = CpuWatch()
    batch = cfg["batch_size"] * cfg["seq_length"]
    if len(ids) - int(len(ids) * 0.05) < batch:
        row["skipped"] = (f"{len(ids):,} characters are fewer than one training batch of "
                          f"{cfg['batch_size']} x {cfg['seq_length']}")
        return row
    if 0 < cfg.get("sampled_softmax", 0) < V:
        # no counterpart in the reference, and the FLOP count, limit and ceiling below
        # are the full softmax's: this row gives chars/s and the held-out loss only
        torch_ok = False
        row["sampled_softmax"] = cfg["sampled_softmax"]
    for r in range(a.repeats):
        ours = measure_tf(ids, V, cell, cfg, steps, warm, a.seed)
        ours_runs.append(ours["chars_per_s"])
        if r == 0:
            row["tf_val_loss"] = ours["val_loss"]
        if torch_ok:
            ref = measure_torch(a.torch_python, text, cell, cfg, steps, warm, a.seed)
            if "chars_per_s" in ref:
                ref_runs.append(ref["chars_per_s"])
                row["torch_sample_200_s"] = ref.get("sample_s")
            else:
                row["torch_error"] = ref["error"]
    row.update(tf_chars_per_s=median(ours_runs), tf_runs=ours_runs, **watch.stop())
    if "sampled_softmax" in row:
        return row
    fpc, peak = add_limits(row, cfg, V, cell)
    if ref_runs:
        row.update(torch_chars_per_s=median(ref_runs), torch_runs=ref_runs)
        row["ratio_vs_torch"] = row["tf_chars_per_s"] / row["torch_chars_per_s"]
        row["torch_share_of_peak"] = row["torch_chars_per_s"] * fpc / 1e9 / peak
        row["ceiling_vs_torch"] = row["ceiling_chars_per_s"] / row["torch_chars_per_s"]
        row["gap_kernel"], row["gap_ours"] = gap_split(
            row["tf_chars_per_s"], row["torch_chars_per_s"], row["ceiling_chars_per_s"])
        row.pop("torch_error", None)
    if not a.no_quality:
        plain = measure_tf(ids, V, cell, cfg, steps, warm, a.seed, impl="plain")
        row.update(plain_chars_per_s=plain["chars_per_s"], plain_val_loss=plain["val_loss"])
    if cell == "lstm" and has_bf16:
        half = measure_tf(ids, V, cell, cfg, steps, warm, a.seed, bf16=True)
        row.update(bf16_chars_per_s=half["chars_per_s"], bf16_val_loss=half["val_loss"],
                   bf16_peak_gflops=matmul_peak(cfg, V, cell, "bfloat16"))
    return row


def main():
    a = parse_args()
    if a.suite:
        cases = [(suite_text(name, flags), confs) for name, flags, confs in SUITE]
        a.rnncell = a.rnncell or "lstm"
    else:
        configs = ["seed", "large"] if a.config == "all" else [a.config]
        cases = [(t, configs) for t in a.text]
    a.rnncell = a.rnncell or "all"
    for text, _ in cases:
        if not os.path.exists(text):
            print(f"bench: {text} not found; run python data/fetch_corpus.py and "
                  f"python data/parse.py first (or pass --text)", file=sys.stderr)
            sys.exit(2)
    cells = list(CELL_TYPES) if a.rnncell == "all" else [a.rnncell]
    torch_ok = bool(a.torch_python) and os.path.exists(a.torch_python) and \
        os.path.exists(TORCH_REF)
    from tfenv import cpu_has_bf16
    has_bf16 = cpu_has_bf16()
    result = {"machine": machine_text(), "texts": [], "training": []}
    print(f"machine: {result['machine']}")
    if not torch_ok:
        print(f"note: no PyTorch reference ({a.torch_python or 'skipped'}); set it up "
              f"as ../shared/bench/README.md says to get the ratios")

    tmp = tempfile.mkdtemp(prefix="lyrics-bench-")
    try:
        for n, (text, configs) in enumerate(cases):
            measure_text(a, result, os.path.join(tmp, f"data{n}"), text, configs, cells,
                         torch_ok, has_bf16)
        if not a.no_sampling:
            if result["texts"][0]["preprocess_s"] is None:
                print("start-up and sampling not measured: the first text is too small")
                a.no_sampling = True
            else:
                result.update(sampling_figures(os.path.join(tmp, "data0")))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["peak_rss_children_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if not a.no_sampling:
        print_sampling(result)
    print(f"peak RSS {result['peak_rss_mb']:.0f} MB (children "
          f"{result['peak_rss_children_mb']:.0f} MB)")
    print(json.dumps(result, ensure_ascii=False))


def measure_text(a, result, data, text, configs, cells, torch_ok, has_bf16):
    """One text: preprocessed from scratch in the scratch directory `data`, then every
    config x cell row trained on it; appends to result."""
    from preprocess import TextParser
    from utils import UserError
    os.makedirs(data)
    shutil.copy(text, os.path.join(data, "lyrics.txt"))
    t = time.perf_counter()
    try:
        TextParser(data, 32, 16, 0.05)
        info = {"text": text, "preprocess_s": time.perf_counter() - t}
        took = f"preprocess {info['preprocess_s']:.2f} s"
    except UserError as e:                 # too small for the seed config
        info = {"text": text, "preprocess_s": None}
        took = f"not preprocessed: {e}"
    chars, ids = load_ids(text)
    info.update(chars=int(len(ids)), vocab_size=len(chars))
    result["texts"].append(info)
    print(f"text {text}: {len(ids):,} chars, V = {len(chars):,}; {took}", flush=True)
    for conf in configs:
        for cell in cells:
            row = train_row(a, text, chars, ids, conf, cell, torch_ok, has_bf16)
            result["training"].append(row)
            print(_row_text(row), flush=True)


def print_sampling(result):
    """The start-up and sampling figures of a run, in words."""
    print(f"start-up (train.py, 1 step + save): {result['startup_s']:.2f} s; 200 chars "
          f"after load: {result['sample_200_s'] * 1000:.1f} ms; whole sample.py --n 200: "
          f"{result['sample_process_s']:.2f} s; serve.py start-up to its URL "
          f"{result['serve_startup_s']:.2f} s, a request for 200 chars: "
          f"{result['serve_request_200_s'] * 1000:.1f} ms, streamed: first character "
          f"after {result['stream_first_char_s'] * 1000:.1f} ms")
    for row in result["sizes"]:
        print(f"sampling at V = {row['vocab_size']:,} (2 x 256 LSTM): 200 chars "
              f"{row['sample_200_s'] * 1000:.1f} ms, 8 lines of 5-9 with --rhyme auto "
              f"{row['lines_8_rhyme_s'] * 1000:.1f} ms (default rules, after load)")
    w = result["worst_rules"]
    print(f"sampling at V = {w['vocab_size']:,}, the costliest rules ({w['flags']}): "
          f"{w['per_char_s'] * 1000:.2f} ms a character against "
          f"{w['plain_per_char_s'] * 1000:.2f} ms plain "
          f"({w['per_char_s'] / w['plain_per_char_s']:.1f}x)")


def machine_text():
    """'2 cores, <CPU model> (<vector units>); oneDNN rewrites: training .., sampling ..':
    the figures mean little without it (an AVX2-only CPU and one with AVX-512 and AMX
    rank the builds differently, and oneDNN is on by default only on the latter)."""
    from tfenv import cpu_text
    model = cpu_text()
    from tfenv import ONEDNN_BY_ROLE, USER_ONEDNN

    def onednn(role):
        value = USER_ONEDNN or ONEDNN_BY_ROLE[role]
        return {"1": "on", "0": "off", None: "TensorFlow's default"}.get(value, value)
    return (f"{os.cpu_count()} cores, {model}; oneDNN rewrites: training {onednn('train')}, "
            f"sampling {onednn('sample')}")


def _row_text(r):
    """A row as a few lines: ours, the reference, the limit, the quality checks."""
    def k(x):
        return f"{x / 1000:.1f}k"
    if "skipped" in r:
        return f"{r['config']:5s} {r['rnncell']:4s}  skipped: {r['skipped']}"
    s = f"{r['config']:5s} {r['rnncell']:4s}  ours {k(r['tf_chars_per_s'])} chars/s"
    if "sampled_softmax" in r:
        s += (f" training on a softmax sampled over {r['sampled_softmax']:,} candidates "
              f"(train.py --sampled_softmax; no reference row: it computes every logit)")
    if len(r.get("tf_runs", [])) > 1:
        s += f" (runs {', '.join(k(x) for x in r['tf_runs'])})"
    if "tf_share_of_peak" in r:
        s += (f" = {r['tf_gflops']:.0f} GFLOP/s, {r['tf_share_of_peak']:.0%} of this "
              f"machine's {r['peak_gflops']:.0f} (fp32 matmul on these shapes; "
              f"{r['flops_per_char'] / 1e6:.2f} MFLOP/char)")
    if "torch_chars_per_s" in r:
        s += f"\n{'':11s}torch {k(r['torch_chars_per_s'])}"
        if len(r.get("torch_runs", [])) > 1:
            s += f" (runs {', '.join(k(x) for x in r['torch_runs'])})"
        s += (f", {r['torch_share_of_peak']:.0%} of peak; ours / torch = "
              f"{r['ratio_vs_torch']:.2f}x")
    elif "torch_error" in r:
        s += f"\n{'':11s}torch failed: {r['torch_error']}"
    if "ceiling_chars_per_s" in r:
        s += (f"\n{'':11s}ceiling {k(r['ceiling_chars_per_s'])} chars/s (every FLOP at the "
              f"limit + Adam over {r['params'] / 1e6:.2f} M weights "
              f"{r['update_s'] * 1000:.1f} ms + one pass over the logits "
              f"{r['logits_pass_s'] * 1000:.1f} ms per step) = "
              f"{r['ceiling_share_of_peak']:.0%} of the limit; ours at "
              f"{r['tf_share_of_ceiling']:.0%} of it")
        if "ceiling_vs_torch" in r:
            s += f"; no build can beat torch by more than {r['ceiling_vs_torch']:.2f}x here"
        if r.get("gap_kernel", 0) + r.get("gap_ours", 0) > 0:
            s += (f"\n{'':11s}behind torch by "
                  f"{k(r['gap_kernel'] + r['gap_ours'])} chars/s: {k(r['gap_kernel'])} of it "
                  f"the matmul kernel (the ceiling is below torch), {k(r['gap_ours'])} ours")
    if r.get("others_share") is not None:
        s += (f"\n{'':11s}other programs used {r['others_share']:.0%} of the CPU while the "
              f"rounds ran (load average {r['load_before']:.2f} before, "
              f"{r['load_after']:.2f} after, the bench included)")
        if r["others_share"] > IDLE_SHARE:
            s += "; NOT IDLE: these figures understate the machine"
    if "plain_chars_per_s" in r:
        s += f"\n{'':11s}plain build {k(r['plain_chars_per_s'])}"
    if r.get("tf_val_loss") is not None:
        s += f"; held-out loss after the same steps {r['tf_val_loss']:.4f}"
        if r.get("plain_val_loss") is not None:
            s += f" (plain build {r['plain_val_loss']:.4f})"
    if "bf16_chars_per_s" in r:
        s += f"\n{'':11s}--bf16 {k(r['bf16_chars_per_s'])} chars/s"
        if r.get("bf16_peak_gflops"):
            s += f" (bf16 matmul limit {r['bf16_peak_gflops']:.0f} GFLOP/s)"
        if r.get("bf16_val_loss") is not None and r.get("tf_val_loss"):  # None: too short
            rel = r["bf16_val_loss"] / r["tf_val_loss"] - 1
            s += f", held-out loss {r['bf16_val_loss']:.4f} ({rel:+.2%} vs float32)"
    return s


if __name__ == "__main__":
    main()
