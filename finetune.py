"""What a run takes from a saved model: --keep (adopt the saved config, check the text
and the batch layout still fit the batch pointer) and --init_from (read a base, load its
weights into a model with more characters, mix its text into the batches: --mix_base)."""
import os
import sys

from config import ARCH_FLAGS, BATCH_FLAGS
from modeldir import (CONFIG, CORPUS, VOCAB, base_corpus, base_vocabulary,
                      checkpoint_candidates, dir_locked, find_checkpoint, is_packed,
                      load_saved, path_of, read_config, read_packed, read_vocab, tf_path)
from utils import UserError, short_error


# Weights whose rows (embedding) or columns (softmax) are characters: a fine-tuned model
# has more characters than its base, so only the base's part is loaded.
PER_CHARACTER = {"word_embedding": 0, "softmax_w": 1, "softmax_b": 0}


def adopt(args, explicit, saved, keys, what, fix_hint):
    """Take keys from a saved config; a flag given on the command line that disagrees is
    an error (never a silent override).  what: '--keep: the model in save/'..."""
    for k in keys:
        if k not in saved:
            continue
        if k in explicit and saved[k] != getattr(args, k):
            if isinstance(saved[k], bool):
                fix = f"--{k}" if saved[k] else f"no --{k}"
            else:
                fix = f"--{k} {saved[k]}"
            if k in getattr(args, "preset_keys", ()):     # not typed: the preset's
                raise UserError(f"{what} has {k}={saved[k]!r} but --preset {args.preset} "
                                f"asks for {getattr(args, k)!r}; drop --preset (or give "
                                f"{fix})", code=2)
            raise UserError(f"{what} has {k}={saved[k]!r} but this run asks for "
                            f"{getattr(args, k)!r}; {fix_hint(fix)}", code=2)
        setattr(args, k, saved[k])


def check_resume(args, explicit):
    """need_be_same, before the data is read: the saved config's architecture and batch
    shape are adopted (a conflicting flag is an error).  Returns (config, base chars for
    the vocabulary: the saved base part of a fine-tuned model, else None)."""
    if not os.path.exists(path_of(args.save_dir, CONFIG)) or not \
            checkpoint_candidates(args.save_dir):
        raise UserError(f"--keep: no trained model to resume in {args.save_dir}/ "
                        f"(config.pkl and a checkpoint are needed); drop --keep to start one")
    if all(is_packed(p) for p in checkpoint_candidates(args.save_dir)):
        raise UserError(f"--keep: {args.save_dir}/ is a packed model (weights.npz, without "
                        f"its optimizer's state): it cannot be resumed; fine-tune it with "
                        f"--init_from {args.save_dir} into another --save_dir", code=2)
    saved = read_config(args.save_dir)
    # before 2026-11-30 the held-out part was the tail of the text, nothing was capped
    # and nothing mixed in
    saved = dict({"val_split": "tail", "max_vocab": 0, "mix_base": 0.0}, **saved)
    keys = ARCH_FLAGS + BATCH_FLAGS
    args.mix_dropped = False
    if "mix_base" in explicit and args.mix_base == 0 and saved["mix_base"]:
        # going on without the base's text (it moved, or by choice): allowed; the
        # epoch's batches change, so it starts over (resume_point)
        keys = tuple(k for k in keys if k != "mix_base")
        args.mix_dropped = True
    adopt(args, explicit, saved, keys,
          f"--keep: the model in {args.save_dir}/",
          lambda fix: f"resume with {fix}, or train a new model in another --save_dir")
    base = None
    if saved.get("base_vocab_size"):
        base = read_vocab(args.save_dir)[0][:saved["base_vocab_size"]]
    return saved, base


def check_resume_data(args, saved, data):
    """need_be_same, after: the text must be the one the model was trained on."""
    vocab_path = path_of(args.save_dir, VOCAB)
    same_vocab = read_vocab(args.save_dir)[0] == list(data.chars)
    if not same_vocab or saved.get("text_sha256", data.source_sha256) != data.source_sha256:
        also = "" if same_vocab else f", and so did the vocabulary in {vocab_path}"
        raise UserError(f"--keep: {data.input_file} is not the text the model in "
                        f"{args.save_dir}/ was trained on (the lyrics changed{also}); train "
                        f"a new model in another --save_dir, or fine-tune this one on the "
                        f"new text with --init_from {args.save_dir}")


def mix_rows(args, saved):
    """--mix_base: (the base's directory, rows of each batch from its text), checked
    before the data is read."""
    base_dir = args.init_from or (saved or {}).get("init_from")
    if not base_dir:
        raise UserError("--mix_base mixes a base model's text into fine-tuning: use it "
                        "with --init_from DIR", code=2)
    rows = round(args.mix_base * args.batch_size)
    if not 1 <= rows <= args.batch_size - 1:
        raise UserError(f"--mix_base {args.mix_base:g} of --batch_size {args.batch_size} is "
                        f"{rows} rows of the base's text; it must be 1 to "
                        f"{args.batch_size - 1} (or --mix_base 0)", code=2)
    return base_dir, rows


def mix_base_text(args, explicit, saved, data):
    """--mix_base: the base's text (corpus.npy beside its checkpoints, as train.py saves
    it) into data's training batches.  A base without it (copied without) trains on the
    user's text alone, said once; asked for explicitly, or without a base, it is an
    error."""
    if not args.mix_base:
        return
    base_dir, rows = mix_rows(args, saved)
    try:            # modeldir checks it against the vocabulary (or rebuilds a packed one's)
        ids = base_corpus(base_dir, data.base_chars or ())
        need = rows * args.seq_length + 1       # one batch's rows of it, at least
        why = f"{path_of(base_dir, CORPUS)} is missing" if ids is None else \
            None if len(ids) >= need else \
            (f"{path_of(base_dir, CORPUS)} holds {len(ids):,} characters, fewer than the "
             f"{need:,} of one batch's {rows} rows")
    except UserError as e:
        why = str(e)
    if why:
        if "mix_base" in explicit:
            raise UserError(f"--mix_base: {why}; copy the base with its corpus.npy, or "
                            f"pass --mix_base 0")
        print(f"train: warning: {why}: fine-tuning on your text alone (--mix_base 0)"
              + ("; this epoch starts over, since its batches change" if saved else ""),
              file=sys.stderr)
        args.mix_base, args.mix_dropped = 0.0, saved is not None
        return
    data.mix_in(ids, rows, args.seed)
    print(f"train: {rows} of each batch's {args.batch_size} rows read the base's text "
          f"(--mix_base {args.mix_base:g}); an epoch is {data.num_batches:,} batches, one "
          f"pass over yours")


def read_base(args, explicit):
    """--init_from DIR: the base's config and checkpoint, its architecture adopted into
    args (a conflicting flag is an error).  Reads only; returns (config, chars, ckpt)."""
    d = args.init_from
    if args.keep:
        raise UserError("--init_from starts a fine-tuning run and --keep resumes one: to "
                        "go on fine-tuning, use --keep alone", code=2)
    if os.path.isdir(args.save_dir) and os.path.isdir(d) and os.path.samefile(d,
                                                                              args.save_dir):
        raise UserError(f"--init_from {d} is --save_dir too: the base is never written "
                        f"to; fine-tune into another --save_dir", code=2)
    try:
        chars = base_vocabulary(d)      # a directory with a vocabulary, or a clear error
        config, chars, _ = load_saved(d)
        ckpt = find_checkpoint(d)
    except UserError as e:
        if os.path.isdir(d) and dir_locked(d):
            raise UserError(f"--init_from {d}: a train.py is training the model there now "
                            f"and has not written it whole yet; wait until it has saved "
                            f"(or ends), then fine-tune from it", code=2)
        raise UserError(f"--init_from {d}: {e}" if not str(e).startswith("--init_from")
                        else str(e), code=2)
    adopt(args, explicit, config, ARCH_FLAGS, f"--init_from {d}: the base model",
          lambda fix: f"a fine-tuned model keeps its base's architecture: drop the flag "
                      f"(or give {fix})")
    return config, chars, ckpt


def read_base_weights(tf, ckpt, variables):
    """{name: array} of the base checkpoint for each of `variables`, checked against their
    shapes (a fine-tuned model may have more characters).  Raises UserError when the
    checkpoint is unreadable or does not fit."""
    import zipfile

    import numpy as np
    try:
        if is_packed(ckpt):                 # a packed model: float16 weights, as float32
            packed = read_packed(ckpt)
            shapes, get = {k: a.shape for k, a in packed.items()}, packed.__getitem__
        else:
            reader = tf.train.load_checkpoint(tf_path(ckpt))
            shapes, get = reader.get_variable_to_shape_map(), reader.get_tensor
        out = {}
        for v in variables:
            name = v.op.name
            if name not in shapes:
                raise UserError(f"--init_from: {ckpt} has no {name}: it was not made by "
                                f"train.py with this model's architecture")
            value = get(name)
            want = v.shape.as_list()
            axis = PER_CHARACTER.get(name)
            fits = value.ndim == len(want) and all(
                a == b or (k == axis and a <= b) for k, (a, b) in
                enumerate(zip(value.shape, want)))
            if not fits or not np.all(np.isfinite(value)):
                raise UserError(f"--init_from: {name} in {ckpt} has shape {value.shape}"
                                f"{'' if fits else ', not ' + str(tuple(want))}"
                                f"{' and inf/NaN values' if fits else ''}: the checkpoint "
                                f"does not belong to its config.pkl; retrain the base")
            out[name] = value
        return out
    except (tf.errors.OpError, IndexError, ValueError, RuntimeError, OSError,
            zipfile.BadZipFile) as e:
        # a truncated .data file surfaces as IndexError ("Read less bytes than requested")
        if dir_locked(os.path.dirname(os.path.abspath(ckpt))):
            raise UserError(f"--init_from: {ckpt} is being written by the train.py that "
                            f"trains that model now; wait until it has saved (or ends), "
                            f"then fine-tune from it", code=2)
        raise UserError(f"--init_from: cannot read the base checkpoint {ckpt} "
                        f"({short_error(e, 120)}); the files are damaged: retrain the base "
                        f"or copy it again")


def load_base_weights(sess, variables, weights):
    """Put the base's weights into the new model.  Characters the base never saw keep
    their fresh embedding rows and softmax columns; their output bias starts at the
    base's lowest one, so a new character starts as a rare one, not an average one."""
    for v in variables:
        value = weights[v.op.name]
        axis = PER_CHARACTER.get(v.op.name)
        if axis is not None and value.shape[axis] < v.shape[axis]:
            full = sess.run(v)
            n = value.shape[axis]
            if axis == 0:
                full[:n] = value
                if v.op.name == "softmax_b":
                    full[n:] = value.min()
            else:
                full[:, :n] = value
            value = full
        v.load(value, sess)


# ---------------------------------------------------------------------------- progress
