"""The configuration: one Field per setting of a run, with its default, its flag's type
and help, and the range a saved config.pkl may hold.  train.py's flags (add_flags), the
defaults that depend on the run (fresh, --init_from, --keep: run_defaults), the config it
saves and the checks on reading one (modeldir.read_config, saved_problem) are all made
from FIELDS, so a new setting is one Field here.  Also: the architecture keys and the cells
there are (with each one's gate count).

No TensorFlow here: --help and the checks before training read it.
"""
import argparse
from dataclasses import dataclass
from typing import Any, Callable, Optional

from cells import Cell
from presets import PRESETS, SEED, describe
from utils import (UserError, float_in, int_in, non_negative_int, number, positive_float,
                   positive_int, unit_float)


MIN_VAL_FRAC = 1e-4     # below this no text has a validation batch (and sizes overflow)


def val_fraction(s):
    """--val_frac: 0 (no validation) or in [MIN_VAL_FRAC, 0.5)."""
    v = number(s)
    if not (v == 0.0 or MIN_VAL_FRAC <= v < 0.5):
        raise argparse.ArgumentTypeError(
            f"must be 0 (no validation) or in [{MIN_VAL_FRAC:g}, 0.5), not {s}")
    return v


# Model fields a checkpoint depends on: resuming or sampling must use the same values.
ARCHITECTURE_KEYS = ("vocab_size", "rnncell", "num_layers", "rnn_size", "embedding_size",
                     "attention")
# The cell types (cells.py: one class each) with their gate counts G (the kernel is
# [in + H, G*H]): --rnncell's choices, the memory check and the bench's FLOP count.
CELL_GATES = dict(sorted(((kind, cls.GATES) for kind, cls in Cell.REGISTRY.items()),
                         key=lambda kv: (kv[1], kv[0])))
CELL_TYPES = tuple(CELL_GATES)
# How seq2seq_rnn builds the layers (config key rnn_impl; see RNN_IMPLS there).
RNN_IMPLS = ("hoisted", "stepwise", "plain")
# The architecture flags: every key a checkpoint depends on but the vocabulary's size,
# which comes from the text.
ARCH_FLAGS = tuple(k for k in ARCHITECTURE_KEYS if k != "vocab_size")


# Flags whose change would make the saved batch pointer (or the vocabulary) meaningless.
BATCH_FLAGS = ("batch_size", "seq_length", "val_frac", "val_split", "max_vocab", "mix_base")


@dataclass(frozen=True)
class Field:
    """One setting.  default: the flag's (None for a setting whose default depends on the
    run: `fresh` for a new model, `fine_tune` with --init_from, the saved value with
    --keep).  type: the flag's argparse type (it checks the range a user may type).  saved:
    (lo, hi) a value in a saved config must lie in (whole: an int), checked whenever a
    config is read.  switch: a flag without a value (store_true).  in_config: written to
    config.pkl (the run-only switches are not)."""
    name: str
    group: str
    default: Any
    help: str
    type: Optional[Callable] = None
    choices: Optional[tuple] = None
    metavar: Optional[str] = None
    switch: bool = False
    saved: Optional[tuple] = None
    whole: bool = False
    in_config: bool = True
    fresh: Any = None
    fine_tune: Any = None

    def help_text(self):
        if self.fresh is None:
            return self.help
        tail = f"default {self.fresh}"
        if self.fine_tune is not None:
            tail += f", with --init_from {self.fine_tune}"
        return f"{self.help}; {tail}, with --keep the model's own"


def size(name, group, hi, help):
    """A whole-number shape setting: typed from 1 to hi, saved from 1 to hi."""
    return Field(name, group, SEED[name], help, type=int_in(1, hi), saved=(1, hi), whole=True)


FIELDS = (
    # ---- data
    Field("data_dir", "data", "data", "directory with lyrics.txt"),
    Field("save_dir", "data", "save", "checkpoints, config and vocabulary"),
    Field("log_dir", "data", "log", "text logs and TensorBoard events"),
    Field("val_frac", "data", 0.05, "share of the text held out for validation, in blocks of "
          "about 1,000 characters spread over the text", type=val_fraction, saved=(0.0, 0.5)),
    Field("max_vocab", "data", 0, "keep only this many most frequent characters and leave "
          "the rarer ones out of the text: a faster softmax for a base model (fine-tuning "
          "adds every character of your text it lacks); 0 = all", type=non_negative_int,
          saved=(0, 10 ** 6), whole=True),
    # ---- model
    Field("preset", "model", None, "a named set of the flags below (flags you give win): " +
          "; ".join(f"{name}: {describe(name)}" for name in PRESETS), choices=tuple(PRESETS)),
    Field("rnncell", "model", SEED["rnncell"], "recurrent cell type", choices=CELL_TYPES),
    size("rnn_size", "model", 1 << 16, "units per layer"),
    size("num_layers", "model", 64, "stacked layers"),
    size("embedding_size", "model", 1 << 16, "size of the character embedding"),
    Field("attention", "model", False, "causal attention over the window (and a rolling "
          "buffer when sampling)", switch=True),
    Field("dropout", "model", None, "dropout rate on each layer's output while training "
          "(0 = off)", type=unit_float, saved=(0.0, 1.0), fresh=0.0, fine_tune=0.3),
    # ---- training
    size("batch_size", "training", 1 << 20, "sequences per batch"),
    size("seq_length", "training", 1 << 20,
         "characters per sequence (steps of backpropagation through time)"),
    Field("num_epochs", "training", 50, "epochs to train", type=positive_int),
    Field("learning_rate", "training", None, "Adam rate", type=float_in(1e-12, 1e38),
          saved=(0.0, 1e6), fresh=SEED["learning_rate"], fine_tune=0.0005),
    Field("mix_base", "training", None, "fine-tuning: this share of each batch's rows reads "
          "the base's own text (its corpus.npy), so the model keeps what it knew while it "
          "learns yours", type=float_in(0.0, 0.95), metavar="SHARE", saved=(0.0, 0.95),
          fresh=0.0, fine_tune=0.75),
    Field("decay_rate", "training", 1.0, "learning rate x decay_rate after each epoch "
          "(1 = constant)", type=float_in(0.001, 1.0)),
    Field("reset_chars", "training", 256, "reset each sequence's RNN state to zero at "
          "random, on average every this many characters, so the model learns to start "
          "from the zero state sampling starts from (0 = carry the state through the "
          "epoch, as the article)", type=non_negative_int),
    Field("anneal", "training", False, "lower the learning rate along a cosine to a tenth "
          "over this run's budget (--max_minutes, --max_steps or --num_epochs, whichever "
          "ends first), so a run of fixed length ends on small, precise steps; --max_steps "
          "counts the model's steps, so --keep with the same --max_steps continues the "
          "curve", switch=True),
    Field("sampled_softmax", "training", None, "train on a sampled softmax over S candidate "
          "characters a step (log-uniform over the frequency-ordered vocabulary) instead of "
          "all V: a faster step when V is thousands; validation, the reported loss, "
          "sampling and scoring use the full softmax, and the saved model is the same kind "
          "(0 = the full softmax; S >= V is the full softmax too)", type=non_negative_int,
          metavar="S", fresh=0, fine_tune=256),
    Field("grad_clip", "training", 5.0, "clip gradients to this global norm",
          type=positive_float),
    Field("patience", "training", 5, "stop when validation loss has not improved for this "
          "many epochs (0 = never stop early)", type=non_negative_int),
    Field("max_steps", "training", 0, "stop after this many training steps in total "
          "(0 = no limit)", type=non_negative_int),
    Field("max_minutes", "training", None, "wall-clock budget of this run: training stops "
          "early enough for a last validation pass and save to end within it, and the best "
          "model found is kept (0 = no limit; a fine-tune ends in minutes by default: "
          "README, 'The shipped base')", type=float_in(0.0, 1e7), metavar="MINUTES",
          fresh=0.0, fine_tune=10.0),
    Field("seed", "training", 1234, "random seed for weights and dropout", type=int),
    # ---- saving and resuming
    Field("save_every", "saving and resuming", 1000, "save a checkpoint every this many "
          "steps (and at each epoch end)", type=positive_int),
    Field("keep", "saving and resuming", False, "resume the model in --save_dir: step, epoch "
          "and batch continue", switch=True, in_config=False),
    Field("overwrite", "saving and resuming", False, "delete a model already in --save_dir "
          "and start afresh", switch=True, in_config=False),
    Field("init_from", "saving and resuming", None, "fine-tune: start from the best "
          "checkpoint of the model trained in DIR (e.g. models/base-verse, or save/base "
          "from scripts/base.sh), with its architecture and vocabulary (new characters of "
          "--data_dir's text are added); DIR is only read", metavar="DIR"),
    Field("cpu", "saving and resuming", False, "use the CPU even if a GPU is visible",
          switch=True, in_config=False),
    Field("progress_every", "saving and resuming", 60.0, "seconds between progress lines "
          "when the output is not a terminal (a log file, serve.py's training panel; a "
          "terminal's bar is redrawn 5 times a second)", type=positive_float,
          metavar="SECONDS", in_config=False),
    Field("bf16", "saving and resuming", False, "CPU only: run matmuls in bfloat16 through "
          "oneDNN, for CPUs with AVX512-BF16/AMX (faster, slightly less precise; "
          "checkpoints stay float32)", switch=True),
    # ---- cluster (cluster.py; README "Training on a cluster")
    Field("cluster", "cluster", None, "train as one task of a cluster described in FILE (the "
          "JSON of TF_CONFIG, which is read when this is not given): parameter servers hold "
          "the variables, the workers' gradients are averaged each step, worker 0 writes "
          "--save_dir", metavar="FILE", in_config=False),
    Field("cluster_wait", "cluster", 300.0, "seconds a task waits for the cluster to form "
          "and a step for every worker's gradient, before it ends with a message (the "
          "chief's validation pass must fit in it)", type=float_in(1.0, 1e6),
          metavar="SECONDS", in_config=False),
)


def field(name):
    for f in FIELDS:
        if f.name == name:
            return f
    raise KeyError(name)


def add_flags(parser, names=None, helps=None):
    """The fields' flags on an argparse parser, in FIELDS' order, in their groups (names:
    only these; helps: {name: help} where a script says it its own way)."""
    groups = {}
    for f in FIELDS:
        if names is not None and f.name not in names:
            continue
        if f.group not in groups:
            groups[f.group] = parser.add_argument_group(f.group)
        text = (helps or {}).get(f.name) or f.help_text()
        if f.switch:
            groups[f.group].add_argument("--" + f.name, action="store_true", help=text)
        else:
            groups[f.group].add_argument("--" + f.name, type=f.type, choices=f.choices,
                                         default=f.default, metavar=f.metavar, help=text)
    return parser


def run_defaults(kind):
    """{name: default} of the settings whose default depends on the run: kind "fresh"
    (a new model) or "fine_tune" (--init_from; a setting without one takes fresh's)."""
    return {f.name: (f.fine_tune if kind == "fine_tune" and f.fine_tune is not None
                     else f.fresh) for f in FIELDS if f.fresh is not None}


def config_names():
    """The settings train.py writes into config.pkl."""
    return [f.name for f in FIELDS if f.in_config]


def saved_problem(config):
    """What is wrong with a saved config's settings (a value out of its field's saved
    range, or not a number), or None.  A setting the config lacks is no problem: older
    models lack the newer ones."""
    for f in FIELDS:
        if f.saved is None or f.name not in config:
            continue
        lo, hi = f.saved
        v = config[f.name]
        if f.whole and type(v) is not int:
            return f"{f.name} = {v!r}, not a whole number from {lo:,} to {hi:,}"
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            return f"{f.name} = {v!r}, not a number from {lo:g} to {hi:g}"
    return None


VOCAB_RANGE = (2, 10 ** 6)      # what a saved config's vocab_size may hold (no flag sets it)


def check_model_config(config, path):
    """config (read from path) as train.py writes it: a dict with every architecture key,
    each setting of the right type and in its field's saved range; else one UserError
    naming the field."""
    def bad(what):
        return UserError(f"{path} is damaged or not written by train.py ({what}); retrain "
                         f"the model or restore the file")
    if not isinstance(config, dict):
        raise bad(f"a {type(config).__name__}, not a config")
    missing = [k for k in ARCHITECTURE_KEYS if k not in config]
    if missing:
        raise bad(f"no {', '.join(missing)}")
    lo, hi = VOCAB_RANGE
    v = config["vocab_size"]
    if type(v) is not int or not lo <= v <= hi:
        raise bad(f"vocab_size = {v!r}, not a whole number from {lo:,} to {hi:,}")
    problem = saved_problem(config)
    if problem:
        raise bad(problem)
    if config["rnncell"] not in CELL_TYPES:
        raise bad(f"rnncell = {config['rnncell']!r}, not one of {', '.join(CELL_TYPES)}")
    if not isinstance(config["attention"], bool):
        raise bad(f"attention = {config['attention']!r}, not true or false")
    return config
