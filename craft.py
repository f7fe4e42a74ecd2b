"""Lyrics craft shared by sample.py and analysis/evaluate.py: rhyme groups, the no-copy
n-gram index of the training text, and the numbers that say how lyric-like a text is.

No TensorFlow here.  pypinyin is imported only when rhymes are asked for.
"""
import os

import numpy as np

from fileio import atomic_write_bytes
from utils import UserError

# ------------------------------------------------------------------------------ rhyme
#
# 十三辙, the thirteen rhyme groups of Chinese song and opera, by pinyin final (pypinyin's
# strict finals: v = ü, so 雨 is 'v', 月 've', 云 'vn', 圆 'van'; 归 is 'uei', 就 'iou').
THIRTEEN = {
    "发花": ("a", "ia", "ua"),
    "梭波": ("o", "e", "uo"),
    "乜斜": ("ie", "ve", "ê"),
    "一七": ("i", "v", "er"),
    "姑苏": ("u",),
    "怀来": ("ai", "uai"),
    "灰堆": ("ei", "uei"),
    "遥条": ("ao", "iao"),
    "油求": ("ou", "iou"),
    "言前": ("an", "ian", "uan", "van"),
    "人辰": ("en", "in", "uen", "vn"),
    "江阳": ("ang", "iang", "uang"),
    "中东": ("eng", "ing", "ong", "iong", "ueng"),
}
FINAL_TO_GROUP = {f: g for g, finals in THIRTEEN.items() for f in finals}
# Finals as people type them (ü as u/v, ui, iu, un) and their strict forms.
FINAL_ALIASES = {"ü": "v", "üe": "ve", "ue": "ve", "ün": "vn", "üan": "van", "ui": "uei",
                 "iu": "iou", "un": "uen"}


def _final(ch):
    from pypinyin import Style, lazy_pinyin
    out = lazy_pinyin(ch, style=Style.FINALS, strict=True, errors="ignore")
    return out[0] if out else ""


def rhyme_group(ch):
    """The 十三辙 group of a character (its most common reading), or None."""
    if not ("\u4e00" <= ch <= "\u9fa5"):
        return None
    return FINAL_TO_GROUP.get(_final(ch))


def vocab_groups(chars):
    """Group name (or None) of every vocabulary entry, in id order."""
    return [rhyme_group(c) for c in chars]


def rhyme_rate(lines):
    """Share of consecutive line pairs whose last characters share a rhyme group."""
    ends = [line[-1] for line in lines if line]
    pairs = list(zip(ends, ends[1:]))
    if not pairs:
        return None
    hits = sum(1 for a, b in pairs if rhyme_group(a) is not None
               and rhyme_group(a) == rhyme_group(b))
    return hits / len(pairs)


# ------------------------------------------------------------------- no-copy index
#
# For a run length L, every (L+1)-character window of the training text is split into an
# L-character prefix and the character after it.  The index holds a 62-bit hash of each
# prefix, sorted, with the following character beside it.  While sampling, the hash of the
# last L output characters finds (by binary search) every character that would make the
# output repeat L+1 training characters verbatim; those are masked (engine.NoCopy).  The
# index is built with window_hashes() and looked up with window_hash(), its one-window
# form in Python integers; both take their multipliers from ngram_hash_params().

P1, P2 = 2147483629, 2147483587          # primes below 2**31
B1, B2 = 1000003, 1000033                # bases larger than any vocabulary


def ngram_hash_params(length):
    """Per-position multipliers: hash = (sum_k id_k * pow1[k] mod P1) * 2**31 + (... P2).
    Products stay below 2**52 for ids below 2**21, so int64 never overflows."""
    pow1 = np.array([pow(B1, length - 1 - k, P1) for k in range(length)], dtype=np.int64)
    pow2 = np.array([pow(B2, length - 1 - k, P2) for k in range(length)], dtype=np.int64)
    return pow1, pow2


def window_hashes(ids, length):
    """Hash of every window ids[i:i+length] (int64 [len(ids) - length + 1])."""
    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids) - length + 1
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    pow1, pow2 = ngram_hash_params(length)
    h1 = np.zeros(n, dtype=np.int64)
    h2 = np.zeros(n, dtype=np.int64)
    for k in range(length):
        h1 = (h1 + ids[k:k + n] * pow1[k]) % P1
        h2 = (h2 + ids[k:k + n] * pow2[k]) % P2
    return h1 * (1 << 31) + h2


def window_hash(window):
    """window_hashes() of one window, in Python integers: a sampling step hashes one
    window, where numpy's per-call cost is most of the time."""
    pow1, pow2 = _powers(len(window))
    ids = [int(i) for i in window]
    return (sum(map(int.__mul__, ids, pow1)) % P1) * (1 << 31) + \
        sum(map(int.__mul__, ids, pow2)) % P2


_POWERS = {}


def _powers(length):
    if length not in _POWERS:
        _POWERS[length] = tuple(tuple(int(v) for v in p) for p in ngram_hash_params(length))
    return _POWERS[length]


DEFAULT_MAX_COPY = 8     # the no-copy rule's run length: sample.py/serve.py/evaluate.py


class NgramIndex:
    """Which characters may not follow a given L-character run (see above)."""

    def __init__(self, keys, nexts, length):
        self.keys, self.nexts, self.length = keys, nexts, int(length)

    @classmethod
    def build(cls, ids, length):
        ids = np.asarray(ids)
        keys = window_hashes(ids[:-1], length)          # prefixes that have a next char
        nexts = ids[length:].astype(np.int32)
        order = np.argsort(keys, kind="stable")
        return cls(keys[order], nexts[order], length)

    def banned_after(self, tail):
        """Ids that would make tail (the last L ids) + id a verbatim training run."""
        if len(tail) < self.length:
            return np.zeros(0, dtype=np.int32)
        key = window_hash(tail[-self.length:])
        lo = np.searchsorted(self.keys, key, "left")
        hi = np.searchsorted(self.keys, key, "right")
        return self.nexts[lo:hi]

    def save(self, path):
        import io
        buf = io.BytesIO()
        np.savez(buf, keys=self.keys, nexts=self.nexts, length=np.int64(self.length))
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path):
        with np.load(path, allow_pickle=False) as z:
            return cls(z["keys"], z["nexts"], int(z["length"]))


# ------------------------------------------------------------------------ loop guard
#
# A weak model (or argmax) falls into loops: "不不不不", or the same line over and over.
# Two rules, both about the sample itself (start text included), not the training text:
#   max_run M:     a character may not come more than M times in a row;
#   repeat_ngram N: a run of N characters (line ends included) may come at most
#                  REPEAT_LIMIT = 2 times, so a refrain line may come back once, a loop
#                  cannot.  With N = 5 a line of 3+ characters and its line ends is such
#                  a run, so no such line comes three times; a shorter line is checked
#                  as itself (line end, its characters, line end), so none does;
#   and (with either on) no line end right after a line end: cleaned text has no empty
#   lines, so a model that emits them is looping;
#   narrow lines (with repeat_ngram): a line of 2+ characters with at most NARROW = 3
#                  distinct ones may not end if REPEAT_LIMIT earlier lines of 2+
#                  characters would fit in one set of NARROW characters with it: argmax
#                  on a weak model writes "X我的我 / 不不的我 / 我的我的我", a pattern
#                  whose changing first character no n-gram catches.
# Both rules look at the last LOOP_WINDOW characters only: a loop is a repeat close by,
# and a sample of 20,000 characters then costs each step what a 1,000-character one does
# (over the whole sample, 20,000 characters took 121 s instead of 10 s: quadratic).
# loop_banned is the rule's one definition; engine.LoopGuard applies it while sampling.

DEFAULT_MAX_RUN = 3
DEFAULT_REPEAT_NGRAM = 5
REPEAT_LIMIT = 2
NARROW = 3
LOOP_WINDOW = 1000


def _followers(seq, m):
    """Ids that followed earlier occurrences of the last m ids of seq (one per
    occurrence)."""
    if m == 0:
        return seq
    M = len(seq) - m                          # windows seq[j:j+m], j < M
    match = seq[:M] == seq[M]
    for k in range(1, m):
        match &= seq[k:k + M] == seq[M + k]
    return seq[m:][match]


def loop_banned(seq, repeat_ngram=DEFAULT_REPEAT_NGRAM, max_run=DEFAULT_MAX_RUN,
                space_id=None, window=LOOP_WINDOW):
    """Ids that may not come next after seq (start text + generated ids), by its last
    `window` ids."""
    seq = np.asarray(seq, dtype=np.int64)[-window:]
    banned = []
    if space_id is not None and (repeat_ngram or max_run) and len(seq) \
            and seq[-1] == space_id:
        banned.append(int(space_id))
    if max_run and len(seq) >= max_run and (seq[-max_run:] == seq[-1]).all():
        banned.append(int(seq[-1]))
    m = repeat_ngram - 1
    if repeat_ngram and len(seq) > m:
        followers = _followers(seq, m)
        if len(followers) >= REPEAT_LIMIT:          # usually none: no np.unique then
            ids, counts = np.unique(followers, return_counts=True)
            banned.extend(int(i) for i in ids[counts >= REPEAT_LIMIT])
    if repeat_ngram and space_id is not None:
        # lines too short for an n-gram to hold them with both line ends: a line end
        # after k characters may not close the same short line a third time
        for k in range(1, repeat_ngram - 2):
            tail = seq[len(seq) - k - 1:]
            if len(seq) > k + 1 and tail[0] == space_id and (tail[1:] != space_id).all() \
                    and (_followers(seq, k + 1) == space_id).sum() >= REPEAT_LIMIT:
                banned.append(int(space_id))
        if _narrow_again(seq, space_id):
            banned.append(int(space_id))
    return np.array(sorted(set(banned)), dtype=np.int64)


def _narrow_again(seq, space_id):
    """True when the line being written is narrow and REPEAT_LIMIT earlier lines of 2+
    characters would share a set of at most NARROW characters with it (see above)."""
    spaces = np.flatnonzero(seq == space_id)
    start = int(spaces[-1]) + 1 if len(spaces) else 0
    line = set(seq[start:].tolist())
    if len(seq) - start < 2 or len(line) > NARROW:
        return False
    earlier = np.split(seq[:start], spaces + 1)           # pieces between line ends
    close = sum(1 for piece in earlier
                if (piece != space_id).sum() >= 2
                and len(line | set(piece[piece != space_id].tolist())) <= NARROW)
    return close >= REPEAT_LIMIT


def longest_char_run(text):
    """Length of the longest run of one character repeated (spaces included)."""
    best = run = 0
    for k, c in enumerate(text):
        run = run + 1 if k and text[k - 1] == c else 1
        best = max(best, run)
    return best


def max_line_repeats(text):
    """How often the most repeated line of text comes (lines ended by a line end: the
    last one of a sample cut at --n characters is not a line yet)."""
    from collections import Counter
    counts = Counter(line for line in text.split(" ")[:-1] if line)
    return max(counts.values(), default=0)


def index_path(directory, length):
    return os.path.join(directory, f"ngram{length}.npz")


class CorpusMatcher:
    """Exact substring matching against the training text (as ids), fast enough to check
    every position of a sample: the positions of each character are kept sorted, and a
    match is extended one character at a time by filtering those positions with numpy."""

    def __init__(self, ids, vocab_size):
        self.ids = np.asarray(ids, dtype=np.int32)
        # numpy radix-sorts 16-bit integers: 5x faster than sorting int32 here
        small = self.ids.astype(np.uint16) if vocab_size <= 65536 else self.ids
        self.order = np.argsort(small, kind="stable")
        self.bounds = np.searchsorted(self.ids[self.order], np.arange(vocab_size + 1))

    def match_length(self, seq, i):
        """Length of the longest prefix of seq[i:] that occurs in the training text."""
        c = seq[i]
        if not 0 <= c < len(self.bounds) - 1:
            return 0
        pos = self.order[self.bounds[c]:self.bounds[c + 1]]
        if not len(pos):
            return 0
        n, k = len(self.ids), 1
        d = seq[i + 1] if i + 1 < len(seq) else -1
        if 0 <= d < len(self.bounds) - 1 and \
                self.bounds[d + 1] - self.bounds[d] < len(pos):
            # the second character is the rarer (a line end is 1 in 7 of a verse corpus:
            # 3 M positions): start from its positions, one back, and keep those where
            # the first character stands: the same set, a fraction of the work
            prev = self.order[self.bounds[d]:self.bounds[d + 1]] - 1
            pos = prev[(prev >= 0) & (self.ids[np.maximum(prev, 0)] == c)]
            if not len(pos):
                return 1
            k = 2
        while i + k < len(seq):
            nxt = pos + k
            pos = pos[(nxt < n) & (self.ids[np.minimum(nxt, n - 1)] == seq[i + k])]
            if not len(pos):
                break
            k += 1
        return k

    def longest_run(self, seq):
        """(length, start) of the longest run of seq found verbatim in the training text."""
        best, at = 0, 0
        for i in range(len(seq)):
            if len(seq) - i <= best:
                break
            m = self.match_length(seq, i)
            if m > best:
                best, at = m, i
        return best, at

    def ngram_share(self, seq, n):
        """Share of seq's n-grams that occur in the training text."""
        total = len(seq) - n + 1
        if total <= 0:
            return None
        return sum(1 for i in range(total) if self.match_length(seq[:i + n], i) >= n) / total


def distinct_n(text, n):
    """Distinct n-grams / all n-grams (distinct-1, distinct-2)."""
    grams = [text[i:i + n] for i in range(len(text) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


# ---------------------------------------------------------------------------- fluency
#
# Perplexity and the copy/loop numbers cannot tell a line a person would keep from a
# string of plausible characters.  Words can: jieba (the usual Chinese word segmenter)
# with its own dictionary of about 350,000 words, segmenting by dictionary only (its HMM
# guesser off, so no word is invented), finds which characters of a text form words.

_segmenter = None


def _jieba():
    global _segmenter
    if _segmenter is None:
        try:
            import jieba
        except ImportError:
            raise UserError("the fluency figure needs jieba: pip install -r requirements.txt")
        import logging
        jieba.setLogLevel(logging.WARNING)        # no "Building prefix dict" chatter
        _segmenter = jieba.Tokenizer()
    return _segmenter


def word_share(text):
    """Share of the Chinese characters of text (spaces = line ends) that jieba's
    dictionary segmentation puts in words of two or more characters; None for no text.
    Real lyrics and prose score high, word salad low (see README for measured values)."""
    seg = _jieba()
    in_words = total = 0
    for line in text.split():
        for word in seg.cut(line, HMM=False):
            total += len(word)
            if len(word) >= 2:
                in_words += len(word)
    return in_words / total if total else None


def text_windows(ids, count, length, seed=0):
    """count windows of length ids of a long id array, at places drawn with seed (for
    comparing a model's samples with its training text on equal terms)."""
    ids = np.asarray(ids)
    if len(ids) <= length:
        return [ids]
    rng = np.random.default_rng(seed)
    return [ids[a:a + length] for a in rng.integers(0, len(ids) - length, count)]
