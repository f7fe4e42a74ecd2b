"""Helpers shared by the scripts: clear errors, atomic writes, the safe pickle loader,
the training-log format, and two small TensorFlow helpers.

Nothing here imports TensorFlow at module level, so `--help` of every script stays instant.
"""
import argparse
import io
import math
import os
import pickle
import re
import sys
import tempfile
import time

# ----------------------------------------------------------------------------- errors


class UserError(Exception):
    """Bad input from the user: shown as one line, never as a traceback.

    `code` is the process exit status: 2 for usage errors (bad flags or values),
    1 for everything else (missing files, corrupt data, ...).
    """

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def run_main(main, prog=None, fast_exit=False):
    """Run `main()`; turn a UserError into one line on stderr and its exit code.

    fast_exit: leave with os._exit once main() has returned, skipping TensorFlow's
    interpreter teardown (about a second) when every file is already written and closed.
    """
    prog = prog or os.path.basename(sys.argv[0])
    try:
        rc = main()
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(e.code)
    except OSError as e:          # a full or read-only disk, a path that is a directory...
        print(f"{prog}: error: {os_error_text(e)}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    if fast_exit:
        drop_aliases()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc or 0)
    sys.exit(rc or 0)


def os_error_text(e, doing="cannot write or read"):
    """One line for an OSError, with what to do for the usual causes."""
    import errno
    where = f" {e.filename}" if getattr(e, "filename", None) else ""
    hint = {errno.ENOSPC: "free some disk space (or use a path on another disk) and run "
                          "again; files already saved are intact",
            errno.EROFS: "the file system is read-only: choose a writable path",
            errno.EACCES: "no permission: choose a path you may write to",
            errno.EISDIR: "that path is a directory: name a file",
            errno.ENOTDIR: "a part of that path is a file, not a directory",
            errno.EEXIST: "a file is in the way where a directory is needed",
            errno.EDQUOT: "over the disk quota: free some space"}.get(e.errno, "")
    return f"{doing}{where}: {e.strerror or e}" + (f"; {hint}" if hint else "")


def check_dir_flag(path, flag):
    """A directory flag (--save_dir, --log_dir) must name a directory or a path where one
    can be made: refused up front, before anything is written anywhere."""
    p = os.path.abspath(path)
    while not os.path.exists(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    if not os.path.isdir(p):
        raise UserError(f"{flag} {path}: {p} is a file, not a directory; name a directory",
                        code=2)


def file_sha256(path):
    """sha256 of a file's bytes, read a megabyte at a time."""
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def writable_dir(path, flag):
    """Make the directory a flag names and write a probe file in it, up front: a path
    that only looks possible (a symlink loop, a place under /proc) is refused before a
    run writes anything anywhere."""
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{flag} {path}: cannot write there ({e.strerror or e}); name a "
                        f"directory you can write to", code=2)


def seed_int(s):
    """argparse type of a random seed: a whole number 0 .. 2**62."""
    v = int(s) if s.isdigit() else None
    if v is None or v > 2 ** 62:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to "
                                         f"{2 ** 62:,}, not {s!r}")
    return v


class DirLock:
    """An exclusive lock on a directory, held until release() (train.py: when its run
    ends) or the process ends: a second train.py on the same --save_dir is refused
    instead of racing the first.  flock() locks are released by the operating system when
    the process dies, so a killed run never leaves the directory locked (on systems
    without fcntl, e.g. Windows, there is no lock)."""

    def __init__(self, directory, what):
        try:
            import fcntl
        except ImportError:
            return
        path = os.path.join(directory, ".lock")
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.pread(self.fd, 32, 0).decode("ascii", "replace").strip()
            self.release()
            raise UserError(f"{directory}/ is in use by another {what} (process "
                            f"{other or '?'}); wait for it to finish or stop it, or use "
                            f"another directory")
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)

    def release(self):
        """Let the directory go (closing the descriptor drops the lock): train.py does
        when its run ends, so the same process may train there again."""
        fd, self.fd = getattr(self, "fd", None), None
        if fd is not None:
            os.close(fd)


def dir_locked(directory):
    """True while a train.py holds directory's lock (DirLock): a model still in training.
    The lock is tried and let go at once; without fcntl (Windows) nothing is known."""
    try:
        import fcntl
        fd = os.open(os.path.join(directory, ".lock"), os.O_RDONLY)
    except (ImportError, OSError):            # no lock file: nobody ever trained here
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)                          # closing releases a lock we took


# Model fields a checkpoint depends on: resuming or sampling must use the same values.
ARCHITECTURE_KEYS = ("vocab_size", "rnncell", "num_layers", "rnn_size", "embedding_size",
                     "attention")
# The recurrent cells seq2seq_rnn.Cell builds (here, not there: no TensorFlow for --help).
# Each cell type seq2seq_rnn.Cell builds, with its gate count G (the kernel is
# [in + H, G*H]): --help, the memory check and the bench's FLOP count read it from here
# (no TensorFlow for --help); a test checks it against the classes.
CELL_GATES = {"rnn": 1, "gru": 3, "lstm": 4}
CELL_TYPES = tuple(CELL_GATES)
# A saved config is data read from disk: what each shape field may hold.
CONFIG_RANGES = {"vocab_size": (2, 10 ** 6), "num_layers": (1, 64), "rnn_size": (1, 1 << 16),
                 "embedding_size": (1, 1 << 16), "batch_size": (1, 1 << 20),
                 "seq_length": (1, 1 << 20)}


def check_model_config(config, path):
    """config (read from path) as train.py writes it: a dict with every architecture key,
    each of the right type and in range; else one UserError naming the field."""
    def bad(what):
        return UserError(f"{path} is damaged or not written by train.py ({what}); retrain "
                         f"the model or restore the file")
    if not isinstance(config, dict):
        raise bad(f"a {type(config).__name__}, not a config")
    missing = [k for k in ARCHITECTURE_KEYS if k not in config]
    if missing:
        raise bad(f"no {', '.join(missing)}")
    for k, (lo, hi) in CONFIG_RANGES.items():
        v = config.get(k, lo)
        if type(v) is not int or not lo <= v <= hi:
            raise bad(f"{k} = {v!r}, not a whole number from {lo:,} to {hi:,}")
    if config["rnncell"] not in CELL_TYPES:
        raise bad(f"rnncell = {config['rnncell']!r}, not one of {', '.join(CELL_TYPES)}")
    if not isinstance(config["attention"], bool):
        raise bad(f"attention = {config['attention']!r}, not true or false")
    return config


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error as one line ('prog: error: what (see prog --help)',
    exit code 2) instead of the usage block of 9-15 lines before it."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every flag's default in --help, except None (a default that depends on the run
    is said in the flag's own help text instead of as 'default: None')."""

    def _get_help_string(self, action):
        text = action.help or ""
        bounds = getattr(action.type, "bounds", None)     # int_in / float_in
        if bounds and "%(" not in text and str(bounds[1]) not in text.replace(",", ""):
            text += f" [{bounds[0]:,g} to {bounds[1]:,g}]"
        if action.default is None:
            return text
        action = argparse.Action(action.option_strings, action.dest, default=action.default,
                                 help=text)
        return super()._get_help_string(action)


# ------------------------------------------------------------- argparse value types
# argparse turns an ArgumentTypeError into "error: argument --x: ..." and exit code 2.


def positive_int(s):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a whole number")
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {v}")
    return v


def non_negative_int(s):
    v = int(s) if s.lstrip("-").isdigit() else None
    if v is None or v < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, not {s!r}")
    return v


def int_in(lo, hi):
    """argparse type: a whole number from lo to hi (a bound where memory, time or a 32-bit
    TensorFlow tensor would fail, said in the flag's help)."""
    def parse(s):
        v = int(s) if s.strip().lstrip("-").isdigit() else None
        if v is None or not lo <= v <= hi:
            raise argparse.ArgumentTypeError(
                f"must be a whole number from {lo:,} to {hi:,}, not {s!r}")
        return v
    parse.bounds = (lo, hi)
    return parse


def float_in(lo, hi):
    """argparse type: a number from lo to hi."""
    def parse(s):
        v = _float(s)
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be a number from {lo:g} to {hi:g}, not {s}")
        return v
    parse.bounds = (lo, hi)
    return parse


def _float(s):
    try:
        return float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a number")


def positive_float(s):
    v = _float(s)
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a number > 0, not {s}")
    return v


MIN_VAL_FRAC = 1e-4     # below this no text has a validation batch (and sizes overflow)


def val_fraction(s):
    """--val_frac: 0 (no validation) or in [MIN_VAL_FRAC, 0.5)."""
    v = _float(s)
    if not (v == 0.0 or MIN_VAL_FRAC <= v < 0.5):
        raise argparse.ArgumentTypeError(
            f"must be 0 (no validation) or in [{MIN_VAL_FRAC:g}, 0.5), not {s}")
    return v


def unit_float(s):
    v = _float(s)
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), not {s}")
    return v


# ----------------------------------------------------------------------- atomic writes


def atomic_write_bytes(path, data):
    """Write `data` to `path` so that a crash leaves either the old file or the new one.

    The bytes go to a temporary file in the same directory, are flushed to disk, and the
    temporary file is renamed over `path` (rename is atomic on POSIX and on Windows).
    """
    import errno
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
    except FileExistsError:          # a part of the path is a file
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), directory)
    if os.path.isdir(path):          # said of the user's path, not of the temporary file
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file 0600: give it the mode the old file had, else the one a
        # plain open() would (0666 less the umask)
        try:
            mode = os.stat(path).st_mode & 0o7777
        except OSError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path, text, encoding="utf-8"):
    atomic_write_bytes(path, text.encode(encoding))


def atomic_save_npy(path, array):
    import numpy as np
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def atomic_pickle(path, obj):
    atomic_write_bytes(path, pickle.dumps(obj, protocol=4))


# ------------------------------------------------------------------- safe pickle loads


class _PlainDataUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain data.

    str, bytes, int, float, bool, None, list, tuple, dict and set are built by pickle
    opcodes of their own and never reach `find_class`.  Everything else (classes,
    functions, `os.system`, `numpy` objects, ...) must be looked up through `find_class`,
    which refuses: loading such a file therefore cannot run code.
    """

    def find_class(self, module, name):
        raise _Refused(f"it references {module}.{name}")


class _Refused(pickle.UnpicklingError):
    """A pickle that would build more than plain data (not a damaged one)."""


def safe_load_pickle(path, what="file"):
    """Load a pickle that may contain only plain data; refuse anything else clearly."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}")
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror}")
    try:
        return _PlainDataUnpickler(io.BytesIO(data)).load()
    except _Refused as e:
        raise UserError(f"refusing to load {path}: {e}; a {what} holds only plain data "
                        f"(str/list/dict/int), so this file was tampered with or is not "
                        f"one of ours. Delete it and regenerate it.")
    except Exception as e:  # truncated ("pickle data was truncated") or garbage bytes
        raise UserError(f"{path} is damaged or cut short, not a readable {what} "
                        f"({type(e).__name__}); delete it and regenerate it.")


# ------------------------------------------------------------------------ training log
#
# The log format is the article's, so analysis/plot.py (and anyone's old scripts) can
# parse it: the configuration first, one `key: value` per line, then per epoch
#   Epoch:N train error rate:X
#   Epoch:N validate error rate:X
#   Epoch:N train time:T

LOG_CONFIG_HEADER = "config:"


def log_filename(log_dir, when=None):
    """`log/<timestamp>.txt`, with no ':' so the name is legal on every file system."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(when))
    path = os.path.join(log_dir, stamp + ".txt")
    n = 1
    while os.path.exists(path):          # two runs in the same second
        path = os.path.join(log_dir, f"{stamp}_{n}.txt")
        n += 1
    return path


def append_log(path, line=None, config=None):
    """Append to the training log: the config block (a dict) and/or one line.

    Each call opens, appends and closes, so a killed run leaves a readable log.
    """
    with open(path, "a", encoding="utf-8") as f:
        if config is not None:
            f.write(LOG_CONFIG_HEADER + "\n")
            for k in sorted(config):
                f.write(f"  {k}: {config[k]}\n")
        if line is not None:
            f.write(line.rstrip("\n") + "\n")


LOG_MACHINE = "Machine:"      # the line each run writes after its config block
# The line each save writes: `Saved: step S train time:T`, T = the seconds this run
# (one sitting) has trained so far, validation passes not counted.  An epoch line comes
# only when an epoch ends, so a run stopped or killed mid-epoch is known by these.
LOG_SAVED = "Saved:"


def saved_line(step, seconds):
    return f"{LOG_SAVED} step {step} train time:{seconds:.2f}"


def log_train_seconds(path):
    """(seconds trained, last step saved or None) of one run's log: its epochs' time, or
    the time at its last save when that is more (a run that stopped mid-epoch)."""
    _, epochs = parse_log(path, need_epochs=False)
    seconds = sum(e.get("time", 0.0) for e in epochs.values())
    step = None
    pat = re.compile(r"^" + LOG_SAVED + r" step (\d+) train time:([0-9.]+)\s*$")
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = pat.match(line)
            if m:
                step, seconds = int(m.group(1)), max(seconds, float(m.group(2)))
    return seconds, step


def epoch_lines(epoch, train_loss, val_loss, seconds):
    """The three per-epoch lines of the article's log format."""
    lines = [f"Epoch:{epoch} train error rate:{train_loss:.6f}"]
    if val_loss is not None:
        lines.append(f"Epoch:{epoch} validate error rate:{val_loss:.6f}")
    lines.append(f"Epoch:{epoch} train time:{seconds:.2f}")
    return lines


def parse_log(path, need_epochs=True):
    """Read a training log: returns (config dict, {epoch: {'train':x,'validate':y,'time':t}}).

    Raises ValueError when the file is not a training log of ours (with need_epochs,
    also when no epoch has ended in it).
    """
    pat = re.compile(r"^Epoch:(\d+) (train error rate|validate error rate|train time):"
                     r"\s*([-+0-9.eE]+|nan|inf)\s*$")
    key = {"train error rate": "train", "validate error rate": "validate",
           "train time": "time"}
    config, epochs, in_config = {}, {}, False
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise ValueError("not a text file")
    for line in lines:
        if line.strip() == LOG_CONFIG_HEADER:
            in_config = True
            continue
        m = pat.match(line)
        if m:
            in_config = False
            epochs.setdefault(int(m.group(1)), {})[key[m.group(2)]] = float(m.group(3))
        elif in_config and line.startswith("  ") and ":" in line:
            k, v = line.strip().split(":", 1)
            config[k.strip()] = v.strip()
    if not epochs and (need_epochs or not config):
        raise ValueError("no 'Epoch:N train error rate:X' lines")
    return config, epochs


# -------------------------------------------------------------------- TensorFlow bits


class silence_stderr:
    """Send file descriptor 2 to /dev/null for a while.

    TensorFlow's C++ side prints start-up notes (oneDNN, CUDA drivers) before its log
    level is read, so TF_CPP_MIN_LOG_LEVEL cannot hide them; Python exceptions raised
    inside still show, because they are printed after the descriptor is restored.
    """

    def __enter__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        return self

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        return False


# The environment TensorFlow is imported into; a variable the user has set wins.
TF_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    # TensorFlow imports Keras, which imports matplotlib.pyplot; a non-GUI backend makes
    # that import cheaper, and none of our scripts that use TensorFlow shows a window.
    "MPLBACKEND": "Agg",
}
# oneDNN's graph rewrites (its matmuls and fused element-wise kernels), by what the
# process does.  TensorFlow turns them on by itself only on CPUs with AVX-512 VNNI,
# bfloat16 or AMX, and leaves an AVX2 CPU on its own default kernels.  Measured on a
# 2-core AMD EPYC with AVX2 only (2026-11-30, bench/speed.py): training 1.3-1.6x faster
# with them (seed config 11.9 k -> 18.1 k chars/s, base 3.9 k -> 5.7 k), the held-out loss
# after the same steps equal to 4 decimals; the batch-1 sampling step slower with them
# (200 characters at V 6 k: 215-223 ms -> 230-301 ms, alternating runs).  So training turns them on and sampling
# leaves TensorFlow's default.  A process reads the setting once, at its first graph, and
# a user's TF_ENABLE_ONEDNN_OPTS wins (0 off, 1 on, for every script).
ONEDNN_BY_ROLE = {"train": "1", "sample": None}


def tf_environment(role=None):
    """Set TF_ENVIRONMENT's defaults, and the oneDNN default of `role` ("train" or
    "sample"; None: leave it), before TensorFlow is imported (import_tensorflow)."""
    for key, value in TF_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    if role is not None and ONEDNN_BY_ROLE[role] is not None:
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", ONEDNN_BY_ROLE[role])


USER_ONEDNN = os.environ.get("TF_ENABLE_ONEDNN_OPTS")     # before any default of ours


def child_environment():
    """os.environ for a child script, without this process's own oneDNN default: the
    child picks its own by its role (a bench that trains, then times sample.py)."""
    env = dict(os.environ)
    if USER_ONEDNN is None:
        env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    return env


def import_tensorflow(role="train", cpu=False):
    """Import TensorFlow quietly (call after argument parsing, so --help is instant).
    role: what the process does, "train" (and score in batches) or "sample" (one
    character at a time), which decides the oneDNN default (ONEDNN_BY_ROLE); the first
    call of a process decides.  cpu: hide every GPU from it (--cpu)."""
    if cpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    tf_environment(role)
    with silence_stderr():
        import tensorflow as tf
        tf.config.list_physical_devices("GPU")   # its CUDA probe logs too
    tf.get_logger().setLevel("ERROR")
    tf.compat.v1.disable_eager_execution()
    return tf


# ------------------------------------------------------------------------- checkpoints


# TensorFlow looks checkpoints up with its glob (Saver.restore's existence check, the
# checkpoint reader, the Saver's rotation of old files), so a directory named `run[1]` or
# `a*b` matches nothing: the model reads as damaged and old checkpoints are never deleted.
# Every checkpoint prefix handed to TensorFlow goes through tf_path, which gives such a
# directory a plain-named alias: a symlink in a temporary directory, removed at exit.
GLOB_CHARS = "*?[\\"
_ALIASES = {}                   # real directory -> its alias


def tf_path(prefix):
    """prefix, or the same checkpoint under an alias directory without glob characters
    (the file name itself, model.ckpt-N / best.ckpt-N or the user's, must have none)."""
    real = os.path.abspath(os.path.dirname(prefix) or ".")
    if not any(c in real for c in GLOB_CHARS):
        return prefix
    if real not in _ALIASES:
        if not _ALIASES:
            import atexit
            atexit.register(drop_aliases)
        tmp = tempfile.mkdtemp(prefix="lyrics-ckpt-")
        os.symlink(real, os.path.join(tmp, "dir"))
        _ALIASES[real] = os.path.join(tmp, "dir")
    return os.path.join(_ALIASES[real], os.path.basename(prefix))


def drop_aliases():
    """Remove tf_path's alias directories: at exit, and from run_main's fast exit, which
    skips the atexit handlers (they used to stay behind in the temporary directory)."""
    import shutil
    for alias in _ALIASES.values():
        shutil.rmtree(os.path.dirname(alias), ignore_errors=True)
    _ALIASES.clear()


def real_path(path):
    """The inverse of tf_path, for messages: the user's directory, not the alias."""
    for real, alias in _ALIASES.items():
        if path == alias or path.startswith(alias + os.sep):
            return real + path[len(alias):]
    return path


def checkpoint_step(prefix):
    """The step number of a prefix like save/model.ckpt-1200 (-1 if it has none)."""
    tail = prefix.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def state_checkpoint(save_dir, state_file):
    """The model_checkpoint_path in save_dir/<state_file>, or None (read without
    TensorFlow; a damaged state file reads as none)."""
    import re
    path = os.path.join(save_dir, state_file)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            m = re.search(r'^model_checkpoint_path:\s*"(.*)"\s*$', f.read(), re.M)
    except OSError:
        return None
    if not m:
        return None
    ckpt = m.group(1)
    return ckpt if os.path.isabs(ckpt) else os.path.join(save_dir, ckpt)


def checkpoint_candidates(save_dir, prefer_best=False):
    """Every checkpoint in save_dir whose .index file is there, the one to try first
    first: the best-validation one (prefer_best) or the newest, then the rest newest
    first.  The directory is scanned too, so a state file that names a deleted
    checkpoint still leaves the others."""
    found = set()
    try:
        names = os.listdir(save_dir)
    except OSError:
        names = []
    for name in names:
        if name.endswith(".index") and name.startswith(("model.ckpt-", "best.ckpt-")):
            found.add(os.path.join(save_dir, name[:-len(".index")]))
    best = state_checkpoint(save_dir, "checkpoint_best")
    latest = state_checkpoint(save_dir, "checkpoint")
    newest_first = sorted(found, key=lambda p: (checkpoint_step(p),
                                                os.path.basename(p).startswith("model")),
                          reverse=True)
    first = [p for p in ((best, latest) if prefer_best else (latest,)) if p in found]
    packed = [os.path.join(save_dir, PACKED_WEIGHTS)] if PACKED_WEIGHTS in names else []
    return list(dict.fromkeys(first + newest_first)) + packed


# A packed model (scripts/pack_model.py: models/base-verse/ ships so) holds its weights
# in one numpy archive instead of TensorFlow checkpoints: {variable name: array}, the
# trained weights in float16 (half the bytes; sampling and fine-tuning use them as
# float32) and the bookkeeping scalars (global_step, epoch, ...) in their own types.
# Every reader takes it where it takes a checkpoint prefix.
PACKED_WEIGHTS = "weights.npz"


def is_packed(prefix):
    return os.path.basename(prefix) == PACKED_WEIGHTS


def read_packed(path):
    """{name: array} of a packed model's weights.npz (no pickles), float arrays as
    float32; raises ValueError/OSError when it is not such a file."""
    import numpy as np
    with np.load(path, allow_pickle=False) as z:
        out = {}
        for name in z.files:
            a = z[name]
            out[name] = a.astype(np.float32) if a.dtype.kind == "f" else a
    return out


def restore_weights(sess, saver, prefix, variables):
    """Restore `variables` from a checkpoint prefix (saver.restore) or a packed
    weights.npz (each variable it holds loaded, the others set to their initial values:
    the loads and initializers are ops made with the variables, so a finalized graph
    works)."""
    if not is_packed(prefix):
        saver.restore(sess, tf_path(prefix))
        return
    weights = read_packed(prefix)
    for v in variables:
        name = v.op.name
        if name in weights:
            v.load(weights[name].reshape(v.shape.as_list()), sess)
        else:
            sess.run(v.initializer)


def checkpoint_problem(prefix, variables, read_all=True):
    """None when the checkpoint at prefix holds each of `variables` with its shape and
    (read_all) every tensor reads back intact, checksums included; else why not, starting
    with 'damaged' or 'made by another model'.  The shapes are checked before any restore:
    a Saver restores a resource variable of another shape without complaint, and the
    error comes later, deep in a run."""
    import numpy as np
    import tensorflow as tf
    try:
        if is_packed(prefix):
            packed = read_packed(prefix)
            shapes = {k: list(a.shape) for k, a in packed.items()}
        else:
            reader = tf.train.load_checkpoint(tf_path(prefix))
            shapes = reader.get_variable_to_shape_map()
    except Exception as e:                  # not an sstable, truncated index, ...
        return f"damaged ({short_error(e)})"
    if is_packed(prefix):
        bad = [k for k, a in packed.items() if a.dtype.kind == "f" and not np.all(
            np.isfinite(a))]
        if bad:
            return f"damaged ({bad[0]} holds inf/NaN)"
        trained = [v for v in variables if v.trainable]
        missing = [v.op.name for v in trained if v.op.name not in shapes]
        if missing:
            return f"made by another model (it has no {missing[0]})"
        variables, read_all = [v for v in variables if v.op.name in shapes], False
    for v in variables:
        name = v.op.name
        if name not in shapes:
            return f"made by another model (it has no {name})"
        if list(shapes[name]) != v.shape.as_list():
            return (f"made by another model ({name} is {list(shapes[name])}, this model's "
                    f"is {v.shape.as_list()})")
    try:
        for name in shapes if read_all else ():
            reader.get_tensor(name)
    except Exception as e:                  # a checksum mismatch, a truncated .data file
        return f"damaged ({short_error(e)})"
    return None


def short_error(e, width=90):
    """'TypeName: first line of the message' of an exception (TensorFlow's included)."""
    text = (str(getattr(e, "message", e)).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {text[:width]}"


def first_intact_checkpoint(candidates, variables, save_dir, restore=None):
    """(prefix, [(skipped prefix, reason)]) of the first intact candidate.  Each one's
    shapes are checked first; then with restore (a function of a prefix) it is restored,
    and only one that fails is read tensor by tensor to say why (a restore checks the
    checksums itself); without, each is read and checked.  A checkpoint made by another model stops the search (the others
    are from the same run); when none is intact, a UserError says so."""
    skipped = []
    for prefix in candidates:
        failure = None
        problem = checkpoint_problem(prefix, variables, read_all=restore is None)
        if restore is not None and problem is None:
            try:
                restore(prefix)
                return prefix, skipped
            except Exception as e:          # why, is found out below
                failure = e
            problem = checkpoint_problem(prefix, variables)
        if problem is None and failure is None:
            return prefix, skipped
        problem = problem or f"damaged ({short_error(failure)})"
        if problem.startswith("made by another model"):
            raise UserError(f"checkpoint {prefix} was {problem}: it does not match "
                            f"{save_dir}/config.pkl; restore the files of one model, or "
                            f"retrain")
        skipped.append((prefix, problem))
    if not skipped:
        raise UserError(f"no checkpoint in {save_dir}/ (no model.ckpt-*.index or "
                        f"best.ckpt-*.index file); train one first")
    raise UserError(f"no intact checkpoint in {save_dir}/: " + "; ".join(
        f"{os.path.basename(p)} is {why}" for p, why in skipped) +
        "; train afresh (train.py --overwrite) or copy the model again")


def cpu_flags():
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_text():
    """'<model name> (family F, model M; avx2, avx512f, ...)': which CPU, told apart
    where the model name is only 'AMD EPYC' (Milan is family 25 model 1, Genoa model 17),
    and the vector units that rank the builds."""
    info = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
                if key.strip() == "flags":
                    break
    except OSError:
        pass
    units = [u for u in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if u in cpu_flags()]
    parts = [f"family {info['cpu family']}, model {info['model']}"] \
        if "cpu family" in info and "model" in info else []
    if units:
        parts.append(", ".join(units))
    text = info.get("model name", sys.platform)
    return f"{text} ({'; '.join(parts)})" if parts else text


def cpu_has_bf16():
    """True when the CPU does bfloat16 arithmetic natively (AVX512-BF16 or AMX-BF16)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def session_config(bf16=False, inline=False):
    """ConfigProto for our sessions.  bf16: oneDNN rewrites matmuls to bfloat16 (variables,
    and so checkpoints, stay float32).  inline: run each step's ops in the calling thread
    (inter_op_parallelism_threads -1: sampling's one-character steps are a few dozen tiny
    ops, which a thread pool costs more than)."""
    import tensorflow as tf
    config = tf.compat.v1.ConfigProto()
    if inline:
        config.inter_op_parallelism_threads = -1
    if bf16:
        from tensorflow.core.protobuf import rewriter_config_pb2
        config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = \
            rewriter_config_pb2.RewriterConfig.ON
    return config


def perplexity(loss):
    """exp(loss), inf instead of an OverflowError for a blown-up loss."""
    return math.exp(loss) if loss < 700 else float("inf")


def build_weight(shape, name, initializer=None, dtype=None):
    """A trainable tf.compat.v1 variable in the current variable scope (the model's
    weights all come from here; the name is the checkpoint key)."""
    import tensorflow as tf
    tf1 = tf.compat.v1
    return tf1.get_variable(name, shape=shape, dtype=dtype or tf.float32,
                            initializer=initializer)


def count_params(variables=None):
    """Number of scalars in `variables` (default: all trainable variables of the graph)."""
    import numpy as np
    import tensorflow as tf
    if variables is None:
        variables = tf.compat.v1.trainable_variables()
    return int(sum(np.prod(v.shape.as_list()) for v in variables))
