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

from craft import DEFAULT_MAX_COPY
from engine import MAX_N, SPACE, check_budget, plan
from lineplan import plan_of
from sampler import (Sampler, build_parser, copy_warning, lines_warning, notes_of, rule_flags,
                     stanza_lead, start_ids, write_one)
from utils import UserError, run_main


def ends_stanza(k, stanza=0, lead=0, breaks=None):
    """Whether a blank line follows the k-th line (k = 1, 2, ...): k is one of the line
    plan's breaks, or else every `stanza` lines after the `lead` first ones."""
    if breaks is not None:
        return k in breaks
    return bool(stanza) and (k - lead) % stanza == 0


def show(text, raw, stanza=0, lead=0, breaks=None):
    """The sample as printed: a line per line, a blank line after the `lead` first
    lines and then after every `stanza` lines (after the lines numbered in `breaks`,
    when given: a line plan's stanzas)."""
    if raw:
        return text
    lines = text.split(SPACE)
    out = []
    for k, line in enumerate(lines):
        out.append(line)
        if k + 1 < len(lines) and ends_stanza(k + 1, stanza, lead, breaks):
            out.append("")
    return "\n".join(out)


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


class Printer:
    """Prints a sample as it is drawn, exactly as show() prints it whole: a line end
    waits until a character follows it (the text is stripped), then becomes a line
    break (a space with --raw), with a blank line after every --stanza lines (or the
    line plan's `breaks`)."""

    def __init__(self, out, raw=False, stanza=0, flush=False, lead=0, breaks=None):
        self.out, self.raw, self.stanza, self.flush = out, raw, stanza, flush
        self.lead, self.breaks = lead, breaks
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
                if not self.raw and ends_stanza(self.lines, self.stanza, self.lead,
                                                self.breaks):
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
    line_plan = plan_of(args)
    breaks = set(line_plan.breaks) if line_plan is not None else None
    printer = Printer(sys.stdout, args.raw, args.stanza, flush=sys.stdout.isatty(),
                      lead=lead, breaks=breaks)
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
                  + "".join(f" | {flag} {getattr(args, flag)}" for flag in ("template", "form")
                            if getattr(args, flag) is not None)
                  + "".join(f" | {flag} {value}" for flag, value in rule_flags(args)
                            if flag not in ("max_copy", "max_run", "repeat_ngram"))
                  + " ===")
        append_result(args.out, header,
                      "\n\n".join(show(t, args.raw, args.stanza, lead, breaks)
                                   for t in texts))
    return 0


if __name__ == "__main__":
    run_main(main, "sample.py", fast_exit=True)
