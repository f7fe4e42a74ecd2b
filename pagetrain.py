"""Training from the page (serve.py's "your songs" panel): songs in, a model out, by the
same tools a terminal uses.

    POST /api/songs  files (.txt/.lrc, any common encoding) and pasted text
        ──data/parse.py's parse_bytes, one file at a time──▶ a preview (characters,
        lines, encoding found, characters new to the base, the first lines); the cleaned
        text is kept under a token
    POST /api/train  {token, name, base}: writes DATA/NAME/lyrics.txt, then runs
        python train.py --init_from BASE --data_dir DATA/NAME --save_dir SAVE/NAME
                        --log_dir SAVE/NAME/log --progress_every 2
        as a process of its own (the command is shown; run in a terminal it trains the
        same way); {name, continue: true} runs it again with --keep
    GET  /api/train  the run: train.py's own progress line, the loss curve from its
        log (trainlog.parse_log, what analysis/plot.py reads), how it ended
    POST /api/train/stop  SIGINT, as Ctrl-C: train.py saves, and --keep goes on

One training at a time per server.  Nothing is written but DATA/NAME (the text) and
SAVE/NAME (the model and its log) -- and, as in a terminal, a packed base's verse text
in data/cache the first time a fine-tune needs it.  No TensorFlow here.
"""
import base64
import collections
import os
import re
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.abspath(__file__))
MAX_UPLOAD = 4 * 1024 * 1024     # bytes of songs a request may bring (files and text)
MAX_FILES = 50
MAX_STAGED = 4                   # previews kept for a "train" to refer to
PREVIEW_LINES = 12
NAME = re.compile(r"[A-Za-z0-9\u4e00-\u9fa5][A-Za-z0-9\u4e00-\u9fa5_-]{0,39}")
# train.py flags the panel may set (their types and help come from config.FIELDS)
TRAIN_FLAGS = ("num_epochs", "max_minutes", "patience")
PROGRESS_EVERY = 2               # seconds between train.py's progress lines for the page
# README's measurement on 60 k characters of modern lyrics: held-out perplexity fine-tuned
# from a base, and from scratch (2026-11-30)
SCRATCH_NOTE = ("no base model: training from scratch, which measured much worse on 60 k "
                "characters of lyrics (held-out perplexity 323 from scratch against 212 "
                "fine-tuned from a base; README)")


class PanelError(Exception):
    """A request the panel refuses: the words, the HTTP status, the field it is about."""

    def __init__(self, message, status=400, field=None):
        super().__init__(message)
        self.status, self.field = status, field


def check_name(name):
    """A model's name as typed: letters, digits, Chinese characters, - and _; never a
    path (no '/', no '..', no leading '.')."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise PanelError("name: 1 to 40 letters, digits, Chinese characters, - or _, "
                         "beginning with a letter, digit or character (no /, no ..)",
                         field="name")
    return name


def read_songs(req):
    """The request's files and pasted text, cleaned as data/parse.py cleans a file: (the
    training text, each source's figures).  A file that is empty, binary or has no
    Chinese left is refused by its name."""
    from data.parse import parse_bytes
    from utils import UserError
    files, pasted = req.get("files") or [], req.get("text") or ""
    if not isinstance(files, list) or not isinstance(pasted, str):
        raise PanelError("files must be a list of {name, data (base64)} and text a string")
    if len(files) > MAX_FILES:
        raise PanelError(f"{len(files)} files: at most {MAX_FILES} at once", field="files")
    sources = []
    for f in files:
        if not isinstance(f, dict) or not isinstance(f.get("name"), str) or \
                not isinstance(f.get("data"), str):
            raise PanelError("each file must be {name, data (base64)}", field="files")
        try:
            raw = base64.b64decode(f["data"], validate=True)
        except ValueError:
            raise PanelError(f"{f['name']}: the upload is damaged (not base64)", field="files")
        sources.append((os.path.basename(f["name"])[:100] or "a file", raw))
    if pasted.strip():
        sources.append(("the pasted text", pasted.encode("utf-8")))
    if not sources:
        raise PanelError("no songs: choose .txt or .lrc files or paste lyrics", field="files")
    if sum(len(raw) for _, raw in sources) > MAX_UPLOAD:
        raise PanelError(f"at most {MAX_UPLOAD // 2 ** 20} MB of songs at once (about a "
                         f"million characters); for more, use data/parse.py and train.py "
                         f"in a terminal", status=413, field="files")
    texts, figures = [], []
    for where, raw in sources:
        if b"\0" in raw and not raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise PanelError(f"{where}: a binary file, not lyrics; upload .txt or .lrc "
                             f"text", field="files")
        try:
            text, stats = parse_bytes(raw, where)
        except UserError as e:
            raise PanelError(str(e).replace("--encoding", "re-saving it as UTF-8 or "
                                            "--encoding with data/parse.py"), field="files")
        texts.append(text)
        figures.append({"name": where, "encoding": stats["encoding"],
                        "chars": stats["chars_out"] - text.count(" "),
                        "lines": stats["lines"]})
    return " ".join(texts), figures


def preview(text, figures, base_vocab=None):
    """What the panel shows before anything trains."""
    chars = text.replace(" ", "")
    out = {"chars": len(chars), "lines": text.count(" ") + 1, "distinct": len(set(chars)),
           "files": figures, "preview": text.split(" ")[:PREVIEW_LINES], "new_chars": None}
    if base_vocab is not None:
        new = sorted(set(chars) - set(base_vocab), key=chars.index)
        out["new_chars"] = {"count": len(new), "share": round(
            sum(1 for c in chars if c not in base_vocab) / max(len(chars), 1), 4),
            "first": "".join(new[:40])}
    return out


class Trainer:
    """The one training a server runs at a time: its train.py process, its command, the
    text it prints, and where its log is."""

    def __init__(self, save_root, data_root):
        self.save_root, self.data_root = save_root, data_root
        self.lock = threading.Lock()
        self.staged = collections.OrderedDict()     # token -> training text
        self.proc = self.job = None

    # -- the songs
    def stage(self, text):
        token = base64.urlsafe_b64encode(os.urandom(12)).decode()
        with self.lock:
            self.staged[token] = text
            while len(self.staged) > MAX_STAGED:
                self.staged.popitem(last=False)
        return token

    # -- the run
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def paths(self, name):
        return (os.path.join(self.save_root, name), os.path.join(self.data_root, name))

    def start(self, req, bases):
        """Start train.py for the request {token, name, base, continue, and TRAIN_FLAGS};
        bases: {name: directory} the page offers as a base.  Returns the status."""
        from fileio import atomic_write_text
        from modeldir import checkpoint_candidates
        name = check_name(req.get("name"))
        again = bool(req.get("continue"))
        save, data = self.paths(name)
        flags = self.budget_flags(req)
        with self.lock:
            if self.running():
                raise PanelError(f"{self.job['name']} is training: one training at a time; "
                                 f"stop it first", status=409)
            if again:
                if not checkpoint_candidates(save) or not os.path.isfile(
                        os.path.join(data, "lyrics.txt")):
                    raise PanelError(f"no model {name} trained from this page to continue",
                                     field="name")
                argv = ["--keep"]
                note = None
            else:
                if os.path.exists(save) and os.listdir(save):
                    raise PanelError(f"a model named {name} exists already: choose another "
                                     f"name, or continue it", status=409, field="name")
                token = req.get("token")
                text = self.staged.get(token) if isinstance(token, str) else None
                if text is None:
                    raise PanelError("upload or paste the songs first (or again: this "
                                     "server has forgotten them)", field="files")
                base = req.get("base") or ""
                if not isinstance(base, str) or base and base not in bases:
                    raise PanelError(f"no model named {base!r} to start from; choose one "
                                     f"the list offers, or none", field="base")
                atomic_write_text(os.path.join(data, "lyrics.txt"), text)
                argv = ["--init_from", self.shown(bases[base])] if base else []
                note = None if base else SCRATCH_NOTE
            argv += ["--data_dir", self.shown(data), "--save_dir", self.shown(save),
                     "--log_dir", self.shown(os.path.join(save, "log"))] + flags
            full = ["python", "train.py"] + argv
            from tfenv import child_environment
            env = child_environment()
            env["PYTHONUNBUFFERED"] = "1"
            self.proc = subprocess.Popen(
                [sys.executable, os.path.join(ROOT, "train.py"), *argv,
                 "--progress_every", str(PROGRESS_EVERY)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                text=True, encoding="utf-8", errors="replace", env=env)
            import shlex
            self.job = {"name": name, "command": " ".join(shlex.quote(a) for a in full),
                        "save": save, "note": note, "started": time.time(), "ended": None,
                        "output": collections.deque(maxlen=200), "progress": None,
                        "returncode": None, "stopping": False}
            threading.Thread(target=self._read, args=(self.proc, self.job),
                             daemon=True).start()
        return self.status()

    def budget_flags(self, req):
        """The TRAIN_FLAGS the request sets, checked by train.py's own types."""
        import argparse
        from config import field
        out = []
        for name in TRAIN_FLAGS:
            value = req.get(name)
            if value is None or value == "":
                continue
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise PanelError(f"{name}: must be a number", field=name)
            try:
                field(name).type(str(value))
            except (argparse.ArgumentTypeError, ValueError) as e:
                raise PanelError(f"{name}: {e}", field=name)
            out += [f"--{name}", str(value)]
        return out

    @staticmethod
    def shown(path):
        """A path as the shown command has it: relative to where the command is typed
        (the project's directory), when it is inside it."""
        rel = os.path.relpath(os.path.abspath(path), ROOT)
        return path if rel.startswith("..") else rel

    def _read(self, proc, job):
        for line in proc.stdout:
            line = line.rstrip()
            if not line:
                continue
            # train.py's progress line (step, loss, chars/s, ETA; every PROGRESS_EVERY s
            # within an epoch) or its epoch line (losses, time, chars/s), the later one
            if line.startswith("epoch ") and "chars/s" in line:
                job["progress"] = line
            else:
                job["output"].append(line)
        job["returncode"] = proc.wait()
        job["ended"] = time.time()

    def stop(self):
        with self.lock:
            if not self.running():
                what = f"{self.job['name']} ended already" if self.job else "none started"
                raise PanelError(f"no training is running ({what}); continue it to train "
                                 f"more", status=409)
            self.job["stopping"] = True
            self.proc.send_signal(signal.SIGINT)
        return self.status()

    def shutdown(self, wait=60):
        """The server is stopping: the run saves (SIGINT) and ends with it."""
        if self.running():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def status(self):
        job = self.job
        if job is None:
            return {"running": False, "name": None}
        running = self.running()
        out = {"name": job["name"], "running": running, "command": job["command"],
               "progress": job["progress"], "note": job["note"],
               "output": list(job["output"])[-8:], "returncode": job["returncode"],
               "seconds": round((job["ended"] or time.time()) - job["started"], 1),
               "curve": curve(os.path.join(job["save"], "log"))}
        if not running and job["returncode"] is not None:
            rc = job["returncode"]
            last = next((line for line in reversed(job["output"])
                         if line.startswith(("train: ", "error", "preprocess: error"))
                         or "error" in line), None)
            out["ended"] = ("stopped: saved; continue to train more" if rc in (
                128 + signal.SIGINT, 128 + signal.SIGTERM) or job["stopping"] and rc != 1
                else "finished" if rc == 0 else f"failed: {last or 'exit code ' + str(rc)}")
        return out


def curve(log_dir):
    """The loss per epoch, over every run in log_dir (a continued run adds its own log):
    {"epochs": [...], "train": [...], "validate": [...]} (None where a value is missing)."""
    from trainlog import parse_log
    epochs = {}
    try:
        names = sorted(n for n in os.listdir(log_dir) if n.endswith(".txt"))
    except OSError:
        names = []
    for n in names:
        try:
            _, found = parse_log(os.path.join(log_dir, n), need_epochs=False)
        except (OSError, ValueError):
            continue
        epochs.update(found)
    keys = sorted(epochs)
    return {"epochs": keys, "train": [epochs[k].get("train") for k in keys],
            "validate": [epochs[k].get("validate") for k in keys]}
