"""config.FIELDS is the one place a setting is written: its flag, its help, its default,
whether it is saved, and what a saved config may hold all come from its Field."""
import os
import pickle

import pytest

import config
from conftest import TINY, assert_one_line_error, made_up_text, run
from utils import int_in
from fileio import safe_load_pickle


def test_every_field_has_help_and_a_default_its_own_checks_accept():
    names = [f.name for f in config.FIELDS]
    assert len(names) == len(set(names))
    for f in config.FIELDS:
        assert f.help_text().strip(), f.name
        for value in (f.default, f.fresh, f.fine_tune):
            if value is None or f.switch:
                continue
            if f.type is not None:
                assert f.type(str(value)) == value, f.name
            if f.saved is not None:
                lo, hi = f.saved
                assert lo <= value <= hi, f.name
    # the run-dependent defaults are the fields' own
    assert config.run_defaults("fine_tune")["mix_base"] == config.field("mix_base").fine_tune
    assert config.run_defaults("fresh")["sampled_softmax"] == 0


def test_a_new_setting_is_one_field(tmp_path, monkeypatch):
    """A Field added to FIELDS alone is a flag in --help, typed and range-checked, saved in
    config.pkl, and a saved value out of its range is refused by --keep in one line."""
    toy = config.Field("toy_width", "training", 3, "a made-up setting of this test",
                       type=int_in(1, 5), saved=(1, 5), whole=True)
    monkeypatch.setattr(config, "FIELDS", config.FIELDS + (toy,))
    proc = run("train.py", "--help")
    assert proc.returncode == 0
    assert "--toy_width" in proc.stdout and "a made-up setting of this test" in proc.stdout
    assert_one_line_error(run("train.py", "--toy_width", "9"), 2, "--toy_width")

    data = tmp_path / "data"
    data.mkdir()
    (data / "lyrics.txt").write_text(made_up_text(), encoding="utf-8")
    save = tmp_path / "save"
    flags = ["--data_dir", data, "--save_dir", save, "--log_dir", tmp_path / "log", *TINY]
    proc = run("train.py", *flags, "--num_epochs", "1", "--toy_width", "4")
    assert proc.returncode == 0, proc.stderr
    path = os.path.join(save, "config.pkl")
    saved = safe_load_pickle(path)
    assert saved["toy_width"] == 4

    saved["toy_width"] = 9                     # a damaged (or hand-edited) config
    with open(path, "wb") as f:
        pickle.dump(saved, f)
    assert_one_line_error(run("train.py", *flags, "--num_epochs", "2", "--keep"), 1,
                          "toy_width = 9")


def test_preprocess_takes_the_same_flags_as_train(tmp_path):
    """preprocess.py's flags are train.py's fields, with their types: a batch size of 0
    is refused as train.py refuses it (it used to take any int)."""
    proc = run("preprocess.py", "--batch_size", "0", "--data_dir", tmp_path)
    assert_one_line_error(proc, 2, "--batch_size")
    for f in ("batch_size", "seq_length", "val_frac", "max_vocab"):
        assert f"--{f}" in run("preprocess.py", "--help").stdout


@pytest.mark.parametrize("kind", ["fresh", "fine_tune"])
def test_train_help_states_the_run_dependent_defaults(kind):
    text = " ".join(run("train.py", "--help").stdout.split())
    for name, value in config.run_defaults(kind).items():
        if kind == "fine_tune" and config.field(name).fine_tune is None:
            continue
        said = f"default {value}" if kind == "fresh" else f"with --init_from {value}"
        assert said in text, (name, said)


TOY_CELL = '''

class ToyCell(Cell):
    """Added by tests/test_config.py: a two-gate cell, to show a cell type is one class."""
    kind, GATES = "toy", 2

    def build(self, n_in):
        self._kernel(n_in, self.GATES)

    def step(self, xp, h):
        z, c = tf.split(xp + tf.matmul(h, self.w_h), 2, axis=1)
        return tf.sigmoid(z) * h + (1.0 - tf.sigmoid(z)) * tf.tanh(c)
'''


@pytest.mark.slow
def test_a_new_cell_type_is_one_class_in_cells_py(tmp_path):
    """A copy of the project whose cells.py alone gains a class: --rnncell offers it, and
    it trains, samples and benches (its FLOPs counted from its gate count)."""
    import json
    import shutil
    import subprocess
    import sys
    from conftest import ROOT
    copy = tmp_path / "project"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
        ".*", "save", "log", "result", "models", "cache", "tests", "*.txt", "*.npy",
        "*.npz", "__pycache__", "web", "docs"))
    with open(copy / "cells.py", "a", encoding="utf-8") as f:
        f.write(TOY_CELL)

    def run_copy(*args):
        return subprocess.run([sys.executable, *map(str, args)], cwd=copy,
                              capture_output=True, text=True, timeout=600)
    assert "toy" in run_copy("train.py", "--help").stdout
    (tmp_path / "data").mkdir()
    text = tmp_path / "data" / "lyrics.txt"
    text.write_text(made_up_text(), encoding="utf-8")
    save = tmp_path / "save"
    proc = run_copy("train.py", "--rnncell", "toy", "--data_dir", tmp_path / "data",
                    "--save_dir", save, "--log_dir", tmp_path / "log", *TINY,
                    "--num_epochs", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "toy 2x32" in proc.stdout
    assert safe_load_pickle(save / "config.pkl")["rnncell"] == "toy"
    proc = run_copy("sample.py", "--save_dir", save, "--n", "30", "--seed", "1")
    assert proc.returncode == 0 and len(proc.stdout.strip()) >= 20, proc.stderr[-2000:]
    proc = run_copy("bench/speed.py", "--text", text, "--config", "seed", "--rnncell", "toy",
                    "--steps", "2", "--warmup", "1", "--repeats", "1", "--no_sampling",
                    "--no_quality", "--torch_python", "")
    assert proc.returncode == 0, proc.stderr[-2000:]
    row, = json.loads(proc.stdout.strip().splitlines()[-1])["training"]
    assert row["rnncell"] == "toy" and row["tf_chars_per_s"] > 0
