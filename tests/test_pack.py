"""Packed models (scripts/pack_model.py, models/base-verse): what a fresh clone relies on.
They load wherever a model directory loads, carry a manifest that catches a changed file,
cannot be resumed, and a fine-tune from one rebuilds the base's text (or says it cannot
and goes on without it)."""
import glob
import hashlib
import json
import os
import shutil

import numpy as np
import pytest

from conftest import TINY, assert_one_line_error, run, train_tiny
from fileio import safe_load_pickle


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """(trained dir, packed dir, tmp) of a tiny model, packed with its log and a corpus
    recipe whose fetch fails at once (a tarball that is not there: no network needed)."""
    tmp = str(tmp_path_factory.mktemp("pack"))
    save, proc = train_tiny(tmp, "--sampled_softmax", "8", epochs=2)
    assert proc.returncode == 0, proc.stderr
    logs = glob.glob(os.path.join(tmp, "log", "*.txt"))
    out = os.path.join(tmp, "models", "tiny")
    proc = run("scripts/pack_model.py", "--from", save, "--to", out, "--log", *logs,
               "--corpus", f"--corpus poetry --tarball {tmp}/no-such.tgz")
    assert proc.returncode == 0, proc.stderr
    return save, out, tmp


def test_pack_writes_half_precision_weights_and_a_manifest_that_checks(packed):
    save, out, tmp = packed
    assert sorted(os.listdir(out)) == ["config.pkl", "manifest.json", "weights.npz",
                                       "words_vocab.pkl"]
    manifest = json.load(open(os.path.join(out, "manifest.json"), encoding="utf-8"))
    with np.load(os.path.join(out, "weights.npz")) as z:
        assert z["softmax_w"].dtype == np.float16 and z["global_step"].dtype == np.int64
        steps, best = int(z["global_step"]), float(z["best_val_loss"])
    assert manifest["steps"] == steps > 0 and manifest["validation_loss"] == best
    assert manifest["epochs"] == 2 and manifest["training_seconds"] > 0
    assert manifest["training_loss"] > 0 and manifest["cpu"]            # from the log
    ((log, seconds, step),) = manifest["sittings"]                     # one run, one log
    assert log.endswith(".txt") and step == steps
    assert seconds == pytest.approx(manifest["training_seconds"], abs=0.1)
    assert manifest["recipe"]["sampled_softmax"] == 8
    corpus = np.load(os.path.join(save, "corpus.npy"))
    assert manifest["corpus"]["ids"] == len(corpus)
    for name, digest in manifest["files"].items():
        assert hashlib.sha256(open(os.path.join(out, name), "rb").read()).hexdigest() \
            == digest
    config = safe_load_pickle(os.path.join(out, "config.pkl"))      # no machine paths
    assert config["data_dir"] is None and config["init_from"] is None
    assert run("scripts/pack_model.py", "--check", out).returncode == 0
    # a changed file is caught, named, in one line
    bad = os.path.join(tmp, "bad")
    shutil.copytree(out, bad)
    with open(os.path.join(bad, "words_vocab.pkl"), "ab") as f:
        f.write(b"\0")
    assert_one_line_error(run("scripts/pack_model.py", "--check", bad), 1,
                          "words_vocab.pkl does not match")
    # packing into a directory that exists is refused
    assert_one_line_error(run("scripts/pack_model.py", "--from", save, "--to", out), 2,
                          "exists")


def test_a_packed_model_samples_as_its_checkpoint_does(packed):
    """float16 weights: the same logits within half precision, the same argmax text."""
    from sampler import Sampler
    save, out, _ = packed
    a, b = Sampler(save), Sampler(out)
    assert b.ckpt.endswith("weights.npz")
    sa, sb = a.zero_state(), b.zero_state()
    for x in [1, 2, 3, 4, 5, 6]:
        la, sa = a.logits(x, sa)
        lb, sb = b.logits(x, sb)
        np.testing.assert_allclose(la, lb, atol=0.05 + 0.01 * np.abs(la).max())
    a.close()
    b.close()
    flags = ["--start", "春风", "--n", "40", "--sample", "argmax", "--max_copy", "0"]
    one = run("sample.py", "--save_dir", save, *flags)
    two = run("sample.py", "--save_dir", out, *flags)
    assert one.returncode == two.returncode == 0, two.stderr
    assert one.stdout == two.stdout and one.stdout.strip()


def test_a_packed_model_is_scored_listed_and_not_resumed(packed):
    save, out, tmp = packed
    text = os.path.join(tmp, "data", "lyrics.txt")
    proc = run("analysis/evaluate.py", "--save_dir", out, "--text", text)
    assert proc.returncode == 0, proc.stderr
    from serve import Models
    models = Models(os.path.join(tmp, "nothing-here"), os.path.dirname(out))
    assert list(models.dirs) == ["models/tiny"]
    assert models.info["models/tiny"]["best_perplexity"] > 1
    proc = run("train.py", "--keep", "--save_dir", out, "--data_dir",
               os.path.join(tmp, "data"), "--log_dir", os.path.join(tmp, "log"), *TINY)
    assert_one_line_error(proc, 2, "packed model", "--init_from")


def test_fine_tuning_a_packed_base_without_the_network_goes_on_alone(packed):
    """The base's text cannot be rebuilt here (its fetch fails): one warning line, and
    the fine-tune trains on the user's text alone (--mix_base 0) and saves."""
    _, out, tmp = packed
    ft = os.path.join(tmp, "ft")
    proc = run("train.py", "--init_from", out, "--data_dir", os.path.join(tmp, "data"),
               "--save_dir", ft, "--log_dir", os.path.join(tmp, "log"), "--num_epochs", "1",
               "--batch_size", "8", "--seq_length", "8", "--patience", "0")
    assert proc.returncode == 0, proc.stderr
    assert "could not rebuild" in proc.stderr and "--mix_base 0" in proc.stderr
    assert safe_load_pickle(os.path.join(ft, "config.pkl"))["mix_base"] == 0.0
    assert glob.glob(os.path.join(ft, "best.ckpt-*.index"))


def test_the_base_text_is_rebuilt_once_checked_and_cached(packed, tmp_path, monkeypatch):
    """modeldir.base_corpus: the recipe's commands run once (here a stand-in that writes
    the text the model trained on), the ids equal the corpus.npy the packing left out,
    the second call uses the cache, and a text that differs is refused."""
    import modeldir
    from utils import UserError
    save, out, tmp = packed
    monkeypatch.setattr(modeldir, "CACHE", str(tmp_path / "cache"))
    chars = safe_load_pickle(os.path.join(out, "words_vocab.pkl"))[0]
    calls = []

    def stand_in(text):
        def run_(argv):
            calls.append(os.path.basename(argv[1]))
            if argv[1].endswith("parse.py"):
                shutil.copy(text, argv[argv.index("--output") + 1])
            else:
                open(argv[argv.index("--output") + 1], "w").close()
            return 0
        return run_
    ids = modeldir.base_corpus(out, chars, run=stand_in(os.path.join(tmp, "data",
                                                                      "lyrics.txt")))
    np.testing.assert_array_equal(ids, np.load(os.path.join(save, "corpus.npy")))
    assert calls == ["fetch_corpus.py", "parse.py"]
    again = modeldir.base_corpus(out, chars, run=stand_in("/nonexistent"))
    np.testing.assert_array_equal(again, ids)
    assert len(calls) == 2                                   # cached: nothing ran
    shutil.rmtree(tmp_path / "cache")
    other = tmp_path / "other.txt"
    other.write_text("春风吹过小河边", encoding="utf-8")
    with pytest.raises(UserError, match="differs"):
        modeldir.base_corpus(out, chars, run=stand_in(str(other)))
