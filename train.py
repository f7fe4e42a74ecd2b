"""Train the character model on data/lyrics.txt.

    python train.py --rnncell lstm
    python train.py --keep            # resume where the last run stopped
    python train.py --init_from save/base --save_dir save/mine   # fine-tune a base model

Writes save/config.pkl, save/words_vocab.pkl, checkpoints save/model.ckpt-<step> (the last
five, plus one an hour) and save/best.ckpt-<step> (lowest validation loss), the log
log/<timestamp>.txt that analysis/plot.py reads, and TensorBoard events in
log/<timestamp>/.
"""
import collections
import math
import os
import signal
import sys
import time


from config import ARCHITECTURE_KEYS, CELL_GATES, CELL_TYPES, CONFIG_RANGES
from modeldir import (CONFIG, CORPUS, VOCAB, DirLock, base_corpus, base_vocabulary,
                      checkpoint_candidates, checkpoint_step, clear_model, dir_locked,
                      existing_model, find_checkpoint, first_intact_checkpoint, is_packed,
                      load_saved, path_of, read_config, read_packed, read_vocab, real_path,
                      tf_path, write_model_files)
from presets import PRESETS, SEED, describe
from tfenv import cpu_has_bf16, cpu_text, import_tensorflow, session_config
from trainlog import LOG_MACHINE, append_log, epoch_lines, log_filename, saved_line
from utils import (ArgumentParser, HelpFormatter, UserError, check_dir_flag, float_in,
                   int_in, non_negative_int, perplexity, positive_float, positive_int,
                   run_main, short_error, unit_float, val_fraction, writable_dir)

# The architecture flags: every key a checkpoint depends on but the vocabulary's size,
# which comes from the text.
ARCH_FLAGS = tuple(k for k in ARCHITECTURE_KEYS if k != "vocab_size")
# Flags whose change would make the saved batch pointer (or the vocabulary) meaningless.
BATCH_FLAGS = ("batch_size", "seq_length", "val_frac", "val_split", "max_vocab", "mix_base")
# Defaults that depend on the run: a fresh model, a fine-tuned one (--init_from; measured
# on 元曲 held out of the base, README "A base model"), or a resumed one (its own values).
DEFAULTS = {"learning_rate": SEED["learning_rate"], "dropout": 0.0, "mix_base": 0.0,
            "sampled_softmax": 0}
FINE_TUNE_DEFAULTS = {"learning_rate": 0.0005, "dropout": 0.3, "mix_base": 0.75}
# Weights whose rows (embedding) or columns (softmax) are characters: a fine-tuned model
# has more characters than its base, so only the base's part is loaded.
PER_CHARACTER = {"word_embedding": 0, "softmax_w": 1, "softmax_b": 0}


def size_flag(key):
    """argparse type of a shape flag: the range a saved config may hold (CONFIG_RANGES)."""
    return int_in(1, CONFIG_RANGES[key][1])


def build_parser():
    p = ArgumentParser(
        description="Train the character-level lyrics model (TF1-style graph + Session).",
        formatter_class=HelpFormatter)
    add_data_and_model_flags(p)
    add_training_flags(p)
    return p


def add_data_and_model_flags(p):
    g = p.add_argument_group("data")
    g.add_argument("--data_dir", default="data", help="directory with lyrics.txt")
    g.add_argument("--save_dir", default="save", help="checkpoints, config and vocabulary")
    g.add_argument("--log_dir", default="log", help="text logs and TensorBoard events")
    g.add_argument("--val_frac", type=val_fraction, default=0.05,
                   help="share of the text held out for validation, in blocks of about "
                        "1,000 characters spread over the text")
    g.add_argument("--max_vocab", type=non_negative_int, default=0,
                   help="keep only this many most frequent characters and leave the rarer "
                        "ones out of the text: a faster softmax for a base model (fine-"
                        "tuning adds every character of your text it lacks); 0 = all")
    g = p.add_argument_group("model")
    g.add_argument("--preset", choices=list(PRESETS), default=None,
                   help="a named set of the flags below (flags you give win): " + "; ".join(
                       f"{name}: {describe(name)}" for name in PRESETS))
    g.add_argument("--rnncell", choices=CELL_TYPES, default=SEED["rnncell"],
                   help="recurrent cell type")
    g.add_argument("--rnn_size", type=size_flag("rnn_size"), default=SEED["rnn_size"],
                   help="units per layer")
    g.add_argument("--num_layers", type=size_flag("num_layers"), default=SEED["num_layers"],
                   help="stacked layers")
    g.add_argument("--embedding_size", type=size_flag("embedding_size"),
                   default=SEED["embedding_size"],
                   help="size of the character embedding")
    g.add_argument("--attention", action="store_true",
                   help="causal attention over the window (and a rolling buffer when "
                        "sampling)")
    g.add_argument("--dropout", type=unit_float, default=None,
                   help=f"dropout rate on each layer's output while training (0 = off); "
                        f"default {DEFAULTS['dropout']}, with --init_from "
                        f"{FINE_TUNE_DEFAULTS['dropout']}, with --keep the model's own")


def add_training_flags(p):
    g = p.add_argument_group("training")
    g.add_argument("--batch_size", type=size_flag("batch_size"), default=SEED["batch_size"],
                   help="sequences per batch")
    g.add_argument("--seq_length", type=size_flag("seq_length"), default=SEED["seq_length"],
                   help="characters per sequence (steps of backpropagation through time)")
    g.add_argument("--num_epochs", type=positive_int, default=50, help="epochs to train")
    g.add_argument("--learning_rate", type=float_in(1e-12, 1e38), default=None,
                   help=f"Adam rate; default {DEFAULTS['learning_rate']}, with --init_from "
                        f"{FINE_TUNE_DEFAULTS['learning_rate']}, with --keep the model's own")
    g.add_argument("--mix_base", type=float_in(0.0, 0.95), default=None, metavar="SHARE",
                   help=f"fine-tuning: this share of each batch's rows reads the base's own "
                        f"text (its corpus.npy), so the model keeps what it knew while it "
                        f"learns yours; default {DEFAULTS['mix_base']}, with --init_from "
                        f"{FINE_TUNE_DEFAULTS['mix_base']}, with --keep the model's own")
    g.add_argument("--decay_rate", type=float_in(0.001, 1.0), default=1.0,
                   help="learning rate x decay_rate after each epoch (1 = constant)")
    g.add_argument("--reset_chars", type=non_negative_int, default=256,
                   help="reset each sequence's RNN state to zero at random, on average "
                        "every this many characters, so the model learns to start from "
                        "the zero state sampling starts from (0 = carry the state through "
                        "the epoch, as the article)")
    g.add_argument("--anneal", action="store_true",
                   help="lower the learning rate along a cosine to a tenth over this run's "
                        "budget (--max_minutes, --max_steps or --num_epochs, whichever ends "
                        "first), so a run of fixed length ends on small, precise steps; "
                        "--max_steps counts the model's steps, so --keep with the same "
                        "--max_steps continues the curve")
    g.add_argument("--sampled_softmax", type=non_negative_int, default=None, metavar="S",
                   help="train on a sampled softmax over S candidate characters a step "
                        "(log-uniform over the frequency-ordered vocabulary) instead of "
                        "all V: a faster step when V is thousands; validation, the "
                        "reported loss, sampling and scoring use the full softmax, and the "
                        "saved model is the same kind (0 = the full softmax; S >= V is "
                        "the full softmax too); default 0, with --keep the model's own")
    g.add_argument("--grad_clip", type=positive_float, default=5.0,
                   help="clip gradients to this global norm")
    g.add_argument("--patience", type=non_negative_int, default=5,
                   help="stop when validation loss has not improved for this many epochs "
                        "(0 = never stop early)")
    g.add_argument("--max_steps", type=non_negative_int, default=0,
                   help="stop after this many training steps in total (0 = no limit)")
    g.add_argument("--max_minutes", type=positive_float, default=None,
                   help="wall-clock budget of this run: training stops early enough for a "
                        "last validation pass and save to end within it, and the best "
                        "model found is kept (default: no limit)")
    g.add_argument("--seed", type=int, default=1234, help="random seed for weights and dropout")
    g = p.add_argument_group("saving and resuming")
    g.add_argument("--save_every", type=positive_int, default=1000,
                   help="save a checkpoint every this many steps (and at each epoch end)")
    g.add_argument("--keep", action="store_true",
                   help="resume the model in --save_dir: step, epoch and batch continue")
    g.add_argument("--overwrite", action="store_true",
                   help="delete a model already in --save_dir and start afresh")
    g.add_argument("--init_from", default=None, metavar="DIR",
                   help="fine-tune: start from the best checkpoint of the model trained in "
                        "DIR (e.g. save/base from scripts/base.sh), with its architecture "
                        "and vocabulary (new characters of --data_dir's text are added); "
                        "DIR is only read")
    g.add_argument("--cpu", action="store_true", help="use the CPU even if a GPU is visible")
    g.add_argument("--bf16", action="store_true",
                   help="CPU only: run matmuls in bfloat16 through oneDNN, for CPUs with "
                        "AVX512-BF16/AMX (faster, slightly less precise; checkpoints stay "
                        "float32)")


# ------------------------------------------------------------------------- save_dir


def remove_other_checkpoints(save_dir, prefix, keep):
    """Delete checkpoints named prefix* except `keep` (a Saver forgets across runs)."""
    keep = os.path.basename(keep)
    for name in os.listdir(save_dir):
        if name.startswith(prefix) and not name.startswith(keep + "."):
            os.unlink(os.path.join(save_dir, name))


def explicit_flags(argv):
    """The dests of the flags given on the command line (not left at their default)."""
    p, unset = build_parser(), object()
    p.set_defaults(**{a.dest: unset for a in p._actions})
    return {k for k, v in vars(p.parse_args(argv)).items() if v is not unset}


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


def training_bytes(args):
    """Memory the model's training needs at least: every weight 4 times (itself, its
    gradient and Adam's two moments), float32."""
    V, E, H, L = args.vocab_size, args.embedding_size, args.rnn_size, args.num_layers
    gates = CELL_GATES[args.rnncell]
    layers = sum(gates * H * ((E if i == 0 else H) + H + 1) for i in range(L))
    return 16 * (V * E + layers + H * V + V)


def check_memory(args):
    """An architecture far beyond this machine's memory is one line before TensorFlow
    tries (--rnn_size 1000000 ended in a traceback from deep inside it)."""
    need = training_bytes(args)
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):       # not POSIX: let TensorFlow say
        return
    if need > have:
        raise UserError(f"{args.rnncell} {args.num_layers}x{args.rnn_size}, embedding "
                        f"{args.embedding_size}, {args.vocab_size:,} characters needs at "
                        f"least {need / 2**30:,.1f} GiB to train and this machine has "
                        f"{have / 2**30:,.1f} GiB: lower --rnn_size, --num_layers or "
                        f"--embedding_size", code=2)


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


def clock(seconds):
    """'m:ss', or 'h:mm:ss' from an hour on."""
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else \
        f"{s // 60}:{s % 60:02d}"


class Progress:
    """A one-line bar on a terminal; a plain line every `every` seconds otherwise."""

    def __init__(self, total, epoch, num_epochs, chars_per_step, every=60.0,
                 run_left=None):
        """run_left(steps per second) -> the seconds the whole run has left at most
        (its budget of steps, epochs and minutes), or None: shown after the epoch's."""
        self.total, self.epoch, self.num_epochs = total, epoch, num_epochs
        self.chars_per_step, self.run_left = chars_per_step, run_left
        self.tty = sys.stdout.isatty()
        self.every = 0.2 if self.tty else every
        self.start = self.last = time.time()
        self.done = 0

    def update(self, step_in_epoch, loss):
        now = time.time()
        if self.done == 0:       # the first step includes graph set-up: time from here
            self.start = self.last = now
        self.done += 1
        if now - self.last < self.every:
            return
        self.last = now
        rate = (self.done - 1) * self.chars_per_step / max(now - self.start, 1e-9)
        eta = (self.total - step_in_epoch) * self.chars_per_step / max(rate, 1e-9)
        text = (f"epoch {self.epoch + 1}/{self.num_epochs} step {step_in_epoch}/{self.total} "
                f"loss {loss:.3f} {rate / 1000:.1f}k chars/s ETA {clock(eta)}")
        left = self.run_left(rate / self.chars_per_step) if self.run_left and rate > 0 \
            else None
        if left is not None and left > eta + 1:
            text += f" (run at most {clock(left)})"
        if self.tty:
            width = 24
            fill = int(width * step_in_epoch / max(self.total, 1))
            print(f"\r[{'#' * fill}{'.' * (width - fill)}] {text}  ", end="", flush=True)
        else:
            print(text, flush=True)

    def close(self):
        if self.tty:
            print("\r" + " " * 100 + "\r", end="", flush=True)


# ------------------------------------------------------------------------------ train


class NonFinite(Exception):
    """The weights hold inf/NaN, or the loss diverged: nothing may be saved."""


def divergence_limit(vocab_size):
    """A loss this far above ln(V) (uniform guessing) is divergence, not learning."""
    uniform = math.log(max(vocab_size, 2))
    return max(3 * uniform, uniform + 10)


def reset_masks(seed, batch_size, seq_length, reset_chars):
    """state_mask for run_epoch: each row's state is reset with probability
    seq_length / reset_chars before a batch (a reset on average every reset_chars
    characters).  Drawn from (seed, global step), so a resumed run resets where an
    uninterrupted one would."""
    import numpy as np
    if not reset_chars:
        return lambda step: None
    p = min(1.0, seq_length / reset_chars)
    return lambda step: (np.random.default_rng((seed % 2**32, step)).random(batch_size) >= p
                         ).astype(np.float32)


ANNEAL_FLOOR = 0.1      # --anneal ends at this share of the learning rate
ANNEAL_EVERY = 100      # steps between learning-rate updates (an assign op per update)


def annealed(lr, done):
    """--anneal: the rate after a share `done` (0..1) of the run's budget, on a cosine
    from lr down to ANNEAL_FLOOR * lr."""
    done = min(max(done, 0.0), 1.0)
    return lr * (ANNEAL_FLOOR + (1 - ANNEAL_FLOOR) * 0.5 * (1 + math.cos(math.pi * done)))


def masked_state(state, mask):
    """The nested state (tuples of [batch_size, ...] arrays) with rows where mask is 0
    zeroed."""
    if isinstance(state, (tuple, list)):
        return tuple(masked_state(s, mask) for s in state)
    return state * mask.reshape((-1,) + (1,) * (state.ndim - 1))


# --sampled_softmax: the full-softmax loss the training reports is measured on every
# this many steps' batches (a forward pass over all V logits, about a third of the full
# softmax's work: every 16th step, an estimated 1-2 % of the time; not measured apart).
MEASURE_EVERY = 16


def run_epoch(session, model, xs, ys, eval_op=None, start=0, keep_prob=1.0, on_step=None,
              state_mask=None, rows=None):
    """Run batches xs[start:], ys[start:] carrying the RNN state from batch to batch.

    With eval_op (the train op) it trains; without, it only measures (validation).
    on_step(i, loss, grad_norm) may return True to stop early.  state_mask(i), if given,
    returns None or a [batch_size] array of 0/1: the rows with 0 start batch i from the
    zero state.  rows: the loss reported (and checked) is the mean over the first `rows`
    rows only (--mix_base: the user's text; the gradient covers every row).  Returns
    (mean loss, number of batches run).

    The loss is always the full softmax's.  A model that trains on a sampled softmax
    (model.sampled) has it computed on every MEASURE_EVERY-th batch only (the first one
    included); on_step then gets the latest such figure, the returned mean is theirs, and
    a training step that went non-finite shows in its grad_norm at once.
    """
    state = session.run(model.initial_state)
    fetches = {"state": model.final_state}
    if eval_op is not None:
        fetches["train"] = eval_op
        fetches["grad_norm"] = model.grad_norm
    measured = dict(fetches, cost=model.cost if rows is None else model.row_cost)
    sparse = eval_op is not None and model.sampled
    total, n, n_measured, loss = 0.0, 0, 0, float("nan")
    for i in range(start, len(xs)):
        feed = {model.input_data: xs[i], model.targets: ys[i]}
        mask = state_mask(i) if state_mask is not None else None
        if mask is not None:
            state = masked_state(state, mask)
        feed.update(model.state_feed(state))
        if eval_op is not None and keep_prob < 1.0:
            feed[model.keep_prob] = keep_prob
        measure = not sparse or (i - start) % MEASURE_EVERY == 0
        out = session.run(measured if measure else fetches, feed)
        state = out["state"]
        if measure:
            loss = out["cost"] if rows is None else float(out["cost"][:rows].mean())
            total += loss
            n_measured += 1
        n += 1
        if on_step is not None and on_step(i, loss, out.get("grad_norm", 0.0)):
            break
    return (total / n_measured if n_measured else float("nan")), n


def main(argv=None):
    start_time = time.time()
    args = build_parser().parse_args(argv)
    args.start_time = start_time
    args.val_split = "blocks"       # how the held-out part is chosen (--keep: the model's)
    explicit = explicit_flags(argv)
    args.preset_keys = set()
    for k, v in PRESETS[args.preset].items() if args.preset else ():
        if k not in explicit:        # as if typed, after the flags that were typed
            setattr(args, k, v)
            explicit.add(k)
            args.preset_keys.add(k)
    if args.keep and args.overwrite:
        raise UserError("--keep resumes and --overwrite starts afresh: pick one", code=2)
    check_dir_flag(args.save_dir, "--save_dir")
    check_dir_flag(args.log_dir, "--log_dir")
    writable_dir(args.log_dir, "--log_dir")

    # The lock comes before anything is decided about save_dir: a second train.py started
    # a moment later is refused here, instead of finding the directory still empty and
    # writing its model over the first one's when that one has finished.  A directory made
    # here is removed again if the run ends before writing anything into it.
    made = not os.path.isdir(args.save_dir)
    os.makedirs(args.save_dir, exist_ok=True)
    args.lock = DirLock(args.save_dir, "train.py")
    try:
        return start(args, explicit)
    except BaseException:
        if made and os.listdir(args.save_dir) == [".lock"]:
            os.unlink(os.path.join(args.save_dir, ".lock"))
            os.rmdir(args.save_dir)
        raise
    finally:
        args.lock.release()


def start(args, explicit):
    """Everything after the flags, under save_dir's lock: what this run starts from and
    its data (read before anything is written), the graph, the directory's files, the
    session begun one of three ways (begin_fresh, begin_keep, begin_from_base), then the
    epoch loop (Fit)."""
    origin = read_origin(args, explicit)
    data = read_data(args, explicit, origin)
    tf = import_tensorflow(cpu=args.cpu)
    g = build_graph(tf, args)
    if args.init_from:        # read and checked before save_dir is touched
        origin.weights = read_base_weights(tf, origin.ckpt, g.weights)
    gpus = tf.config.list_physical_devices("GPU")
    device = (f"GPU ({', '.join(x.name for x in gpus)})" if gpus else
              "CPU (--cpu)" if args.cpu else "CPU (no GPU visible)")
    print(f"train: device {device}")

    # From here on save_dir is written (by this process only: main() holds its lock).
    if args.keep:             # chosen before config.pkl is rewritten: a failure changes nothing
        origin.resume = resume_point(tf, args, g, data)
    if args.overwrite and not args.keep and existing_model(args.save_dir):
        clear_model(args.save_dir)
    config = write_config(args, data, origin)
    if args.bf16 and gpus:
        print("train: --bf16 is for CPUs; ignored on the GPU")
    elif args.bf16 and not cpu_has_bf16():
        print("train: warning: this CPU has no native bfloat16 (AVX512-BF16/AMX); --bf16 "
              "may be slower than float32", file=sys.stderr)
    sess = tf.compat.v1.Session(graph=g.graph, config=session_config(args.bf16 and not gpus))
    if args.keep:
        begun = begin_keep(sess, args, g, origin.resume)
    elif args.init_from:
        begun = begin_from_base(sess, g, data, origin)
    else:
        begun = begin_fresh(sess, g)

    os.makedirs(args.log_dir, exist_ok=True)
    log_path = log_filename(args.log_dir)
    append_log(log_path, f"{LOG_MACHINE} {os.cpu_count()} cores, {cpu_text()}",
               config=config)
    tb = tf.compat.v1.summary.FileWriter(os.path.splitext(log_path)[0], graph=g.graph)
    print(f"train: {args.rnncell} {args.num_layers}x{args.rnn_size}, embedding "
          f"{args.embedding_size}{', attention' if args.attention else ''}: "
          f"{g.n_params:,} parameters; log {log_path}")
    try:
        return Fit(args, data, sess, g, log_path, tb, begun).run()
    except NonFinite as e:
        print(f"train: error: {e}; stopped without saving: the checkpoints saved before in "
              f"{args.save_dir}/ are kept. Lower --learning_rate (now {args.learning_rate:g}) "
              f"or --grad_clip.",
              file=sys.stderr)
        return 1
    finally:
        tb.close()
        sess.close()


def read_origin(args, explicit):
    """What this run starts from, read and checked before anything is written: a saved
    model's config (--keep), a base model's config, characters and checkpoint
    (--init_from), or nothing; then the defaults that depend on which."""
    from types import SimpleNamespace
    origin = SimpleNamespace(saved=None, chars=None, config=None, ckpt=None, weights=None,
                             resume=None)
    if args.init_from:
        origin.config, origin.chars, origin.ckpt = read_base(args, explicit)
    elif args.keep:
        origin.saved, origin.chars = check_resume(args, explicit)
    defaults = origin.saved if origin.saved is not None else (
        FINE_TUNE_DEFAULTS if args.init_from else DEFAULTS)
    for k in DEFAULTS:
        if getattr(args, k) is None:
            setattr(args, k, defaults.get(k, DEFAULTS[k]))
    return origin


def read_data(args, explicit, origin):
    """The text as batches (preprocess.TextParser), checked against what it must match:
    the memory it needs, the saved model (--keep), a model already in save_dir."""
    if args.mix_base:
        mix_rows(args, origin.saved)
    from preprocess import TextParser
    data = TextParser(args.data_dir, args.batch_size, args.seq_length, args.val_frac,
                      verbose=True, base_chars=origin.chars, val_split=args.val_split,
                      max_vocab=args.max_vocab)
    args.vocab_size = data.vocab_size
    check_memory(args)
    if origin.saved is not None:
        check_resume_data(args, origin.saved, data)
    elif existing_model(args.save_dir) and not args.overwrite:
        raise UserError(f"{args.save_dir}/ already holds a trained model; resume it with "
                        f"--keep, train into another --save_dir, or pass --overwrite to "
                        f"replace it", code=2)
    mix_base_text(args, explicit, origin.saved, data)
    return data


def build_graph(tf, args):
    """The training graph, finalized: any op created later (in the loop) is a bug."""
    from types import SimpleNamespace
    from seq2seq_rnn import Model
    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(args.seed)
        g = SimpleNamespace(graph=graph, model=Model(args))
        g.init = tf1.global_variables_initializer()
        g.saver = tf1.train.Saver(tf1.global_variables(), max_to_keep=5,
                                  keep_checkpoint_every_n_hours=1, save_relative_paths=True)
        g.best_saver = tf1.train.Saver(tf1.global_variables(), max_to_keep=1,
                                       save_relative_paths=True)
        g.weights = tf1.trainable_variables()
        g.all_variables = tf1.global_variables()
        from seq2seq_rnn import count_params
        g.n_params = count_params()
    graph.finalize()
    return g


def resume_point(tf, args, g, data):
    """--keep: (checkpoint, step, epoch, batch pointer) to resume from; refused when the
    model has already trained as far as --num_epochs / --max_steps ask."""
    ckpt = resume_checkpoint(args.save_dir, g.all_variables)
    reader = tf.train.load_checkpoint(tf_path(ckpt))
    step, epoch, pointer = (int(reader.get_tensor(n)) for n in
                            ("global_step", "epoch", "batch_pointer"))
    if pointer >= data.num_batches:
        epoch, pointer = epoch + 1, 0
    if getattr(args, "mix_dropped", False) and pointer:
        print(f"train: without the base's text the batches of an epoch differ: epoch "
              f"{epoch + 1} starts again from its first batch")
        pointer = 0
    if epoch >= args.num_epochs:
        raise UserError(f"--keep: the model in {args.save_dir}/ has already trained "
                        f"{epoch} epochs; raise --num_epochs to train more", code=2)
    if args.max_steps and step >= args.max_steps:
        raise UserError(f"--keep: the model in {args.save_dir}/ has already trained "
                        f"{step} steps; raise --max_steps to train more", code=2)
    return ckpt, step, epoch, pointer


def write_config(args, data, origin):
    """Write the model directory's files (modeldir.write_model_files) and return the
    config: train.py's flags (not whatever else is set on args), the vocabulary's size,
    how the held-out part was chosen, the text's hash, and the base it came from."""
    flags = set(vars(build_parser().parse_args([]))) - {"keep", "overwrite", "cpu"}
    config = {k: getattr(args, k) for k in sorted(flags)}
    config.update(vocab_size=args.vocab_size, val_split=args.val_split,
                  text_sha256=data.source_sha256)
    if args.init_from:
        config.update(init_from=os.path.abspath(args.init_from),
                      init_checkpoint=os.path.abspath(origin.ckpt),
                      base_vocab_size=len(origin.chars))
    elif origin.saved is not None:   # a resumed fine-tuning run still came from its base
        for k in ("init_from", "init_checkpoint", "base_vocab_size"):
            if k in origin.saved:
                config[k] = origin.saved[k]
    write_model_files(args.save_dir, config, data.chars, data.context, data.index_file)
    return config


def begin_fresh(sess, g):
    """A new model: initialized weights, from epoch 0.  Returns (epoch, batch pointer,
    best validation loss): where Fit starts."""
    sess.run(g.init)
    return 0, 0, float("inf")


def begin_from_base(sess, g, data, origin):
    """--init_from: a new model with every weight of the base loaded into it."""
    begun = begin_fresh(sess, g)
    load_base_weights(sess, g.weights, origin.weights)
    new = "".join(data.new_chars)
    print(f"train: fine-tuning from {origin.ckpt}: every weight loaded from the base; "
          f"{len(data.new_chars):,} characters of {data.input_file} are new to it"
          + (f" ({new[:30]}{'...' if len(new) > 30 else ''}): their embedding rows "
             f"and softmax columns start untrained" if new else ""))
    return begun


def begin_keep(sess, args, g, resume):
    """--keep: the saved model restored where it stopped (resume_point)."""
    ckpt, step, epoch, pointer = resume
    g.saver.restore(sess, tf_path(ckpt))
    best_val = float(sess.run(g.model.best_val_loss))
    # the Saver forgets across runs: tell it which of ours to rotate out later
    g.saver.recover_last_checkpoints(sorted(
        (tf_path(p) for p in checkpoint_candidates(args.save_dir)
         if os.path.basename(p).startswith("model.ckpt-")), key=checkpoint_step))
    print(f"train: resumed {ckpt} at step {step}, epoch {epoch + 1}, batch {pointer}")
    return epoch, pointer, best_val


def checked_save(saver, sess, prefix, **kw):
    """saver.save, with a failed write (full or read-only disk) as one clear line."""
    import tensorflow as tf
    try:
        return real_path(saver.save(sess, tf_path(prefix), **kw))
    except (tf.errors.OpError, OSError) as e:
        raise UserError(f"could not save a checkpoint in {os.path.dirname(prefix)}/ "
                        f"({short_error(e, 120)}); is the disk full or read-only? "
                        f"The checkpoints saved before are intact: free space and resume "
                        f"with --keep")


class Fit:
    """The epoch loop: each epoch trains (train_epoch), validates, reports and saves
    (checkpoint), until --num_epochs or a stop reason (a signal, --max_steps,
    --max_minutes, --patience).  Raises NonFinite (before saving anything) when the loss
    or the weights blow up."""

    def __init__(self, args, data, sess, g, log_path, tb, begun):
        self.args, self.data, self.sess, self.g = args, data, sess, g
        self.model, self.log_path, self.tb = g.model, log_path, tb
        self.start_epoch, self.start_pointer, self.best_val = begun
        self.epoch_now = self.start_epoch
        self.bad_epochs, self.signal, self.timed_out = 0, None, False
        self.chars_per_step = args.batch_size * args.seq_length
        self.too_high = divergence_limit(data.vocab_size)
        self.resets = reset_masks(args.seed, args.batch_size, args.seq_length,
                                  args.reset_chars)
        self.recent = collections.deque(maxlen=1000)   # the last 1,000 steps' losses
        self.step = self.first_step = int(sess.run(self.model.global_step))
        # --max_minutes: training stops at `deadline`, leaving time for the validation
        # pass that follows (estimated from the step time: a forward pass is about a
        # third of a training step) and the saves.
        self.deadline = None if args.max_minutes is None else \
            args.start_time + args.max_minutes * 60
        self.step_times = []
        # this run's training seconds (validation not counted), for the log's Saved lines
        self.trained_seconds, self.epoch_t0 = 0.0, None
        total = (args.num_epochs - self.start_epoch) * data.num_batches - self.start_pointer
        self.total_steps = min(total, args.max_steps - self.first_step) \
            if args.max_steps else total
        # Before each save the weights must be finite and still predict: a step's loss is
        # measured before its update, so an exploding update shows only here (one
        # forward pass on the first training batch, from the zero state).
        self.probe = {self.model.input_data: data.x_batches[0],
                      self.model.targets: data.y_batches[0]}

    def run(self):
        def on_signal(signum, frame):
            self.signal = signal.Signals(signum)
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        args, reason, path = self.args, None, None
        for epoch in range(self.start_epoch, args.num_epochs):
            train_loss, n_run, seconds, pointer = self.train_epoch(epoch)
            if self.signal:
                path = self.save(epoch, pointer)
                print(f"train: {self.signal.name}: saved {path}; resume with --keep")
                # 128 + the signal's number, as a shell reports a process the signal
                # ended: a script running train.py (scripts/base.sh, set -e) stops here
                # instead of announcing a finished model.
                return 128 + self.signal
            val_loss = self.validate(epoch)
            self.report(epoch, train_loss, val_loss, seconds, n_run)
            path = self.checkpoint(epoch, pointer, val_loss)
            reason = self.stop_reason()
            if reason:
                print(f"train: stopped: {reason}")
                break
        print(f"train: saved {path}" + (f"; best validation loss {self.best_val:.4f}"
                                        if math.isfinite(self.best_val) else ""))
        return 0

    def lr(self, epoch):
        lr = self.args.learning_rate * self.args.decay_rate ** epoch
        return annealed(lr, self.budget_done()) if self.args.anneal else lr

    def budget_done(self):
        """Share of this run's budget used so far (--anneal).  --max_steps counts the
        model's steps, not this run's: a run resumed with --keep and the same
        --max_steps goes on along the same curve (a base trained over several sittings
        anneals once)."""
        if self.args.max_steps:
            done = self.step / self.args.max_steps
        else:
            done = (self.step - self.first_step) / max(self.total_steps, 1)
        if self.deadline is not None:
            done = max(done, (time.time() - self.args.start_time) /
                       (self.args.max_minutes * 60))
        return done

    def run_left(self, steps_per_s):
        """Seconds this run has left at most: its remaining steps (--num_epochs,
        --max_steps) at this rate, or to its --max_minutes deadline, whichever is
        sooner; the validation passes and saves still to come included."""
        per_val = self.data.num_val_batches / max(3 * steps_per_s, 1e-9)
        epochs_left = self.args.num_epochs - self.epoch_now
        steps_left = self.total_steps - (self.step - self.first_step)
        left = steps_left / max(steps_per_s, 1e-9) + epochs_left * per_val
        if self.deadline is not None:
            left = min(left, self.deadline - time.time())
        return left

    def out_of_time(self):
        if self.deadline is None:
            return False
        now = time.time()
        self.step_times.append(now)
        times = self.step_times
        per_step = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 0.0
        self.timed_out = now + self.data.num_val_batches * per_step / 3 + 5 >= self.deadline
        return self.timed_out

    def train_epoch(self, epoch):
        """One epoch's training steps (from the batch pointer when resuming); returns
        (mean loss, steps run, seconds, where it stopped)."""
        args, data, model = self.args, self.data, self.model
        self.epoch_now = epoch
        data.set_epoch(epoch)           # --mix_base: this epoch's stretch of the base
        model.set_lr(self.sess, self.lr(epoch))
        progress = Progress(data.num_batches, epoch, args.num_epochs, self.chars_per_step,
                            run_left=self.run_left)
        stopped_at = [data.num_batches]     # where this epoch stops; less if cut short

        def on_step(i, loss, grad_norm):
            self.step += 1
            self.check_loss(loss, grad_norm, epoch)
            progress.update(i + 1, loss)
            self.recent.append(loss)
            if args.anneal and self.step % ANNEAL_EVERY == 0:
                model.set_lr(self.sess, self.lr(epoch))
            if self.step % args.save_every == 0:
                self.save(epoch, i + 1)
            if self.signal or (args.max_steps and self.step >= args.max_steps) \
                    or self.out_of_time():
                stopped_at[0] = i + 1
                return True
            return False

        t0 = self.epoch_t0 = time.time()
        loss, n_run = run_epoch(
            self.sess, model, data.x_batches, data.y_batches, eval_op=model.train_op,
            start=self.start_pointer if epoch == self.start_epoch else 0,
            keep_prob=1.0 - args.dropout, on_step=on_step,
            state_mask=lambda i: self.resets(self.step), rows=data.own_rows)
        progress.close()
        seconds = time.time() - t0
        self.trained_seconds, self.epoch_t0 = self.trained_seconds + seconds, None
        return loss, n_run, seconds, stopped_at[0]

    def check_loss(self, loss, grad_norm, epoch):
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            raise NonFinite(f"the loss became {loss} at step {self.step} (epoch {epoch + 1})")
        if loss > self.too_high:
            raise NonFinite(f"the loss reached {loss:.4g} at step {self.step}, far above "
                            f"ln(vocabulary) = {math.log(self.data.vocab_size):.2f} of "
                            f"uniform guessing: the training diverged")

    def validate(self, epoch):
        """The held-out loss (None without a held-out part)."""
        if not self.data.num_val_batches:
            return None
        val_loss, _ = run_epoch(self.sess, self.model, self.data.val_x_batches,
                                self.data.val_y_batches)
        if not math.isfinite(val_loss) or val_loss > self.too_high:
            raise NonFinite(f"the validation loss became {val_loss:.4g} after epoch "
                            f"{epoch + 1}")
        return val_loss

    def report(self, epoch, train_loss, val_loss, seconds, n_run):
        """The epoch's line on stdout, in the log and in TensorBoard."""
        args, recent = self.args, self.recent
        for line in epoch_lines(epoch + 1, train_loss, val_loss, seconds):
            append_log(self.log_path, line)
        msg = (f"epoch {epoch + 1}/{args.num_epochs}: train loss {train_loss:.4f} (last "
               f"{len(recent):,} steps {sum(recent) / max(len(recent), 1):.4f})")
        if val_loss is not None:
            msg += f", validation loss {val_loss:.4f} (perplexity {perplexity(val_loss):.1f})"
        rate = n_run * self.chars_per_step / max(seconds, 1e-9)
        print(f"{msg}, {seconds:.1f}s, {rate / 1000:.1f}k chars/s", flush=True)
        import tensorflow as tf
        tf1 = tf.compat.v1
        summary = [("loss/train", train_loss), ("learning_rate", self.lr(epoch))]
        if val_loss is not None:
            summary.append(("loss/validation", val_loss))
        self.tb.add_summary(tf1.Summary(value=[tf1.Summary.Value(tag=t, simple_value=v)
                                               for t, v in summary]), self.step)
        self.tb.flush()

    def save(self, epoch, pointer):
        """A model.ckpt-<step>, after checking the weights are finite and still predict."""
        if not self.sess.run(self.model.weights_finite):
            raise NonFinite(f"the weights hold inf/NaN at step {self.step}")
        probe_loss = float(self.sess.run(self.model.cost, self.probe))
        if not probe_loss <= self.too_high:
            raise NonFinite(f"the loss reached {probe_loss:.4g} at step {self.step}, far "
                            f"above ln(vocabulary) = {math.log(self.data.vocab_size):.2f} "
                            f"of uniform guessing: the training diverged")
        self.model.set_progress(self.sess, epoch, pointer)
        path = checked_save(self.g.saver, self.sess,
                            os.path.join(self.args.save_dir, "model.ckpt"),
                            global_step=self.model.global_step, write_meta_graph=False)
        seconds = self.trained_seconds
        if self.epoch_t0 is not None:               # a save in the middle of an epoch
            seconds += time.time() - self.epoch_t0
        append_log(self.log_path, saved_line(self.step, seconds))
        return path

    def checkpoint(self, epoch, pointer, val_loss):
        """The epoch's saves: model.ckpt-<step>, and best.ckpt-<step> when the held-out
        loss improved.  Returns the model.ckpt path."""
        improved = val_loss is not None and val_loss < self.best_val
        if improved:
            self.best_val, self.bad_epochs = val_loss, 0
            self.model.set_best(self.sess, self.best_val)
        elif val_loss is not None:
            self.bad_epochs += 1
        done = pointer >= self.data.num_batches
        path = self.save(epoch + 1 if done else epoch, 0 if done else pointer)
        if improved:
            best = checked_save(self.g.best_saver, self.sess,
                                os.path.join(self.args.save_dir, "best.ckpt"),
                                global_step=self.model.global_step,
                                latest_filename="checkpoint_best", write_meta_graph=False)
            remove_other_checkpoints(self.args.save_dir, "best.ckpt-", best)
        return path

    def stop_reason(self):
        """Why training stops after this epoch, or None."""
        args = self.args
        if args.max_steps and self.step >= args.max_steps:
            return f"--max_steps {args.max_steps}"
        if self.timed_out:
            return (f"--max_minutes {args.max_minutes:g} (after "
                    f"{(time.time() - args.start_time) / 60:.1f} minutes)")
        if args.patience and self.bad_epochs >= args.patience:
            return f"no validation improvement for {args.patience} epochs (--patience)"
        return None


if __name__ == "__main__":
    run_main(main, "train.py", fast_exit=True)
