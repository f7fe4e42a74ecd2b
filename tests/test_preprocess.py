"""preprocess.py: vocabulary, exact batches, pointer wrap, validation split, errors."""
import os
import pickle

import numpy as np
import pytest

from conftest import assert_one_line_error, run
from preprocess import (VAL_BLOCK, TextParser, build_vocab, make_batches, min_chars,
                        split_validation, validation_blocks)
from utils import UserError
from fileio import safe_load_pickle


def parser_for(tmp_path, text, **kw):
    (tmp_path / "lyrics.txt").write_text(text, encoding="utf-8")
    return TextParser(str(tmp_path), **kw)


def test_vocab_most_frequent_first_ties_by_code_point():
    chars, ids = build_vocab("乙甲乙丙 甲乙")
    # 乙 x3; then 甲 x2; then ' ' (U+0020) and 丙 (U+4E19) once each, by code point
    assert chars == ["乙", "甲", " ", "丙"]
    assert [chars[i] for i in ids] == list("乙甲乙丙 甲乙")


def test_exact_batches_for_a_15_character_text():
    ids = np.arange(15)
    n, xs, ys = make_batches(ids, batch_size=2, seq_length=3)
    assert n == 2
    # 12 ids used, rows contiguous: row 0 = 0..5, row 1 = 6..11, split along time
    np.testing.assert_array_equal(xs[0], [[0, 1, 2], [6, 7, 8]])
    np.testing.assert_array_equal(xs[1], [[3, 4, 5], [9, 10, 11]])
    np.testing.assert_array_equal(ys[0], [[1, 2, 3], [7, 8, 9]])
    np.testing.assert_array_equal(ys[1], [[4, 5, 6], [10, 11, 12]])


def test_targets_wrap_when_text_is_an_exact_multiple():
    n, xs, ys = make_batches(np.arange(12), batch_size=2, seq_length=3)
    np.testing.assert_array_equal(ys[1], [[4, 5, 6], [10, 11, 0]])


def test_context_has_leading_space_and_round_trips(tmp_path):
    p = parser_for(tmp_path, "你好 世界", batch_size=1, seq_length=2, val_frac=0.0)
    assert "".join(p.chars[i] for i in p.context) == " 你好 世界"
    assert p.vocab[" "] == 0      # the space is the most frequent character here


def test_next_batch_wraps_at_epoch_end_and_reset(tmp_path):
    p = parser_for(tmp_path, "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未", batch_size=2, seq_length=2,
                   val_frac=0.0)
    assert p.num_batches == 4
    firsts = [p.next_batch()[0].copy() for _ in range(p.num_batches)]
    np.testing.assert_array_equal(p.next_batch()[0], firsts[0])   # wrapped
    p.reset_batch_pointer()
    np.testing.assert_array_equal(p.next_batch()[0], firsts[0])


def test_validation_split_is_disjoint_from_training(tmp_path):
    text = "".join(chr(0x4E00 + i) for i in range(400))    # every character distinct
    p = parser_for(tmp_path, text, batch_size=2, seq_length=5, val_frac=0.1)
    assert len(p.val_data) == int(401 * 0.1)
    (a, b), = validation_blocks(401, 0.1)                   # one block for a short text
    np.testing.assert_array_equal(p.val_data, p.context[a:b])
    np.testing.assert_array_equal(p.train_data, np.concatenate([p.context[:a],
                                                                p.context[b:]]))
    train_ids = set(np.concatenate([x.ravel() for x in p.x_batches] +
                                   [y.ravel() for y in p.y_batches]).tolist())
    val_ids = set(np.concatenate([x.ravel() for x in p.val_x_batches]).tolist())
    assert p.num_val_batches == len(p.val_data) // 10
    assert not (train_ids & set(p.val_data.tolist()))
    assert val_ids <= set(p.val_data.tolist())


def test_validation_blocks_cover_every_stretch_of_a_long_text():
    """A text written genre by genre is validated on each part in proportion: one block
    in each of k equal stretches, int(n * val_frac) ids in all, the same split each time."""
    n, frac = 1_234_567, 0.05
    blocks = validation_blocks(n, frac)
    k = int(n * frac) // VAL_BLOCK
    assert len(blocks) == k and sum(b - a for a, b in blocks) == int(n * frac)
    stretch = n // k
    for i, (a, b) in enumerate(blocks):
        assert i * stretch <= a < b <= (i + 1) * stretch
    assert blocks == validation_blocks(n, frac)
    # not all at the same place within their stretch
    assert len({a - i * stretch for i, (a, _) in enumerate(blocks)}) > k // 2
    # the genre that comes last holds its share, not all of validation
    ids = np.arange(n)
    train, held = split_validation(ids, frac)
    last_genre = ids >= n * 0.9
    assert abs(last_genre[held].mean() - 0.1) < 0.01
    assert len(train) + len(held) == n and np.all(np.diff(train) > 0)


def test_tail_split_of_older_models():
    train, held = split_validation(np.arange(100), 0.1, "tail")
    np.testing.assert_array_equal(held, np.arange(90, 100))
    np.testing.assert_array_equal(train, np.arange(90))


def test_max_vocab_keeps_the_most_frequent_and_leaves_the_rest_out(tmp_path):
    chars, ids = build_vocab("乙甲乙丙 甲乙丁", max_vocab=2)
    assert chars == ["乙", "甲"]
    assert "".join(chars[i] for i in ids) == "乙甲乙甲乙"
    p = parser_for(tmp_path, "你好 世界 " * 50 + "稀", batch_size=2, seq_length=4,
                   max_vocab=4)
    assert p.vocab_size == 4 and "稀" not in p.chars and p.left_out > 50
    assert p.rebuilt
    q = TextParser(str(tmp_path), batch_size=2, seq_length=4)     # uncapped: rebuilt
    assert q.rebuilt and "稀" in q.chars and q.left_out == 0
    with pytest.raises(UserError, match="--max_vocab and --init_from"):
        TextParser(str(tmp_path), batch_size=2, seq_length=4, max_vocab=4,
                   base_chars=["你"])


def test_rebuilds_only_when_lyrics_change(tmp_path):
    p = parser_for(tmp_path, "你好 世界 " * 40, batch_size=2, seq_length=4)
    assert p.rebuilt
    assert not TextParser(str(tmp_path), batch_size=2, seq_length=4).rebuilt
    (tmp_path / "lyrics.txt").write_text("新的 歌词 " * 40, encoding="utf-8")
    q = TextParser(str(tmp_path), batch_size=2, seq_length=4)
    assert q.rebuilt and "新" in q.chars


def test_corpus_too_small_names_minimum_and_flags(tmp_path):
    (tmp_path / "lyrics.txt").write_text("你好 世界", encoding="utf-8")
    with pytest.raises(UserError) as e:
        TextParser(str(tmp_path), batch_size=32, seq_length=16, val_frac=0.05)
    need = min_chars(512, 0.05)
    assert f"{need:,}" in str(e.value) and "--batch_size" in str(e.value)
    assert e.value.code == 2
    # the named minimum is exact: one character less fails, that many works
    for n, ok in ((need - 1, False), (need, True)):
        (tmp_path / "lyrics.txt").write_text("你" * (n - 1), encoding="utf-8")
        if ok:
            TextParser(str(tmp_path), batch_size=32, seq_length=16, val_frac=0.05)
        else:
            with pytest.raises(UserError):
                TextParser(str(tmp_path), batch_size=32, seq_length=16, val_frac=0.05)


def test_cli_prints_sizes(corpus_dir):
    proc = run("preprocess.py", "--data_dir", corpus_dir, "--batch_size", "4",
               "--seq_length", "8", check=0)
    assert "vocab size" in proc.stdout and "batches per epoch" in proc.stdout
    assert (corpus_dir / "vocab.pkl").exists() and (corpus_dir / "context.npy").exists()


def test_cli_missing_lyrics(tmp_path):
    proc = run("preprocess.py", "--data_dir", tmp_path)
    assert_one_line_error(proc, 1, "lyrics.txt not found", "data/parse.py")


class Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_malicious_vocab_pickle_is_refused(tmp_path, corpus_dir):
    run("preprocess.py", "--data_dir", corpus_dir, "--batch_size", "4", check=0)
    with open(corpus_dir / "vocab.pkl", "wb") as f:
        pickle.dump({"format": 1, "chars": Boom()}, f)
    proc = run("preprocess.py", "--data_dir", corpus_dir, "--batch_size", "4", cwd=tmp_path)
    assert_one_line_error(proc, 1, "refusing to load", "vocab.pkl")
    assert not (tmp_path / "pwned.txt").exists()
    with pytest.raises(UserError, match="posix.system|os.system|nt.system"):
        safe_load_pickle(str(corpus_dir / "vocab.pkl"))


def test_plain_data_pickles_still_load(tmp_path):
    path = tmp_path / "ok.pkl"
    data = {"a": [1, 2.5, "三", None, True], "b": (1, 2), "c": {"x": {"y": b"z"}}}
    with open(path, "wb") as f:
        pickle.dump(data, f)
    assert safe_load_pickle(str(path)) == data


@pytest.mark.parametrize("script", ["preprocess.py", "train.py"])
@pytest.mark.parametrize("value", ["5e-324", "0.00001", "0.5", "-0.1"])
def test_absurd_val_frac_is_a_usage_error(corpus_dir, script, value):
    proc = run(script, "--data_dir", corpus_dir, "--val_frac", value)
    assert_one_line_error(proc, 2, "--val_frac", "0.0001")
