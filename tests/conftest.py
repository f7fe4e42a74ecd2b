"""Shared fixtures: a made-up lyrics corpus, script runner, and tiny trained models.

All text here is invented for the tests (no real song lyrics).  Nothing needs a network
or a GPU.
"""
import os
import random
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Invented lines, lyric-like, with repeats so a tiny model can learn them quickly.
MADE_UP_LINES = [
    "春风吹过小河边", "我在窗前等你回来", "月光洒满旧街道", "雨停了我们还在笑",
    "一起走到天亮", "你说的话我都记得", "梦里有一片海", "风把思念吹向远方",
    "夜里的星星不说话", "我们的歌还没唱完",
]


def made_up_text(n_lines=400, seed=1):
    rng = random.Random(seed)
    return " ".join(rng.choice(MADE_UP_LINES) for _ in range(n_lines))


def draw(s, ids, n, mode="weighted", temperature=1.0, top_k=0, seed=0, flags=None,
         lines=None):
    """Ids drawn by the sampling engine from Sampler s after ids; flags: sample.py flags
    whose rules apply (None: no rule at all, so the model's own choices are seen)."""
    from engine import Engine, build_rules
    from sampler import build_parser
    rules = [] if flags is None else build_rules(build_parser().parse_args(flags), s)
    return list(Engine(s, ids, rules, n, lines, mode, temperature, top_k, seed))


def run(script, *args, cwd=ROOT, env=None, timeout=300, check=None, isolated=None):
    """Run a project script as its command line would; returns a CompletedProcess (text).

    By default in this process (run_here): a script's own run costs little next to the
    5 s a new Python spends importing TensorFlow, which is what made the suite slow.
    isolated=True (or an env to set, or serve.py, which keeps running) starts a real
    process: for what only a process shows (signals, exit while writing, locks)."""
    if isolated is None:
        isolated = bool(env) or script == "serve.py"
    if not isolated:
        proc = run_here(script, [str(a) for a in args], str(cwd))
    else:
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, args)],
                              cwd=cwd, env=full_env, capture_output=True, text=True,
                              timeout=timeout)
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    return proc


class _Exit(BaseException):
    """os._exit inside run_here: leave the script, not the test process."""


def run_here(script, args, cwd):
    """The script run as __main__ in this process (runpy), with its argv, working
    directory, stdout and stderr, exit code; the process state it may change (the
    working directory, environment, signal handlers, os._exit) is put back after."""
    import contextlib
    import io
    import runpy
    import signal
    import traceback
    path = os.path.join(ROOT, script)
    out, err = io.StringIO(), io.StringIO()
    saved = (os.getcwd(), sys.argv[:], dict(os.environ), os._exit,
             {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)})

    def leave(code):
        raise _Exit(code)
    code = 0
    try:
        os.chdir(cwd)
        sys.argv = [path] + args
        os._exit = leave
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_path(path, run_name="__main__")
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if not isinstance(e.code, (int, type(None))):
                    print(e.code, file=sys.stderr)
            except _Exit as e:
                code = e.args[0]
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        cwd0, argv, environ, os._exit, handlers = saved
        os.chdir(cwd0)
        sys.argv = argv
        os.environ.clear()
        os.environ.update(environ)
        for s, h in handlers.items():
            signal.signal(s, h)
    return subprocess.CompletedProcess([sys.executable, path] + args, code, out.getvalue(),
                                       err.getvalue())


class holding_lock:
    """with holding_lock(d) as pid: another process holds d's train.py lock (DirLock),
    as a running train.py would, until the block ends."""

    def __init__(self, directory):
        self.directory = str(directory)

    def __enter__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", f"import sys, time; sys.path.insert(0, {ROOT!r}); "
             f"from modeldir import DirLock; l = DirLock({self.directory!r}, 'train.py'); "
             "print('locked', flush=True); time.sleep(120)"],
            stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "locked"
        return self.proc.pid

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def assert_one_line_error(proc, code, *needles):
    """A user error: the expected exit code, no traceback, the message says what."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


@pytest.fixture
def corpus_dir(tmp_path):
    """A data dir with a made-up lyrics.txt of about 4,000 characters."""
    d = tmp_path / "data"
    d.mkdir()
    (d / "lyrics.txt").write_text(made_up_text(), encoding="utf-8")
    return d


TINY = ["--rnn_size", "32", "--num_layers", "2", "--embedding_size", "16",
        "--batch_size", "8", "--seq_length", "8", "--learning_rate", "0.01",
        "--save_every", "50", "--patience", "0"]


def train_tiny(tmp, *extra, epochs=4):
    """Train a tiny model with train.py into tmp/save; returns (save_dir, proc)."""
    data = os.path.join(tmp, "data")
    if not os.path.exists(os.path.join(data, "lyrics.txt")):
        os.makedirs(data, exist_ok=True)
        with open(os.path.join(data, "lyrics.txt"), "w", encoding="utf-8") as f:
            f.write(made_up_text())
    save = os.path.join(tmp, "save")
    proc = run("train.py", "--data_dir", data, "--save_dir", save, "--log_dir",
               os.path.join(tmp, "log"), "--num_epochs", epochs, *TINY, *extra)
    return save, proc


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """Tiny trained models, one per kind, made once per test session."""
    cache = {}

    def get(kind):
        if kind not in cache:
            tmp = str(tmp_path_factory.mktemp(f"model_{kind}"))
            extra = ["--attention", "--rnncell", "lstm"] if kind == "attention" else \
                ["--rnncell", kind]
            save, proc = train_tiny(tmp, *extra)
            assert proc.returncode == 0, proc.stderr
            cache[kind] = save
        return cache[kind]
    return get
