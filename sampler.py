"""Drawing lyrics from a saved model, for every front end (sample.py, serve.py,
analysis/evaluate.py, the bench): the sampling flags (build_parser: one definition, so a
request to the page is checked by the command line's own rules), the Sampler (a model
restored into the batch-1 graph), start ids, the no-copy index, write_one (one sample
through the engine), the warnings and the command that reproduces a sample.
"""
import argparse
import os
import sys
import zipfile

import numpy as np

from engine import (LINE_CAP, MAX_N, MODES, RULES, SPACE, Engine, NoCopy, acrostic_chars,
                    build_rules, plan)
from lineplan import LinePlan, PlanLine, parse_form, parse_template, plan_of
from modeldir import (find_checkpoints, first_intact_checkpoint, load_saved, restore_weights,
                      saved_corpus)
from tfenv import import_tensorflow, session_config
from utils import ArgumentParser, HelpFormatter, UserError, float_in, int_in


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
    shape = g.add_mutually_exclusive_group()
    shape.add_argument("--template", type=parse_template, default=None, metavar="LINES",
                       help="the sample line by line, '/' between lines, '//' a stanza "
                            "break: a fixed line is kept verbatim, * is a new line (*5-9: "
                            "of 5 to 9 characters), TEXT* a new line beginning with TEXT, "
                            "=K the same as line K; e.g. '春风又绿江南岸/*/*/=1'")
    shape.add_argument("--form", type=parse_form, default=None, metavar="SECTIONS",
                       help="a song form, e.g. 'verse chorus verse chorus bridge chorus': "
                            "each verse, pre, bridge, intro, outro new, the chorus written "
                            "once and repeated verbatim, a stanza each; NAME:LINES or "
                            "NAME:LINESxLEN sets a section's size (verse:4x6-9); by "
                            "default verse and chorus 4 lines, the others 2, lines of "
                            "--line_len, else 5-9; --start begins the first line")
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


def stanza_breaks(args, kept, n_lines):
    """The numbers k of lines after which a blank line comes, in a sample of n_lines
    lines: the line plan's own (--template, --form), else every --stanza lines after the
    stanza_lead first ones."""
    line_plan = plan_of(args)
    if line_plan is not None:
        return [k for k in line_plan.breaks if k < n_lines]
    if not args.stanza:
        return []
    lead = stanza_lead(args, kept)
    return [k for k in range(1, n_lines) if (k - lead) % args.stanza == 0]


def card_plan(args, kept, n_lines, line_plan=None):
    """The line plan a sample's lines are redone by (the page's lock and redo): the plan
    it was drawn by, else one that says what it was: the start text's whole lines fixed,
    a line the start text began new with that beginning, every other line new (of
    --line_len when given).  Its breaks are the sample's stanza breaks."""
    if line_plan is not None:
        return line_plan
    start = kept.strip(SPACE).split(SPACE) if kept.strip(SPACE) else []
    whole = len(start) if acrostic_chars(args) or kept.endswith(SPACE) else len(start) - 1
    lines = [PlanLine("fixed", text) for text in start[:max(whole, 0)]]
    if start and len(start) > whole:
        lines.append(PlanLine("new", start[-1]))
    lines += [PlanLine("new") for _ in range(n_lines - len(lines))]
    return LinePlan(lines[:n_lines], stanza_breaks(args, kept, n_lines))


def write_one(sampler, args, ids, kept, seed, matcher=None, on_text=None):
    """One sample as the CLI makes it (and serve.py, which must make the same), drawn by
    the engine with the rules args turn on; on_text(str) is called with the start text
    and then with each character as it is drawn.  Returns a dict with the text, the
    rhyme target, the rules that gave way, and the figures sample.py prints."""
    rules = build_rules(args, sampler)
    line_plan = plan_of(args, kept if args.form is not None else None)
    if line_plan is not None:        # the plan says every line, a form's start text too
        kept, ids = "", [sampler.space_id]
    for rule in rules:
        kept, ids = rule.begin(kept, ids, sampler.space_id)
    budget, lines = plan(args)
    engine = Engine(sampler, ids, rules, budget, lines, args.sample, args.temperature,
                    args.top_k, seed,
                    plan=line_plan.ids(sampler.vocab) if line_plan is not None else None)
    out = []
    if on_text is not None:
        on_text(kept)
    for c in engine:
        out.append(c)
        if on_text is not None:
            on_text(sampler.chars[c])
    text = (kept + sampler.decode(out)).strip()
    result = {"text": text, "seed": seed, "target": None, "rhyme_rate": None,
              "longest_run": None, "longest_run_text": None, "gave_way": engine.gave_way,
              "plan": line_plan}
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
    for flag in ("template", "form"):
        if getattr(args, flag) is not None:
            parts += [f"--{flag}", str(getattr(args, flag))]
    if (not args.lines and not args.acrostic and plan_of(args) is None) or \
            args.n != defaults["n"]:
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


def seed_int(s):
    """argparse type of a random seed: a whole number 0 .. 2**62."""
    v = int(s) if s.isdigit() else None
    if v is None or v > 2 ** 62:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to "
                                         f"{2 ** 62:,}, not {s!r}")
    return v
