"""Write lyrics with a trained model.

    python sample.py --start 从前 --n 200

Restores save/config.pkl, save/words_vocab.pkl and a checkpoint (the best-validation one
when there is one, else the latest) into the batch-1 inference graph, warms the state up on
the start text one character at a time from the zero state (as the article does), then
draws --n characters.  Plain sampling runs as one in-graph tf.while_loop (one Session.run
per sample); the text goes to stdout, one lyric line per line, and is appended to
result/sequence under a header saying how it was made.
"""
import argparse
import os
import sys
import threading
import time
import zipfile

import numpy as np

from utils import (HelpFormatter, UserError, first_intact_checkpoint, float_in,
                   import_tensorflow, int_in, non_negative_int, run_main, seed_int, tf_path)

from craft import DEFAULT_MAX_COPY, DEFAULT_MAX_RUN, DEFAULT_REPEAT_NGRAM, LOOP_WINDOW
from modeldir import find_checkpoints, load_corpus, load_saved

MODES = {"argmax": 0, "weighted": 1, "combined": 2}
# Bounds of the flags, where time, memory or a 32-bit tensor would give out: the loop
# guard looks at the last 1,000 characters at each step, with work growing as the square
# of --repeat_ngram (2,000 characters took 9 s at 5, 16 s at 16 and 113 s at 64 on a
# shared 2-core CPU, so 20,000 at 16 is about two minutes at worst); a copy index of L
# characters is a table of every (L+1)-gram of the training text.
MAX_N = 20000
MAX_COUNT = 1000
MAX_TOP_K = 1000000
MAX_COPY = 64
MAX_NGRAM = 16
TEMPERATURES = (0.01, 100.0)
SPACE = " "


def build_parser():
    p = argparse.ArgumentParser(
        description="Generate lyrics from a model trained by train.py.",
        formatter_class=HelpFormatter)
    p.add_argument("--save_dir", default="save", help="directory train.py saved into")
    p.add_argument("--start", default="",
                   help="start text the lyrics continue (empty: start at a line start)")
    p.add_argument("--n", type=int_in(1, MAX_N), default=200,
                   help=f"characters to generate (at most {MAX_N:,})")
    p.add_argument("--sample", choices=list(MODES), default="weighted",
                   help="argmax: most probable character; weighted: draw from the "
                        "distribution; combined: weighted at a line start, argmax elsewhere")
    p.add_argument("--temperature", type=float_in(*TEMPERATURES), default=1.0,
                   help=f"below 1 more conservative, above 1 more adventurous "
                        f"({TEMPERATURES[0]:g} to {TEMPERATURES[1]:g})")
    p.add_argument("--top_k", type=int_in(0, MAX_TOP_K), default=0,
                   help="draw only among the k most probable characters (0 = all; more "
                        "than the vocabulary = all)")
    p.add_argument("--seed", type=seed_int, default=None,
                   help="random seed for reproducible output (default: a fresh one, shown "
                        "in the result header)")
    p.add_argument("--count", type=int_in(1, MAX_COUNT), default=1,
                   help=f"number of samples (at most {MAX_COUNT:,})")
    p.add_argument("--raw", action="store_true",
                   help="print spaces (line ends) as spaces instead of line breaks")
    p.add_argument("--out", default=os.path.join("result", "sequence"),
                   help="file the samples are appended to ('' = none)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--latest", action="store_true",
                   help="use the latest checkpoint instead of the best-validation one")
    g.add_argument("--ckpt", default=None,
                   help="use this checkpoint prefix, e.g. save/model.ckpt-2000")
    p.add_argument("--cpu", action="store_true", help="use the CPU even if a GPU is visible")
    g = p.add_argument_group("lyrics craft")
    g.add_argument("--max_copy", type=int_in(0, MAX_COPY), default=None,
                   help=f"never repeat more than this many characters of the training text "
                        f"verbatim (default {DEFAULT_MAX_COPY}; 0 = off; at most "
                        f"{MAX_COPY})")
    g.add_argument("--rhyme", default=None,
                   help="make line ends rhyme: 'auto' (the first line's rhyme), a 十三辙 "
                        "group such as 言前, or a pinyin final such as an")
    g.add_argument("--lines", type=int_in(1, MAX_N // 2), default=None,
                   help=f"stop after this many lines instead of --n characters; lines x "
                        f"(--line_len MAX, else 40, + 1) may not pass {MAX_N:,}")
    g.add_argument("--line_len", type=line_range, default=None, metavar="MIN-MAX",
                   help="keep each line between MIN and MAX characters, e.g. 5-9")
    g.add_argument("--stanza", type=int_in(0, MAX_N), default=0,
                   help="print a blank line after every this many lines (0 = never)")
    g.add_argument("--max_run", type=int_in(0, MAX_N), default=DEFAULT_MAX_RUN,
                   help="loop guard: a character may not come more than this many times in "
                        "a row, as in 不不不不 (0 = off)")
    g.add_argument("--repeat_ngram", type=ngram_size, default=DEFAULT_REPEAT_NGRAM,
                   metavar="N",
                   help=f"loop guard: a run of N characters (line ends included) may come "
                        f"at most twice within the last {LOOP_WINDOW:,} characters, so a "
                        f"refrain line may come back once but the same line cannot loop "
                        f"(0 = off, else 2 to {MAX_NGRAM})")
    return p


# --------------------------------------------------------------------- saved model


def start_ids(start, vocab, warn=print):
    """Ids of the start text; characters the model never saw are skipped with a warning.

    Line breaks and sentence punctuation count as line ends (spaces), as data/parse.py
    cleans the training text.  With nothing left, start at a line start.
    """
    from data.parse import LINE_END_PUNCT
    spaced = LINE_END_PUNCT.sub(" ", start)
    text = " ".join(spaced.split())
    if text and spaced[-1:].isspace():    # "我在。": the line has ended; go on from there
        text += " "
    unknown = list(dict.fromkeys(c for c in text if c not in vocab))   # as they come
    if unknown:
        warn(f"sample.py: warning: skipping characters the model never saw: "
             f"{''.join(unknown)}")
    kept = "".join(c for c in text if c in vocab)
    if not kept:
        return "", [vocab[SPACE]] if SPACE in vocab else [0]
    return kept, [vocab[c] for c in kept]


# ------------------------------------------------------------------------- sampler


class Sampler:
    """A restored inference graph: fast whole-sample generation in one Session.run, and
    single steps for the sampler that decides in Python (rhyme, line structure)."""

    def __init__(self, save_dir="save", ckpt=None, latest=False, cpu=False, max_copy=0,
                 warn=None):
        self.config, self.chars, self.vocab = load_saved(save_dir)
        candidates = find_checkpoints(save_dir, ckpt, latest)
        self.space_id = self.vocab.get(SPACE, 0)
        self.corpus = load_corpus(save_dir, len(self.chars))
        self.index = None
        if max_copy:
            self.index = copy_index(save_dir, self.corpus, max_copy, warn)
        if cpu:
            os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
        tf = import_tensorflow()
        from seq2seq_rnn import Model
        tf1 = tf.compat.v1
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.model = Model(self.config, infer=True)
            saver = tf1.train.Saver(tf1.global_variables())
            if self.index is not None:
                self.model._copy_ban(self.index.length, len(self.chars))
            variables = tf1.global_variables()
        self.sess = tf1.Session(graph=self.graph)
        self.ckpt, skipped = first_intact_checkpoint(
            candidates, variables, save_dir,
            restore=lambda prefix: saver.restore(self.sess, tf_path(prefix)))
        for prefix, why in skipped:
            print(f"sample.py: warning: {prefix} is {why}; using {self.ckpt}",
                  file=sys.stderr)
        if self.index is not None:
            self.model.load_copy_index(self.sess, self.index)
        m = self.model
        self._step = self.sess.make_callable(
            [m.probs, m.final_state], [m.input_data] + list(tf.nest.flatten(m.initial_state)))
        self._zero = self.sess.run(m.initial_state)
        self._flatten = tf.nest.flatten
        self._generators = {}
        self._build_lock = threading.Lock()

    def generator(self, mode, top_k, repeat_ngram, max_run):
        """The in-graph sampler for this mode and rules (built on first use: building all
        variants up front would cost start-up time for ones never run).  Built under a
        lock: serve.py draws from one Sampler in several threads at once."""
        key = (mode, top_k > 0, repeat_ngram, max_run)
        with self._build_lock:
            if key not in self._generators:
                with self.graph.as_default():
                    self._generators[key] = self.model.build_generator(
                        self.space_id, self.index.length if self.index is not None else 0,
                        mode, top_k > 0, repeat_ngram, max_run)
            return self._generators[key]

    def close(self):
        self.sess.close()

    def generate(self, ids, n, mode="weighted", temperature=1.0, top_k=0, seed=0,
                 repeat_ngram=DEFAULT_REPEAT_NGRAM, max_run=DEFAULT_MAX_RUN):
        """Warm up on ids, then draw n ids, all in one Session.run."""
        g = self.generator(mode, top_k, repeat_ngram, max_run)
        feed = {g.start: ids, g.n: n, g.temperature: temperature, g.top_k: top_k,
                g.seed: seed}
        if self.index is not None:
            L = self.index.length
            feed[g.tail] = ([-1] * L + list(ids))[-L:]
        return self.sess.run(g.ids, feed)

    def zero_state(self):
        return self._zero

    def step(self, x, state):
        """Feed one id; returns (probabilities [V], new state)."""
        probs, state = self._step([[x]], *self._flatten(state))
        return probs[0], state

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)

    def rhyme_groups(self):
        """The 十三辙 group of every vocabulary entry ('' for none), computed once: pypinyin
        over 11 k characters takes a tenth of a second."""
        if getattr(self, "_rhyme_groups", None) is None:
            from craft import vocab_groups
            self._rhyme_groups = np.array([g or "" for g in vocab_groups(self.chars)],
                                          dtype=object)
        return self._rhyme_groups


def copy_index(save_dir, corpus, length, warn):
    """The no-copy index for runs longer than `length`: saved by preprocess/train for the
    default length, built here (well under a second) for another one."""
    from craft import NgramIndex, index_path
    path = index_path(save_dir, length)
    if os.path.exists(path):
        try:
            index = NgramIndex.load(path)
            if index.length == length and len(index.keys) == len(index.nexts):
                return index
        except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile):
            pass                                # damaged: rebuild from the corpus below
    if corpus is None:
        if warn is None:
            raise UserError(f"--max_copy needs the training text, {save_dir}/corpus.npy, "
                            f"which train.py saves; retrain, or pass --max_copy 0")
        warn(f"sample.py: warning: {save_dir}/corpus.npy is missing, so the no-copy rule "
             f"is off (retrain to get it)")
        return None
    return NgramIndex.build(corpus, length)


def choose(p, weighted, rng):
    return int(rng.choice(len(p), p=p)) if weighted else int(np.argmax(p))


def choose_where(p, weighted, rng, ok):
    """choose(), but re-drawn without each pick for which ok() fails; if nothing passes,
    the last pick (the rules cannot all be met, and the line end wins)."""
    p = p.copy()
    while True:
        c = choose(p, weighted, rng)
        if ok(c):
            return c
        p[c] = 0.0
        total = p.sum()
        if total <= 0:
            return c
        p /= total


def shape(probs, temperature, top_k):
    """Temperature and top-k on a probability vector, as the in-graph sampler does.
    A probability of 0 (a character a rule masked) stays 0 at any temperature."""
    with np.errstate(divide="ignore"):
        logits = np.log(probs) / temperature
    if 0 < top_k < len(logits):
        kth = np.partition(logits, -top_k)[-top_k]
        logits = np.where(logits < kth, -np.inf, logits)
    e = np.exp(logits - logits.max())
    return e / e.sum()


def masked(p, banned):
    """p without the banned ids, renormalised; p unchanged if that would leave nothing."""
    if banned is None or not len(banned):
        return p
    q = p.copy()
    q[banned] = 0.0
    total = q.sum()
    return q / total if total > 0 else p


def char_budget(n, lines=None, line_len=None):
    """The most characters one sample may draw: --n, or with --lines enough for every
    line at its longest (--line_len MAX, else 40) plus its line end.  sample.py bounds it
    by MAX_N and serve.py by its own limit, with the same message."""
    if not lines:
        return n
    return max(n, lines * ((line_len[1] if line_len else 40) + 1))


def check_budget(args, limit, where=""):
    """None, or what is wrong when the sample args ask for more than limit characters."""
    budget = char_budget(args.n, args.lines, args.line_len)
    if budget <= limit:
        return None
    if not args.lines or budget == args.n:
        return f"--n {args.n:,} characters; at most {limit:,}{where}"
    return (f"--lines {args.lines} x --line_len up to "
            f"{args.line_len[1] if args.line_len else 40} (+1 line end) may draw "
            f"{budget:,} characters; at most {limit:,}{where}: fewer lines or a lower MAX")


def constrained_sample(s, ids, n, mode="weighted", temperature=1.0, top_k=0, seed=0,
                       rhyme=None, lines=None, line_len=None,
                       repeat_ngram=DEFAULT_REPEAT_NGRAM, max_run=DEFAULT_MAX_RUN):
    """Generate step by step in Python, for the rules a while_loop does not hold:
    rhyme (a line's last character re-drawn among rhyming ones, state rolled back one
    step), --lines and --line_len; and the no-copy rule, as the fast path has it.

    Returns (generated ids, rhyme target group or None)."""
    from craft import loop_banned
    rng = np.random.default_rng(seed)
    space = s.space_id
    V = len(s.chars)
    groups = rhyme_mask = target = None
    if rhyme:
        groups = s.rhyme_groups()
        if rhyme != "auto":
            target, rhyme_mask = rhyme, groups == rhyme
    lo, hi = line_len or (1, None)
    state = s.zero_state()
    for i in ids[:-1]:
        _, state = s.step(i, state)
    seq = list(ids)                          # start + generated: the runs and lines
    line = len(seq) - 1 - max((k for k, c in enumerate(seq) if c == space), default=-1)
    x, out, done_lines, prev = ids[-1], [], 0, None
    cap = char_budget(n, lines, line_len)
    L = s.index.length if s.index is not None else 0

    def may_end_line_after(tail, c):
        """False when a line end right after tail + c would repeat the training text."""
        return c == space or not L or space not in s.index.banned_after(tail[-L:] + [c])
    while len(out) < cap and (lines is None or done_lines < lines):
        p, new_state = s.step(x, state)
        # the rules first, then temperature and top-k among the allowed characters
        if s.index is not None:
            p = masked(p, s.index.banned_after(seq))
        if repeat_ngram or max_run:
            p = masked(p, loop_banned(seq, repeat_ngram, max_run, space))
        p = shape(p, temperature, top_k)
        if line < lo:
            p = masked(p, [space])
        if hi is not None and line >= hi:
            p = np.zeros(V)            # (not np.eye(V)[space]: a V x V matrix, 1 GB at 11 k)
            p[space] = 1.0
        weighted = mode == "weighted" or (mode == "combined" and x == space)
        if hi is not None and line == hi - 1:
            # the next line end is forced: keep it from making a copy
            c = choose_where(p, weighted, rng, lambda c: may_end_line_after(seq, c))
        else:
            c = choose(p, weighted, rng)
        if c == space and line > 0 and groups is not None:
            last = seq[-1]
            if target is None and groups[last]:
                target, rhyme_mask = groups[last], groups == groups[last]
            elif target is not None and groups[last] != target and prev is not None:
                # Roll back one step: re-draw the line's last character from the
                # distribution that produced it, among rhyming characters only.
                p_prev, prev_state, prev_weighted = prev
                q = p_prev * rhyme_mask
                if q.sum() > 0:
                    last = choose_where(q / q.sum(), prev_weighted, rng,
                                        lambda c: may_end_line_after(seq[:-1], c))
                    seq[-1] = out[-1] = last
                    _, new_state = s.step(last, prev_state)
        prev = (p, state, weighted)
        state, x = new_state, c
        seq.append(c)
        out.append(c)
        if c == space:
            done_lines += 1
            line = 0
        else:
            line += 1
    return out, target


def show(text, raw, stanza=0):
    if raw:
        return text
    lines = text.split(SPACE)
    if stanza:
        out = []
        for k, line in enumerate(lines):
            out.append(line)
            if (k + 1) % stanza == 0 and k + 1 < len(lines):
                out.append("")
        lines = out
    return "\n".join(lines)


def append_result(path, header, body):
    """Append header + body to path.  Only appended: what the file holds already (in any
    encoding) is never read or rewritten, and a block that cannot be written whole (a
    full disk) is cut off again, so the file ends as it was."""
    if os.path.isdir(path):
        raise UserError(f"--out {path} is a directory; name a file, or --out '' for none",
                        code=2)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    block = (header + "\n" + body.rstrip("\n") + "\n\n").encode("utf-8")
    try:
        with open(path, "ab", buffering=0) as f:
            end = f.seek(0, os.SEEK_END)
            try:
                view = memoryview(block)
                while view:                 # a full disk can take part of a block
                    view = view[f.write(view):]
                os.fsync(f.fileno())
            except OSError:
                try:
                    f.truncate(end)         # nothing half-written stays behind
                except OSError:             # not a regular file (/dev/full)
                    pass
                raise
    except OSError as e:
        e.filename = e.filename or path        # a failed write() names no file
        raise


def ngram_size(value):
    v = non_negative_int(value)
    if v == 1 or v > MAX_NGRAM:
        raise argparse.ArgumentTypeError(f"must be 0 (off) or from 2 to {MAX_NGRAM}, not {v}")
    return v


def line_range(value):
    try:
        lo, hi = (int(v) for v in value.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not MIN-MAX, e.g. 5-9")
    if not 1 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"need 1 <= MIN <= MAX, not {value}")
    return lo, hi


def write_one(sampler, args, ids, kept, seed, rhyme=None, matcher=None):
    """One sample as the CLI makes it (and serve.py, which must make the same): returns
    a dict with the text, the rhyme target, and the figures sample.py prints."""
    if rhyme or args.lines or args.line_len:
        out, target = constrained_sample(
            sampler, ids, args.n, args.sample, args.temperature, args.top_k, seed, rhyme,
            args.lines, args.line_len, args.repeat_ngram, args.max_run)
    else:
        out = sampler.generate(ids, args.n, args.sample, args.temperature, args.top_k,
                               seed, args.repeat_ngram, args.max_run)
        target = None
    text = (kept + sampler.decode(out)).strip()
    result = {"text": text, "seed": seed, "target": target, "rhyme_rate": None,
              "longest_run": None, "longest_run_text": None}
    if matcher is not None:
        run, at = matcher.longest_run([sampler.vocab[c] for c in text])
        result.update(longest_run=run, longest_run_text=text[at:at + run])
    if rhyme:
        from craft import rhyme_rate
        result["rhyme_rate"] = rhyme_rate(text.split(SPACE))
    return result


def notes_of(result, rhyme):
    """The figures of one sample in sample.py's words."""
    note = []
    if result["longest_run"] is not None:
        note.append(f"longest run found in the training text {result['longest_run']} "
                    f"({result['longest_run_text'].replace(SPACE, '/')})")
    if rhyme:
        rate = result["rhyme_rate"]
        note.append("rhyme rate " + ("n/a (one line)" if rate is None else f"{rate:.0%}")
                    + (f" ({result['target']})" if result["target"] else ""))
    return note


def copy_warning(max_copy):
    if max_copy in (1, 2):
        return (f"--max_copy {max_copy} bans nearly every character that ever followed the "
                f"last {max_copy} in the training text; expect short or empty output (4 or "
                f"more keeps words, 0 turns the rule off)")
    return None


def lines_warning(args, text):
    if args.lines and text.count(SPACE) + 1 < args.lines:
        return (f"{text.count(SPACE) + 1} of {args.lines} lines: generation stops at "
                f"{char_budget(args.n, args.lines)} characters (--n, or 41 per line); bound the "
                f"lines with --line_len MIN-MAX or raise --n")
    return None


def command_of(args, seed):
    """The sample.py command line that makes the same sample."""
    import shlex
    parts = ["python", "sample.py", "--save_dir", args.save_dir]
    if args.start:      # --start=-x: a start text beginning with '-' is not a flag
        parts += [f"--start={args.start}"] if args.start.startswith("-") else \
            ["--start", args.start]
    defaults = vars(build_parser().parse_args([]))
    parts += ["--lines", str(args.lines)] if args.lines else ["--n", str(args.n)]
    if args.lines and args.n != defaults["n"]:      # with --lines, --n still bounds it
        parts += ["--n", str(args.n)]
    defaults["max_copy"] = DEFAULT_MAX_COPY
    for flag in ("sample", "temperature", "top_k", "max_copy", "max_run", "repeat_ngram",
                 "rhyme", "stanza"):
        if args.sample == "argmax" and flag in ("temperature", "top_k"):
            continue                    # argmax takes the likeliest: neither changes it
        value = getattr(args, flag)
        if value is not None and value != defaults[flag]:
            parts += [f"--{flag}", str(value)]
    if args.line_len:
        parts += ["--line_len", f"{args.line_len[0]}-{args.line_len[1]}"]
    parts += ["--seed", str(seed)]
    return " ".join(shlex.quote(p) for p in parts)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if check_budget(args, MAX_N):
        parser.error(check_budget(args, MAX_N))
    rhyme = None
    if args.rhyme:
        from craft import parse_rhyme
        rhyme = parse_rhyme(args.rhyme)

    def warn(msg):
        print(msg, file=sys.stderr)

    explicit_copy = args.max_copy is not None
    max_copy = args.max_copy if explicit_copy else DEFAULT_MAX_COPY
    if copy_warning(max_copy):
        warn("sample.py: warning: " + copy_warning(max_copy))
    sampler = Sampler(args.save_dir, args.ckpt, args.latest, args.cpu, max_copy,
                      warn=None if explicit_copy else warn)
    kept, ids = start_ids(args.start, sampler.vocab, warn=warn)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    matcher = None
    if sampler.corpus is not None:
        from craft import CorpusMatcher
        matcher = CorpusMatcher(sampler.corpus, len(sampler.chars))
    texts, notes = [], []
    t0 = time.perf_counter()
    for k in range(args.count):
        result = write_one(sampler, args, ids, kept, seed + k, rhyme, matcher)
        text = result["text"]
        texts.append(text)
        if lines_warning(args, text):
            warn(f"sample.py: warning: sample {k + 1} has " + lines_warning(args, text))
        print(show(text, args.raw, args.stanza) + ("\n" if k + 1 < args.count else ""),
              flush=True)
        note = notes_of(result, rhyme)
        if note:
            notes.append(f"sample.py: sample {k + 1}: " + "; ".join(note))
    ms = (time.perf_counter() - t0) * 1000 / args.count
    for note in notes:
        print(note, file=sys.stderr)
    print(f"sample.py: {args.count} x {args.n if not args.lines else str(args.lines) + ' lines'}"
          f" from {sampler.ckpt} ({ms:.0f} ms each, first-run set-up included), seed {seed}"
          + (f", no-copy rule at {sampler.index.length} characters"
             if sampler.index is not None else ", no-copy rule off"), file=sys.stderr)
    if args.out:
        header = (f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} | checkpoint {sampler.ckpt} | "
                  f"start {args.start!r} | n {args.n} | sample {args.sample} | temperature "
                  f"{args.temperature} | top_k {args.top_k} | seed {seed} | count "
                  f"{args.count} | max_copy "
                  f"{sampler.index.length if sampler.index is not None else 0}"
                  + f" | max_run {args.max_run} | repeat_ngram {args.repeat_ngram}"
                  + (f" | rhyme {args.rhyme}" if args.rhyme else "")
                  + (f" | lines {args.lines}" if args.lines else "")
                  + (f" | line_len {args.line_len[0]}-{args.line_len[1]}"
                     if args.line_len else "") + " ===")
        append_result(args.out, header,
                      "\n\n".join(show(t, args.raw, args.stanza) for t in texts))
    return 0


if __name__ == "__main__":
    run_main(main, "sample.py", fast_exit=True)
