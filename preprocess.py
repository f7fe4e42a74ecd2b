"""Text -> vocabulary, integer array and batches (the article's TextParser).

    python preprocess.py [--data_dir data] [--batch_size 32] [--seq_length 16] [--val_frac 0.05]
    python preprocess.py --init_from save/base     # the vocabulary a fine-tuning run uses

reads <data_dir>/lyrics.txt and writes
  <data_dir>/vocab.pkl    {'chars': [...most frequent first...], 'source_sha256': ...,
                           'base_sha256': ...}
  <data_dir>/context.npy  int32 ids of ' ' + text (a leading space: the text starts at a
                          line start, as every later line does after its space)
  <data_dir>/ngram8.npz   the no-copy index sample.py uses (craft.NgramIndex, L = 8)
They are rebuilt only when lyrics.txt changes (its sha256 is kept in vocab.pkl), or the
base vocabulary does.

Fine-tuning (train.py --init_from DIR) keeps the base model's vocabulary: the ids are the
base's characters in the base's order, then the characters of this text the base never
saw, most frequent first.  That merged vocabulary is the one written here, so data_dir
always holds one vocabulary, the one its context array uses.

Batches as the article makes them (and the TF PTB reader): the training ids are cut to
num_batches * batch_size * seq_length, reshaped to [batch_size, -1] so each row is one
contiguous stretch of text, and split along time into num_batches [batch_size, seq_length]
pieces.  Row r of batch k+1 continues row r of batch k, which is why the RNN state of one
batch may feed the next.  y is x shifted by one character.

New: `val_frac` of the text is held out as a validation split with its own batches;
training batches never see it.  The held-out part is spread over the whole text
(validation_blocks): blocks of about VAL_BLOCK characters, one in each of as many equal
stretches of the text, each at a place drawn with a fixed seed.  A corpus written genre by
genre (the base's: Tang poems, Song poems, Song ci, ...) is then validated on every genre
in proportion, not on whatever genre comes last.  Models trained before this kept the
last val_frac ('tail'); their saved config says so and --keep and evaluate.py keep it.

--max_vocab K keeps the K most frequent characters and leaves the others out of the text
(for a base model: a softmax over fewer characters is a faster step; fine-tuning adds
every character of the user's text the base does not know, as always).
"""
import hashlib
import os

import numpy as np

from config import MIN_VAL_FRAC, add_flags
from craft import DEFAULT_MAX_COPY, NgramIndex, index_path
from fileio import atomic_pickle, atomic_save_npy, file_sha256, safe_load_pickle
from utils import ArgumentParser, HelpFormatter, UserError, run_main

VOCAB_FORMAT = 1
VAL_BLOCK = 1000         # characters per held-out block (a few songs' worth of lines)
VAL_SEED = 20161         # where in each stretch its block goes; fixed: one split per text


def build_vocab(text, base_chars=None, max_vocab=0):
    """Distinct characters, most frequent first, ties by code point; and the id array.

    base_chars: a base model's vocabulary. The result then starts with it, unchanged and
    in its order, followed by this text's characters that are not in it (most frequent
    first), so every id the base knows means the same character.
    max_vocab > 0 (without base_chars): only the max_vocab most frequent characters are
    kept; the others are left out of the id array.

    Works on code points with numpy, so 1.7 M characters take well under a second.
    """
    if not text:
        raise UserError("the training text is empty")
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    uniq, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    # lexsort sorts by the last key first: count descending, then code point ascending.
    order = np.lexsort((uniq, -counts))
    if base_chars is not None:
        base = {c: i for i, c in enumerate(base_chars)}
        new = [int(k) for k in order if chr(uniq[k]) not in base]
        chars = list(base_chars) + [chr(uniq[k]) for k in new]
        rank = np.array([base.get(chr(c), -1) for c in uniq], dtype=np.int32)
        rank[new] = np.arange(len(base_chars), len(chars), dtype=np.int32)
    else:
        chars = [chr(c) for c in uniq[order]]
        rank = np.empty(len(order), dtype=np.int32)
        rank[order] = np.arange(len(order), dtype=np.int32)
    ids = rank[inverse.reshape(-1)]
    if max_vocab and base_chars is None and len(chars) > max_vocab:
        chars, ids = chars[:max_vocab], ids[ids < max_vocab]    # ranks are by frequency
    return chars, ids


def validation_blocks(n, val_frac, how="blocks"):
    """[(start, end)] of the held-out part of a text of n ids, int(n * val_frac) ids in
    all.  'blocks': k = max(1, n_val // VAL_BLOCK) blocks, block i inside the i-th of k
    equal stretches of the text at a place drawn with VAL_SEED; 'tail': the last n_val."""
    n_val = int(n * val_frac)
    if n_val == 0:
        return []
    if how == "tail":
        return [(n - n_val, n)]
    k = max(1, n_val // VAL_BLOCK)
    sizes = [n_val // k + (i < n_val % k) for i in range(k)]
    stretch = n // k
    rng = np.random.default_rng(VAL_SEED)
    starts = [i * stretch + int(rng.integers(0, stretch - size + 1))
              for i, size in enumerate(sizes)]
    return [(a, a + size) for a, size in zip(starts, sizes)]


def split_validation(ids, val_frac, how="blocks"):
    """(training ids, held-out ids): validation_blocks() of ids, and the rest in order."""
    held = np.zeros(len(ids), dtype=bool)
    for a, b in validation_blocks(len(ids), val_frac, how):
        held[a:b] = True
    return ids[~held], ids[held]


def chars_sha256(chars):
    return hashlib.sha256("\n".join(chars).encode("utf-8")).hexdigest()


def make_batches(ids, batch_size, seq_length):
    """Split ids into lists x, y of num_batches arrays [batch_size, seq_length].

    y is x shifted by one: the character after the last one used when there is one,
    else (the text is an exact multiple of a batch) the first character, as the article.
    """
    per_batch = batch_size * seq_length
    num_batches = len(ids) // per_batch
    if num_batches == 0:
        return 0, [], []
    n = num_batches * per_batch
    x = np.asarray(ids[:n], dtype=np.int32)
    y = np.empty_like(x)
    y[:-1] = x[1:]
    y[-1] = ids[n] if len(ids) > n else x[0]
    xs = np.split(x.reshape(batch_size, -1), num_batches, axis=1)
    ys = np.split(y.reshape(batch_size, -1), num_batches, axis=1)
    return num_batches, xs, ys


def mixed_batches(train_ids, other_ids, batch_size, seq_length, rows, seed, epoch):
    """make_batches with `rows` of each batch's rows from other_ids (a base model's text,
    --mix_base): the first batch_size - rows rows walk train_ids as make_batches lays them
    out, the last `rows` walk one stretch of other_ids that (seed, epoch) picks (going
    round to its start if it ends first), so every epoch reads another part of it and a
    resumed run the same part.  Returns (num_batches,
    xs, ys); num_batches is one pass over train_ids and depends on the sizes only."""
    n, xs, ys = make_batches(train_ids, batch_size - rows, seq_length)
    if n == 0:
        return 0, [], []
    need = n * rows * seq_length + 1
    start = int(np.random.default_rng((seed % 2**32, epoch)).integers(0, len(other_ids)))
    if start + need <= len(other_ids):
        stretch = np.asarray(other_ids[start:start + need])
    else:                               # round the end to the start (a short base text)
        stretch = np.asarray(other_ids)[(start + np.arange(need)) % len(other_ids)]
    _, oxs, oys = make_batches(stretch, rows, seq_length)
    return (n, [np.concatenate([a, b]) for a, b in zip(xs, oxs)],
            [np.concatenate([a, b]) for a, b in zip(ys, oys)])


def min_chars(per_batch, val_frac):
    """Smallest text length (leading space included) giving one training batch and, with
    a validation split, one validation batch."""
    def ok(n):
        n_val = int(n * val_frac)
        return n - n_val >= per_batch and (val_frac == 0 or n_val >= per_batch)
    n = per_batch if val_frac == 0 else max(per_batch, int(per_batch / val_frac) - 2)
    while not ok(n):
        n += 1
    return n


def check_settings(batch_size, seq_length, val_frac, max_vocab, base_chars):
    """TextParser's arguments as a caller other than the flags may give them."""
    if batch_size < 1 or seq_length < 1:
        raise UserError("--batch_size and --seq_length must be at least 1", code=2)
    if not (val_frac == 0.0 or MIN_VAL_FRAC <= val_frac < 0.5):
        raise UserError(f"--val_frac must be 0 or in [{MIN_VAL_FRAC:g}, 0.5)", code=2)
    if max_vocab and base_chars is not None:
        raise UserError("--max_vocab and --init_from: a fine-tuned model's vocabulary "
                        "is its base's plus the new characters of its text; drop "
                        "--max_vocab", code=2)
    if max_vocab < 0 or max_vocab == 1:
        raise UserError("--max_vocab must be 0 (every character) or at least 2", code=2)


class TextParser:
    """Vocabulary, context array and training/validation batches for one data_dir."""

    def __init__(self, data_dir="data", batch_size=32, seq_length=16, val_frac=0.05,
                 verbose=False, base_chars=None, val_split="blocks", max_vocab=0):
        check_settings(batch_size, seq_length, val_frac, max_vocab, base_chars)
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.val_frac = val_frac
        self.val_split = val_split
        self.max_vocab = max_vocab
        self.left_out = 0
        self.mix, self.own_rows = None, None      # mix_in(): rows of another text
        self.input_file = os.path.join(data_dir, "lyrics.txt")
        self.vocab_file = os.path.join(data_dir, "vocab.pkl")
        self.context_file = os.path.join(data_dir, "context.npy")
        self.rebuilt = False
        self.base_chars = list(base_chars) if base_chars is not None else None
        self.base_sha = chars_sha256(self.base_chars) if base_chars is not None else None

        if not os.path.exists(self.input_file):
            raise UserError(f"{self.input_file} not found; make it with: "
                            f"python data/parse.py (or data/fetch_corpus.py first)")
        source = file_sha256(self.input_file)
        if self._cached_ok(source):
            self.load_preprocessed()
        else:
            self.preprocess(source)
            self.rebuilt = True
        self.index_file = index_path(data_dir, DEFAULT_MAX_COPY)
        if self.rebuilt or not os.path.exists(self.index_file):
            NgramIndex.build(self.context, DEFAULT_MAX_COPY).save(self.index_file)
        self.vocab = {c: i for i, c in enumerate(self.chars)}
        self.vocab_size = len(self.chars)
        self.source_sha256 = source
        self.new_chars = (self.chars[len(self.base_chars):] if self.base_chars is not None
                          else [])
        self.init_batches()
        self.reset_batch_pointer()
        if verbose:
            self.report()

    def _cached_ok(self, source):
        if not (os.path.exists(self.vocab_file) and os.path.exists(self.context_file)):
            return False
        meta = safe_load_pickle(self.vocab_file, "vocabulary file")
        return isinstance(meta, dict) and meta.get("format") == VOCAB_FORMAT \
            and meta.get("source_sha256") == source \
            and meta.get("base_sha256") == self.base_sha \
            and meta.get("max_vocab", 0) == self.max_vocab

    def preprocess(self, source):
        try:
            with open(self.input_file, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError as e:
            raise UserError(f"{self.input_file} is not UTF-8 (byte {e.start}); make it with "
                            f"python data/parse.py, which reads GBK, Big5, UTF-16 and "
                            f"more and writes UTF-8")
        # lyrics.txt is one line; be forgiving with hand-made ones that have newlines.
        text = " ".join(text.split())
        if not text:
            raise UserError(f"{self.input_file} is empty; run python data/parse.py")
        self.chars, ids = build_vocab(" " + text, self.base_chars, self.max_vocab)
        self.context = ids
        self.left_out = len(text) + 1 - len(ids)
        atomic_save_npy(self.context_file, ids)
        atomic_pickle(self.vocab_file, {"format": VOCAB_FORMAT, "chars": self.chars,
                                        "source_sha256": source,
                                        "base_sha256": self.base_sha,
                                        "max_vocab": self.max_vocab,
                                        "left_out": self.left_out})

    def load_preprocessed(self):
        meta = safe_load_pickle(self.vocab_file, "vocabulary file")
        self.chars = list(meta["chars"])
        self.left_out = int(meta.get("left_out", 0))
        try:
            self.context = np.load(self.context_file, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise UserError(f"{self.context_file} is unreadable ({e}); delete it and run "
                            f"python preprocess.py")

    # -- batches -----------------------------------------------------------------------

    def init_batches(self):
        per_batch = self.batch_size * self.seq_length
        n = len(self.context)
        self.train_data, self.val_data = split_validation(self.context, self.val_frac,
                                                          self.val_split)
        self.num_batches, self.x_batches, self.y_batches = make_batches(
            self.train_data, self.batch_size, self.seq_length)
        self.num_val_batches, self.val_x_batches, self.val_y_batches = make_batches(
            self.val_data, self.batch_size, self.seq_length)

        if self.num_batches == 0 or (self.val_frac > 0 and self.num_val_batches == 0):
            need = min_chars(per_batch, self.val_frac)
            raise UserError(
                f"the corpus is too small: {n:,} characters, but batch_size {self.batch_size}"
                f" x seq_length {self.seq_length} with val_frac {self.val_frac} needs at "
                f"least {need:,}; add text or lower --batch_size / --seq_length"
                f"{' / raise --val_frac' if self.val_frac > 0 else ''}", code=2)

    def mix_in(self, other_ids, rows, seed):
        """Train on batches whose last `rows` rows are other_ids (see mixed_batches);
        set_epoch(k) picks epoch k's stretch.  Validation stays this text alone."""
        self.mix = (other_ids, rows, seed)
        self.own_rows = self.batch_size - rows
        self.set_epoch(0)

    def set_epoch(self, epoch):
        if self.mix is not None:
            other, rows, seed = self.mix
            self.num_batches, self.x_batches, self.y_batches = mixed_batches(
                self.train_data, other, self.batch_size, self.seq_length, rows, seed, epoch)

    def next_batch(self):
        """The next training batch (x, y); wraps to the first one after the last."""
        if self.pointer >= self.num_batches:
            self.pointer = 0
        x, y = self.x_batches[self.pointer], self.y_batches[self.pointer]
        self.pointer += 1
        return x, y

    def reset_batch_pointer(self):
        self.pointer = 0

    def report(self):
        print(f"preprocess: {'rebuilt' if self.rebuilt else 'up to date'} "
              f"{self.vocab_file}, {self.context_file} and {self.index_file}")
        if self.base_chars is not None:
            new = "".join(self.new_chars)
            print(f"preprocess: the base vocabulary ({len(self.base_chars):,} characters) "
                  f"plus {len(self.new_chars):,} of this text's characters it never saw"
                  + (f": {new[:40]}{'...' if len(new) > 40 else ''}" if new else ""))
        if self.max_vocab:
            print(f"preprocess: --max_vocab {self.max_vocab:,}: {self.left_out:,} "
                  f"occurrences of rarer characters left out "
                  f"({self.left_out / (len(self.context) + self.left_out):.2%} of the text)")
        n = len(self.context)
        blocks = len(validation_blocks(n, self.val_frac, self.val_split))
        where = ("the end of the text" if self.val_split == "tail" else
                 f"{blocks:,} block{'s' * (blocks != 1)} spread over the text")
        print(f"preprocess: vocab size {self.vocab_size:,}; train {len(self.train_data):,} "
              f"chars, validation {len(self.val_data):,} chars ({where}; of {n:,})")
        print(f"preprocess: {self.num_batches:,} training batches per epoch and "
              f"{self.num_val_batches:,} validation batches of {self.batch_size} x "
              f"{self.seq_length}")


def main(argv=None):
    p = ArgumentParser(
        description="Build the vocabulary, the id array and the batches from "
                    "<data_dir>/lyrics.txt.",
        formatter_class=HelpFormatter)
    add_flags(p, names=("data_dir", "batch_size", "seq_length", "val_frac", "max_vocab",
                        "init_from"),
              helps={"init_from": "build the vocabulary a fine-tuning run from the model in "
                                  "DIR uses (train.py --init_from DIR does this by itself)"})
    args = p.parse_args(argv)
    from modeldir import base_vocabulary
    base = base_vocabulary(args.init_from) if args.init_from else None
    TextParser(args.data_dir, args.batch_size, args.seq_length, args.val_frac, verbose=True,
               base_chars=base, max_vocab=args.max_vocab)
    return 0


if __name__ == "__main__":
    run_main(main, "preprocess.py")
