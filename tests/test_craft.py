"""Lyrics craft: rhyme groups and the rhyme re-draw, line structure, the no-copy rule
(checked by brute force), and analysis/evaluate.py on hand-made cases."""
import json
import math
import os
import pickle
from collections import Counter

import numpy as np
import pytest

from conftest import MADE_UP_LINES, assert_one_line_error, draw, run
from craft import CorpusMatcher, NgramIndex, rhyme_group, rhyme_rate, distinct_n
from engine import Engine, Rhyme, rhyme_flag
from sampler import Sampler, start_ids


# ---------------------------------------------------------------------------- rhyme

def test_rhyme_groups_of_known_pairs():
    assert rhyme_group("天") == rhyme_group("边") == rhyme_group("年") == "言前"
    assert rhyme_group("天") != rhyme_group("路")
    assert rhyme_group("路") == "姑苏"
    assert rhyme_group("风") == rhyme_group("东") == rhyme_group("星") == "中东"
    assert rhyme_group("来") == rhyme_group("爱") == "怀来"
    assert rhyme_group("月") == rhyme_group("学") == "乜斜"
    assert rhyme_group("归") == rhyme_group("飞") == "灰堆"
    assert rhyme_group("a") is None and rhyme_group(" ") is None


def test_rhyme_option_values():
    import argparse
    assert rhyme_flag("auto") == "auto"
    assert rhyme_flag("言前") == "言前"
    assert rhyme_flag("an") == rhyme_flag("ian") == "言前"
    assert rhyme_flag("ui") == "灰堆" and rhyme_flag("ü") == "一七"
    with pytest.raises(argparse.ArgumentTypeError, match="'xyz': use auto"):
        rhyme_flag("xyz")


def test_rhyme_rate_counts_consecutive_pairs():
    assert rhyme_rate(["春天", "河边", "回来"]) == 0.5
    assert rhyme_rate(["一行"]) is None


class FakeSampler:
    """A stand-in model: each line is two characters, then a space.  The first
    character and the second are drawn from fixed distributions.  Its state is every id
    fed so far, so a test can see what the engine fed it."""

    chars = [" ", "天", "边", "路", "来"]
    rhyme_groups = Sampler.rhyme_groups          # the real one, on these characters

    def __init__(self, first, second):
        self.vocab = {c: i for i, c in enumerate(self.chars)}
        self.space_id = 0
        self.index = None
        self.first, self.second = np.array(first), np.array(second)

    def zero_state(self):
        return ()

    def logits(self, x, state):
        state = state + (x,)
        pos = len(state) - 1 - max(k for k, c in enumerate((0,) + state) if c == 0) + 1
        p = self.first if pos == 0 else self.second if pos == 1 else np.eye(5)[0]
        with np.errstate(divide="ignore"):
            return np.maximum(np.log(p), -1e9), state


def rhymed(s, target, seed, lines):
    rhyme = Rhyme(s.rhyme_groups(), target)
    out = list(Engine(s, [0], [rhyme], 200, lines, seed=seed))
    return "".join(s.chars[i] for i in out), rhyme.target


def test_rhyme_redraw_keeps_the_models_relative_probabilities():
    # Line ends: 天 0.2, 边 0.1 (both 言前), 路 0.7 (not).  Forcing 言前 must give 天:边 = 2:1.
    s = FakeSampler(first=[0, 0, 0, 0, 1.0], second=[0, 0.2, 0.1, 0.7, 0])
    ends = Counter()
    for seed in range(40):
        text, target = rhymed(s, "言前", seed, 50)       # no loop guard: loops on purpose
        lines = text.split()
        assert all(line[-1] in "天边" for line in lines)
        assert all(line[0] == "来" for line in lines)          # the rest is untouched
        ends.update(line[-1] for line in lines)
        assert target == "言前"
    ratio = ends["天"] / ends["边"]
    assert 1.7 < ratio < 2.35, ends


def test_rhyme_auto_takes_the_first_lines_rhyme():
    s = FakeSampler(first=[0, 0, 0, 0, 1.0], second=[0, 0.3, 0.3, 0.4, 0])
    for seed in range(10):
        text, target = rhymed(s, None, seed, 20)
        lines = text.split()
        assert len({rhyme_group(line[-1]) for line in lines}) == 1
        assert target == rhyme_group(lines[0][-1])


def test_a_redrawn_line_end_is_fed_into_the_state_it_follows():
    """After the rhyme rule re-draws a line's last character, the model goes on from the
    state that holds the whole line with the new character (it used to be fed into the
    state from one character earlier, dropping the line's first character)."""
    s = FakeSampler(first=[0, 0, 0, 0, 1.0], second=[0, 0.2, 0.1, 0.7, 0])
    calls = []
    step = s.logits

    def logits(x, state):
        calls.append(state + (x,))
        return step(x, state)
    s.logits = logits
    for seed in range(5):
        calls.clear()
        rhyme = Rhyme(s.rhyme_groups(), "言前")
        out = list(Engine(s, [0], [rhyme], 60, 12, seed=seed))
        assert calls[-1] == tuple([0] + out[:-1])        # all but the last drawn id


# ------------------------------------------------------------------ line structure

@pytest.mark.slow
@pytest.mark.parametrize("lines, lo, hi", [(6, 3, 5), (4, 7, 7), (9, 1, 2)])
def test_lines_and_line_lengths_are_exact(trained, tmp_path, lines, lo, hi):
    proc = run("sample.py", "--save_dir", trained("lstm"), "--lines", lines, "--line_len",
               f"{lo}-{hi}", "--seed", "3", "--out", "", "--start", "", check=0)
    out = proc.stdout.strip().split("\n")
    assert len(out) == lines, out
    assert all(lo <= len(line) <= hi for line in out), out


@pytest.mark.slow
def test_stanza_inserts_blank_lines(trained):
    proc = run("sample.py", "--save_dir", trained("lstm"), "--lines", "6", "--stanza", "2",
               "--seed", "1", "--out", "", check=0)
    blocks = proc.stdout.strip().split("\n\n")
    assert [len(b.split("\n")) for b in blocks] == [2, 2, 2]


@pytest.mark.slow
def test_rhyme_cli_reports_rate(trained):
    proc = run("sample.py", "--save_dir", trained("gru"), "--rhyme", "auto", "--lines", "5",
               "--seed", "2", "--out", "", check=0)
    assert "rhyme rate" in proc.stderr
    proc = run("sample.py", "--save_dir", trained("gru"), "--rhyme", "nope", "--out", "")
    assert_one_line_error(proc, 2, "--rhyme")
    proc = run("sample.py", "--save_dir", trained("gru"), "--line_len", "9-3", "--out", "")
    assert_one_line_error(proc, 2, "--line_len")


# -------------------------------------------------------------------------- no copy

def test_ngram_index_matches_brute_force():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 4, 3000)                 # small alphabet: many repeats
    idx = NgramIndex.build(ids, 5)
    for _ in range(300):
        tail = list(rng.integers(0, 4, 5))
        want = {int(ids[i + 5]) for i in range(len(ids) - 5)
                if list(ids[i:i + 5]) == tail}
        assert set(idx.banned_after(tail).tolist()) == want


def test_corpus_matcher_matches_brute_force():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 5, 2000)
    m = CorpusMatcher(ids, 5)
    text = "".join("abcde"[i] for i in ids)
    for _ in range(50):
        seq = list(rng.integers(0, 5, 30))
        s = "".join("abcde"[i] for i in seq)
        best = max(j - i for i in range(30) for j in range(i + 1, 31) if s[i:j] in text)
        assert m.longest_run(seq)[0] == best
        share = sum(s[i:i + 4] in text for i in range(27)) / 27
        assert m.ngram_share(seq, 4) == pytest.approx(share)


def _brute_force_longest(text, corpus_text):
    best = 0
    for i in range(len(text)):
        for j in range(i + best + 1, len(text) + 1):
            if text[i:j] in corpus_text:
                best = j - i
            else:
                break
    return best


@pytest.mark.slow
@pytest.mark.parametrize("limit", [3, 5])
def test_no_output_run_longer_than_max_copy_in_training_text(trained, limit):
    """The tiny models have memorised ten short lines, so unconstrained they copy long
    runs; with --max_copy L no output run longer than L is in the training text."""
    save = trained("lstm")
    chars = pickle.load(open(os.path.join(save, "words_vocab.pkl"), "rb"))[0]
    corpus = "".join(chars[i] for i in np.load(os.path.join(save, "corpus.npy")))
    free = Sampler(save, max_copy=0)
    _, ids = start_ids("我在", free.vocab, warn=lambda m: None)
    copied = free.decode(draw(free, ids, 150, "argmax"))
    assert _brute_force_longest("我在" + copied, corpus) > limit   # it does tempt copying
    s = Sampler(save, max_copy=limit)
    for mode, seed in (("argmax", 0), ("weighted", 1), ("weighted", 2), ("combined", 3)):
        for flags in ([], ["--lines", "12"], ["--lines", "12", "--line_len", "2-4"],
                      ["--lines", "10", "--rhyme", "auto"],
                      ["--lines", "10", "--rhyme", "人辰", "--line_len", "3-6"]):
            lines = int(flags[1]) if flags else None
            out = "我在" + s.decode(draw(s, ids, 150, mode, seed=seed, flags=flags,
                                          lines=lines))
            assert _brute_force_longest(out, corpus) <= limit, (mode, flags, out)


@pytest.mark.slow
def test_default_cli_reports_longest_copied_run(trained):
    proc = run("sample.py", "--save_dir", trained("rnn"), "--n", "60", "--seed", "1",
               "--out", "", check=0)
    assert "longest run found in the training text" in proc.stderr
    assert "no-copy rule at 8 characters" in proc.stderr


# ------------------------------------------------------------------------ evaluate

def uniform_model(save_dir, chars):
    """A checkpoint whose softmax layer is zero: every character equally likely."""
    from tfenv import import_tensorflow
    tf = import_tensorflow()
    tf1 = tf.compat.v1
    from seq2seq_rnn import Model
    config = dict(vocab_size=len(chars), rnncell="gru", num_layers=1, rnn_size=8,
                  embedding_size=4, batch_size=2, seq_length=4, attention=False,
                  val_frac=0.05)
    os.makedirs(save_dir, exist_ok=True)
    g = tf.Graph()
    with g.as_default():
        m = Model(config)
        saver = tf1.train.Saver()
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run([m.softmax_w.assign(tf.zeros_like(m.softmax_w)),
                      m.softmax_b.assign(tf.zeros_like(m.softmax_b))])
            saver.save(sess, os.path.join(save_dir, "model.ckpt"), global_step=0)
    with open(os.path.join(save_dir, "config.pkl"), "wb") as f:
        pickle.dump(config, f)
    with open(os.path.join(save_dir, "words_vocab.pkl"), "wb") as f:
        pickle.dump((chars, {c: i for i, c in enumerate(chars)}), f)
    np.save(os.path.join(save_dir, "corpus.npy"),
            np.array([i % len(chars) for i in range(400)], dtype=np.int32))


def evaluate_uniform(tmp_path, held, *flags):
    """evaluate.py on a uniform model of the made-up lines' characters, scoring `held`:
    (its characters, the process, the JSON result)."""
    chars = [" "] + sorted(set("".join(MADE_UP_LINES)))
    uniform_model(str(tmp_path / "save"), chars)
    text = tmp_path / "held.txt"
    text.write_text(held, encoding="utf-8")
    proc = run("analysis/evaluate.py", "--save_dir", tmp_path / "save", "--text", text,
               *flags, check=0)
    return chars, proc, json.loads(proc.stdout.strip().splitlines()[-1])


def test_evaluate_uniform_model_perplexity_is_vocab_size(tmp_path):
    chars, proc, result = evaluate_uniform(tmp_path, "春风吹过小河边，ABC\n我在窗前等你回来 龘\n",
                                           "--samples", "2", "--n", "40")
    assert result["perplexity_known"] == pytest.approx(len(chars), rel=1e-4)
    assert result["cross_entropy_known"] == pytest.approx(math.log(len(chars)), rel=1e-5)
    # ' 春风吹过小河边 我在窗前等你回来 龘': 18 targets; 龘 is unknown (counted, charged
    # ln 20902), ABC was cleaned away
    assert result["unknown_chars"] == 1 and result["scored"] == 18
    assert result["cross_entropy"] == pytest.approx(
        (17 * math.log(len(chars)) + math.log(20902)) / 18, rel=1e-5)
    samples = result["samples"]
    assert samples["count"] == 2 and 0 < samples["distinct_1"] <= 1
    assert samples["longest_copied_run_max"] <= 8
    assert "line_length_training" in samples


def test_distinct_n():
    assert distinct_n("abab", 1) == 0.5
    assert distinct_n("abab", 2) == pytest.approx(2 / 3)


def test_evaluate_without_a_model(tmp_path):
    proc = run("analysis/evaluate.py", "--save_dir", tmp_path)
    assert_one_line_error(proc, 1, "train")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gru", "attention"])
def test_evaluate_windowed_score_equals_step_by_step(trained, kind):
    from analysis.evaluate import cross_entropy, cross_entropy_windowed
    s = Sampler(trained(kind))
    ids = list(s.corpus[-300:])             # 299 targets: 4 windows of 64 and 43 steps
    slow, n1 = cross_entropy(s, ids)
    fast, n2 = cross_entropy_windowed(s, ids)
    assert n1 == n2 == 299
    assert fast == pytest.approx(slow, rel=1e-4)


def test_word_share_tells_words_from_salad():
    from craft import word_share
    assert word_share("我们一起唱歌") == 1.0                  # every character in a word
    assert word_share("我们一起唱歌 明天会更好") == pytest.approx(10 / 11)   # 会 alone
    assert word_share("月光拖诬于蹇 官首上干") == pytest.approx(0.2)   # salad (README)
    assert word_share("我们 的") == pytest.approx(2 / 3)
    assert word_share("   ") is None


@pytest.mark.slow
def test_offset_spread_from_offset_zero_is_the_plain_score(trained):
    """The state-robustness figure scores the same pairs from k places; the one starting
    at 0 is exactly the headline cross-entropy when the text is whole windows."""
    from analysis.evaluate import cross_entropy_windowed, offset_spread
    s = Sampler(trained("lstm"))
    ids = list(s.corpus[:64 * 12 + 1])
    plain, _ = cross_entropy_windowed(s, ids)
    spread = offset_spread(s, ids, offsets=4)
    assert len(spread) == 4 and spread[0] == pytest.approx(plain, rel=1e-5)
    assert offset_spread(s, ids[:200], offsets=8) is None       # too short to say
    assert offset_spread(Sampler(trained("attention")), ids, offsets=4) is None


@pytest.mark.slow
def test_evaluate_reports_fluency_and_the_spread(trained, tmp_path):
    text = tmp_path / "held.txt"
    text.write_text("\n".join(MADE_UP_LINES * 12), encoding="utf-8")
    proc = run("analysis/evaluate.py", "--save_dir", trained("gru"), "--text", text,
               "--samples", "2", "--n", "60", check=0)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(result["offsets"]) == 8 and result["offset_spread"] >= 0
    assert 0 < result["word_share_text"] <= 1
    samples = result["samples"]
    assert 0 <= samples["word_share"] <= 1 and 0 < samples["word_share_training"] <= 1
    # diversity of the training text, from the same windows as its fluency
    from craft import distinct_n, text_windows
    s = Sampler(trained("gru"))
    windows = [s.decode(w).replace(" ", "") for w in text_windows(s.corpus, 2, 60, 0)]
    for n in (1, 2):
        assert samples[f"distinct_{n}_training"] == pytest.approx(
            np.mean([distinct_n(w, n) for w in windows]))
    assert "distinct-1, training text" in proc.stdout
    assert "from the zero state at 8 places" in proc.stdout
    assert "in words (fluency), samples" in proc.stdout


@pytest.mark.slow
def test_evaluate_samples_with_the_line_and_rhyme_rules(trained, tmp_path):
    """evaluate.py draws its samples through the same engine and flags as sample.py."""
    text = tmp_path / "held.txt"
    text.write_text("\n".join(MADE_UP_LINES * 4), encoding="utf-8")
    proc = run("analysis/evaluate.py", "--save_dir", trained("gru"), "--text", text,
               "--samples", "3", "--lines", "6", "--line_len", "3-5", "--rhyme", "言前",
               "--acrostic", "", "--offsets", "0", check=0)
    samples = json.loads(proc.stdout.strip().splitlines()[-1])["samples"]
    assert samples["rhyme_rate"] == 1.0
    lengths = samples["line_length_samples"]
    assert 3 <= lengths["p10"] and lengths["p90"] <= 5, lengths
    proc = run("analysis/evaluate.py", "--save_dir", trained("gru"), "--text", text,
               "--rhyme", "xyz")
    assert_one_line_error(proc, 2, "--rhyme", "'xyz': use auto")


@pytest.mark.slow
def test_evaluate_text_of_unknown_characters_only_is_charged(tmp_path):
    _, proc, result = evaluate_uniform(tmp_path, "龘龘龘\n", "--samples", "0")
    assert result["cross_entropy"] == pytest.approx(math.log(20902))
    assert result["unknown_chars"] == 3 and result["cross_entropy_known"] is None
    assert "n/a, none known" in proc.stdout


def test_one_window_hash_is_the_window_hashes_one():
    from craft import window_hash, window_hashes
    rng = np.random.default_rng(0)
    for length in (1, 4, 8, 64):
        ids = rng.integers(0, 2 ** 21, length + 5)
        for i in range(5):
            assert window_hash(ids[i:i + length]) == window_hashes(ids, length)[i]
