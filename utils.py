"""Generic helpers: one-line errors (UserError, run_main), argparse value types and the
help formatter, directory flags (fileio.py: atomic writes and the safe pickle loader).  What is about a model lives with
it: config.py (its configuration), modeldir.py (its directory and checkpoints), tfenv.py
(TensorFlow's environment), trainlog.py (the training log).

Nothing here imports TensorFlow at module level, so `--help` of every script stays instant.
"""
import argparse
import math
import os
import sys
import tempfile


# ----------------------------------------------------------------------------- errors


class UserError(Exception):
    """Bad input from the user: shown as one line, never as a traceback.

    `code` is the process exit status: 2 for usage errors (bad flags or values),
    1 for everything else (missing files, corrupt data, ...).
    """

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


# Clean-ups that run_main's fast exit must still do (it skips the atexit handlers): a
# module that leaves something behind registers its clean-up here.
AT_FAST_EXIT = []


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
        for hook in AT_FAST_EXIT:
            hook()
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
        v = number(s)
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be a number from {lo:g} to {hi:g}, not {s}")
        return v
    parse.bounds = (lo, hi)
    return parse


def number(s):
    """A flag value as a float, or argparse's message that it is none."""
    try:
        return float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a number")


def positive_float(s):
    v = number(s)
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a number > 0, not {s}")
    return v


def unit_float(s):
    v = number(s)
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), not {s}")
    return v


def short_error(e, width=90):
    """'TypeName: first line of the message' of an exception (TensorFlow's included)."""
    text = (str(getattr(e, "message", e)).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {text[:width]}"


def perplexity(loss):
    """exp(loss), inf instead of an OverflowError for a blown-up loss."""
    return math.exp(loss) if loss < 700 else float("inf")
