"""sample.py: sampling modes, reproducibility, output, every model kind, bad input."""
import os
import pickle
import shutil

import numpy as np
import pytest

from conftest import assert_one_line_error, draw, run
from sampler import Sampler, start_ids
from fileio import safe_load_pickle


@pytest.fixture(scope="module")
def lstm_sampler(trained):
    return Sampler(trained("lstm"))


def gen(s, start="我在", n=60, mode="weighted", temperature=1.0, top_k=0, seed=0):
    """The engine's mechanics with no rule on, so the model's own choices are seen."""
    _, ids = start_ids(start, s.vocab, warn=lambda m: None)
    return draw(s, ids, n, mode, temperature, top_k, seed)


def test_argmax_is_deterministic(lstm_sampler):
    assert gen(lstm_sampler, mode="argmax", seed=1) == gen(lstm_sampler, mode="argmax", seed=2)


def test_weighted_is_reproducible_per_seed_and_differs_across_seeds(lstm_sampler):
    a = gen(lstm_sampler, seed=5, temperature=1.5, n=120)
    assert a == gen(lstm_sampler, seed=5, temperature=1.5, n=120)
    others = [gen(lstm_sampler, seed=s, temperature=1.5, n=120) for s in (6, 7, 8)]
    assert any(o != a for o in others)


def test_top_k_1_and_tiny_temperature_equal_argmax(lstm_sampler):
    best = gen(lstm_sampler, mode="argmax")
    assert gen(lstm_sampler, top_k=1, seed=3) == best
    assert gen(lstm_sampler, temperature=1e-4, seed=4) == best


def test_combined_draws_only_right_after_a_space(lstm_sampler):
    """Replay a combined sample step by step: every character not preceded by a space is
    the argmax of the model's distribution; after spaces some are not."""
    s = lstm_sampler
    _, ids = start_ids("我在", s.vocab, warn=lambda m: None)
    space = s.vocab[" "]
    drawn_off_argmax = 0
    for seed in range(4):
        out = draw(s, ids, 80, "combined", 2.0, 0, seed)
        state = s.zero_state()
        for i in ids[:-1]:
            _, state = s.step(i, state)
        prev = ids[-1]
        for c in out:
            probs, state = s.step(prev, state)
            if prev != space:
                assert c == int(np.argmax(probs))
            elif c != int(np.argmax(probs)):
                drawn_off_argmax += 1
            prev = c
    assert drawn_off_argmax > 0


def test_top_k_restricts_to_the_k_most_probable(lstm_sampler):
    s = lstm_sampler
    _, ids = start_ids("我", s.vocab, warn=lambda m: None)
    out = draw(s, ids, 40, "weighted", 3.0, 3, 11)
    state = s.zero_state()
    prev = ids[-1]
    for c in out:
        probs, state = s.step(prev, state)
        assert c in np.argsort(probs)[-3:]
        prev = c


def test_unknown_start_characters_are_skipped(lstm_sampler):
    warnings = []
    kept, ids = start_ids("我X在龘", lstm_sampler.vocab, warn=warnings.append)
    assert kept == "我在" and len(ids) == 2
    assert "X" in warnings[0] and "龘" in warnings[0]
    kept, ids = start_ids("龘龘", lstm_sampler.vocab, warn=warnings.append)
    assert kept == "" and ids == [lstm_sampler.vocab[" "]]
    # punctuation and line breaks end a line, as in the cleaned training text
    kept, _ = start_ids("我在，春风\n 我在。", lstm_sampler.vocab, warn=warnings.append)
    assert kept == "我在 春风 我在 "


@pytest.mark.parametrize("kind", ["lstm"] + [pytest.param(k, marks=pytest.mark.slow)
                                             for k in ("gru", "rnn", "attention")])
def test_end_to_end_cli_for_every_model_kind(trained, tmp_path, kind):
    save = trained(kind)
    out = tmp_path / "sequence"
    proc = run("sample.py", "--save_dir", save, "--start", "春风", "--n", "50",
               "--seed", "1", "--out", out, check=0)
    text = proc.stdout.strip()
    assert text.startswith("春风")
    chars = set(pickle.load(open(os.path.join(save, "words_vocab.pkl"), "rb"))[0])
    assert set(text.replace("\n", " ")) <= chars
    assert " " not in text                       # spaces shown as line breaks
    # start + 50 generated characters (line ends shown as breaks; the ends stripped)
    assert 48 <= len(text.replace("\n", "")) + text.count("\n") <= 52
    assert out.read_text(encoding="utf-8").count("=== ") == 1


@pytest.mark.slow
def test_result_file_is_appended_with_headers_and_raw_keeps_spaces(trained, tmp_path):
    save = trained("lstm")
    out = tmp_path / "sequence"
    out.write_text("earlier result\n", encoding="utf-8")
    run("sample.py", "--save_dir", save, "--n", "30", "--seed", "2", "--out", out,
        "--count", "2", "--sample", "combined", check=0)
    proc = run("sample.py", "--save_dir", save, "--n", "30", "--seed", "2", "--out", out,
               "--raw", "--start", "我在", check=0)
    content = out.read_text(encoding="utf-8")
    assert content.startswith("earlier result\n")
    assert content.count("=== ") == 2 and "count 2" in content and "seed 2" in content
    assert "\n" not in proc.stdout.strip()


@pytest.mark.slow
def test_best_checkpoint_is_the_default_and_latest_or_ckpt_choose(trained, tmp_path):
    save = trained("gru")
    proc = run("sample.py", "--save_dir", save, "--n", "5", "--out", "", check=0)
    assert "best.ckpt-" in proc.stderr
    proc = run("sample.py", "--save_dir", save, "--n", "5", "--out", "", "--latest", check=0)
    assert "model.ckpt-" in proc.stderr
    ckpt = proc.stderr.split(" from ")[1].split(" (")[0]
    proc = run("sample.py", "--save_dir", save, "--n", "5", "--out", "", "--ckpt", ckpt,
               check=0)
    assert ckpt in proc.stderr


def test_no_checkpoint_says_train_first(tmp_path):
    proc = run("sample.py", "--save_dir", tmp_path / "empty")
    assert_one_line_error(proc, 1, "train", "python train.py")


def test_missing_checkpoint_files_with_config_present(trained, tmp_path):
    save = tmp_path / "save"
    shutil.copytree(trained("lstm"), save)
    for name in os.listdir(save):
        if ".ckpt-" in name:
            os.unlink(save / name)
    proc = run("sample.py", "--save_dir", save)
    assert_one_line_error(proc, 1, "no trained model", "python train.py")


@pytest.mark.slow
def test_config_from_another_model_is_refused(trained, tmp_path):
    save = tmp_path / "save"
    shutil.copytree(trained("lstm"), save)
    shutil.copy(os.path.join(trained("gru"), "config.pkl"), save / "config.pkl")
    out = tmp_path / "seq"
    proc = run("sample.py", "--save_dir", save, "--out", out)
    assert_one_line_error(proc, 1, "does not match")
    assert not out.exists()


def test_vocab_from_another_model_is_refused(trained, tmp_path):
    save = tmp_path / "save"
    shutil.copytree(trained("lstm"), save)
    with open(save / "words_vocab.pkl", "wb") as f:
        pickle.dump((["甲", "乙"], {"甲": 0, "乙": 1}), f)
    proc = run("sample.py", "--save_dir", save)
    assert_one_line_error(proc, 1, "different models")


def test_missing_config_or_vocab(trained, tmp_path):
    save = tmp_path / "save"
    shutil.copytree(trained("lstm"), save)
    os.unlink(save / "words_vocab.pkl")
    proc = run("sample.py", "--save_dir", save)
    assert_one_line_error(proc, 1, "words_vocab.pkl is missing")


class Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


@pytest.mark.parametrize("name", ["config.pkl", "words_vocab.pkl"])
def test_tampered_pickles_are_refused(trained, tmp_path, name):
    save = tmp_path / "save"
    shutil.copytree(trained("lstm"), save)
    with open(save / name, "wb") as f:
        pickle.dump(Boom(), f)
    proc = run("sample.py", "--save_dir", save, cwd=tmp_path)
    assert_one_line_error(proc, 1, "refusing to load")
    assert not (tmp_path / "pwned.txt").exists()


@pytest.mark.parametrize("flag, value", [("--n", "0"), ("--n", "-3"), ("--sample", "best"),
                                         ("--temperature", "0"), ("--temperature", "-1"),
                                         ("--top_k", "-1")])
def test_bad_flag_values_are_usage_errors(tmp_path, flag, value):
    proc = run("sample.py", "--save_dir", tmp_path, flag, value)
    assert_one_line_error(proc, 2, flag)


@pytest.mark.parametrize("flag, value, needle", [
    ("--n", "3000000000", "from 1 to 20,000"), ("--n", "100000", "from 1 to 20,000"),
    ("--top_k", "3000000000", "from 0 to 1,000,000"),
    ("--temperature", "1e-50", "from 0.01 to 100"), ("--temperature", "nan", "0.01"),
    ("--max_copy", "20000000", "from 0 to 64"), ("--repeat_ngram", "200", "from 2 to 16"),
    ("--repeat_ngram", "3000", "from 2 to 16"), ("--repeat_ngram", "64", "from 2 to 16"),
    ("--count", "0", "from 1 to 1,000"),
])
def test_absurd_values_are_one_line_with_the_bound(flag, value, needle):
    """Values a 32-bit tensor, the softmax or the time a sample takes cannot hold are
    refused by the parser, before a model is loaded (the page uses the same parser)."""
    proc = run("sample.py", "--save_dir", "no_such_dir", flag, value)
    assert_one_line_error(proc, 2, flag, needle)


def test_lines_times_their_longest_length_is_bounded_like_n():
    # one line of 30,000 characters used to be drawn past the --n bound
    proc = run("sample.py", "--save_dir", "no_such_dir", "--lines", "1", "--line_len",
               "30000-30000")
    assert_one_line_error(proc, 2, "--line_len", "may draw 30,001 characters",
                          "at most 20,000")
    proc = run("sample.py", "--save_dir", "no_such_dir", "--lines", "600")  # x 41 > 20,000
    assert_one_line_error(proc, 2, "--lines 600", "24,600")


def test_the_equivalent_command_keeps_n_when_lines_are_asked_for():
    # --n bounds a --lines sample too: the page's card printed --lines 2 alone, and the
    # command drew 200 characters where the page had drawn 313
    from sampler import build_parser, command_of
    args = build_parser().parse_args(["--save_dir", "save", "--lines", "2", "--n", "313"])
    assert "--lines 2 --n 313" in command_of(args, 5)
    args = build_parser().parse_args(["--save_dir", "save", "--lines", "2"])
    assert "--n" not in command_of(args, 5)


@pytest.mark.slow
@pytest.mark.parametrize("field, value, needle", [
    ("rnn_size", "abc", "rnn_size = 'abc'"), ("rnn_size", -5, "rnn_size = -5"),
    ("vocab_size", 2.5, "vocab_size = 2.5"), ("rnncell", "transformer", "rnncell"),
    ("attention", "yes", "attention"), ("num_layers", None, "num_layers"),
])
def test_config_with_wrong_contents_is_one_line(trained, tmp_path, field, value, needle):
    save = tmp_path / "save"
    shutil.copytree(trained("lstm"), save)
    config = safe_load_pickle(str(save / "config.pkl"))
    config[field] = value
    with open(save / "config.pkl", "wb") as f:
        pickle.dump(config, f)
    proc = run("sample.py", "--save_dir", save, "--out", "")
    assert_one_line_error(proc, 1, "config.pkl is damaged", needle)


@pytest.mark.slow
def test_vocabulary_of_numbers_is_one_line(trained, tmp_path):
    save = tmp_path / "save"
    shutil.copytree(trained("lstm"), save)
    chars, _ = safe_load_pickle(str(save / "words_vocab.pkl"))
    with open(save / "words_vocab.pkl", "wb") as f:
        pickle.dump((list(range(len(chars))), {i: i for i in range(len(chars))}), f)
    proc = run("sample.py", "--save_dir", save, "--out", "")
    assert_one_line_error(proc, 1, "is not a vocabulary written by train.py")


def test_a_cut_pickle_is_called_damaged_not_tampered_with(trained, tmp_path):
    save = tmp_path / "save"
    shutil.copytree(trained("lstm"), save)
    data = (save / "words_vocab.pkl").read_bytes()
    (save / "words_vocab.pkl").write_bytes(data[:len(data) // 2])
    proc = run("sample.py", "--save_dir", save, cwd=tmp_path)
    assert_one_line_error(proc, 1, "damaged or cut short")
    assert "tampered" not in proc.stderr


@pytest.mark.parametrize("script, flag", [
    ("train.py", "--rnn_size"), ("sample.py", "--n"), ("serve.py", "--port"),
    ("preprocess.py", "--batch_size"), ("analysis/evaluate.py", "--samples"),
    ("data/parse.py", "--nonexistent"), ("data/fetch_corpus.py", "--corpus"),
    ("scripts/pack_model.py", "--log"), ("analysis/plot.py", "--nonexistent"),
])
def test_a_bad_flag_is_one_line_without_the_usage_block(script, flag, tmp_path):
    """argparse printed its usage (9-15 lines) before the one line that says what is
    wrong; now the line alone, and where the help is."""
    args = [flag] if script in ("scripts/pack_model.py",) else [flag, "bad-value"]
    if script == "scripts/pack_model.py":
        args = ["--from"]                                 # a flag without its value
    proc = run(script, *args, cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "usage:" not in proc.stderr, proc.stderr
    assert lines[0].endswith("--help)"), lines


def test_out_after_a_killed_run_marks_the_cut_block_and_starts_a_new_line(trained, tmp_path):
    """kill -9 in the middle of an append left part of a block, and the next run's header
    was glued onto the cut line; now the cut is marked and the header starts a line, the
    earlier text intact."""
    from sample import CUT_MARK
    out = tmp_path / "sequence"
    proc = run("sample.py", "--save_dir", trained("lstm"), "--n", "10", "--out", out)
    assert proc.returncode == 0, proc.stderr
    whole = out.read_bytes()
    assert whole.endswith(b"\n\n")
    with open(out, "ab") as f:
        f.write("=== 2026-12-04 header of a run killed\n春风吹过".encode("utf-8"))
    proc = run("sample.py", "--save_dir", trained("lstm"), "--n", "10", "--out", out)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text(encoding="utf-8")
    assert text.startswith(whole.decode("utf-8"))
    cut, new = text[len(whole.decode("utf-8")):].split(CUT_MARK)
    assert cut == "=== 2026-12-04 header of a run killed\n春风吹过\n"
    assert new.startswith("\n\n===") and text.endswith("\n\n")
    before = out.read_bytes()               # a whole block before: nothing is marked
    run("sample.py", "--save_dir", trained("lstm"), "--n", "10", "--out", out)
    assert out.read_text(encoding="utf-8").count(CUT_MARK) == 1
    assert out.read_bytes().startswith(before)


def test_an_acrostics_stanzas_leave_its_start_line_out(trained, tmp_path):
    """--acrostic 我月雨夜 --start 春风 --stanza 2 split 1-2-1 (the start text, a line of
    its own, counted as the first); now the start line stands apart and the acrostic
    goes 2-2, on the screen and in --out alike."""
    out = tmp_path / "sequence"
    proc = run("sample.py", "--save_dir", trained("lstm"), "--acrostic", "我月雨夜",
               "--start", "春风", "--stanza", "2", "--max_copy", "0", "--out", out)
    assert proc.returncode == 0, proc.stderr
    blocks = proc.stdout.strip().split("\n\n")
    assert [len(b.split("\n")) for b in blocks] == [1, 2, 2], proc.stdout
    assert blocks[0] == "春风" and [b[0] for b in "\n".join(blocks[1:]).split("\n")] == \
        list("我月雨夜")
    saved = out.read_text(encoding="utf-8").split("===\n", 1)[1].strip()
    assert saved == proc.stdout.strip()
