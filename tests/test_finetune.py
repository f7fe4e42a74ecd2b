"""Fine-tuning a base model (train.py --init_from): the merged vocabulary, the loaded
weights, the untouched base, what a fine-tuned model can do afterwards, and every bad
input; and train.py --max_minutes."""
import hashlib
import json
import os
import re

import numpy as np
import pytest

from conftest import MADE_UP_LINES, assert_one_line_error, made_up_text, run, train_tiny
from preprocess import TextParser, build_vocab
from fileio import safe_load_pickle

BASE = ["--rnn_size", "32", "--num_layers", "2", "--embedding_size", "16",
        "--batch_size", "8", "--seq_length", "8", "--learning_rate", "0.01",
        "--patience", "0", "--save_every", "1000"]
# The "user's lyrics": the base's lines in another order, with lines of new characters.
NEW_LINES = ["蝴蝶飞舞彩虹桥", "琴键敲醒黎明"]


def user_text(n_lines=300, seed=7):
    import random
    rng = random.Random(seed)
    return " ".join(rng.choice(MADE_UP_LINES + NEW_LINES) for _ in range(n_lines))


def write(d, text):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "lyrics.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    return d


def train(tmp, data, save, *extra):
    return run("train.py", "--data_dir", data, "--save_dir", save, "--log_dir",
               os.path.join(tmp, "log"), *extra)


def tree_digest(d):
    """sha256 of every file below d, by relative path."""
    out = {}
    for root, _, files in os.walk(d):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, d)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny base model trained on the made-up lines."""
    tmp = str(tmp_path_factory.mktemp("base"))
    data = write(os.path.join(tmp, "data"), made_up_text())
    save = os.path.join(tmp, "base")
    proc = train(tmp, data, save, *BASE, "--num_epochs", "4")
    assert proc.returncode == 0, proc.stderr
    return save


def ckpt_weights(prefix):
    from tfenv import import_tensorflow
    tf = import_tensorflow()
    reader = tf.train.load_checkpoint(prefix)
    return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
            if "Adam" not in n}


def best_prefix(save):
    with open(os.path.join(save, "checkpoint_best")) as f:
        return os.path.join(save, re.search(r'model_checkpoint_path: "(.*)"', f.read()).group(1))


# ------------------------------------------------------------------ vocabulary merge

def test_merged_vocabulary_keeps_base_ids_and_appends_new_characters():
    base = ["春", " ", "风", "月"]                      # a base's order, not this text's
    chars, ids = build_vocab(" 月月新风 新字", base_chars=base)
    assert chars[:4] == base                              # base ids unchanged
    assert chars[4:] == ["新", "字"]                      # new ones, most frequent first
    assert "".join(chars[i] for i in ids) == " 月月新风 新字"


def test_data_dir_holds_one_vocabulary_rebuilt_when_the_base_changes(tmp_path):
    write(str(tmp_path), "春风 新月 新")
    own = TextParser(str(tmp_path), 1, 2, 0.0)
    merged = TextParser(str(tmp_path), 1, 2, 0.0, base_chars=["月", " ", "春"])
    assert merged.rebuilt and merged.chars[:3] == ["月", " ", "春"]
    assert merged.new_chars == [c for c in merged.chars[3:]] and "新" in merged.new_chars
    meta = safe_load_pickle(str(tmp_path / "vocab.pkl"))
    context = np.load(str(tmp_path / "context.npy"))
    assert meta["chars"] == merged.chars            # what is on disk is what is used
    assert "".join(meta["chars"][i] for i in context) == " 春风 新月 新"
    again = TextParser(str(tmp_path), 1, 2, 0.0)   # back to the text's own vocabulary
    assert again.rebuilt and again.chars == own.chars


# ----------------------------------------------------------------------- fine-tuning

@pytest.fixture(scope="module")
def finetuned(base, tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("ft"))
    data = write(os.path.join(tmp, "data"), user_text())
    before = tree_digest(base)
    save = os.path.join(tmp, "ft")
    # lr 1e-9: the one Adam step moves no weight by more than ~1e-9, so the checkpoint
    # shows what was loaded
    proc = train(tmp, data, save, "--init_from", base, "--batch_size", "8",
                 "--seq_length", "8", "--max_steps", "1", "--learning_rate", "1e-9",
                 "--patience", "0")
    assert proc.returncode == 0, proc.stderr
    return dict(tmp=tmp, data=data, save=save, proc=proc, before=before)


@pytest.mark.slow
def test_fine_tuning_loads_every_base_weight_and_adds_new_characters(base, finetuned):
    proc, save = finetuned["proc"], finetuned["save"]
    base_chars = safe_load_pickle(os.path.join(base, "words_vocab.pkl"))[0]
    chars, vocab = safe_load_pickle(os.path.join(save, "words_vocab.pkl"))
    new = [c for c in chars if c not in base_chars]
    assert chars[:len(base_chars)] == base_chars and set(new) == set("蝴蝶飞舞彩虹桥琴键敲醒黎明")
    assert f"{len(new)} characters of" in proc.stdout and "new to it" in proc.stdout
    b = ckpt_weights(best_prefix(base))
    f = ckpt_weights(os.path.join(save, "model.ckpt-1"))
    Vb = len(base_chars)
    for name, value in b.items():
        if name in ("global_step", "epoch", "batch_pointer", "best_val_loss",
                    "learning_rate") or name.endswith("_power"):
            continue
        got = f[name]
        if name in ("word_embedding", "softmax_b"):
            got = got[:Vb]
        elif name == "softmax_w":
            got = got[:, :Vb]
        np.testing.assert_allclose(got, value, atol=1e-6, err_msg=name)
    assert f["word_embedding"].shape[0] == f["softmax_w"].shape[1] == len(chars)
    # new characters start as rare ones: the base's lowest output bias
    np.testing.assert_allclose(f["softmax_b"][Vb:], b["softmax_b"].min(), atol=1e-6)
    assert int(f["global_step"]) == 1            # a new run: its own step count


def test_base_is_byte_identical_and_config_records_it(base, finetuned):
    assert tree_digest(base) == finetuned["before"]
    config = safe_load_pickle(os.path.join(finetuned["save"], "config.pkl"))
    assert config["init_from"] == os.path.abspath(base)
    assert config["init_checkpoint"].startswith(os.path.abspath(base))
    base_config = safe_load_pickle(os.path.join(base, "config.pkl"))
    for k in ("rnncell", "num_layers", "rnn_size", "embedding_size", "attention"):
        assert config[k] == base_config[k]
    assert config["dropout"] == 0.3               # the fine-tuning defaults
    assert config["learning_rate"] == 1e-9          # given on the command line


@pytest.mark.slow
def test_a_fine_tuned_model_is_a_normal_model(base, finetuned):
    tmp, data, save = finetuned["tmp"], finetuned["data"], finetuned["save"]
    before = tree_digest(base)
    # --keep resumes the fine-tuning: same merged vocabulary, architecture from config
    proc = train(tmp, data, save, "--keep", "--max_steps", "30", "--batch_size", "8",
                 "--seq_length", "8")
    assert proc.returncode == 0, proc.stderr
    assert "resumed" in proc.stdout
    assert tree_digest(base) == before
    proc = run("sample.py", "--save_dir", save, "--start", "蝴蝶", "--n", "40", "--out", "",
               "--seed", "1", check=0)
    assert "no-copy rule at 8 characters" in proc.stderr
    # the no-copy index is of the new text (the one whose copies matter), in merged ids
    from sampler import Sampler
    s = Sampler(save, max_copy=8)
    corpus = s.decode(s.corpus)
    with open(os.path.join(data, "lyrics.txt"), encoding="utf-8") as f:
        assert corpus == " " + f.read()
    proc = run("analysis/evaluate.py", "--save_dir", save, base, "--samples", "0", check=0)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    ft, b = result["models"]
    assert ft["scored"] == b["scored"] and ft["unknown_chars"] == 0
    assert b["unknown_chars"] > 0                 # the new characters, counted for the base


@pytest.mark.slow
def test_fine_tuning_beats_scratch_at_equal_steps(base, tmp_path):
    """The user's text is the base's lines plus two new ones: 60 steps from the base
    must end far below 60 steps from random weights."""
    data = write(str(tmp_path / "data"), user_text())
    arch = ["--rnn_size", "32", "--num_layers", "2", "--embedding_size", "16"]
    common = ["--batch_size", "8", "--seq_length", "8", "--max_steps", "60",
              "--learning_rate", "0.01", "--dropout", "0", "--patience", "0"]
    ft = train(str(tmp_path), data, str(tmp_path / "ft"), "--init_from", base, *common)
    scratch = train(str(tmp_path), data, str(tmp_path / "scratch"), *arch, *common)
    assert ft.returncode == 0 and scratch.returncode == 0, ft.stderr + scratch.stderr

    def best(proc):
        return float(re.search(r"best validation loss ([0-9.]+)", proc.stdout).group(1))
    assert best(ft) < 0.6 * best(scratch), (best(ft), best(scratch))


# ------------------------------------------------------------------------- bad input

@pytest.mark.slow
def test_bad_init_from_is_one_clear_line_and_writes_nothing(base, tmp_path):
    data = write(str(tmp_path / "data"), user_text())
    save = str(tmp_path / "ft")
    before = tree_digest(base)

    def attempt(*extra, code=2, needles=()):
        proc = train(str(tmp_path), data, save, *extra)
        assert_one_line_error(proc, code, *needles)
        assert not os.path.exists(save) or os.listdir(save) == []
        assert tree_digest(base) == before

    attempt("--init_from", str(tmp_path / "nowhere"), needles=["no such directory"])
    empty = tmp_path / "empty"
    empty.mkdir()
    attempt("--init_from", str(empty), needles=["no trained model", "scripts/base.sh"])
    attempt("--init_from", base, "--keep", needles=["--keep"])
    attempt("--init_from", base, "--rnn_size", "64",
            needles=["rnn_size=32", "64", "drop the flag"])
    attempt("--init_from", base, "--rnncell", "gru", needles=["rnncell='lstm'"])
    # the architecture flags may be repeated when they agree
    proc = train(str(tmp_path), data, str(tmp_path / "ok"), "--init_from", base,
                 "--rnn_size", "32", "--max_steps", "1", "--batch_size", "8",
                 "--seq_length", "8")
    assert proc.returncode == 0, proc.stderr
    config = safe_load_pickle(str(tmp_path / "ok" / "config.pkl"))
    assert (config["learning_rate"], config["dropout"]) == (0.0005, 0.3)   # the defaults


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate", "bitflip"])
def test_corrupt_base_checkpoint_is_refused_before_anything_is_written(base, tmp_path,
                                                                      damage):
    import shutil
    broken = str(tmp_path / "base")
    shutil.copytree(base, broken)
    data_file = best_prefix(broken) + ".data-00000-of-00001"
    raw = bytearray(open(data_file, "rb").read())
    if damage == "truncate":
        raw = raw[:len(raw) // 2]
    else:
        raw[len(raw) // 2] ^= 0x40
    with open(data_file, "wb") as f:
        f.write(raw)
    before = tree_digest(broken)
    save = str(tmp_path / "ft")
    proc = train(str(tmp_path), write(str(tmp_path / "data"), user_text()), save,
                 "--init_from", broken, "--batch_size", "8", "--seq_length", "8")
    assert_one_line_error(proc, 1, "base checkpoint", "damaged")
    assert not os.path.exists(save)
    assert tree_digest(broken) == before


# ---------------------------------------------------------------------- --max_minutes

@pytest.mark.slow
def test_max_minutes_stops_in_time_and_keeps_the_best_model(tmp_path):
    data = write(str(tmp_path / "data"), made_up_text(4000))
    save = str(tmp_path / "save")
    proc = train(str(tmp_path), data, save, *BASE, "--num_epochs", "1000",
                 "--max_minutes", "0.25")
    assert proc.returncode == 0, proc.stderr
    assert "stopped: --max_minutes 0.25" in proc.stdout
    assert "best validation loss" in proc.stdout
    assert os.path.exists(os.path.join(save, "checkpoint_best"))
    m = re.search(r"after ([0-9.]+) minutes", proc.stdout)
    assert float(m.group(1)) <= 0.25


# ------------------------------------------------------------------ --mix_base

def test_mixed_batches_put_a_stretch_of_the_other_text_in_the_last_rows():
    from preprocess import make_batches, mixed_batches
    mine, other = np.arange(1, 241), np.arange(1000, 3000)
    n, xs, ys = mixed_batches(mine, other, 4, 5, 1, seed=3, epoch=0)
    n3, xs3, ys3 = make_batches(mine, 3, 5)
    assert n == n3 == 16
    for x, y, x3, y3 in zip(xs, ys, xs3, ys3):
        assert x.shape == (4, 5) and (x[:3] == x3).all() and (y[:3] == y3).all()
    row = np.concatenate([x[3] for x in xs])                 # the other text's row ...
    assert (np.diff(row) == 1).all() and row[0] >= 1000       # ... one stretch of it
    assert (np.concatenate([y[3] for y in ys]) == row + 1).all()
    again = mixed_batches(mine, other, 4, 5, 1, seed=3, epoch=0)[1]
    later = mixed_batches(mine, other, 4, 5, 1, seed=3, epoch=1)[1]
    assert all((a == b).all() for a, b in zip(xs, again))    # a resumed run: the same
    assert later[0][3, 0] != xs[0][3, 0]                      # the next epoch: elsewhere
    short = np.arange(1000, 1030)                 # shorter than an epoch needs: round it
    _, xs, _ = mixed_batches(mine, short, 4, 5, 1, seed=3, epoch=0)
    row = np.concatenate([x[3] for x in xs])
    assert set(row) <= set(short) and ((np.diff(row) == 1) | (np.diff(row) == -29)).all()


@pytest.mark.slow
def test_fine_tuning_mixes_the_base_text_by_default_and_resumes_in_its_layout(base,
                                                                             tmp_path):
    data = write(str(tmp_path / "data"), user_text())
    common = ["--init_from", base, "--batch_size", "8", "--seq_length", "8",
              "--save_every", "1000", "--num_epochs", "50"]
    mixed = str(tmp_path / "mixed")
    proc = train(str(tmp_path), data, mixed, *common, "--max_steps", "70")
    assert proc.returncode == 0, proc.stderr
    # 3/4 of the rows read the base: an epoch of the user's text is 4 times the batches
    plain = int(re.search(r"preprocess: (\d+) training batches per epoch",
                          proc.stdout).group(1))
    m = re.search(r"6 of each batch's 8 rows read the base's text \(--mix_base 0.75\); an "
                  r"epoch is (\d+) batches", proc.stdout)
    assert m and 4 * plain <= int(m.group(1)) <= 4 * plain + 3 and plain < 70, proc.stdout
    assert safe_load_pickle(os.path.join(mixed, "config.pkl"))["mix_base"] == 0.75
    # resumed mid-epoch (batch 70 of an epoch the plain layout would have ended at 49)
    resume = run("train.py", "--data_dir", data, "--save_dir", mixed, "--log_dir",
                 str(tmp_path / "log"), "--keep", "--max_steps", "120", "--num_epochs", "50")
    assert resume.returncode == 0, resume.stderr
    assert "read the base's text (--mix_base 0.75)" in resume.stdout
    assert "at step 70, epoch 1, batch 70" in resume.stdout
    assert os.path.exists(os.path.join(mixed, "model.ckpt-120.index"))
    # --mix_base 0: the text alone, and so other weights after the same steps
    off = str(tmp_path / "off")
    proc = train(str(tmp_path), data, off, *common, "--max_steps", "70", "--mix_base", "0")
    assert proc.returncode == 0 and "base's text" not in proc.stdout
    a = ckpt_weights(os.path.join(mixed, "model.ckpt-70"))
    c = ckpt_weights(os.path.join(off, "model.ckpt-70"))
    assert not np.allclose(a["softmax_w"], c["softmax_w"])


@pytest.mark.slow
def test_mix_base_without_a_base_text_or_a_base_is_said(base, tmp_path):
    import shutil
    data = write(str(tmp_path / "data"), user_text())
    proc = train(str(tmp_path), data, str(tmp_path / "a"), "--mix_base", "0.5")
    assert_one_line_error(proc, 2, "--mix_base", "--init_from")
    proc = train(str(tmp_path), data, str(tmp_path / "b"), "--init_from", base,
                 "--mix_base", "0.99")
    assert_one_line_error(proc, 2, "--mix_base", "from 0 to 0.95")
    bare = tmp_path / "bare"                         # a base copied without corpus.npy
    shutil.copytree(base, bare)
    os.remove(bare / "corpus.npy")
    proc = train(str(tmp_path), data, str(tmp_path / "c"), "--init_from", bare,
                 "--batch_size", "8", "--seq_length", "8", "--max_steps", "5")
    assert proc.returncode == 0, proc.stderr
    assert "corpus.npy is missing" in proc.stderr and "your text alone" in proc.stderr
    assert safe_load_pickle(str(tmp_path / "c" / "config.pkl"))["mix_base"] == 0.0
    proc = train(str(tmp_path), data, str(tmp_path / "d"), "--init_from", bare,
                 "--batch_size", "8", "--seq_length", "8", "--max_steps", "5",
                 "--mix_base", "0.25")
    assert_one_line_error(proc, 1, "corpus.npy is missing", "--mix_base 0")


def test_init_from_a_base_in_training_says_so(tmp_path):
    """A directory another train.py is still writing (no checkpoint yet) is 'in
    training', not 'damaged: retrain the base'."""
    from conftest import holding_lock
    base = tmp_path / "base"
    base.mkdir()
    save, _ = train_tiny(str(tmp_path / "t"), epochs=1)
    for name in ("config.pkl", "words_vocab.pkl"):          # written first by train.py
        (base / name).write_bytes(open(os.path.join(save, name), "rb").read())
    with holding_lock(base):
        proc = run("train.py", "--init_from", base, "--data_dir", tmp_path / "t" / "data",
                   "--save_dir", tmp_path / "ft", "--log_dir", tmp_path / "log")
    assert_one_line_error(proc, 2, "is training the model there now")
    assert "damaged" not in proc.stderr


def test_a_base_text_shorter_than_a_batch_is_not_used(tmp_path):
    import numpy as np
    save, _ = train_tiny(str(tmp_path / "t"), epochs=1)
    np.save(os.path.join(save, "corpus.npy"), np.array([1, 2, 3], dtype=np.int32))
    proc = run("train.py", "--init_from", save, "--data_dir", tmp_path / "t" / "data",
               "--save_dir", tmp_path / "ft", "--log_dir", tmp_path / "log",
               "--num_epochs", "1", "--batch_size", "8", "--seq_length", "8")
    assert proc.returncode == 0, proc.stderr
    assert "holds 3 characters, fewer than" in proc.stderr and "--mix_base 0" in proc.stderr


def test_a_preset_that_disagrees_with_the_base_is_named_not_the_user(tmp_path):
    save, _ = train_tiny(str(tmp_path / "t"), epochs=1)             # a 2 x 32 base
    proc = run("train.py", "--preset", "base-cpu", "--init_from", save, "--data_dir",
               tmp_path / "t" / "data", "--save_dir", tmp_path / "ft", "--log_dir",
               tmp_path / "log")
    assert_one_line_error(proc, 2, "--preset base-cpu asks for", "drop --preset")
    assert "this run asks for" not in proc.stderr


@pytest.mark.slow
def test_keep_goes_on_when_the_base_has_moved(base, tmp_path):
    """A fine-tune whose base (and so its text) is gone: --keep says so and goes on, on
    the user's text alone, from the start of the epoch (its batches change); --mix_base
    0 asked for explicitly is accepted too (it was refused as a conflict)."""
    import shutil
    data = write(str(tmp_path / "data"), user_text())
    moved = tmp_path / "base"
    shutil.copytree(base, moved)
    fts = [str(tmp_path / "ft1"), str(tmp_path / "ft2")]
    for ft in fts:
        proc = train(str(tmp_path), data, ft, "--init_from", moved, "--batch_size", "8",
                     "--seq_length", "8", "--max_steps", "3", "--mix_base", "0.5")
        assert proc.returncode == 0, proc.stderr
    shutil.rmtree(moved)
    proc = train(str(tmp_path), data, fts[0], "--keep", "--max_steps", "6")
    assert proc.returncode == 0, proc.stderr
    assert "your text alone" in proc.stderr and "starts over" in proc.stderr
    assert "starts again from its first batch" in proc.stdout
    assert safe_load_pickle(os.path.join(fts[0], "config.pkl"))["mix_base"] == 0.0
    proc = train(str(tmp_path), data, fts[1], "--keep", "--max_steps", "6", "--mix_base", "0")
    assert proc.returncode == 0, proc.stderr
    assert "starts again from its first batch" in proc.stdout
