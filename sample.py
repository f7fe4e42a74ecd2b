"""Write lyrics with a trained model.

    python sample.py --start 从前 --n 200

Restores save/config.pkl, save/words_vocab.pkl and a checkpoint (the best-validation one
when there is one, else the latest) into the batch-1 inference graph, warms the state up on
the start text one character at a time from the zero state (as the article does), then
draws --n characters through the sampling engine (engine.py: one Session.run per
character, every rule applied in numpy).  The text goes to stdout as it is drawn, one lyric
line per line, and is appended to result/sequence under a header saying how it was made.
"""
import os
import sys
import time
import zipfile

import numpy as np

from craft import DEFAULT_MAX_COPY
from engine import (LINE_CAP, MAX_N, MODES, RULES, SPACE, Engine, NoCopy, acrostic_chars,
                    build_rules, check_budget, plan)
from modeldir import (find_checkpoints, first_intact_checkpoint, load_saved, restore_weights,
                      saved_corpus)
from tfenv import import_tensorflow, session_config
from utils import (ArgumentParser, HelpFormatter, UserError, float_in, int_in, run_main,
                   seed_int)

# Bounds of the flags, where time or memory would give out (the rules' own bounds are
# with the rules, in engine.py).
MAX_COUNT = 1000
MAX_TOP_K = 1000000
TEMPERATURES = (0.01, 100.0)


def build_parser():
    p = ArgumentParser(
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
    g = p.add_argument_group("lyrics craft (the rules of engine.py)")
    g.add_argument("--lines", type=int_in(1, MAX_N // 2), default=None,
                   help=f"stop after this many lines instead of --n characters; lines x "
                        f"(--line_len MAX, else {LINE_CAP}, + 1) may not pass {MAX_N:,}")
    g.add_argument("--stanza", type=int_in(0, MAX_N), default=0,
                   help="print a blank line after every this many lines (0 = never)")
    for rule in RULES:
        rule.add_flags(g)
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
    """A restored model for the engine (engine.py): logits(x, state) runs one character
    through the lean batch-1 step graph (one Session.run for the recurrent layers, the
    output layer in numpy); step() is the same with the probabilities, for scoring.
    State is the flat list of the graph's state arrays.

    The session runs each step's ops in the calling thread (inter_op_parallelism_threads
    -1): a step is a few dozen tiny ops, and handing them to a thread pool cost more than
    the ops (0.65 ms a step instead of 1.2 ms at 2 x 256, AMD EPYC, 2 cores)."""

    def __init__(self, save_dir="save", ckpt=None, latest=False, cpu=False, max_copy=0,
                 warn=None):
        self.config, self.chars, self.vocab = load_saved(save_dir)
        candidates = find_checkpoints(save_dir, ckpt, latest)
        self.space_id = self.vocab.get(SPACE, 0)
        self.corpus = saved_corpus(save_dir, self.chars)
        self.index = None
        if max_copy:
            self.index = copy_index(save_dir, self.corpus, max_copy, warn)
        tf = import_tensorflow("sample", cpu=cpu)
        from seq2seq_rnn import Model
        tf1 = tf.compat.v1
        self.graph = tf.Graph()
        with self.graph.as_default():
            m = self.model = Model(self.config, infer=True)
            saver = tf1.train.Saver(tf1.global_variables())
            x = tf1.placeholder(tf.int32, [], name="step_input")
            h, state = m.step(x, m.initial_state)
            variables = tf1.global_variables()
        self.graph.finalize()
        self.sess = tf1.Session(graph=self.graph, config=session_config(inline=True))
        self.ckpt, skipped = first_intact_checkpoint(
            candidates, variables, save_dir,
            restore=lambda prefix: self._restore(saver, prefix, variables))
        for prefix, why in skipped:
            print(f"sample.py: warning: {prefix} is {why}; using {self.ckpt}",
                  file=sys.stderr)
        self._flatten = tf.nest.flatten
        self._step = fast_callable(self.sess, [x] + self._flatten(m.initial_state),
                                   [h] + self._flatten(state))
        self._zero = self.sess.run(self._flatten(m.initial_state))
        self._w, self._b = self.sess.run([m.softmax_w, m.softmax_b])     # [H, V], [V]

    def _restore(self, saver, prefix, variables):
        """Restore, then refuse weights that are not finite: a checkpoint whose
        checksums hold can still carry inf/NaN (sampled, it gave an empty text without a
        word), and first_intact_checkpoint then tries the next one."""
        import numpy as np
        restore_weights(self.sess, saver, prefix, variables)
        trained = [v for v in variables if v.trainable]
        for v, value in zip(trained, self.sess.run(trained)):
            if not np.all(np.isfinite(value)):
                raise ValueError(f"{v.op.name} holds inf/NaN")

    def close(self):
        self.sess.close()

    def zero_state(self):
        return self._zero

    def logits(self, x, state):
        """Feed one id; returns (logits [V], new state); state as zero_state() or a
        previous call gave it."""
        out = self._step(np.int32(x), *state)
        return out[0] @ self._w + self._b, out[1:]

    def step(self, x, state):
        """Feed one id; returns (probabilities [V], new state); state may also be the
        batch graph's nested final_state (analysis/evaluate.py carries it on)."""
        logits, state = self.logits(x, self._flatten(state))
        e = np.exp(logits - logits.max())
        return e / e.sum(), state

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)

    @property
    def matcher(self):
        """The training text as a craft.CorpusMatcher (None without corpus.npy), built on
        first use: it finds the longest run a sample copied."""
        if getattr(self, "_matcher", None) is None and self.corpus is not None:
            from craft import CorpusMatcher
            self._matcher = CorpusMatcher(self.corpus, len(self.chars))
        return getattr(self, "_matcher", None)

    def rhyme_groups(self):
        """The 十三辙 group of every vocabulary entry ('' for none), computed once: pypinyin
        over 11 k characters takes a tenth of a second."""
        if getattr(self, "_rhyme_groups", None) is None:
            from craft import vocab_groups
            self._rhyme_groups = np.array([g or "" for g in vocab_groups(self.chars)],
                                          dtype=object)
        return self._rhyme_groups


def fast_callable(sess, feeds, fetches):
    """f(*feed values) -> [fetched arrays], through TensorFlow's callable handle.
    Session.make_callable with a feed list only wraps Session.run and its feed-dict
    handling, about 1 ms of Python a step at batch 1 (profiled); the handle runs a
    prepared step directly.  The handle is the Session's own (used by tf.keras's
    TF1 backend); should a TensorFlow not have it, the plain make_callable serves."""
    make = getattr(sess, "_make_callable_from_options", None)
    if make is None:
        plain = sess.make_callable(fetches, feeds)
        return lambda *values: plain(*values)
    from tensorflow.core.protobuf import config_pb2
    options = config_pb2.CallableOptions()
    options.feed.extend(t.name for t in feeds)
    options.fetch.extend(t.name for t in fetches)
    return make(options)


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
             f"is off (retrain to get it; a packed model gets it the first time a "
             f"fine-tune from it rebuilds its text)")
        return None
    return NgramIndex.build(corpus, length)


def stanza_lead(args, kept):
    """Lines before the first --stanza: an acrostic's start text is a line of its own
    (Acrostic.begin ends it), outside the acrostic's stanzas; else none."""
    return 1 if acrostic_chars(args) and kept.strip() else 0


def show(text, raw, stanza=0, lead=0):
    """The sample as printed: a line per line, a blank line after the `lead` first
    lines and then after every `stanza` lines."""
    if raw:
        return text
    lines = text.split(SPACE)
    if stanza:
        out = []
        for k, line in enumerate(lines):
            out.append(line)
            if (k + 1 - lead) % stanza == 0 and k + 1 < len(lines):
                out.append("")
        lines = out
    return "\n".join(lines)


# where a block of --out ended before its end (a run killed while it wrote)
CUT_MARK = "[the block above was cut off: the run writing it stopped before its end]"


def append_result(path, header, body):
    """Append header + body to path.  Only appended: what the file holds already (in any
    encoding) is never rewritten, and a block that cannot be written whole (a full disk)
    is cut off again, so the file ends as it was.  A block that a killed run left
    unfinished (the file does not end in the blank line every block ends with) is marked
    as cut first, so the new header starts on a line of its own."""
    if os.path.isdir(path):
        raise UserError(f"--out {path} is a directory; name a file, or --out '' for none",
                        code=2)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    block = (header + "\n" + body.rstrip("\n") + "\n\n").encode("utf-8")
    size, tail = 0, b""
    if os.path.isfile(path):        # a regular file (/dev/full reads zeros for ever)
        try:
            with open(path, "rb") as f:             # the last two bytes only
                size = f.seek(0, os.SEEK_END)
                f.seek(max(size - 2, 0))
                tail = f.read(2)
        except OSError:
            size, tail = 0, b""
    if size and tail != b"\n\n":
        block = (("\n" if tail[-1:] != b"\n" else "") + CUT_MARK + "\n\n").encode(
            "utf-8") + block
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


def write_one(sampler, args, ids, kept, seed, matcher=None, on_text=None):
    """One sample as the CLI makes it (and serve.py, which must make the same), drawn by
    the engine with the rules args turn on; on_text(str) is called with the start text
    and then with each character as it is drawn.  Returns a dict with the text, the
    rhyme target, the rules that gave way, and the figures sample.py prints."""
    rules = build_rules(args, sampler)
    for rule in rules:
        kept, ids = rule.begin(kept, ids, sampler.space_id)
    budget, lines = plan(args)
    engine = Engine(sampler, ids, rules, budget, lines, args.sample, args.temperature,
                    args.top_k, seed)
    out = []
    if on_text is not None:
        on_text(kept)
    for c in engine:
        out.append(c)
        if on_text is not None:
            on_text(sampler.chars[c])
    text = (kept + sampler.decode(out)).strip()
    result = {"text": text, "seed": seed, "target": None, "rhyme_rate": None,
              "longest_run": None, "longest_run_text": None, "gave_way": engine.gave_way}
    for rule in rules:
        result.update(rule.report())
    if matcher is not None:
        run, at = matcher.longest_run([sampler.vocab[c] for c in text])
        result.update(longest_run=run, longest_run_text=text[at:at + run])
    if args.rhyme:
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
    for name, k in sorted(result["gave_way"].items()):
        note.append(f"the {name.replace('_', ' ')} rule gave way {k} time"
                    f"{'s' if k > 1 else ''} (the rules before it left nothing else)")
    return note


class Printer:
    """Prints a sample as it is drawn, exactly as show() prints it whole: a line end
    waits until a character follows it (the text is stripped), then becomes a line
    break (a space with --raw), with a blank line after every --stanza lines."""

    def __init__(self, out, raw=False, stanza=0, flush=False, lead=0):
        self.out, self.raw, self.stanza, self.flush = out, raw, stanza, flush
        self.lead = lead
        self.pending, self.started, self.lines = 0, False, 0

    def __call__(self, text):
        parts = []
        for c in text:
            if c.isspace():
                self.pending += self.started
                continue
            for _ in range(self.pending):
                self.lines += 1
                parts.append(SPACE if self.raw else "\n")
                if self.stanza and not self.raw and \
                        (self.lines - self.lead) % self.stanza == 0:
                    parts.append("\n")
            self.pending, self.started = 0, True
            parts.append(c)
        if parts:
            self.out.write("".join(parts))
            if self.flush:
                self.out.flush()

    def end(self):
        self.out.write("\n")
        self.out.flush()
        self.pending, self.started, self.lines = 0, False, 0


def copy_warning(max_copy):
    if max_copy in (1, 2):
        return (f"--max_copy {max_copy} bans nearly every character that ever followed the "
                f"last {max_copy} in the training text; expect short or empty output (4 or "
                f"more keeps words, 0 turns the rule off)")
    return None


def lines_warning(args, text):
    budget, lines = plan(args)
    if lines and text.count(SPACE) + 1 < lines:
        return (f"{text.count(SPACE) + 1} of {lines} lines: generation stops at "
                f"{budget} characters (--n, or {LINE_CAP + 1} per line); bound the "
                f"lines with --line_len MIN-MAX or raise --n")
    return None


def rule_flags(args):
    """(flag, value as typed) of every rule flag args set away from its default."""
    for rule in RULES:
        for dest, kw in rule.flags:
            value = getattr(args, dest)
            if value is not None and value != kw.get("default"):
                yield dest, "-".join(map(str, value)) if isinstance(value, tuple) else str(value)


def command_of(args, seed):
    """The sample.py command line that makes the same sample."""
    import shlex
    parts = ["python", "sample.py", "--save_dir", args.save_dir]
    if args.start:      # --start=-x: a start text beginning with '-' is not a flag
        parts += [f"--start={args.start}"] if args.start.startswith("-") else \
            ["--start", args.start]
    defaults = vars(build_parser().parse_args([]))
    if args.lines:
        parts += ["--lines", str(args.lines)]
    if (not args.lines and not args.acrostic) or args.n != defaults["n"]:
        parts += ["--n", str(args.n)]            # with lines, --n still bounds them
    for flag in ("sample", "temperature", "top_k", "stanza"):
        if args.sample == "argmax" and flag in ("temperature", "top_k"):
            continue                    # argmax takes the likeliest: neither changes it
        value = getattr(args, flag)
        if value != defaults[flag]:
            parts += [f"--{flag}", str(value)]
    for flag, value in rule_flags(args):
        if flag == "top_p" and args.sample == "argmax":
            continue                    # the likeliest character is always in the nucleus
        if flag != "max_copy" or int(value) != NoCopy.default:
            parts += [f"--{flag}", value]
    parts += ["--seed", str(seed)]
    return " ".join(shlex.quote(p) for p in parts)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if check_budget(args, MAX_N):
        parser.error(check_budget(args, MAX_N))

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
    texts, notes = [], []
    lead = stanza_lead(args, kept)
    printer = Printer(sys.stdout, args.raw, args.stanza, flush=sys.stdout.isatty(),
                      lead=lead)
    t0 = time.perf_counter()
    for k in range(args.count):
        if k:
            print()
        result = write_one(sampler, args, ids, kept, seed + k, sampler.matcher,
                           on_text=printer)
        printer.end()
        text = result["text"]
        texts.append(text)
        if lines_warning(args, text):
            warn(f"sample.py: warning: sample {k + 1} has " + lines_warning(args, text))
        note = notes_of(result, args.rhyme)
        if note:
            notes.append(f"sample.py: sample {k + 1}: " + "; ".join(note))
    ms = (time.perf_counter() - t0) * 1000 / args.count
    for note in notes:
        print(note, file=sys.stderr)
    _, lines = plan(args)
    print(f"sample.py: {args.count} x {args.n if not lines else str(lines) + ' lines'}"
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
                  + (f" | lines {args.lines}" if args.lines else "")
                  + "".join(f" | {flag} {value}" for flag, value in rule_flags(args)
                            if flag not in ("max_copy", "max_run", "repeat_ngram"))
                  + " ===")
        append_result(args.out, header,
                      "\n\n".join(show(t, args.raw, args.stanza, lead) for t in texts))
    return 0


if __name__ == "__main__":
    run_main(main, "sample.py", fast_exit=True)
