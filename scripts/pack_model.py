"""Pack a trained model directory into a small one that can be committed or shared.

    python scripts/pack_model.py --from save/base --to models/base-verse \
        --log log/2026-12-04_07-00-00.txt [--log ...] \
        --corpus "--corpus poetry --exclude yuanqu"
    python scripts/pack_model.py --check models/base-verse

A packed directory holds config.pkl, words_vocab.pkl, weights.npz (the best checkpoint's
weights in float16: half the bytes of float32, no optimizer state) and manifest.json: the
commit that packed it, the recipe (train.py's flags and, with --corpus, the
data/fetch_corpus.py flags that rebuild its training text), the CPU(s) and hours of
training read from its logs, steps, epochs, final training and validation loss, and the
sha256 of every file.  sample.py, serve.py, evaluate.py and train.py --init_from read it
as they read a model directory; train.py --keep refuses it (no optimizer state).  The
training text (corpus.npy) is left out: with --corpus, train.py --init_from rebuilds it
on first use (modeldir.base_corpus).  --check verifies the checksums.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from modeldir import CONFIG, CORPUS, MANIFEST, VOCAB, check_manifest  # noqa: E402
from modeldir import PACKED_WEIGHTS  # noqa: E402
from trainlog import LOG_MACHINE, log_train_seconds, parse_log  # noqa: E402
from utils import ArgumentParser, HelpFormatter, UserError, run_main  # noqa: E402
from fileio import atomic_pickle, file_sha256  # noqa: E402

# config keys that name places on the machine that trained: replaced in the packed copy
MACHINE_PATHS = ("data_dir", "save_dir", "log_dir", "init_from", "init_checkpoint")


def build_parser():
    p = ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--from", dest="src", metavar="DIR", help="a model directory train.py "
                   "wrote (its best checkpoint is packed)")
    p.add_argument("--to", dest="dst", metavar="DIR", help="the packed directory to write "
                   "(must not exist)")
    p.add_argument("--log", nargs="*", default=[], metavar="FILE",
                   help="the training logs of the model (log/*.txt of each run that "
                        "trained it): the manifest's hours, CPUs and final training loss")
    p.add_argument("--corpus", default=None, metavar="FLAGS",
                   help="the data/fetch_corpus.py flags that made the training text (then "
                        "parse.py with its defaults), e.g. \"--corpus poetry --exclude "
                        "yuanqu\": fine-tuning rebuilds the text from them")
    p.add_argument("--check", metavar="DIR", help="only verify DIR's files against its "
                   "manifest")
    return p


def commit():
    """The project's commit (with '+changes' when the work tree differs from it)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return head + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def read_logs(paths):
    """(training hours, [machines], the last epoch's training loss, sittings) of the
    logs, one log per run (sitting).  A run's hours are its epochs' training time, or
    its time at its last save when it stopped mid-epoch (validation passes not
    counted); sittings lists [log name, seconds, last step saved] per run, so a run
    that left no line (killed before its first save) shows as 0 seconds."""
    seconds, machines, last, sittings = 0.0, [], None, []
    for path in paths:
        try:
            _, epochs = parse_log(path, need_epochs=False)
            run_seconds, step = log_train_seconds(path)
        except (OSError, ValueError) as e:
            raise UserError(f"--log {path}: not a training log ({e})", code=2)
        seconds += run_seconds
        sittings.append([os.path.basename(path), round(run_seconds, 1), step])
        if epochs:
            last = epochs[max(epochs)].get("train", last)
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith(LOG_MACHINE):
                    text = line[len(LOG_MACHINE):].strip()
                    if text not in machines:
                        machines.append(text)
    return seconds / 3600, machines, last, sittings


def packed_weights(src, ckpt, config):
    """{name: array} of every variable a sampling or scoring graph has, from the
    checkpoint: trainable weights as float16, bookkeeping scalars as they are."""
    import numpy as np
    from modeldir import tf_path
    from tfenv import import_tensorflow
    tf = import_tensorflow("sample")
    from seq2seq_rnn import Model
    graph = tf.Graph()
    with graph.as_default():
        Model(config, training=False)
        wanted = [(v.op.name, v.trainable) for v in tf.compat.v1.global_variables()]
    reader = tf.train.load_checkpoint(tf_path(ckpt))
    out = {}
    for name, trainable in wanted:
        value = reader.get_tensor(name)
        if trainable:
            if np.abs(value).max() > np.finfo(np.float16).max:
                raise UserError(f"{name} in {ckpt} holds values beyond float16's range")
            value = value.astype(np.float16)
        out[name] = value
    return out


def packed_config(config, dst):
    """The config to pack: no paths of the machine that trained it."""
    out = dict(config, save_dir=dst, data_dir=None, log_dir=None, init_from=None)
    out.pop("init_checkpoint", None)
    for k in MACHINE_PATHS:
        if isinstance(out.get(k), str) and os.path.isabs(out[k]):
            out[k] = None
    return out


def corpus_recipe(flags, config, corpus):
    """The manifest's corpus entry: the fetch flags, and the sha256 of the text and ids."""
    import numpy as np
    if flags is None:
        return None
    return {"fetch_corpus": flags.split(), "then": "data/parse.py (defaults)",
            "text_sha256": config.get("text_sha256"),
            "ids": None if corpus is None else len(corpus),
            "ids_sha256": None if corpus is None else hashlib.sha256(
                np.ascontiguousarray(corpus, dtype=np.int32).tobytes()).hexdigest()}


def make_manifest(args, logs, config, ckpt, weights, corpus, files_dir):
    hours, machines, train_loss, sittings = logs
    return {
        "packed_from": os.path.basename(ckpt),
        "commit": commit(),
        "recipe": {k: config[k] for k in sorted(config)
                   if k not in MACHINE_PATHS and k != "text_sha256"},
        "corpus": corpus_recipe(args.corpus, config, corpus),
        "cpu": machines,
        "hours": round(hours, 3),
        "training_seconds": round(hours * 3600, 1),
        "sittings": sittings,
        "steps": int(weights["global_step"]),
        "epochs": int(weights["epoch"]),
        "batch_in_epoch": int(weights["batch_pointer"]),
        "training_loss": train_loss,
        "validation_loss": float(weights["best_val_loss"]),
        "files": {name: file_sha256(os.path.join(files_dir, name))
                  for name in (CONFIG, VOCAB, PACKED_WEIGHTS)},
    }


def pack(args):
    import numpy as np
    from modeldir import find_checkpoint, load_corpus, load_saved
    if not args.src or not args.dst:
        raise UserError("give --from DIR and --to DIR (or --check DIR)", code=2)
    if os.path.exists(args.dst):
        raise UserError(f"--to {args.dst} exists; pack into a new directory", code=2)
    config, chars, vocab = load_saved(args.src)
    ckpt = find_checkpoint(args.src)
    weights = packed_weights(args.src, ckpt, config)
    logs = read_logs(args.log)          # a bad --log is refused before anything is written
    corpus = load_corpus(args.src, len(chars))
    parent = os.path.dirname(os.path.abspath(args.dst))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".pack-", dir=parent)
    try:
        atomic_pickle(os.path.join(tmp, CONFIG), packed_config(config, args.dst))
        atomic_pickle(os.path.join(tmp, VOCAB), (list(chars), dict(vocab)))
        np.savez(os.path.join(tmp, PACKED_WEIGHTS), **weights)
        manifest = make_manifest(args, logs, config, ckpt, weights, corpus, tmp)
        with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:
            json.dump(manifest, f, ensure_ascii=False, indent=1)
            f.write("\n")
        os.rename(tmp, args.dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size = sum(os.path.getsize(os.path.join(args.dst, n)) for n in os.listdir(args.dst))
    print(f"pack_model: {args.dst}/ ({size / 1e6:.1f} MB) from {ckpt}: step "
          f"{manifest['steps']:,}, validation loss {manifest['validation_loss']:.4f}"
          + ("" if corpus is not None or args.corpus is None else
             f"; note: {args.src}/{CORPUS} is missing, so the rebuilt text cannot be "
             f"checked against it"))


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.check:
        check_manifest(args.check)
        print(f"pack_model: {args.check}/: every file matches its manifest")
        return 0
    pack(args)
    return 0


if __name__ == "__main__":
    run_main(main, "pack_model.py")
