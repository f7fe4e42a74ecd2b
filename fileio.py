"""Files written whole or not at all, and read safely: atomic writes (a temporary file
in the same directory, then a rename, so a kill or a full disk never leaves half a file
where a whole one was), the pickle loader that takes plain data only, and a file's sha256.
"""
import io
import os
import pickle
import tempfile

from utils import UserError


def file_sha256(path):
    """sha256 of a file's bytes, read a megabyte at a time."""
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
