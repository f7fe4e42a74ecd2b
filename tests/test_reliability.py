"""Failures a user meets: two runs on one save_dir, a divergent run, full disks and
paths that are directories, damaged side files, odd seeds.  Each is one clear line and
nothing already saved is lost or changed."""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import (ROOT, TINY, assert_one_line_error, holding_lock, made_up_text, run,
                      train_tiny)
from utils import UserError
from fileio import atomic_write_text


def made_up_data(tmp_path):
    """tmp_path/data with a made-up lyrics.txt."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "lyrics.txt").write_text(made_up_text(), encoding="utf-8")
    return data


def snapshot(d):
    return {n: open(os.path.join(d, n), "rb").read() for n in sorted(os.listdir(d))
            if os.path.isfile(os.path.join(d, n))}


@pytest.mark.slow
def test_a_second_train_on_the_same_save_dir_is_refused_and_a_killed_one_leaves_no_lock(
        tmp_path):
    data = made_up_data(tmp_path)
    save = tmp_path / "save"
    args = [sys.executable, os.path.join(ROOT, "train.py"), "--data_dir", str(data),
            "--save_dir", str(save), "--log_dir", str(tmp_path / "log"), *TINY,
            "--num_epochs", "1000"]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (save / "checkpoint").exists():        # the first one is training
            assert first.poll() is None and time.time() < deadline, first.communicate()
            time.sleep(0.2)
        second = run("train.py", "--data_dir", data, "--save_dir", save, "--log_dir",
                     tmp_path / "log", *TINY, "--keep", "--num_epochs", "1000")
        assert_one_line_error(second, 1, "in use by another train.py",
                              f"process {first.pid}")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # killed: the operating system released the lock, --keep goes on
    proc = run("train.py", "--data_dir", data, "--save_dir", save, "--log_dir",
               tmp_path / "log", *TINY, "--keep", "--num_epochs", "1000", "--max_steps",
               "100000", "--max_minutes", "0.1")
    assert proc.returncode == 0, proc.stderr
    assert "resumed" in proc.stdout


@pytest.mark.slow
def test_two_trainings_started_a_second_apart_on_a_new_save_dir_one_wins(tmp_path):
    # The lock used to come after the data and the graph: the second run found the
    # directory still empty, waited for the first to finish and wrote its model over it.
    data = made_up_data(tmp_path)
    save = tmp_path / "new"
    common = [sys.executable, os.path.join(ROOT, "train.py"), "--data_dir", str(data),
              "--save_dir", str(save), "--log_dir", str(tmp_path / "log"), *TINY,
              "--num_epochs", "2"]
    first = subprocess.Popen(common + ["--rnncell", "gru"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    second = run("train.py", *common[2:], "--rnncell", "lstm")
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert_one_line_error(second, 1, "in use by another train.py")
    import pickle
    assert pickle.load(open(save / "config.pkl", "rb"))["rnncell"] == "gru"


def test_a_run_refused_by_the_lock_does_nothing_before(tmp_path):
    # whether save_dir holds a model is decided under the lock: a run that cannot take it
    # has not read or written anything (the data's cache included)
    data = made_up_data(tmp_path)
    (tmp_path / "save").mkdir()
    with holding_lock(tmp_path / "save") as pid:
        proc = run("train.py", "--data_dir", data, "--save_dir", tmp_path / "save",
                   "--log_dir", tmp_path / "log")
    assert_one_line_error(proc, 1, "in use by another train.py", f"process {pid}")
    assert proc.stdout == "" and sorted(os.listdir(data)) == ["lyrics.txt"]


def test_a_refused_run_leaves_no_save_dir_it_made(tmp_path):
    proc = run("train.py", "--data_dir", tmp_path / "nothing", "--save_dir",
               tmp_path / "fresh", "--log_dir", tmp_path / "log")
    assert_one_line_error(proc, 1, "lyrics.txt not found")
    assert not (tmp_path / "fresh").exists()


@pytest.mark.slow
def test_divergence_stops_and_keeps_the_good_checkpoints(tmp_path):
    save, proc = train_tiny(str(tmp_path), epochs=1)
    assert proc.returncode == 0, proc.stderr
    before = snapshot(save)
    _, proc = train_tiny(str(tmp_path), "--keep", "--learning_rate", "1e9",
                         "--save_every", "1", epochs=3)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "diverged" in proc.stderr and "Lower --learning_rate (now 1e+09)" in proc.stderr
    after = snapshot(save)
    for name in before:            # checkpoints and their index are untouched
        if name.startswith(("model.ckpt", "best.ckpt", "checkpoint")):
            assert after[name] == before[name], name
    assert not [n for n in after if n not in before and "ckpt" in n]


@pytest.mark.slow
def test_sample_out_only_appends_and_keeps_bytes_and_mode(trained, tmp_path):
    out = tmp_path / "sequence"
    gbk = "我的旧歌词\n".encode("gbk")
    out.write_bytes(gbk)
    os.chmod(out, 0o644)
    run("sample.py", "--save_dir", trained("gru"), "--n", "20", "--out", out, check=0)
    data = out.read_bytes()
    assert data.startswith(gbk) and b"=== " in data
    assert (os.stat(out).st_mode & 0o777) == 0o644
    proc = run("sample.py", "--save_dir", trained("gru"), "--n", "20", "--out", tmp_path)
    assert_one_line_error(proc, 2, "is a directory")


@pytest.mark.slow
def test_disk_full_is_one_line(trained, tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    proc = run("sample.py", "--save_dir", trained("gru"), "--n", "20", "--out", "/dev/full")
    assert_one_line_error(proc, 1, "/dev/full", "free some disk space")


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_full_disk_mid_block_leaves_the_out_file_as_it_was(trained, tmp_path):
    # the file may grow by 100 bytes only: the block of 3 samples is cut off part-way
    import resource
    out = tmp_path / "sequence"
    before = "旧的结果\n".encode("utf-8") * 100
    out.write_bytes(before)
    limit = len(before) + 100
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "sample.py"), "--save_dir", trained("gru"),
         "--count", "3", "--n", "200", "--out", str(out)], capture_output=True, text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert_one_line_error(proc, 1, str(out))
    assert out.read_bytes() == before


def test_output_paths_that_cannot_be_files_are_one_line(tmp_path):
    (tmp_path / "origin.txt").write_text("春风\n", encoding="utf-8")
    proc = run("data/parse.py", "--input", tmp_path / "origin.txt", "--output", tmp_path)
    assert_one_line_error(proc, 1, "directory")
    # the message names the user's path, never the temporary file beside it
    out = tmp_path / "out.txt"
    out.mkdir()
    proc = run("data/parse.py", "--input", tmp_path / "origin.txt", "--output", out)
    assert_one_line_error(proc, 1, f"{out}: Is a directory")
    assert ".tmp" not in proc.stderr
    (tmp_path / "afile").write_text("x")
    proc = run("data/parse.py", "--input", tmp_path / "origin.txt", "--output",
               tmp_path / "afile" / "lyrics.txt")
    assert_one_line_error(proc, 1, "not a directory")


@pytest.mark.slow
def test_plot_to_a_directory_leaves_no_empty_png(tmp_path):
    save, proc = train_tiny(str(tmp_path), epochs=2)
    logs = sorted((tmp_path / "log").glob("*.txt"))
    again = tmp_path / "log" / "again.txt"
    again.write_text(logs[0].read_text(encoding="utf-8"), encoding="utf-8")
    target = tmp_path / "compare_dir"
    target.mkdir()
    proc = run("analysis/plot.py", logs[0], again, "--out", target)
    assert_one_line_error(proc, 1, "directory")
    assert not [p for p in tmp_path.rglob("*.png") if p.stat().st_size == 0]


def test_atomic_writes_keep_the_users_umask_and_an_existing_mode(tmp_path):
    fresh = tmp_path / "fresh.txt"
    atomic_write_text(str(fresh), "a")
    umask = os.umask(0)
    os.umask(umask)
    assert (os.stat(fresh).st_mode & 0o777) == 0o666 & ~umask
    os.chmod(fresh, 0o640)
    atomic_write_text(str(fresh), "b")
    assert (os.stat(fresh).st_mode & 0o777) == 0o640


def test_failed_checkpoint_save_is_one_clear_line():
    from tfenv import import_tensorflow
    tf = import_tensorflow()
    from modeldir import save_checkpoint

    class FullDisk:
        def save(self, *a, **kw):
            raise tf.errors.ResourceExhaustedError(None, None, "save/model.ckpt: No space")
    with pytest.raises(UserError, match="disk full or read-only.*--keep"):
        save_checkpoint(FullDisk(), None, "save", 1)


@pytest.mark.slow
def test_damaged_no_copy_index_is_rebuilt(trained, tmp_path):
    import shutil
    save = tmp_path / "save"
    shutil.copytree(trained("lstm"), save)
    index = save / "ngram8.npz"
    index.write_bytes(index.read_bytes()[:1000])           # truncated
    proc = run("sample.py", "--save_dir", save, "--n", "30", "--out", "")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "no-copy rule at 8 characters" in proc.stderr


def test_non_utf8_lyrics_txt_says_use_parse(tmp_path):
    (tmp_path / "lyrics.txt").write_bytes("春风吹过小河边".encode("gbk"))
    proc = run("preprocess.py", "--data_dir", tmp_path)
    assert_one_line_error(proc, 1, "not UTF-8", "data/parse.py")


@pytest.mark.parametrize("seed", ["-1", "99999999999999999999"])
def test_out_of_range_seeds_are_usage_errors(tmp_path, seed):
    assert_one_line_error(run("sample.py", "--save_dir", tmp_path, "--seed", seed), 2,
                          "--seed")
    assert_one_line_error(run("analysis/evaluate.py", "--save_dir", tmp_path, "--seed",
                              seed), 2, "--seed")


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_evaluate_temperature_must_be_positive(tmp_path, value):
    proc = run("analysis/evaluate.py", "--save_dir", tmp_path, "--temperature", value)
    assert_one_line_error(proc, 2, "--temperature")


# ------------------------------------------------------------- damaged checkpoints

def damage(prefix, how):
    data = prefix + ".data-00000-of-00001"
    if how == "truncate":
        os.truncate(data, os.path.getsize(data) // 2)
    elif how == "bitflip":
        raw = bytearray(open(data, "rb").read())
        raw[len(raw) // 2] ^= 0x10
        open(data, "wb").write(raw)
    elif how == "garbage_index":
        open(prefix + ".index", "wb").write(b"not an index" * 20)
    elif how == "deleted":
        os.unlink(data)
        os.unlink(prefix + ".index")


def newest(save):
    import re
    steps = [int(m.group(1)) for n in os.listdir(save)
             for m in [re.match(r"model\.ckpt-(\d+)\.index$", n)] if m]
    return max(steps), sorted(steps)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["truncate", "bitflip", "garbage_index", "deleted"])
def test_keep_falls_back_to_the_newest_intact_checkpoint(tmp_path, how):
    save, proc = train_tiny(str(tmp_path), "--max_steps", "120", "--save_every", "40",
                            epochs=50)
    assert proc.returncode == 0, proc.stderr
    top, steps = newest(save)
    damage(os.path.join(save, f"model.ckpt-{top}"), how)
    _, proc = train_tiny(str(tmp_path), "--keep", "--max_steps", "160",
                         "--save_every", "40", epochs=50)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    if how != "deleted":
        assert f"model.ckpt-{top} is damaged" in proc.stderr      # a warning
        assert os.path.exists(os.path.join(save, f"damaged-model.ckpt-{top}.index"))
    older = steps[-2]
    # resumed from the previous model checkpoint, or best.ckpt if it is newer
    assert "resumed" in proc.stdout and "steps of training are lost" in proc.stdout \
        or how == "deleted"
    assert f"model.ckpt-{older}" in proc.stdout or "best.ckpt-" in proc.stdout
    # and sampling works on what is there afterwards
    assert run("sample.py", "--save_dir", save, "--n", "20", "--out", "").returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("latest", [False, True])
def test_sample_skips_a_damaged_checkpoint_with_a_warning(trained, tmp_path, latest):
    import shutil
    save = tmp_path / "save"
    shutil.copytree(trained("lstm"), save)
    from modeldir import checkpoint_candidates
    first = checkpoint_candidates(str(save), prefer_best=not latest)[0]
    damage(first, "bitflip")
    proc = run("sample.py", "--save_dir", save, "--n", "20", "--out", "",
               *(["--latest"] if latest else []))
    assert proc.returncode == 0, proc.stderr
    assert f"{first} is damaged" in proc.stderr and "using" in proc.stderr


@pytest.mark.slow
def test_every_checkpoint_damaged_is_one_line_naming_the_way_out(trained, tmp_path):
    import shutil
    save = tmp_path / "save"
    shutil.copytree(trained("gru"), save)
    for name in os.listdir(save):
        if name.endswith(".index"):
            damage(str(save / name[:-len(".index")]), "garbage_index")
    proc = run("sample.py", "--save_dir", save, "--n", "20", "--out", "")
    assert_one_line_error(proc, 1, "no intact checkpoint", "--overwrite")


# ------------------------------------------------------------------------ smaller

def test_forced_encoding_that_gives_nonsense_is_refused(tmp_path):
    src = tmp_path / "origin.txt"
    src.write_bytes("春风吹过小河边\n我在窗前等你回\n".encode("utf-8"))   # even length
    out = tmp_path / "lyrics.txt"
    proc = run("data/parse.py", "--input", src, "--output", out, "--encoding", "utf-16")
    assert_one_line_error(proc, 1, "does not read as text", "--encoding auto")
    assert not out.exists()


@pytest.mark.slow
def test_sample_warns_about_too_small_max_copy_and_missing_lines(trained):
    proc = run("sample.py", "--save_dir", trained("lstm"), "--max_copy", "1", "--n", "20",
               "--out", "", check=0)
    assert "--max_copy 1 bans nearly every character" in proc.stderr
    proc = run("sample.py", "--save_dir", trained("lstm"), "--lines", "3", "--n", "1",
               "--line_len", "2-3", "--out", "", check=0)
    assert "warning: sample 1 has" not in proc.stderr         # 3 lines were made
    lines = [line for line in proc.stdout.splitlines() if line]
    assert len(lines) == 3


@pytest.mark.slow
def test_ckpt_of_another_model_is_one_line(trained, tmp_path):
    import glob
    other = glob.glob(os.path.join(trained("gru"), "model.ckpt-*.index"))[0][:-len(".index")]
    proc = run("sample.py", "--save_dir", trained("lstm"), "--ckpt", other, "--out", "")
    assert_one_line_error(proc, 1, "made by another model", "does not match")


@pytest.mark.slow
def test_tensorboard_reads_the_training_events(tmp_path):
    """README promises `tensorboard --logdir log`: the package is installed with the
    project and reads our scalars."""
    import glob
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    _, proc = train_tiny(str(tmp_path), epochs=2)
    assert proc.returncode == 0, proc.stderr
    run_dir = [d for d in glob.glob(str(tmp_path / "log" / "*")) if os.path.isdir(d)][0]
    acc = EventAccumulator(run_dir)
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"loss/train", "loss/validation", "learning_rate"} <= set(tags)
    assert len(acc.Scalars("loss/train")) == 2


def test_bench_row_without_validation_loss_formats():
    from bench.speed import _row_text
    row = {"config": "large", "rnncell": "lstm", "tf_chars_per_s": 5000.0,
           "tf_val_loss": None, "plain_chars_per_s": 4000.0, "plain_val_loss": None,
           "bf16_chars_per_s": 9000.0, "bf16_val_loss": None}
    text = _row_text(row)
    assert "--bf16" in text and "val loss" not in text


@pytest.fixture
def small_disk(tmp_path):
    """A 1.2 MB tmpfs (root only; skipped elsewhere)."""
    mnt = tmp_path / "small_disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(mnt)],
                          capture_output=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", str(mnt)], capture_output=True)


@pytest.mark.slow
def test_training_onto_a_full_disk_is_one_line_and_keeps_what_was_saved(tmp_path,
                                                                        small_disk):
    save = small_disk / "save"
    data = made_up_data(tmp_path)
    proc = run("train.py", "--data_dir", data, "--save_dir", save, "--log_dir",
               tmp_path / "log", *TINY, "--save_every", "5", "--num_epochs", "50")
    assert_one_line_error(proc, 1, "could not save a checkpoint", "disk full")
    from modeldir import checkpoint_candidates
    from tfenv import import_tensorflow
    tf = import_tensorflow()
    saved = checkpoint_candidates(str(save))
    assert saved                                    # the earlier ones are there, intact
    reader = tf.train.load_checkpoint(saved[0])
    for name in reader.get_variable_to_shape_map():
        reader.get_tensor(name)


@pytest.mark.parametrize("flag", ["--save_dir", "--log_dir"])
def test_directory_flags_naming_a_file_are_refused_before_writing(tmp_path, flag):
    data = made_up_data(tmp_path)
    afile = tmp_path / "afile"
    afile.write_text("x")
    dirs = {"--save_dir": tmp_path / "save", "--log_dir": tmp_path / "log"}
    dirs[flag] = afile / "sub" if flag == "--log_dir" else afile
    proc = run("train.py", "--data_dir", data, "--save_dir", dirs["--save_dir"],
               "--log_dir", dirs["--log_dir"], *TINY)
    assert_one_line_error(proc, 2, flag, "is a file")
    assert not (tmp_path / "save").exists() and afile.read_text() == "x"


def test_evaluate_json_has_null_not_nan():
    import json
    from analysis.evaluate import json_safe
    out = json.dumps(json_safe({"perplexity": float("inf"), "x": [float("nan"), 1.5]}))
    assert json.loads(out) == {"perplexity": None, "x": [None, 1.5]}
    assert "NaN" not in out and "Infinity" not in out


@pytest.mark.slow
def test_a_save_dir_with_glob_characters_trains_resumes_rotates_and_samples(tmp_path):
    # TensorFlow finds checkpoints with its glob: run[1] used to read as damaged, and the
    # Saver never deleted the checkpoints it rotated out.
    data = made_up_data(tmp_path)
    save = tmp_path / "run[1]*?"
    common = ["--data_dir", data, "--save_dir", save, "--log_dir", tmp_path / "log",
              *TINY, "--save_every", "10", "--num_epochs", "50"]
    run("train.py", *common, "--max_steps", "80", check=0)
    kept = sorted(n for n in os.listdir(save) if n.startswith("model.ckpt-")
                  and n.endswith(".index"))
    assert len(kept) == 5, kept                       # max_to_keep: the others deleted
    proc = run("train.py", *common, "--keep", "--max_steps", "100", check=0)
    assert "resumed" in proc.stdout and str(save) in proc.stdout, proc.stdout
    assert "damaged" not in proc.stdout + proc.stderr
    import glob
    import tempfile
    aliases = set(glob.glob(os.path.join(tempfile.gettempdir(), "lyrics-ckpt-*")))
    # a real process: its fast exit skips atexit, and its alias must go all the same
    proc = run("sample.py", "--save_dir", save, "--n", "20", "--out", "", check=0,
               isolated=True)
    assert "damaged" not in proc.stderr and "lyrics-ckpt-" not in proc.stderr
    assert not any(n.startswith("damaged-") for n in os.listdir(save))
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "lyrics-ckpt-*"))) <= aliases


@pytest.mark.slow
def test_ckpt_of_another_shape_or_vocabulary_is_one_line_before_any_restore(trained,
                                                                           tmp_path):
    import glob
    mine = trained("lstm")

    def other_model(name, text, *extra):
        (tmp_path / name / "data").mkdir(parents=True)
        (tmp_path / name / "data" / "lyrics.txt").write_text(text, encoding="utf-8")
        save, proc = train_tiny(str(tmp_path / name), "--rnncell", "lstm", *extra, epochs=1)
        assert proc.returncode == 0, proc.stderr
        return glob.glob(os.path.join(save, "model.ckpt-*.index"))[0][:-len(".index")]

    # another size: restored, it used to fail deep in a run ("rnn/split ... Got: 48")
    wider = other_model("wider", made_up_text(), "--rnn_size", "48")
    proc = run("sample.py", "--save_dir", mine, "--ckpt", wider, "--out", "")
    assert_one_line_error(proc, 1, "made by another model", "[", "does not match")
    # the same shapes, other characters (秋 for 春): it used to sample without a word
    renamed = other_model("renamed", made_up_text().replace("春", "秋"))
    proc = run("sample.py", "--save_dir", mine, "--ckpt", renamed, "--out", "")
    assert_one_line_error(proc, 2, "vocabulary differs", "--save_dir")
    # a copy of the model's own directory is the same model
    import shutil
    shutil.copytree(mine, tmp_path / "copy")
    own = glob.glob(str(tmp_path / "copy" / "model.ckpt-*.index"))[0][:-len(".index")]
    run("sample.py", "--save_dir", mine, "--ckpt", own, "--n", "10", "--out", "", check=0)


def test_checkpoints_holding_nan_are_refused_as_damaged(trained, tmp_path):
    """Valid checksums, NaN weights: sampling gave an empty text and exit 0, scoring
    'nan'; now every such checkpoint is skipped as damaged, and with none left it is one
    line saying so."""
    import shutil
    import numpy as np
    from modeldir import read_config
    from seq2seq_rnn import Model
    from modeldir import checkpoint_candidates, tf_path
    from tfenv import import_tensorflow
    tf = import_tensorflow()
    tf1 = tf.compat.v1
    save = tmp_path / "save"
    shutil.copytree(trained("lstm"), save)
    for prefix in checkpoint_candidates(str(save)):
        g = tf.Graph()
        with g.as_default():
            m = Model(read_config(str(save)), training=False)
            saver = tf1.train.Saver(tf1.global_variables())
            with tf1.Session(graph=g) as sess:
                saver.restore(sess, tf_path(prefix))
                w = sess.run(m.softmax_w)
                w[0, 0] = np.nan
                m.softmax_w.load(w, sess)
                saver.save(sess, tf_path(prefix), write_meta_graph=False,
                           write_state=False)
    proc = run("sample.py", "--save_dir", save, "--n", "20", cwd=tmp_path)
    assert_one_line_error(proc, 1, "no intact checkpoint", "inf/NaN")
    text = tmp_path / "t.txt"
    text.write_text("春风吹过小河边 我在窗前等你回来", encoding="utf-8")
    proc = run("analysis/evaluate.py", "--save_dir", save, "--text", text, cwd=tmp_path)
    assert_one_line_error(proc, 1, "inf/NaN")


@pytest.mark.parametrize("version", ["1", True, 0])
def test_a_malformed_format_is_not_called_newer(trained, tmp_path, version):
    import pickle
    import shutil
    save = tmp_path / "save"
    shutil.copytree(trained("lstm"), save)
    config = pickle.loads((save / "config.pkl").read_bytes())
    (save / "config.pkl").write_bytes(pickle.dumps(dict(config, format=version)))
    proc = run("sample.py", "--save_dir", save, "--n", "5", cwd=tmp_path)
    assert_one_line_error(proc, 1, "format =", "not a version number")
    assert "newer" not in proc.stderr


def test_a_log_dir_that_cannot_be_written_is_refused_before_anything_is(tmp_path):
    from conftest import TINY
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "lyrics.txt").write_text("春风吹过小河边 " * 500, encoding="utf-8")
    loop = tmp_path / "loop"
    os.symlink(loop, loop)                                   # a symlink to itself
    for log_dir in (loop / "log", "/proc/self/lyrics-log"):
        proc = run("train.py", "--data_dir", tmp_path / "data", "--save_dir",
                   tmp_path / "save", "--log_dir", log_dir, *TINY)
        assert_one_line_error(proc, 2, "--log_dir", "cannot write there")
        assert not (tmp_path / "save").exists()


@pytest.mark.parametrize("flags, needle", [
    (["--lines", "10000"], "at most 20,000"),        # evaluate.py --samples 1: past 200 s
    (["--lines", "3", "--acrostic", "春花秋月"], "one line per character (4)"),
])
def test_evaluate_bounds_its_samples_as_sample_py_does(flags, needle, tmp_path):
    for script, more in (("sample.py", []), ("analysis/evaluate.py", ["--samples", "1"])):
        proc = run(script, "--save_dir", tmp_path, *flags, *more)
        assert_one_line_error(proc, 2, needle)
