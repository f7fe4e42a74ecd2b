"""A model directory saved by an earlier version of the code still works.

tests/fixtures/model-2026-12-04 was written by train.py at commit 0627806 (before the
layout change of issue 29), from made_up_text() with
  --rnn_size 16 --num_layers 2 --embedding_size 8 --batch_size 8 --seq_length 8
  --learning_rate 0.01 --save_every 1000 --patience 0 --seed 7 --num_epochs 1
(49 steps; .lock removed).  Whatever moves inside the code, a user's saved models must
still sample, score, resume and fine-tune.
"""
import os
import shutil

from conftest import ROOT, made_up_text, run

FIXTURE = os.path.join(ROOT, "tests", "fixtures", "model-2026-12-04")
STEPS = 49


def copy_of_fixture(tmp_path):
    save = str(tmp_path / "save")
    shutil.copytree(FIXTURE, save)
    data = tmp_path / "data"
    data.mkdir()
    (data / "lyrics.txt").write_text(made_up_text(), encoding="utf-8")
    return save, str(data)


def test_an_old_model_samples_and_scores(tmp_path):
    save, data = copy_of_fixture(tmp_path)
    proc = run("sample.py", "--save_dir", save, "--n", "30", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip()) >= 20
    again = run("sample.py", "--save_dir", save, "--n", "30", "--seed", "3")
    assert again.stdout == proc.stdout
    proc = run("analysis/evaluate.py", "--save_dir", save, "--text",
               os.path.join(data, "lyrics.txt"), "--samples", "0", "--offsets", "0")
    assert proc.returncode == 0, proc.stderr
    assert "perplexity" in proc.stdout


def test_an_old_model_resumes_and_is_fine_tuned(tmp_path):
    save, data = copy_of_fixture(tmp_path)
    log = str(tmp_path / "log")
    proc = run("train.py", "--keep", "--save_dir", save, "--data_dir", data,
               "--log_dir", log, "--num_epochs", "2")
    assert proc.returncode == 0, proc.stderr
    assert f"at step {STEPS}, epoch 2" in proc.stdout
    assert f"model.ckpt-{2 * STEPS}" in proc.stdout
    proc = run("train.py", "--init_from", save, "--save_dir", str(tmp_path / "ft"),
               "--data_dir", data, "--log_dir", log, "--num_epochs", "1",
               "--batch_size", "8", "--seq_length", "8")
    assert proc.returncode == 0, proc.stderr
    assert os.path.exists(tmp_path / "ft" / "config.pkl")
