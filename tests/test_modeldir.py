"""modeldir: the one reader and writer of a model directory.  What train.py records, and
what every reader refuses (a newer format, numbers of the wrong kind) in one line."""
import os
import pickle
import shutil

import pytest

from conftest import assert_one_line_error, run
from modeldir import (FORMAT, existing_model, load_saved, read_config, read_vocab,
                      write_model_files)
from utils import UserError


def test_config_records_the_flags_and_what_the_run_derived_nothing_else(trained):
    from train import build_parser
    config = read_config(trained("lstm"))
    from config import FIELDS
    run_only = {f.name for f in FIELDS if not f.in_config}
    assert run_only == {"keep", "overwrite", "cpu", "progress_every", "cluster", "cluster_wait"}
    flags = set(vars(build_parser().parse_args([]))) - run_only
    derived = {"vocab_size", "val_split", "text_sha256", "format"}
    assert set(config) == flags | derived            # no start_time, lock, ...
    assert config["format"] == FORMAT and config["val_split"] == "blocks"


def test_written_files_read_back(tmp_path, corpus_dir):
    import numpy as np
    index = tmp_path / "ngram8.npz"
    index.write_bytes(b"index bytes")
    config = {"vocab_size": 3, "rnncell": "gru", "num_layers": 1, "rnn_size": 8,
              "embedding_size": 4, "attention": False, "val_frac": 0.05}
    write_model_files(str(tmp_path), config, [" ", "春", "风"], np.array([1, 2, 0]),
                      str(index))
    cfg, chars, vocab = load_saved(str(tmp_path))
    assert cfg == dict(config, format=FORMAT) and chars == [" ", "春", "风"]
    assert vocab == {" ": 0, "春": 1, "风": 2}
    assert (tmp_path / "ngram8.npz").read_bytes() == b"index bytes"
    assert not existing_model(str(tmp_path))          # no checkpoint yet


@pytest.mark.parametrize("change, needle", [
    ({"format": FORMAT + 1}, "newer than this code reads"),
    ({"format": "1"}, "format = '1', not a version number"),
    ({"val_frac": "0.05"}, "val_frac = '0.05'"),
    ({"dropout": 1.5}, "dropout = 1.5"),
    ({"learning_rate": True}, "learning_rate = True"),
    ({"val_split": "middle"}, "val_split = 'middle'"),
    ({"init_from": 7}, "init_from = 7"),
    ({"base_vocab_size": "12"}, "base_vocab_size = '12'"),
])
def test_a_config_of_the_wrong_contents_is_one_line_for_every_reader(trained, tmp_path,
                                                                      change, needle):
    save = tmp_path / "save"
    shutil.copytree(trained("gru"), save)
    config = read_config(str(save))
    with open(save / "config.pkl", "wb") as f:
        pickle.dump(dict(config, **change), f)
    with pytest.raises(UserError, match="config.pkl"):
        read_config(str(save))
    proc = run("sample.py", "--save_dir", save, "--n", "10", "--out", "")
    assert_one_line_error(proc, 1, needle)
    proc = run("train.py", "--save_dir", save, "--data_dir", tmp_path / "data", "--keep")
    assert "Traceback" not in proc.stderr and needle in proc.stderr


def test_a_vocabulary_whose_ids_are_not_its_places_is_refused(trained, tmp_path):
    save = tmp_path / "save"
    shutil.copytree(trained("gru"), save)
    chars, vocab = read_vocab(str(save))
    vocab[chars[1]], vocab[chars[2]] = 2, 1
    with open(save / "words_vocab.pkl", "wb") as f:
        pickle.dump((chars, vocab), f)
    with pytest.raises(UserError, match="damaged"):
        read_vocab(str(save))
    assert os.path.exists(save / "config.pkl")
