"""scripts/base.sh end to end, offline: a locally built chinese-poetry tarball, a tiny
model and a few seconds of budget stand in for the real corpus and the hour."""
import os
import random
import subprocess
import sys

import pytest

from conftest import ROOT, run
from data.fetch_corpus import TARBALL, integrity_of
from test_fetch_corpus import make_tarball

LINES = ["春风吹过小河边", "月光洒满旧街道", "夜里的星星不说话", "梦里有一片海"]


def poem(k):
    return {"paragraphs": [f"{LINES[k % 4]}，{LINES[(k + 1) % 4]}。",
                           f"{LINES[(k + 2) % 4]}，{LINES[(k + 3) % 4]}。"]}


def recipe_tarball(path):
    works = [poem(k) for k in range(60)]
    return make_tarball(path, {
        "ci.song.0.json": works[:10],
        "quantangshi/poet.tang.0.json": works[10:30],
        "quantangshi/poet.song.0.json": works[30:50],
        "wudaishici/huajianji/huajianji-1-juan.json": works[50:52],
        "yuanqu/yuanqu.json": works[52:54],
        "shijing/shijing.json": [{"content": w["paragraphs"]} for w in works[54:56]],
        "chuci/chuci.json": [{"content": w["paragraphs"]} for w in works[56:57]],
        "caocaoshiji/caocao.json": works[57:58],
        "nalanxingde/纳兰性德诗集.json": [{"para": w["paragraphs"]} for w in works[58:60]],
    })


def base_sh(tmp, *extra, env_extra=None):
    tarball = os.path.join(tmp, TARBALL)
    if not os.path.exists(tarball):
        recipe_tarball(tarball)
    env = dict(os.environ, NO_SETUP="1", PYTHON=sys.executable, MINUTES="0.2",
               DATA_DIR=os.path.join(tmp, "data_base"), SAVE_DIR=os.path.join(tmp, "base"),
               FETCH_ARGS=f"--tarball {tarball} --integrity {integrity_of(tarball)}",
               **(env_extra or {}))
    # later flags win: the recipe's model, made tiny
    tiny = ["--rnn_size", "16", "--embedding_size", "8", "--batch_size", "4",
            "--seq_length", "8", "--log_dir", os.path.join(tmp, "log"),
            "--num_epochs", "100000", "--patience", "0"]      # the budget ends it
    return subprocess.run(["bash", os.path.join(ROOT, "scripts", "base.sh"), *tiny, *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_recipe_fetches_trains_within_budget_and_the_base_fine_tunes(tmp_path):
    tmp = str(tmp_path)
    proc = base_sh(tmp, env_extra={"EXCLUDE": "yuanqu"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "fetch_corpus: wrote" in out and "yuanqu" not in out.split("wrote")[1].split("\n")[0]
    assert "for at most 0.2 minutes into" in out
    assert "stopped: --max_minutes 0.2" in out
    assert "python" in out and "--init_from" in out          # says what to do next
    base = os.path.join(tmp, "base")
    assert os.path.exists(os.path.join(base, "checkpoint_best"))
    # a second run with --keep reuses the cleaned corpus and goes on training
    again = base_sh(tmp, "--keep", env_extra={"EXCLUDE": "yuanqu"})
    assert again.returncode == 0, again.stdout + again.stderr
    assert "using the corpus already in" in again.stdout and "resumed" in again.stdout
    # and the base fine-tunes
    data = tmp_path / "mine"
    data.mkdir()
    (data / "lyrics.txt").write_text(" ".join(LINES[k % 4] + "呀" for k in range(300)),
                                     encoding="utf-8")
    proc = run("train.py", "--init_from", base, "--data_dir", data, "--save_dir",
               tmp_path / "mine_model", "--log_dir", tmp_path / "log", "--batch_size", "4",
               "--seq_length", "8", "--max_steps", "20")
    assert proc.returncode == 0, proc.stderr
    assert "1 characters of" in proc.stdout            # 呀 is new to the base


@pytest.mark.slow
def test_heldout_genre_script_trains_both_and_scores_three(tmp_path):
    """scripts/heldout_genre.sh, offline: a few made-up 'works' stand in for 元曲, a tiny
    model trained on other text for the base."""
    from conftest import MADE_UP_LINES, TINY
    rng = random.Random(3)
    works = [{"paragraphs": ["，".join(rng.choice(MADE_UP_LINES) for _ in range(4)) +
                             "（正末云）不该出现。"]} for _ in range(120)]
    tarball = make_tarball(os.path.join(tmp_path, TARBALL), {"yuanqu/yuanqu.json": works})
    base_dir = tmp_path / "base_data"
    base_dir.mkdir()
    (base_dir / "lyrics.txt").write_text(" ".join(LINES * 200), encoding="utf-8")
    arch = ["--rnn_size", "32", "--num_layers", "2", "--embedding_size", "16"]
    run("train.py", "--data_dir", base_dir, "--save_dir", tmp_path / "base", "--log_dir",
        tmp_path / "log", "--num_epochs", "1", *TINY, check=0)
    env = dict(os.environ, NO_SETUP="1", PYTHON=sys.executable, BASE=str(tmp_path / "base"),
               OUT=str(tmp_path / "genre"), DATA=str(tmp_path / "genre_data"),
               TRAIN_WORKS="0:100", HELD_WORKS="100:120",
               FETCH_ARGS=f"--tarball {tarball} --integrity {integrity_of(tarball)}")
    proc = subprocess.run(["bash", os.path.join(ROOT, "scripts", "heldout_genre.sh"), *arch,
                           "--batch_size", "8", "--seq_length", "8", "--num_epochs", "2"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    held = (tmp_path / "genre_data" / "held" / "lyrics.txt").read_text(encoding="utf-8")
    assert "不该出现" not in held and len(held) > 100            # sung text only
    report = (tmp_path / "genre" / "evaluate.txt").read_text(encoding="utf-8")
    assert "comparison on the same text" in report
    for name in ("scratch", "finetuned", "base"):
        assert name in report.split("comparison on the same text")[1]
    assert "in words (fluency), samples" in report and "from the zero state" in report
