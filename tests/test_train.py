"""train.py end to end (subprocess, tiny models): saving, resuming, refusing, signals,
the NaN guard, and the log format that plot.py reads."""
import glob
import os
import pickle
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, TINY, assert_one_line_error, made_up_text, run, train_tiny
from fileio import safe_load_pickle
from trainlog import parse_log


def ckpt_step(save):
    with open(os.path.join(save, "checkpoint")) as f:
        return int(re.search(r'model_checkpoint_path: "model.ckpt-(\d+)"', f.read()).group(1))


def test_training_writes_everything_and_loss_falls(tmp_path):
    save, proc = train_tiny(str(tmp_path), epochs=4)
    assert proc.returncode == 0, proc.stderr
    config = safe_load_pickle(os.path.join(save, "config.pkl"))
    chars, vocab = safe_load_pickle(os.path.join(save, "words_vocab.pkl"))
    assert config["rnn_size"] == 32 and config["vocab_size"] == len(chars)
    assert all(vocab[c] == i for i, c in enumerate(chars))
    assert glob.glob(os.path.join(save, "best.ckpt-*.index"))
    assert os.path.exists(os.path.join(save, "checkpoint_best"))
    logs = glob.glob(str(tmp_path / "log" / "*.txt"))
    assert len(logs) == 1 and ":" not in os.path.basename(logs[0])
    cfg, epochs = parse_log(logs[0])
    assert sorted(epochs) == [1, 2, 3, 4] and cfg["rnncell"] == "lstm"
    assert epochs[4]["train"] < epochs[1]["train"]
    assert epochs[4]["validate"] < epochs[1]["validate"]
    assert all("time" in e for e in epochs.values())
    assert "validation loss" in proc.stdout and "perplexity" in proc.stdout
    # TensorBoard events beside the text log
    assert glob.glob(str(tmp_path / "log" / "*" / "events.out.tfevents.*"))
    # not a TTY: no progress line per step
    assert len(proc.stdout.splitlines()) < 20


@pytest.mark.slow
def test_keep_continues_step_and_epoch(tmp_path):
    save, proc = train_tiny(str(tmp_path), epochs=2)
    assert proc.returncode == 0
    step2 = ckpt_step(save)
    save, proc = train_tiny(str(tmp_path), "--keep", epochs=3)
    assert proc.returncode == 0, proc.stderr
    assert "resumed" in proc.stdout and "epoch 3" in proc.stdout
    assert "epoch 3/3" in proc.stdout and "epoch 1/3" not in proc.stdout
    assert ckpt_step(save) == step2 * 3 // 2


@pytest.mark.slow
def test_keep_continues_mid_epoch_batch_pointer(tmp_path):
    save, proc = train_tiny(str(tmp_path), "--max_steps", "10", epochs=3)
    assert proc.returncode == 0, proc.stderr
    assert ckpt_step(save) == 10
    save, proc = train_tiny(str(tmp_path), "--keep", epochs=1)
    assert proc.returncode == 0, proc.stderr
    assert "epoch 1, batch 10" in proc.stdout
    # the rest of epoch 1 only: num_batches - 10 more steps
    m = re.search(r"(\d+) training batches per epoch", proc.stdout)
    assert ckpt_step(save) == int(m.group(1))
    _, proc = train_tiny(str(tmp_path), "--keep", "--max_steps", "10", epochs=5)
    assert_one_line_error(proc, 2, "already trained", "--max_steps")


@pytest.mark.slow
def test_keep_refuses_a_different_architecture(tmp_path):
    save, _ = train_tiny(str(tmp_path), epochs=1)
    before = sorted(os.listdir(save))
    _, proc = train_tiny(str(tmp_path), "--keep", "--rnncell", "gru", epochs=2)
    assert_one_line_error(proc, 2, "rnncell='lstm'", "--rnncell lstm")
    _, proc = train_tiny(str(tmp_path), "--keep", "--attention", epochs=2)
    assert_one_line_error(proc, 2, "attention")
    assert sorted(os.listdir(save)) == before


@pytest.mark.slow
def test_keep_refuses_changed_vocabulary(tmp_path):
    save, _ = train_tiny(str(tmp_path), epochs=1)
    with open(tmp_path / "data" / "lyrics.txt", "a", encoding="utf-8") as f:
        f.write(" 全新的字眼出现")
    _, proc = train_tiny(str(tmp_path), "--keep", epochs=2)
    assert_one_line_error(proc, 1, "is not the text", "vocabulary", "--init_from")


@pytest.mark.slow
def test_keep_refuses_changed_lyrics_with_the_same_vocabulary(tmp_path):
    save, _ = train_tiny(str(tmp_path), epochs=1)
    lyrics = tmp_path / "data" / "lyrics.txt"
    text = lyrics.read_text(encoding="utf-8")
    lyrics.write_text(text[len(text) // 2:] + " " + text[:len(text) // 2], encoding="utf-8")
    before = open(os.path.join(save, "config.pkl"), "rb").read()
    _, proc = train_tiny(str(tmp_path), "--keep", epochs=2)
    assert_one_line_error(proc, 1, "is not the text", "lyrics changed")
    assert open(os.path.join(save, "config.pkl"), "rb").read() == before


def test_keep_without_a_model(tmp_path):
    _, proc = train_tiny(str(tmp_path), "--keep", epochs=1)
    assert_one_line_error(proc, 1, "no trained model to resume")


def model_files(save):
    """mtime of each file of the model (the lock file is the running train.py's)."""
    return {n: os.path.getmtime(os.path.join(save, n)) for n in os.listdir(save)
            if n != ".lock"}


@pytest.mark.slow
def test_existing_model_is_not_overwritten(tmp_path):
    save, _ = train_tiny(str(tmp_path), epochs=1)
    before = model_files(save)
    _, proc = train_tiny(str(tmp_path), epochs=1)
    assert_one_line_error(proc, 2, "already holds a trained model", "--keep", "--overwrite")
    assert model_files(save) == before
    # without its checkpoint state files the model is still there (sample.py uses it)
    os.unlink(os.path.join(save, "checkpoint"))
    os.unlink(os.path.join(save, "checkpoint_best"))
    before = model_files(save)
    _, proc = train_tiny(str(tmp_path), "--rnncell", "gru", epochs=1)
    assert_one_line_error(proc, 2, "already holds a trained model")
    assert model_files(save) == before
    _, proc = train_tiny(str(tmp_path), "--overwrite", epochs=1)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_sigint_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "lyrics.txt").write_text(made_up_text(4000), encoding="utf-8")
    save = tmp_path / "save"
    started = time.time()
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "train.py"), "--data_dir", data, "--save_dir",
         save, "--log_dir", tmp_path / "log", "--num_epochs", "50", *TINY],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    out = ""
    deadline = time.time() + 120
    while time.time() < deadline:            # wait until training is under way
        line = proc.stdout.readline()
        out += line
        if line.startswith("epoch 1/50"):
            break
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err       # 128 + SIGINT: a calling script sees the stop
    assert "SIGINT: saved" in rest and "--keep" in rest
    step = ckpt_step(str(save))
    assert step > 0
    # The stopped run's log says how long it trained and to which step, though no epoch
    # ended in it (scripts/pack_model.py adds up a model's hours from these).
    from trainlog import log_train_seconds
    (log,) = glob.glob(str(tmp_path / "log" / "*.txt"))
    seconds, saved = log_train_seconds(log)
    assert saved == step and 0 < seconds < time.time() - started
    _, again = train_tiny(str(tmp_path), "--keep", "--max_steps", str(step + 1), epochs=50)
    assert again.returncode == 0, again.stderr
    assert ckpt_step(str(save)) == step + 1


@pytest.mark.slow
def test_nan_loss_stops_and_no_checkpoint_holds_bad_weights(tmp_path):
    import numpy as np
    from tfenv import import_tensorflow
    tf = import_tensorflow()
    save, proc = train_tiny(str(tmp_path), epochs=1)
    good = ckpt_step(save)
    # An absurd learning rate blows the weights up to inf/NaN within a few steps; a save
    # is due after every step, so each one must check the weights first.
    _, proc = train_tiny(str(tmp_path), "--keep", "--learning_rate", "1e37",
                         "--grad_clip", "1e38", "--save_every", "1", epochs=3)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "became" in proc.stderr or "inf/NaN" in proc.stderr or \
        "diverged" in proc.stderr, proc.stderr
    assert "checkpoints saved before" in proc.stderr and "are kept" in proc.stderr
    latest = tf.train.latest_checkpoint(save)
    assert ckpt_step(save) >= good
    reader = tf.train.load_checkpoint(latest)
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if np.issubdtype(np.asarray(value).dtype, np.floating) and name != "best_val_loss":
            assert np.all(np.isfinite(value)), name


def test_bad_flag_values_are_usage_errors(tmp_path):
    for flag, value in (("--rnn_size", "0"), ("--learning_rate", "-1"), ("--dropout", "1.5"),
                        ("--rnncell", "transformer")):
        proc = run("train.py", "--data_dir", tmp_path, flag, value)
        assert_one_line_error(proc, 2, flag)


@pytest.mark.parametrize("flag, value, needle", [
    ("--rnn_size", "1000000", "from 1 to 65,536"),        # was a traceback (out of memory)
    ("--learning_rate", "5e-324", "from 1e-12 to 1e+38"),    # float32 holds it
    ("--decay_rate", "1e200", "from 0.001 to 1"),         # was an OverflowError
    ("--batch_size", "3000000000", "from 1 to"),
])
def test_absurd_values_are_one_line_with_the_bound_in_help(tmp_path, flag, value, needle):
    proc = run("train.py", "--data_dir", tmp_path, flag, value)
    assert_one_line_error(proc, 2, flag, needle)
    help_text = " ".join(run("train.py", "--help", check=0).stdout.split())
    assert "units per layer [1 to 65,536]" in help_text and "[0.001 to 1]" in help_text


def test_an_architecture_beyond_the_machines_memory_is_one_line(corpus_dir, tmp_path):
    proc = run("train.py", "--data_dir", corpus_dir, "--save_dir", tmp_path / "save",
               "--rnn_size", "60000", "--batch_size", "8", "--seq_length", "8")
    assert_one_line_error(proc, 2, "GiB to train and this machine has", "--rnn_size")
    assert not (tmp_path / "save").exists()


def test_corpus_too_small_is_a_clear_error(tmp_path):
    (tmp_path / "lyrics.txt").write_text("你好 世界", encoding="utf-8")
    proc = run("train.py", "--data_dir", tmp_path, "--save_dir", tmp_path / "save")
    assert_one_line_error(proc, 2, "too small", "--batch_size")


class Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


@pytest.mark.slow
def test_tampered_config_is_refused_on_resume(tmp_path):
    save, _ = train_tiny(str(tmp_path), epochs=1)
    with open(os.path.join(save, "config.pkl"), "wb") as f:
        pickle.dump(Boom(), f)
    _, proc = train_tiny(str(tmp_path), "--keep", epochs=2)
    assert_one_line_error(proc, 1, "refusing to load")
    assert not os.path.exists(os.path.join(ROOT, "pwned.txt"))


@pytest.mark.slow
def test_plot_reads_logs_and_skips_other_files(tmp_path):
    for sub in ("a", "b"):
        _, proc = train_tiny(str(tmp_path / sub), epochs=2)
        assert proc.returncode == 0
    logs = sorted(glob.glob(str(tmp_path / "*" / "log" / "*.txt")))
    junk = tmp_path / "notes.txt"
    junk.write_text("just some notes\n")
    out = tmp_path / "cmp.png"
    proc = run("analysis/plot.py", *logs, junk, "--out", out)
    assert proc.returncode == 1 and "skipped" in proc.stderr and "Traceback" not in proc.stderr
    for log in logs:
        png = log[:-4] + ".png"
        with open(png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert out.exists()
    proc = run("analysis/plot.py", junk)
    assert_one_line_error(proc, 1, "none of the files")


@pytest.mark.slow
def test_bf16_trains_and_saves_float32_checkpoints(tmp_path):
    save, proc = train_tiny(str(tmp_path), "--bf16", epochs=2)
    assert proc.returncode == 0, proc.stderr
    cfg, epochs = parse_log(glob.glob(str(tmp_path / "log" / "*.txt"))[0])
    assert cfg["bf16"] == "True" and epochs[2]["validate"] < epochs[1]["validate"]
    from tfenv import import_tensorflow
    tf = import_tensorflow()
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(save))
    assert reader.get_variable_to_dtype_map()["softmax_w"] == tf.float32
    proc = run("sample.py", "--save_dir", save, "--n", "20", "--out", "")
    assert proc.returncode == 0, proc.stderr


def test_state_resets_are_random_per_row_and_repeat_on_resume():
    import numpy as np
    from training import masked_state, reset_masks
    masks = reset_masks(seed=7, batch_size=64, seq_length=16, reset_chars=256)
    drawn = np.stack([masks(step) for step in range(400)])
    assert set(np.unique(drawn)) == {0.0, 1.0}
    assert abs((1 - drawn.mean()) - 16 / 256) < 0.01       # a reset every 256 characters
    np.testing.assert_array_equal(masks(123), reset_masks(7, 64, 16, 256)(123))  # resume
    assert not np.array_equal(masks(1), masks(2))
    assert reset_masks(7, 64, 16, 0)(5) is None                 # 0: the article's carry
    state = ((np.ones((3, 2)), np.full((3, 2), 2.0)), ())        # LSTM (c, h), no attention
    out = masked_state(state, np.array([1.0, 0.0, 1.0]))
    np.testing.assert_array_equal(out[0][1], [[2, 2], [0, 0], [2, 2]])
    assert out[1] == ()


def test_anneal_ends_at_a_tenth():
    from training import annealed
    assert annealed(0.002, 0.0) == 0.002
    assert annealed(0.002, 0.5) == 0.002 * 0.55
    assert annealed(0.002, 1.0) == annealed(0.002, 3.0) == 0.002 * 0.1


@pytest.mark.slow
def test_anneal_and_resets_train(tmp_path):
    save, proc = train_tiny(str(tmp_path), "--anneal", "--reset_chars", "32",
                            "--max_steps", "60", epochs=3)
    assert proc.returncode == 0, proc.stderr
    config = safe_load_pickle(os.path.join(save, "config.pkl"))
    assert config["anneal"] and config["reset_chars"] == 32
    assert config["val_split"] == "blocks" and config["max_vocab"] == 0


@pytest.mark.slow
def test_keep_on_a_model_from_before_the_spread_split_keeps_its_tail(tmp_path):
    save, proc = train_tiny(str(tmp_path), epochs=1)
    assert proc.returncode == 0, proc.stderr
    assert "spread over the text" in proc.stdout
    path = os.path.join(save, "config.pkl")
    config = safe_load_pickle(path)
    for k in ("val_split", "max_vocab", "reset_chars", "anneal"):
        del config[k]                          # as train.py wrote it before 2026-11-30
    with open(path, "wb") as f:
        pickle.dump(config, f)
    save, proc = train_tiny(str(tmp_path), "--keep", epochs=2)
    assert proc.returncode == 0, proc.stderr
    assert "the end of the text" in proc.stdout
    assert safe_load_pickle(path)["val_split"] == "tail"


@pytest.mark.slow
def test_max_vocab_trains_and_conflicts_with_init_from(tmp_path):
    save, proc = train_tiny(str(tmp_path), "--max_vocab", "12", epochs=1)
    assert proc.returncode == 0, proc.stderr
    assert "--max_vocab 12" in proc.stdout
    assert safe_load_pickle(os.path.join(save, "config.pkl"))["vocab_size"] == 12
    proc = run("train.py", "--init_from", save, "--max_vocab", "5", "--data_dir",
               tmp_path / "data", "--save_dir", tmp_path / "ft", "--log_dir",
               tmp_path / "log")
    assert_one_line_error(proc, 2, "--max_vocab and --init_from")


@pytest.mark.slow
def test_preset_sets_flags_and_given_flags_win(tmp_path):
    from presets import PRESETS
    save, proc = train_tiny(str(tmp_path), "--preset", "base-cpu", "--rnn_size", "16",
                            "--max_steps", "2", epochs=1)
    assert proc.returncode == 0, proc.stderr
    config = safe_load_pickle(os.path.join(save, "config.pkl"))
    # typed flags win (the last --rnn_size, TINY's batch shape and rate) ...
    assert config["rnn_size"] == 16 and config["batch_size"] == 8
    assert config["learning_rate"] == 0.01 and config["preset"] == "base-cpu"
    # ... and what was not typed comes from the preset
    assert config["anneal"] is True and config["max_vocab"] == 6000
    help_text = run("train.py", "--help", check=0).stdout
    for name in PRESETS:
        assert name in help_text
    assert "base-cpu: --rnncell lstm --embedding_size 128" in " ".join(help_text.split())
    proc = run("train.py", "--preset", "tiny")
    assert_one_line_error(proc, 2, "--preset")


def test_plot_draws_logs_in_the_training_format(tmp_path):
    """plot.py's main path without training first: logs as train.py writes them."""
    from trainlog import append_log, epoch_lines
    logs = []
    for k, name in enumerate(("a.txt", "b.txt")):
        path = str(tmp_path / name)
        append_log(path, config={"rnncell": "lstm", "rnn_size": 32 * (k + 1)})
        for epoch in range(1, 4):
            for line in epoch_lines(epoch, 3.0 - epoch / 2 - k / 10, 3.1 - epoch / 3, 1.5):
                append_log(path, line)
        logs.append(path)
    proc = run("analysis/plot.py", *logs, "--out", tmp_path / "cmp.png", check=0)
    for log in logs:
        with open(log[:-4] + ".png", "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "cmp.png").exists() and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_sampled_softmax_trains_reports_the_full_loss_and_samples(tmp_path):
    save, proc = train_tiny(str(tmp_path), "--sampled_softmax", "8", epochs=3)
    assert proc.returncode == 0, proc.stderr
    config = safe_load_pickle(os.path.join(save, "config.pkl"))
    assert config["sampled_softmax"] == 8 and config["vocab_size"] > 8
    _, epochs = parse_log(glob.glob(str(tmp_path / "log" / "*.txt"))[0])
    assert epochs[3]["validate"] < epochs[1]["validate"]
    # the reported training loss is the full softmax's, comparable with validation's
    # (a sampled loss over 9 classes would sit far below it)
    assert abs(epochs[3]["train"] - epochs[3]["validate"]) < 0.5 * epochs[3]["validate"]
    proc = run("sample.py", "--save_dir", save, "--n", "20", "--max_copy", "0")
    assert proc.returncode == 0, proc.stderr


def test_anneal_by_max_steps_goes_on_along_one_curve_after_keep(tmp_path):
    """--anneal --max_steps: the rate follows the model's step, so a run resumed with
    --keep starts where the first one stopped on the curve, not at the top again."""
    import tensorflow as tf
    from training import annealed
    save, proc = train_tiny(str(tmp_path), "--anneal", "--max_steps", "400", epochs=1)
    assert proc.returncode == 0, proc.stderr
    first = ckpt_step(save)
    assert 0 < first < 100           # one epoch, fewer steps than ANNEAL_EVERY
    save, proc = train_tiny(str(tmp_path), "--keep", "--anneal", "--max_steps", "400",
                            epochs=2)
    assert proc.returncode == 0, proc.stderr
    last = ckpt_step(save)
    lr = tf.train.load_checkpoint(os.path.join(save, f"model.ckpt-{last}")
                                  ).get_tensor("learning_rate")
    # set at the resumed epoch's start (step `first`) and at every 100th step
    at = 100 if last >= 100 else first
    assert lr == pytest.approx(annealed(0.01, at / 400), rel=1e-5)
    assert lr < 0.98 * annealed(0.01, 0.0)


def test_progress_says_how_long_the_whole_run_has_left(capsys):
    """The progress line's ETA is the epoch's; a run that goes on for longer says how
    long at most (its --max_minutes or its remaining epochs), in h:mm:ss past an hour."""
    from training import Progress, clock
    assert clock(59) == "0:59" and clock(3725) == "1:02:05" and clock(-3) == "0:00"
    p = Progress(100, 0, 3, 512, every=0.0, run_left=lambda steps_per_s: 600 / steps_per_s)
    for i in range(1, 4):
        p.update(i, 5.0)
        time.sleep(0.01)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "ETA" in line and "(run at most" in line
    eta = line.split("ETA ")[1].split()[0]
    left = line.split("run at most ")[1].rstrip(")")
    assert sum(int(x) * 60 ** i for i, x in enumerate(reversed(left.split(":")))) > \
        sum(int(x) * 60 ** i for i, x in enumerate(reversed(eta.split(":"))))


def test_run_left_counts_the_validation_passes_the_steps_reach():
    """--max_steps ending a run within this epoch: the time left is its steps and at most
    two validation passes, not one per epoch up to --num_epochs (a base at 300,000 of 20
    epochs' steps showed a quarter of an hour too much)."""
    from types import SimpleNamespace
    from training import Budget
    data = SimpleNamespace(num_batches=1000, num_val_batches=300)
    args = SimpleNamespace(num_epochs=20, max_steps=4500, max_minutes=None, start_time=0)
    b = Budget(args, data, first_step=4000, start_epoch=4, start_pointer=0)
    assert b.total_steps == 500
    per_val = 300 / (3 * 10.0)                   # a forward pass: a third of a step
    assert 500 / 10 + per_val <= b.left(4000, 4, 10.0) <= 500 / 10 + 2 * per_val
    assert b.done(4500) == 1.0 and b.done(2250) == 0.5      # the model's steps: one curve
    args.max_steps = 0                           # the epochs are the budget
    b = Budget(args, data, first_step=4000, start_epoch=4, start_pointer=0)
    assert b.total_steps == 16000
    assert b.left(4000, 4, 10.0) == pytest.approx(1600 + 16 * per_val)


def test_plot_of_a_log_without_a_cost_prints_no_matplotlib_warning(tmp_path):
    """A log of epoch times only (a run stopped before its first loss was written) drew
    matplotlib's two-line 'No artists with labels found' warning."""
    log = tmp_path / "a.txt"
    log.write_text("Config:\n  rnncell: lstm\nEpoch:1 train time:1.0\n", encoding="utf-8")
    proc = run("analysis/plot.py", log, log, isolated=True)
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr and (tmp_path / "a.png").exists()
