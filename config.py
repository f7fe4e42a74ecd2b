"""The model configuration: which fields make a checkpoint's architecture, the cells
there are (with each one's gate count), and what a saved config may hold.

No TensorFlow here: --help and the checks before training read it.
"""
from utils import UserError


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


# The architecture flags: every key a checkpoint depends on but the vocabulary's size,
# which comes from the text.
ARCH_FLAGS = tuple(k for k in ARCHITECTURE_KEYS if k != "vocab_size")


# Flags whose change would make the saved batch pointer (or the vocabulary) meaningless.
BATCH_FLAGS = ("batch_size", "seq_length", "val_frac", "val_split", "max_vocab", "mix_base")
