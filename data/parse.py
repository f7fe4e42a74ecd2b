"""Clean raw lyrics (data/origin.txt) into the training text (data/lyrics.txt).

The article's rule: every run of whitespace becomes one space, every character outside
U+4E00-U+9FA5 (and the space) is dropped, the ends are stripped.  So a line of lyrics
ends with a space, and the space is the model's "line end".

What this adds, because real lyric files are messy:
  * encodings: UTF-8 (with or without BOM), UTF-16/32 with BOM, GB18030/GBK/GB2312 and
    Big5, told apart automatically (`--encoding` forces one);
  * LRC time tags ([01:23.45]) and LRC header tags ([ti:...]) are removed;
  * credit lines (作词：..., 作曲：..., 编曲, 演唱, 制作人, Lyrics by: ...) are removed;
  * sentence punctuation (，。、？！；： and ASCII , . ? ! ; :) ends a line like a line break
    does: dropping it first would glue two lyric lines together;
  * `--simplified` converts traditional characters to simplified ones.

    python data/parse.py [--input data/origin.txt] [--output data/lyrics.txt]
"""
import argparse
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from utils import ArgumentParser, UserError, run_main  # noqa: E402
from fileio import atomic_write_text  # noqa: E402

CJK_FIRST, CJK_LAST = "\u4e00", "\u9fa5"

# [mm:ss], [mm:ss.xx], [mm:ss:xx], several on one line; and [ti:...]-style header tags.
LRC_TIME = re.compile(r"\[\d{1,3}:\d{1,2}(?:[.:]\d{1,3})?\]")
LRC_HEADER = re.compile(r"^\s*\[(?:ti|ar|al|au|by|re|ve|length|offset|id|la|lr|#)\s*:[^\]]*\]\s*$",
                        re.IGNORECASE)
# A credit line starts with one of these words followed by a colon (ASCII or full width).
CREDIT_WORDS = (
    "作词|作曲|编曲|填词|谱曲|词曲|词|曲|演唱|原唱|翻唱|歌手|主唱|合唱|和声|和音|制作人|制作|监制|"
    "出品|发行|出品人|录音|混音|母带|缩混|吉他|贝斯|鼓|键盘|钢琴|弦乐|配唱|配器|统筹|企划|"
    "策划|封面|OP|SP|ISRC|"
    "作詞|編曲|填詞|譜曲|詞曲|詞|演唱|製作人|製作|監製|發行|錄音|混音|貝斯|鍵盤|鋼琴|弦樂|"
    "lyrics?(?: by)?|lyricist|composer|composed by|music(?: by)?|arranger|arranged by|"
    "producer|produced by|written by|vocals?|singer|mixed by|mastered by"
)
CREDIT_LINE = re.compile(r"^\s*(?:" + CREDIT_WORDS + r")\s*[:：]", re.IGNORECASE)
# Sentence punctuation that ends a lyric line, Chinese and ASCII.
LINE_END_PUNCT = re.compile(r"[，。、？！；：,.?!;:…]+")
WHITESPACE = re.compile(r"\s+")
NOT_KEPT = re.compile(r"[^\u4e00-\u9fa5 ]+")


# ---------------------------------------------------------------------------- decoding

BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


def _han_share(text, counts):
    """Share of the Han characters of text for which counts(character) is true."""
    han = [c for c in text if CJK_FIRST <= c <= CJK_LAST]
    return sum(1 for c in han if counts(c)) / len(han) if han else 0.0


def _in_gb2312(c):
    try:
        c.encode("gb2312")
        return True
    except UnicodeEncodeError:
        return False


def _in_big5_common(c):
    try:
        return b"\xa4\x40" <= c.encode("big5") <= b"\xc6\x7e"
    except UnicodeEncodeError:
        return False


def _gb2312_share(text):
    """Share of the Han characters that are in GB2312 (the 6,763 common simplified ones)."""
    return _han_share(text, _in_gb2312)


def _big5_common_share(text):
    """Share of the Han characters in Big5's frequently-used block (A440-C67E)."""
    return _han_share(text, _in_big5_common)


def _plausible_share(text):
    """Share of characters that are Han, whitespace, printable ASCII or CJK punctuation."""
    ok = sum(1 for c in text if CJK_FIRST <= c <= "\u9fff" or c in "\r\n\t "
             or " " <= c <= "~" or "\u3000" <= c <= "\u303f" or "\uff00" <= c <= "\uffef")
    return ok / max(len(text), 1)


LEGACY = (("gb18030", _gb2312_share), ("big5", _big5_common_share))


def _mend_mixed(raw, name, text):
    """(text, [line numbers]): a file of lyrics pasted together from several sources can be
    part GBK, part Big5.  Decoded whole as one, the other's lines come out as rare
    characters, symbols and private-use code points (mojibake), or as other common
    characters.  Each line with 4+ non-ASCII letters that decoded as the other encoding
    reads as at least 90 % Han characters common in it, and at least 10 points more than
    in the chosen one, is decoded as the other.  A line end (0x0A) is never part of a GBK or Big5 character, so
    the bytes split safely into lines."""
    score = dict(LEGACY)
    other = [n for n, _ in LEGACY if n != name][0]
    lines, moved = raw.split(b"\n"), []
    out = text.split("\n")
    if len(out) != len(lines):
        return text, []
    def common(line, encoding):
        """Share of the line's non-ASCII letters (punctuation aside) that are Han
        characters common in encoding; (share, number of letters)."""
        letters = [c for c in line if c > "\x7f" and not ("\u3000" <= c <= "\u303f"
                                                         or "\uff00" <= c <= "\uffef")]
        han = sum(1 for c in letters if CJK_FIRST <= c <= CJK_LAST)
        return score[encoding](line) * han / max(len(letters), 1), len(letters)

    for k, (line, mine) in enumerate(zip(lines, out)):
        share, letters = common(mine, name)
        if letters < 4 or share >= 1.0:
            continue
        try:
            alt = line.decode(other)
        except UnicodeDecodeError:
            continue
        # the other reading must be plainly better, not only good: a GBK line read as
        # Big5 can still be 6 of 7 common characters (春风吹过杨柳岸 -> 景瑞斯徹栦霞偉)
        alt_share = common(alt, other)[0]
        if alt_share >= 0.9 and alt_share >= share + 0.1:
            out[k] = alt
            moved.append(k + 1)
    return "\n".join(out), moved


def _line_list(numbers, most=6):
    """'3, 7, 9-14, ...' for a warning: runs of consecutive numbers as a range."""
    runs = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    parts = [f"{a}" if a == b else f"{a}-{b}" for a, b in runs]
    return ", ".join(parts[:most]) + (", ..." if len(parts) > most else "")


def _first_bad_byte(raw, encoding):
    try:
        raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        return e.start, line, raw[e.start:e.start + 4]
    return None


def decode_named(raw, encoding):
    """Bytes decoded as the encoding the user named, checked to read as text."""
    try:
        text = raw.decode(encoding)
    except LookupError:
        raise UserError(f"unknown encoding {encoding!r}; try utf-8, gb18030, big5 "
                        f"or utf-16", code=2)
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise UserError(f"the file is not valid {encoding}: byte {e.start} (line {line}) "
                        f"{raw[e.start:e.start + 4]!r}; try --encoding auto")
    if _plausible_share(text) < 0.5:
        raise UserError(f"decoded as {encoding} the file does not read as text (most "
                        f"characters are neither Chinese, ASCII nor punctuation): it is "
                        f"in another encoding; try --encoding auto")
    return text, encoding


def decode_bytes(raw, encoding="auto"):
    """Bytes of a lyrics file -> (text, name of the encoding used).

    auto: a BOM decides; else strict UTF-8; else GB18030 or Big5, whichever decodes and
    reads as common characters of its own script (GB2312 for GB, Big5's frequent block).
    Raises UserError, saying where, when the bytes fit none of them.
    """
    if encoding != "auto":
        return decode_named(raw, encoding)
    for bom, name in BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(name), name
            except UnicodeDecodeError as e:
                raise UserError(f"the file starts with a {name} byte-order mark but byte "
                                f"{e.start} is not valid {name}; re-save it as UTF-8")
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    # UTF-16 without a BOM: accept it only if nearly everything reads as Chinese text.
    if len(raw) >= 4 and len(raw) % 2 == 0:
        for name in ("utf-16-le", "utf-16-be"):
            try:
                text = raw.decode(name)
            except UnicodeDecodeError:
                continue
            if _plausible_share(text) >= 0.9:
                return text, name
    candidates = []
    for name, score in LEGACY:
        try:
            text = raw.decode(name)
        except UnicodeDecodeError:
            continue
        candidates.append((score(text), name == "gb18030", text, name))
    if candidates:
        _, _, text, name = max(candidates, key=lambda c: (c[0], c[1]))
        text, moved = _mend_mixed(raw, name, text)
        if moved:
            other = LEGACY[1 - [n for n, _ in LEGACY].index(name)][0]
            return text, (f"{name}, {len(moved):,} line{'s' * (len(moved) > 1)} in {other}: "
                          f"{_line_list(moved)}")
        return text, name
    start, line, sample = _first_bad_byte(raw, "utf-8")
    raise UserError(f"cannot tell the encoding: byte {start} (line {line}) {sample!r} is not "
                    f"UTF-8, and the file is not GB18030 or Big5 either; re-save it as "
                    f"UTF-8 or name the encoding with --encoding")


# ---------------------------------------------------------------------------- cleaning


def strip_lrc_and_credits(text):
    """Drop LRC tags and credit lines; keep everything else line by line."""
    kept = []
    for line in text.splitlines():
        if LRC_HEADER.match(line):
            continue
        line = LRC_TIME.sub("", line)
        if CREDIT_LINE.match(line):
            continue
        kept.append(line)
    return "\n".join(kept)


def clean(text):
    """The article's rule, with punctuation ending a line: returns the training text."""
    text = LINE_END_PUNCT.sub(" ", text)
    text = WHITESPACE.sub(" ", text)
    text = NOT_KEPT.sub("", text)
    # Dropping a non-Chinese word between two spaces leaves two spaces: fold them again.
    text = re.sub(" {2,}", " ", text)
    return text.strip()


def to_simplified(text):
    try:
        from opencc import OpenCC
    except ImportError:
        raise UserError("--simplified needs the opencc-python-reimplemented package: "
                        "pip install -r requirements.txt")
    return OpenCC("t2s").convert(text)


def parse_file(path, encoding="auto", simplified=False):
    """Read and clean a raw lyrics file; returns (cleaned text, stats dict)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise UserError(f"input not found: {path}; put your lyrics there (any common "
                        f"encoding) or run: python data/fetch_corpus.py")
    except IsADirectoryError:
        raise UserError(f"input is a directory, not a file: {path}")
    return parse_bytes(raw, path, encoding, simplified)


def parse_bytes(raw, where, encoding="auto", simplified=False):
    """Clean the bytes of a raw lyrics file (named `where` in messages): (cleaned text,
    stats dict).  parse_file's work, for bytes that come from elsewhere (serve.py's
    uploads)."""
    if not raw.strip():
        raise UserError(f"input is empty: {where}")
    text, used = decode_bytes(raw, encoding)
    text = strip_lrc_and_credits(text)
    if simplified:
        text = to_simplified(text)
    out = clean(text)
    if not out.replace(" ", ""):
        raise UserError(f"no Chinese characters (U+4E00-U+9FA5) left in {where} after "
                        f"cleaning; is it a Chinese lyrics file?")
    stats = {
        "encoding": used,
        "chars_in": len(text),
        "chars_out": len(out),
        "distinct": len(set(out.replace(" ", ""))),
        "lines": out.count(" ") + 1,
    }
    return out, stats


def main(argv=None):
    p = ArgumentParser(
        description="Clean raw lyrics into the training text: whitespace and sentence "
                    "punctuation become one space (a line end), everything but Chinese "
                    "characters is dropped.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--input", default=os.path.join(HERE, "origin.txt"),
                   help="raw lyrics file (UTF-8/16, GB18030/GBK, Big5; LRC is fine)")
    p.add_argument("--output", default=os.path.join(HERE, "lyrics.txt"),
                   help="cleaned training text to write")
    p.add_argument("--encoding", default="auto",
                   help="encoding of --input; 'auto' detects BOMs, UTF-8, GB18030 and Big5")
    p.add_argument("--simplified", action="store_true",
                   help="convert traditional characters to simplified ones")
    args = p.parse_args(argv)

    out, s = parse_file(args.input, args.encoding, args.simplified)
    atomic_write_text(args.output, out)
    print(f"parse: {args.input} ({s['encoding']}) -> {args.output}")
    if "line" in s["encoding"]:
        print(f"parse: warning: {args.input} mixes encodings (lines pasted from files saved "
              f"differently); those lines were read in the encoding that makes sense of "
              f"them: check {args.output}, or re-save the input as UTF-8")
    print(f"parse: {s['chars_in']:,} chars in, {s['chars_out']:,} chars out, "
          f"{s['distinct']:,} distinct characters, {s['lines']:,} lines")
    return 0


if __name__ == "__main__":
    run_main(main, "parse.py")
