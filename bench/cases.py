"""The bench's cases: the configs it trains (taken from train.py's presets) and the texts
of --suite, prepared once in data/bench/.  bench/speed.py and bench/profile.py read them."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from presets import PRESETS  # noqa: E402
from bench.sampling import timed  # noqa: E402

# The presets of train.py --preset (presets.py), as the bench trains them (the cell type
# is the bench's own --rnncell); "base" is what scripts/base.sh trains on a CPU.
BENCH_KEYS = ("embedding_size", "num_layers", "rnn_size", "batch_size", "seq_length",
              "learning_rate", "max_vocab")
CONFIGS = {name: {k: PRESETS[preset][k] for k in BENCH_KEYS if k in PRESETS[preset]}
           for name, preset in (("seed", "seed"), ("large", "large"), ("base", "base-cpu"))}
# The base recipe as train.py runs it, with its sampled softmax: a row of its own, labelled
# sampled, with no PyTorch ratio (the reference computes every logit; "base" compares).
CONFIGS["sampled"] = dict(CONFIGS["base"],
                          sampled_softmax=PRESETS["base-cpu"]["sampled_softmax"])
# --suite: (name, fetch_corpus.py flags, configs)
SUITE = [("songci300", ["--subset", "300"], ["seed", "large"]),
         ("songci", [], ["seed", "large"]),
         ("poetry", ["--corpus", "poetry"], ["base", "sampled"])]


def load_ids(path):
    from preprocess import build_vocab
    with open(path, encoding="utf-8") as f:
        text = " ".join(f.read().split())
    chars, ids = build_vocab(text)
    return chars, ids


def suite_text(name, fetch_flags):
    """data/bench/<name>/lyrics.txt, fetched and cleaned the first time it is asked for
    (data/fetch_corpus.py keeps the verified tarball, so later fetches are offline)."""
    d = os.path.join(ROOT, "data", "bench", name)
    text = os.path.join(d, "lyrics.txt")
    if not os.path.exists(text):
        os.makedirs(d, exist_ok=True)
        origin = os.path.join(d, "origin.txt")
        print(f"bench: preparing {text} (once)", flush=True)
        timed([sys.executable, "data/fetch_corpus.py", "--output", origin, "--force"]
              + fetch_flags)
        timed([sys.executable, "data/parse.py", "--input", origin, "--output", text])
    return text


def capped_text(text, chars, ids, max_vocab):
    """The text with the characters train.py --max_vocab leaves out removed, written once
    beside it, so ours and the reference train on the same max_vocab characters."""
    from preprocess import build_vocab
    path = os.path.splitext(text)[0] + f".v{max_vocab}.txt"
    if not os.path.exists(path):
        from fileio import atomic_write_text
        kept, kept_ids = build_vocab("".join(chars[i] for i in ids), max_vocab=max_vocab)
        atomic_write_text(path, "".join(kept[i] for i in kept_ids).strip())
    return path
