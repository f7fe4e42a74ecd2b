"""Line plans: what a sample must be, line by line (--template and --form).

    --template "春风又绿江南岸/*/=1//从前*5-7/*"
        one entry per line, '/' between lines, an empty entry ('//') a stanza break:
        TEXT        a fixed line, kept verbatim (a locked line on the page)
        *, *5-7, *6 a new line (of 5 to 7 characters, of 6; a bare * takes --line_len,
                    else 1 to engine.LINE_CAP)
        TEXT*5-7    a new line that begins with TEXT (at least one character drawn)
        =K          the same text as line K (1 = the first), drawn once: a refrain
    --form "verse chorus verse chorus bridge chorus"
        song sections, each NAME, NAME:LINES or NAME:LINESxLEN (chorus:4x6-9): every verse,
        pre-chorus, bridge, intro and outro is new text, the chorus is written the first
        time and then repeated verbatim (the hook); each section is a stanza.  --start,
        when given, begins the first line.

A form is compiled into the same plan as a template, so the engine knows one thing: for
each line, fixed ids, a new line (a prefix and a length range) or a copy of an earlier
line.  The engine feeds fixed text through the model (the lines drawn after it follow
it) without asking the rules; the rules apply to drawn characters only.  No TensorFlow
here.
"""
import argparse
import re

LINE_CAP = 40           # a new line without a length: 1 to this many (as engine.LINE_CAP)
MAX_PLAN_LINES = 1000   # entries a plan may have (the character budget bounds it further)
MARKS = "*=/"           # the template's own marks: no line of lyrics holds them

# sections of a song: canonical name -> (lines by default, repeated verbatim?)
SECTIONS = {"verse": (4, False), "pre": (2, False), "chorus": (4, True),
            "bridge": (2, False), "intro": (2, False), "outro": (2, False)}
SECTION_NAMES = {"verse": "verse", "主歌": "verse", "pre": "pre", "prechorus": "pre",
                 "pre-chorus": "pre", "预副歌": "pre", "导歌": "pre", "chorus": "chorus",
                 "hook": "chorus", "副歌": "chorus", "bridge": "bridge", "桥段": "bridge",
                 "intro": "intro", "outro": "outro", "尾声": "outro"}
FORM_LINE_LEN = (5, 9)  # a section line's length when neither the form nor --line_len says


class PlanLine:
    """One line of a plan: kind 'fixed' (text verbatim), 'new' (drawn, beginning with
    text, of length lo..hi when given) or 'same' (the text of line ref, 0-based)."""
    __slots__ = ("kind", "text", "length", "ref")

    def __init__(self, kind, text="", length=None, ref=None):
        self.kind, self.text, self.length, self.ref = kind, text, length, ref

    def __eq__(self, other):
        return isinstance(other, PlanLine) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self):
        return f"PlanLine({self.kind!r}, {self.text!r}, {self.length}, {self.ref})"

    def spec(self):
        """The line as a template entry."""
        if self.kind == "fixed":
            return self.text
        if self.kind == "same":
            return f"={self.ref + 1}"
        lo_hi = "" if self.length is None else (
            str(self.length[0]) if self.length[0] == self.length[1]
            else f"{self.length[0]}-{self.length[1]}")
        return f"{self.text}*{lo_hi}"


class LinePlan:
    """The lines a sample must have and the stanza breaks between them (breaks: the
    numbers k of lines after which a blank line comes, 0 < k < len(lines)).  spec is the
    text the user typed (--template or --form), for the command that remakes the sample."""

    def __init__(self, lines, breaks=(), spec=None, flag="template"):
        self.lines, self.breaks = list(lines), sorted(set(breaks))
        self.flag = flag
        self.spec = spec if spec is not None else self.template()

    def __len__(self):
        return len(self.lines)

    def __str__(self):
        return self.spec

    def template(self):
        """The plan as a --template value (a form's compiled plan included)."""
        out, breaks = [], set(self.breaks)
        for k, line in enumerate(self.lines):
            if k in breaks:
                out.append("")
            out.append(line.spec())
        return "/".join(out)

    def lengths(self, line_len=None):
        """(lo, hi) of every line: a fixed or copied line's own length, a new line's range
        (its own, else line_len, else 1 to LINE_CAP), widened so that a new line's drawn
        part is at least one character."""
        out = []
        for line in self.lines:
            if line.kind == "fixed":
                out.append((len(line.text), len(line.text)))
            elif line.kind == "same":
                out.append(out[line.ref])
            else:
                lo, hi = line.length or line_len or (1, LINE_CAP)
                least = len(line.text) + 1
                out.append((max(lo, least), max(hi, least)))
        return out

    def bound(self, line_len=None):
        """Characters the plan draws at most, line ends included."""
        return sum(hi + 1 for _, hi in self.lengths(line_len))

    def ids(self, vocab):
        """Each line as the engine takes it: (kind, ids of its text, ref).  A character
        the model never saw cannot be kept verbatim: UserError (a usage error)."""
        from utils import UserError
        unknown = "".join(dict.fromkeys(c for line in self.lines for c in line.text
                                        if c not in vocab))
        if unknown:
            raise UserError(f"--{self.flag}: the model never saw {unknown}, so it cannot "
                            f"write it; change those lines", code=2)
        return [(line.kind, [vocab[c] for c in line.text], line.ref) for line in self.lines]

    def as_json(self, line_len=None):
        """Each line's kind, text (a new line's beginning), length range and ref, for the
        page (which builds the template of a redo from it)."""
        return [{"kind": line.kind, "text": line.text, "lo": lo, "hi": hi, "ref": line.ref}
                for line, (lo, hi) in zip(self.lines, self.lengths(line_len))]


def _length(value, where):
    """'7' -> (7, 7); '5-9' -> (5, 9)."""
    m = re.fullmatch(r"(\d{1,4})(?:-(\d{1,4}))?", value)
    lo, hi = (int(m.group(1)), int(m.group(2) or m.group(1))) if m else (0, 0)
    if not m or not 1 <= lo <= hi or hi > LINE_CAP * 10:
        raise argparse.ArgumentTypeError(
            f"{where}: {value!r} is not a line length: N or MIN-MAX, e.g. 7 or 5-9 "
            f"(at least 1, at most {LINE_CAP * 10})")
    return lo, hi


def parse_template(value):
    """argparse type of --template: the LinePlan it describes."""
    lines, breaks = [], []
    for entry in value.split("/"):
        entry = entry.strip()
        where = f"line {len(lines) + 1}"
        if not entry:
            if lines and (not breaks or breaks[-1] != len(lines)):
                breaks.append(len(lines))
            continue
        if len(lines) == MAX_PLAN_LINES:
            raise argparse.ArgumentTypeError(f"at most {MAX_PLAN_LINES} lines")
        if any(c.isspace() for c in entry):
            raise argparse.ArgumentTypeError(
                f"{where} {entry!r} has a space in it: lines are split by /")
        if entry.startswith("="):
            k = entry[1:]
            if not k.isdigit() or not 1 <= int(k) <= len(lines):
                raise argparse.ArgumentTypeError(
                    f"{where}: {entry!r} must name an earlier line, =1 to ={len(lines)}"
                    if lines else f"{where}: {entry!r}: the first line cannot repeat one")
            ref = int(k) - 1
            while lines[ref].kind == "same":        # a copy of a copy: of the first one
                ref = lines[ref].ref
            lines.append(PlanLine("same", ref=ref))
        elif "*" in entry:
            text, _, length = entry.partition("*")
            if "*" in length or "=" in text:
                raise argparse.ArgumentTypeError(
                    f"{where} {entry!r}: a new line is *, *MIN-MAX or TEXT*MIN-MAX")
            lines.append(PlanLine("new", text, _length(length, where) if length else None))
        elif "=" in entry:
            raise argparse.ArgumentTypeError(
                f"{where} {entry!r}: = begins a repeat, =K (K an earlier line)")
        else:
            lines.append(PlanLine("fixed", entry))
    if not lines:
        raise argparse.ArgumentTypeError(
            "no lines: give one entry per line, e.g. '春风又绿江南岸/*/*/*'")
    return LinePlan(lines, [b for b in breaks if b < len(lines)], spec=value)


class Form:
    """A parsed --form: its sections [(name, lines or None, length or None)] and the
    text as typed."""

    def __init__(self, sections, spec):
        self.sections, self.spec = sections, spec

    def __str__(self):
        return self.spec

    def plan(self, line_len=None, prefix=""):
        """The LinePlan of the form: each section's lines new (the chorus's first time)
        or copies (every later chorus), a stanza break after each section, the first
        line beginning with prefix."""
        lines, breaks, chorus = [], [], None
        default_len = line_len or FORM_LINE_LEN
        for name, count, length in self.sections:
            default_count, repeated = SECTIONS[name]
            if repeated and chorus is not None:
                lines += [PlanLine("same", ref=k) for k in chorus]
            else:
                first = len(lines)
                lines += [PlanLine("new", length=length or default_len)
                          for _ in range(count or default_count)]
                if repeated:
                    chorus = range(first, len(lines))
            breaks.append(len(lines))
        if prefix:
            lines[0] = PlanLine("new", prefix, lines[0].length)
        return LinePlan(lines, breaks[:-1], spec=self.spec, flag="form")


def parse_form(value):
    """argparse type of --form: sections by name (verse pre chorus bridge intro outro,
    or 主歌 预副歌 副歌 桥段 尾声), each optionally :LINES or :LINESxLEN."""
    sections, chorus = [], None
    tokens = [t for t in re.split(r"[\s,，、]+", value) if t]
    if not tokens:
        raise argparse.ArgumentTypeError(
            "no sections: e.g. 'verse chorus verse chorus bridge chorus'")
    for token in tokens:
        name, _, size = token.partition(":")
        key = SECTION_NAMES.get(name.lower())
        if key is None:
            raise argparse.ArgumentTypeError(
                f"{name!r} is not a section: use {', '.join(SECTIONS)} (or 主歌 预副歌 副歌 "
                f"桥段 尾声), each optionally :LINES or :LINESxLEN, e.g. chorus:4x6-9")
        count = length = None
        if size:
            m = re.fullmatch(r"(\d{1,3})(?:[x×](.+))?", size)
            if not m or not 1 <= int(m.group(1)) <= 100:
                raise argparse.ArgumentTypeError(
                    f"{token!r}: after the colon, the number of lines (1 to 100), "
                    f"optionally x and a length: {name}:4 or {name}:4x6-9")
            count = int(m.group(1))
            length = _length(m.group(2), token) if m.group(2) else None
        if SECTIONS[key][1]:
            if chorus is not None and size and (count, length) != chorus:
                raise argparse.ArgumentTypeError(
                    f"{token!r}: the chorus is the same text every time; give its size "
                    f"once, at its first place")
            if chorus is None:
                chorus = (count, length)
        sections.append((key, count, length))
    if len(tokens) > 100:
        raise argparse.ArgumentTypeError("at most 100 sections")
    return Form(sections, value)


def plan_of(args, prefix=None):
    """The LinePlan --template or --form asks for, else None.  A form's first line begins
    with prefix (default: the --start text as typed, for bounds; the sampler passes the
    start text as the model keeps it)."""
    if getattr(args, "template", None) is not None:
        return args.template
    if getattr(args, "form", None) is not None:
        return args.form.plan(args.line_len,
                              (args.start or "").strip() if prefix is None else prefix)
    return None


def conflict(args):
    """What in args cannot go with --template or --form, or None."""
    plan = plan_of(args)
    if plan is None:
        return None
    flag = "--" + plan.flag
    if args.lines:
        return f"{flag} says how many lines there are; leave out --lines"
    if args.template is not None and args.start:
        return ("--template says every line: write the start text into it, as a fixed "
                "line or as a new line's beginning (从前*), and leave out --start")
    if args.form is not None and any(c in "\n，。、？！；：,.?!;:…" or c.isspace()
                                     for c in args.start.strip()):
        return ("with --form, --start is the beginning of the first line: leave out its "
                "line ends and punctuation")
    if args.stanza and (args.form is not None or plan.breaks):
        return f"{flag} puts its own blank lines between stanzas; leave out --stanza"
    chars = "".join((args.acrostic or "").split())
    if chars:
        if args.form is not None:
            return ("--form repeats its chorus, which an acrostic (one new line per "
                    "character) cannot: leave out one of them")
        lead = len(plan) - len(chars)
        if lead not in (0, 1):
            return (f"--acrostic has {len(chars)} characters (one line each) and "
                    f"--template {len(plan)} lines: make them as many (or one more "
                    f"template line, a first line of its own)")
        for k, line in enumerate(plan.lines[lead:]):
            if line.kind == "same" and (line.ref < lead or chars[line.ref - lead] != chars[k]):
                return (f"--template line {k + lead + 1} repeats line {line.ref + 1}, "
                        f"which does not begin with {chars[k]}, the acrostic's character "
                        f"for it")
            if line.text and line.text[0] != chars[k]:
                return (f"--template line {k + lead + 1} {line.text!r} does not begin with "
                        f"{chars[k]}, the acrostic's character for it")
    return None
