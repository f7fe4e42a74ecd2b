"""The sampling engine: every rule sample.py, serve.py and analysis/evaluate.py apply,
each defined once here, and one loop that walks them and yields characters as they come.

    state, x ──model step (one Session.run)──▶ logits [V]
    rules, in order: each clears what it forbids from `allowed` [V] (bool); a rule whose
        ban would leave nothing gives way at that step, and the engine counts it
    temperature and top-k among the allowed characters ──▶ a distribution
    argmax / weighted / combined ──▶ the next id (a rule may look one step ahead, and the
        rhyme rule may re-draw a line's last character when the line end comes)

A rule is one class below: its flag (argparse), how it is built from the parsed flags,
what it bans, and the promise it keeps on finished text (tests check every rule's promise
on sampled text, in every mode).  sample.py's parser, its command and header, and
serve.py's fields all come from RULES.  No TensorFlow here: the engine is handed a model
with zero_state(), logits(x, state) -> (logits [V], state) and space_id.
"""
import argparse

import numpy as np

from craft import (DEFAULT_MAX_COPY, DEFAULT_MAX_RUN, DEFAULT_REPEAT_NGRAM, LOOP_WINDOW,
                   REPEAT_LIMIT, loop_banned)
from lineplan import LINE_CAP, conflict, plan_of
from utils import UserError, float_in, int_in, non_negative_int

MODES = ("argmax", "weighted", "combined")
SPACE = " "
MAX_N = 20000           # characters one sample may draw (sample.py; serve.py has less)
MAX_COPY = 64           # a copy index of L characters is a table of the text's (L+1)-grams
MAX_NGRAM = 16          # the loop guard's work grows as the square of --repeat_ngram
TRIES = 8               # picks checked one by one at a position before deciding at once


# -------------------------------------------------------------------------- context


class Context:
    """What the rules see at one step: seq (start text + drawn ids, an int64 array), the
    characters in the line being written, the lines drawn so far, and the model's logits
    for the next character (None when looking ahead)."""
    __slots__ = ("seq", "line", "lines", "space", "logits")

    def __init__(self, seq, line, lines, space, logits=None):
        self.seq, self.line, self.lines, self.space = seq, line, lines, space
        self.logits = logits

    def after(self, c):
        """The context one character later (for looking ahead)."""
        if c == self.space:
            return Context(np.append(self.seq, c), 0, self.lines + 1, self.space)
        return Context(np.append(self.seq, c), self.line + 1, self.lines, self.space)


# ---------------------------------------------------------------------------- rules

RULES = []


class Rule:
    """One sampling rule.  Subclasses are registered in RULES, in the order they apply
    (earlier rules win: a later rule gives way when it would leave nothing allowed)."""
    name = ""
    revises = False         # may re-draw the previous character (the engine holds it back)

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        RULES.append(cls)

    # -- flags: the rule's command-line face, also serve.py's fields
    flags = ()              # (dest, argparse kwargs) in the order --help shows them

    @classmethod
    def add_flags(cls, group):
        for dest, kw in cls.flags:
            group.add_argument("--" + dest, **kw)

    @classmethod
    def build(cls, args, sampler):
        """The rule for these parsed flags and this model, or None when it is off."""
        raise NotImplementedError

    # -- what the rule does while sampling
    def begin(self, kept, ids, space):
        """(start text, its ids) as this rule needs them to begin."""
        return kept, ids

    def allow(self, ctx, allowed):
        """allowed [V] bool without what this rule forbids next (a new array, or the same
        one when it forbids nothing)."""
        return allowed

    def forced(self, ctx):
        """The one id this rule will demand at ctx, or None (for looking ahead)."""
        return None

    def revise(self, ctx, c):
        """None, or a [V] mask the previous character must be re-drawn within before c
        is taken."""
        return None

    def report(self):
        """What the rule found, for the result (e.g. the rhyme group it kept)."""
        return {}

    # -- its promise, checked on finished text
    def broken(self, text):
        """What in the finished sample (a str, spaces = line ends, start text included)
        breaks this rule's promise; [] when kept.  Only meaningful when the rule never
        gave way."""
        return []


def _banned(allowed, ids):
    if ids is None or not len(ids):
        return allowed
    out = allowed.copy()
    out[ids] = False
    return out


def _only(allowed, i):
    out = np.zeros_like(allowed)
    out[i] = allowed[i]
    return out


def line_range(value):
    try:
        lo, hi = (int(v) for v in value.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not MIN-MAX, e.g. 5-9")
    if not 1 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"{value}: the shortest line must be at least 1 "
                                         f"character and the longest at least as long, "
                                         f"e.g. 5-9")
    return lo, hi


def _finished_lines(text):
    """The lines of a sample that ended (the last one may have been cut off)."""
    return text.split(SPACE)[:-1]


class LineLength(Rule):
    """--line_len MIN-MAX: no line end before MIN characters, a line end after MAX."""
    name = "line_len"
    flags = (("line_len", dict(type=line_range, default=None, metavar="MIN-MAX",
                               help="keep each line between MIN and MAX characters, e.g. 5-9")),)

    def __init__(self, lo, hi, ranges=None, new=None):
        """Lines of lo to hi characters (line ends not counted); with a line plan
        (--template, --form), line k's range is ranges[k], and only the lines k in `new`
        are drawn (the others are fixed text, which no rule changes)."""
        self.lo, self.hi = lo, hi
        self.ranges, self.new = ranges, new

    @classmethod
    def build(cls, args, sampler):
        plan = plan_of(args)
        if plan is not None:
            return cls(*(args.line_len or (1, LINE_CAP)), plan.lengths(args.line_len),
                       {k for k, line in enumerate(plan.lines) if line.kind == "new"})
        return cls(*args.line_len) if args.line_len else None

    def _range(self, ctx):
        if self.ranges is not None and ctx.lines < len(self.ranges):
            return self.ranges[ctx.lines]
        return self.lo, self.hi

    def forced(self, ctx):
        return ctx.space if ctx.line >= self._range(ctx)[1] else None

    def allow(self, ctx, allowed):
        lo, hi = self._range(ctx)
        if ctx.line >= hi:
            return _only(allowed, ctx.space)
        if ctx.line < lo:
            return _banned(allowed, [ctx.space])
        return allowed

    def broken(self, text):
        if self.ranges is not None:
            return [line for k, line in enumerate(text.split(SPACE)) if k in self.new
                    and not self.ranges[k][0] <= len(line) <= self.ranges[k][1]]
        lines = _finished_lines(text)[1:]       # the first may be the start text's
        return [line for line in lines if not self.lo <= len(line) <= self.hi]


class Acrostic(Rule):
    """--acrostic 春夏秋冬 (藏头): line i begins with the i-th character."""
    name = "acrostic"
    flags = (("acrostic", dict(default=None, metavar="CHARS",
                               help="acrostic (藏头): line i begins with the i-th of these "
                                    "characters, one line each (implies --lines)")),)

    def __init__(self, ids, chars, lead=0):
        """ids: the id of each line's first character, in order; chars: the same
        characters as the user typed them (for the messages); lead: lines before the
        acrostic's (a line plan's first line of its own)."""
        self.ids, self.chars, self.lead = ids, chars, lead

    @classmethod
    def build(cls, args, sampler):
        chars = acrostic_chars(args)
        if not chars:
            return None
        unknown = "".join(dict.fromkeys(c for c in chars if c not in sampler.vocab))
        if unknown:
            raise UserError(f"--acrostic: the model never saw {unknown}, so no line can "
                            f"begin with it; choose other characters", code=2)
        plan = plan_of(args)
        lead = len(plan) - len(chars) if plan is not None else 0
        return cls([sampler.vocab[c] for c in chars], chars, lead)

    def begin(self, kept, ids, space):
        """The acrostic's lines are the drawn ones: a start text that has not ended its
        line gets a line end."""
        if ids[-1] != space:
            return kept + SPACE, list(ids) + [space]
        return kept, ids

    def forced(self, ctx):
        k = ctx.lines - self.lead
        if ctx.line == 0 and 0 <= k < len(self.ids):
            return self.ids[k]
        return None

    def allow(self, ctx, allowed):
        c = self.forced(ctx)
        return allowed if c is None else _only(allowed, c)

    def broken(self, text):
        lines = text.split(SPACE)[-len(self.chars):]
        return [f"line {i + 1} {line!r} does not begin with {c}"
                for i, (c, line) in enumerate(zip(self.chars, lines)) if line[:1] != c]


class NoCopy(Rule):
    """--max_copy L: never more than L characters of the training text in a row."""
    name = "max_copy"
    flags = (("max_copy", dict(type=int_in(0, MAX_COPY), default=None,
                               help=f"never repeat more than this many characters of the "
                                    f"training text verbatim (default {DEFAULT_MAX_COPY}; "
                                    f"0 = off; at most {MAX_COPY})")),)
    default = DEFAULT_MAX_COPY

    def __init__(self, index, sampler=None):
        self.index, self.sampler = index, sampler

    @classmethod
    def build(cls, args, sampler):
        if sampler.index is None:
            return None
        return cls(sampler.index, sampler)

    def allow(self, ctx, allowed):
        return _banned(allowed, self.index.banned_after(ctx.seq))

    def broken(self, text):
        matcher = self.sampler.matcher if self.sampler is not None else None
        if matcher is None:
            return []
        vocab = self.sampler.vocab
        run, at = matcher.longest_run([vocab[c] for c in text if c in vocab])
        return [f"{run} characters copied"] if run > self.index.length else []


class LoopGuard(Rule):
    """--max_run and --repeat_ngram: the sample may not loop (craft.loop_banned)."""
    name = "loop_guard"
    flags = (
        ("max_run", dict(type=int_in(0, MAX_N), default=DEFAULT_MAX_RUN,
                         help="loop guard: a character may not come more than this many "
                              "times in a row, as in 不不不不 (0 = off)")),
        ("repeat_ngram", dict(type=lambda v: ngram_size(v), default=DEFAULT_REPEAT_NGRAM,
                              metavar="N",
                              help=f"loop guard: a run of N characters (line ends "
                                   f"included) may come at most twice within the last "
                                   f"{LOOP_WINDOW:,} characters, so a refrain line may "
                                   f"come back once but the same line cannot loop (0 = "
                                   f"off, else 2 to {MAX_NGRAM})")))

    def __init__(self, repeat_ngram, max_run):
        self.repeat_ngram, self.max_run = repeat_ngram, max_run

    @classmethod
    def build(cls, args, sampler):
        if not (args.repeat_ngram or args.max_run):
            return None
        return cls(args.repeat_ngram, args.max_run)

    def allow(self, ctx, allowed):
        return _banned(allowed, loop_banned(ctx.seq, self.repeat_ngram, self.max_run,
                                            ctx.space))

    def broken(self, text):
        from craft import longest_char_run
        found = []
        if self.max_run and longest_char_run(text.replace(SPACE, "")) > self.max_run:
            found.append(f"a character more than {self.max_run} times in a row")
        N = self.repeat_ngram
        if N:
            counts = {}
            for i in range(len(text) - N + 1):
                gram = text[i:i + N]
                counts[gram] = counts.get(gram, 0) + 1
            found += [f"{g!r} {k} times" for g, k in counts.items() if k > REPEAT_LIMIT]
        return found


def ngram_size(value):
    v = non_negative_int(value)
    if v == 1 or v > MAX_NGRAM:
        raise argparse.ArgumentTypeError(f"must be 0 (off) or from 2 to {MAX_NGRAM}, not {v}")
    return v


class Rhyme(Rule):
    """--rhyme: every line ends in one 十三辙 group (given, or the first line's); a line
    end whose line does not is taken after re-drawing the line's last character among
    rhyming ones, from the distribution that drew it."""
    name = "rhyme"
    revises = True
    flags = (("rhyme", dict(default=None, type=lambda v: rhyme_flag(v),
                            help="make line ends rhyme: 'auto' (the first line's rhyme), a "
                                 "十三辙 group such as 言前, or a pinyin final such as an")),)

    def __init__(self, groups, target=None, drawn=None):
        """groups: each vocabulary id's group; drawn: with a line plan, the lines whose
        end is drawn (the others are fixed text, which no rule changes)."""
        self.groups, self.target, self.drawn = groups, target, drawn
        self.mask = None if target is None else groups == target

    @classmethod
    def build(cls, args, sampler):
        if not args.rhyme:
            return None
        target = None if args.rhyme == "auto" else args.rhyme
        plan = plan_of(args)
        if plan is None:
            return cls(sampler.rhyme_groups(), target)
        if target is None:          # auto: the rhyme of the first fixed line that has one
            from craft import rhyme_group
            target = next((rhyme_group(line.text[-1]) for line in plan.lines
                           if line.kind == "fixed" and rhyme_group(line.text[-1])), None)
        return cls(sampler.rhyme_groups(), target,
                   {k for k, line in enumerate(plan.lines) if line.kind == "new"})

    def revise(self, ctx, c):
        if c != ctx.space or ctx.line == 0:
            return None
        group = self.groups[ctx.seq[-1]]
        if self.target is None:
            if group:
                self.target, self.mask = group, self.groups == group
            return None
        return None if group == self.target else self.mask

    def report(self):
        return {"target": self.target}

    def broken(self, text):
        from craft import rhyme_group
        if self.drawn is not None:
            lines = [line for k, line in enumerate(text.split(SPACE)) if k in self.drawn]
        else:
            lines = [line for line in _finished_lines(text)[1:] if line]
        return [line for line in lines if rhyme_group(line[-1]) != self.target]


class Nucleus(Rule):
    """--top_p P (nucleus sampling, Holtzman et al. 2019): draw only among the most
    probable allowed characters whose probabilities, at the sampling temperature, add up
    to P; the long tail of unlikely characters, where a weak model's word salad comes
    from, is cut while the likely ones keep their proportions."""
    name = "top_p"
    flags = (("top_p", dict(type=float_in(0.01, 1.0), default=1.0,
                            help="draw only among the most probable characters that make "
                                 "up this share of the probability (1 = all; 0.9 cuts the "
                                 "unlikely tail)")),)

    def __init__(self, p, temperature):
        self.p, self.temperature = p, temperature

    @classmethod
    def build(cls, args, sampler):
        return cls(args.top_p, args.temperature) if args.top_p < 1 else None

    def allow(self, ctx, allowed):
        if ctx.logits is None:
            return allowed
        z = np.where(allowed, ctx.logits / self.temperature, -np.inf)
        p = np.exp(z - z.max())
        order = np.argsort(-p, kind="stable")
        mass = np.cumsum(p[order]) / p.sum()
        keep = order[:int(np.searchsorted(mass, self.p)) + 1]
        if len(keep) == int(allowed.sum()):
            return allowed
        out = np.zeros_like(allowed)
        out[keep] = True
        return out


def rhyme_flag(value):
    """--rhyme: 'auto', a 十三辙 group, or a final (an) -> 'auto' or the group's name."""
    from craft import FINAL_ALIASES, FINAL_TO_GROUP, THIRTEEN
    if value == "auto" or value in THIRTEEN:
        return value
    final = FINAL_ALIASES.get(value.lower(), value.lower())
    if final in FINAL_TO_GROUP:
        return FINAL_TO_GROUP[final]
    raise argparse.ArgumentTypeError(
        f"{value!r}: use auto, one of the 13 groups ({' '.join(THIRTEEN)}) or a pinyin "
        f"final such as an, ang, ou")


# --------------------------------------------------------------------------- engine


def build_rules(args, sampler):
    """The rules these flags turn on, in RULES order."""
    return [r for r in (cls.build(args, sampler) for cls in RULES) if r is not None]


def acrostic_chars(args):
    """--acrostic's characters, spaces left out ('' when off): one line each."""
    return "".join((args.acrostic or "").split())


def plan(args):
    """(characters the sample may draw at most, lines to stop after or None)."""
    line_plan = plan_of(args)
    if line_plan is not None:
        return max(args.n, line_plan.bound(args.line_len)), len(line_plan)
    lines = len(acrostic_chars(args)) or args.lines
    if not lines:
        return args.n, None
    return max(args.n, lines * ((args.line_len[1] if args.line_len else LINE_CAP) + 1)), lines


def check_budget(args, limit, where=""):
    """None, or what is wrong when the sample args ask for more than limit characters
    (plan: --n, or with --lines or --acrostic every line at its longest)."""
    problem = conflict(args)
    if problem:
        return problem
    lines = len(acrostic_chars(args))
    if args.acrostic and args.lines and args.lines != lines:
        return (f"--acrostic writes one line per character ({lines}); leave out --lines "
                f"or make it {lines}")
    budget, lines = plan(args)
    if budget <= limit:
        return None
    if not lines or budget == args.n:
        return f"--n {args.n:,} characters; at most {limit:,}{where}"
    if plan_of(args) is not None:
        return (f"--{plan_of(args).flag}: {lines} lines of up to {budget - lines:,} "
                f"characters in all; at most {limit:,}{where}: fewer or shorter lines")
    what = f"--acrostic ({lines} lines)" if args.acrostic else f"--lines {lines}"
    return (f"{what} x --line_len up to "
            f"{args.line_len[1] if args.line_len else LINE_CAP} (+1 line end) may draw "
            f"{budget:,} characters; at most {limit:,}{where}: fewer lines or a lower MAX")


def _pick(logits, allowed, weighted, temperature, top_k, rng):
    """The next id among the allowed ones, and the distribution it came from (None for
    argmax).  Weighted draws use one rng.random() per character, as rng.choice does."""
    z = np.where(allowed, logits, -np.inf)
    if not weighted:
        return int(np.argmax(z)), None
    z = z / temperature
    if 0 < top_k < int(allowed.sum()):
        kth = np.partition(z, -top_k)[-top_k]
        z = np.where(z < kth, -np.inf, z)
    p = np.exp(z - z.max())
    p /= p.sum()
    return _draw(p, rng), p


def _draw(p, rng):
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    return int(cdf.searchsorted(rng.random(), side="right"))


class Engine:
    """One sample: iterate for the ids as they become final (with a revising rule on,
    each one step late, since the rhyme rule may still change a line's last character).
    Afterwards `gave_way` counts, per rule name, the steps at which a rule could not be
    kept because the rules before it left nothing else.

    plan, when given (a line plan, lineplan.LinePlan.ids()): line k of the sample is
    plan[k] = (kind, ids, ref): 'fixed' ids verbatim, then its line end; 'new' beginning
    with ids, then drawn; 'same' the text line ref ended with.  Fixed characters go
    through the model like drawn ones (what follows is conditioned on them) but past the
    rules, which apply to drawn characters only."""

    def __init__(self, model, start, rules, n, lines=None, mode="weighted",
                 temperature=1.0, top_k=0, seed=0, plan=None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.model, self.rules, self.plan = model, rules, plan
        self.start, self.n, self.lines = list(start), n, lines
        self.mode, self.temperature, self.top_k = mode, temperature, top_k
        self.rng = np.random.default_rng(seed)
        self.gave_way = {}
        self.space = model.space_id
        self.lookahead = any(type(r).forced is not Rule.forced for r in rules)
        self.hold = any(r.revises for r in rules)

    def _gave_way(self, rule):
        self.gave_way[rule.name] = self.gave_way.get(rule.name, 0) + 1

    def allowed(self, ctx, V, skip=None, count=True):
        """What the rules (but `skip`) leave allowed at ctx, each in turn."""
        ok = np.ones(V, dtype=bool)
        for rule in self.rules:
            if rule is skip:
                continue
            narrower = rule.allow(ctx, ok)
            if narrower is not ok:
                if narrower.any():
                    ok = narrower
                elif count:
                    self._gave_way(rule)
        return ok

    def planned(self, ctx, starts):
        """The id the line plan fixes at ctx, or None where the next character is drawn.
        starts[k]: where line k begins in ctx.seq."""
        if self.plan is None or ctx.lines >= len(self.plan):
            return None
        kind, ids, ref = self.plan[ctx.lines]
        if kind == "same":                 # the text line ref ended with (revised or not)
            ids = ctx.seq[starts[ref]:starts[ref + 1] - 1]
        if ctx.line < len(ids):
            return int(ids[ctx.line])
        return None if kind == "new" else self.space

    def keeps_ahead(self, ctx, c, V):
        """False when a character a rule demands right after c (a line end at the longest
        line, the next acrostic character) would be banned there by another rule.  Where
        the line plan fixes the next character, no rule is asked there."""
        nxt = ctx.after(c)
        if self.plan is not None and nxt.lines < len(self.plan):
            kind, ids, _ = self.plan[nxt.lines]
            if kind != "new" or nxt.line < len(ids):
                return True
        for rule in self.rules:
            f = rule.forced(nxt)
            if f is not None:
                return bool(self.allowed(nxt, V, skip=rule, count=False)[f])
        return True

    def _choose(self, p, weighted, ok, seq):
        """Draw from p (its argmax when not weighted), again without each pick ok()
        refuses; if none passes, the last pick (the rules cannot all be met).

        At most TRIES picks are checked one by one, then the question is decided for the
        position at once.  A check looks one character ahead through every rule, and a
        rule's ban there falls on characters the recent text holds (the loop guard looks
        at its last LOOP_WINDOW characters; the no-copy rule at a few continuations of the
        training text); a character the window does not hold is the least restricted
        one.  So after TRIES refusals the most probable such fresh character is checked:
        refused too, no pick can pass (the rule gives way, counted, as before); else the
        draw goes on among the fresh characters.  Each position thus costs at most
        2 * TRIES + 1 checks, where it once tried every character of the vocabulary
        (the loop guard refusing every short line end: 250 ms a character at V = 3,000)."""
        p = p.copy()
        c = None
        for tries in range(2 * TRIES + 1):
            if tries == TRIES:
                fresh = np.ones(len(p), dtype=bool)
                fresh[seq[-LOOP_WINDOW:]] = False
                q = p * fresh
                if q.sum() <= 0 or not ok(int(np.argmax(q))):
                    return c
                p = q
            total = p.sum()
            if total <= 0:
                return c
            c = _draw(p / total, self.rng) if weighted else int(np.argmax(p))
            if ok(c):
                return c
            p[c] = 0.0
        return c

    def __iter__(self):
        m, space = self.model, self.space
        state = m.zero_state()
        for i in self.start[:-1]:                 # warm up from the zero state
            _, state = m.logits(i, state)
        seq = np.full(len(self.start) + self.n + 1, -1, dtype=np.int64)
        pos = len(self.start)
        seq[:pos] = self.start
        ends = np.flatnonzero(seq[:pos] == space)
        ctx = Context(seq[:pos], pos - 1 - (int(ends[-1]) if len(ends) else -1), 0, space)
        x, prev = self.start[-1], None
        starts = [pos]                            # where each line since the start begins
        while pos - len(self.start) < self.n and (self.lines is None
                                                  or ctx.lines < self.lines):
            logits, new_state = m.logits(x, state)
            c = self.planned(ctx, starts)
            if c is not None:                     # fixed text: no rule, no draw, no re-draw
                prev = None
            else:
                c, new_state, prev = self._drawn(ctx, logits, new_state, x, prev, seq, pos)
            if self.hold and pos > len(self.start):
                yield int(seq[pos - 1])
            elif not self.hold:
                yield c
            state, x = new_state, c
            seq[pos] = c
            pos += 1
            if c == space:
                starts.append(pos)
            ctx = Context(seq[:pos], 0 if c == space else ctx.line + 1,
                          ctx.lines + (c == space), space)
        if self.hold and pos > len(self.start):
            yield int(seq[pos - 1])

    def _drawn(self, ctx, logits, new_state, x, prev, seq, pos):
        """One drawn character at ctx: (the id, the state after feeding x, what a later
        re-draw needs).  A revising rule may re-draw seq[pos - 1] (and the state)."""
        m, space = self.model, self.space
        V = len(logits)
        ctx.logits = logits
        ok = self.allowed(ctx, V)
        weighted = self.mode == "weighted" or (self.mode == "combined" and x == space)
        c, p = _pick(logits, ok, weighted, self.temperature, self.top_k, self.rng)
        if p is None and (self.hold or self.lookahead):
            p = np.where(ok, np.exp(logits - logits[ok].max()), 0.0)   # for re-draws
            p /= p.sum()
        if self.lookahead and not self.keeps_ahead(ctx, c, V):
            c = self._choose(p, weighted, lambda c: self.keeps_ahead(ctx, c, V),
                             ctx.seq)
        for rule in self.rules:
            mask = rule.revise(ctx, c)
            if mask is None or prev is None:
                continue
            p_prev, prev_state, prev_weighted, prev_ctx = prev
            q = p_prev * mask
            if q.sum() <= 0:
                self._gave_way(rule)
                continue
            last = self._choose(q / q.sum(), prev_weighted, lambda d: bool(
                self.allowed(prev_ctx.after(d), V, count=False)[c]), prev_ctx.seq)
            seq[pos - 1] = last
            _, new_state = m.logits(last, prev_state)
        return c, new_state, (p, new_state, weighted, ctx)   # new_state: what c is fed into
