"""The base model the repository ships (models/base-verse): what a fresh clone relies on.

Its files are the ones the manifest names, byte for byte; the weights have the shapes its
config says; its vocabulary is one character per id; it samples with the README's
command; and it still scores a fixed stretch of verse it never trained on as well as
when it was packed.

tests/data/verse_heldout.txt is that stretch: four of the base's validation blocks (the
1st, 260th, 519th and 778th of 1,036, each 1,000 characters of the public-domain verse
corpus, held out of its training), decoded with its vocabulary, one block per line.
"""
import hashlib
import json
import os

import numpy as np
import pytest

from conftest import ROOT, run
from fileio import safe_load_pickle
from config import CELL_GATES

SHIPPED = os.path.join(ROOT, "models", "base-verse")
HELD_OUT = os.path.join(ROOT, "tests", "data", "verse_heldout.txt")
# Cross-entropy (nats per character) of HELD_OUT under the shipped weights, measured when
# they were packed, plus 0.01: float16 weights on another CPU's kernels move it by far
# less; a damaged or wrongly loaded model by far more.
HELD_OUT_BOUND = 5.11


@pytest.fixture(scope="module")
def manifest():
    with open(os.path.join(SHIPPED, "manifest.json"), encoding="utf-8") as f:
        return json.load(f)


def test_the_shipped_files_are_the_ones_the_manifest_names(manifest):
    names = sorted(os.listdir(SHIPPED))
    assert names == ["config.pkl", "manifest.json", "weights.npz", "words_vocab.pkl"]
    for name, digest in manifest["files"].items():
        with open(os.path.join(SHIPPED, name), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest, name
    assert run("scripts/pack_model.py", "--check", SHIPPED).returncode == 0
    size = sum(os.path.getsize(os.path.join(SHIPPED, n)) for n in names)
    assert size <= 12 * 1024 * 1024


def test_the_shipped_weights_match_the_config_and_the_vocabulary(manifest):
    config = safe_load_pickle(os.path.join(SHIPPED, "config.pkl"))
    chars, vocab = safe_load_pickle(os.path.join(SHIPPED, "words_vocab.pkl"))
    V, E, H = config["vocab_size"], config["embedding_size"], config["rnn_size"]
    assert len(chars) == len(set(chars)) == V
    assert vocab == {c: i for i, c in enumerate(chars)}
    assert all(isinstance(c, str) and len(c) == 1 for c in chars)
    gates = CELL_GATES[config["rnncell"]]
    with np.load(os.path.join(SHIPPED, "weights.npz")) as z:
        shapes = {k: z[k].shape for k in z.files}
        assert z["softmax_w"].dtype == np.float16
        assert int(z["global_step"]) == manifest["steps"]
        assert all(np.all(np.isfinite(z[k].astype(np.float32))) for k in z.files)
    assert shapes["word_embedding"] == (V, E)
    assert shapes["softmax_w"] == (H, V) and shapes["softmax_b"] == (V,)
    cell = config["rnncell"]
    for layer in range(config["num_layers"]):
        rows = (E if layer == 0 else H) + H
        assert shapes[f"rnn/layer_{layer}/{cell}/kernel"] == (rows, gates * H)
    # the recipe the manifest states is the config's, and 元曲 stayed out of its text
    for key in ("rnncell", "num_layers", "rnn_size", "embedding_size", "vocab_size"):
        assert manifest["recipe"][key] == config[key]
    assert manifest["corpus"]["fetch_corpus"][-2:] == ["--exclude", "yuanqu"]


def test_the_shipped_base_scores_held_out_verse_below_its_bound():
    proc = run("analysis/evaluate.py", "--save_dir", SHIPPED, "--text", HELD_OUT,
               "--samples", "0", "--offsets", "0")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["unknown_chars"] == 0 and result["scored"] > 3900
    assert result["cross_entropy"] < HELD_OUT_BOUND


def test_the_readme_command_samples_from_the_shipped_base():
    proc = run("sample.py", "--save_dir", SHIPPED, "--start", "从前", "--n", "60",
               "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith("从前") and len(text.strip()) >= 40
