"""The loop guard (craft.loop_banned): its definition, and a weak model that loops
without it and does not with it, alone and with the line rules."""
import os

import pytest

from conftest import assert_one_line_error, run, train_tiny
from craft import loop_banned, longest_char_run, max_line_repeats

SPACE = 0


def ids(text, chars=" 我爱你啦不是天地"):
    return [chars.index(c) for c in text]


def test_rule_allows_a_refrain_once_and_bans_the_third_time():
    assert list(loop_banned(ids(" 我爱你 天地 我爱你 天地 "), 5, 3, SPACE)) == [SPACE]
    # the third 我爱你 may not end there (我爱你啦 may go on); the second one could
    assert list(loop_banned(ids(" 我爱你 天地 我爱你 天地 我爱你"), 5, 3, SPACE)) == [SPACE]
    assert list(loop_banned(ids(" 我爱你 天地 我爱你"), 5, 3, SPACE)) == []
    # short lines too: a third 天地 line, a third 啦 line
    assert list(loop_banned(ids(" 天地 我爱你 天地 是 天地"), 5, 3, SPACE)) == [SPACE]
    assert list(loop_banned(ids(" 啦 不 啦 是 啦"), 5, 3, SPACE)) == [SPACE]
    assert list(loop_banned(ids(" 啦 不 啦"), 5, 3, SPACE)) == []
    assert list(loop_banned(ids("不是不不不"), 5, 3, SPACE)) == ids("不")
    assert list(loop_banned(ids("不是不不"), 5, 3, SPACE)) == []
    assert list(loop_banned(ids("不是不不不 "), 0, 0, SPACE)) == []       # off


def test_only_the_last_window_of_characters_counts():
    # a refrain twice long ago and once now is not a loop; twice close by, it is
    seq = ids(" 我爱你 天地 我爱你 天地 ")
    assert list(loop_banned(seq + ids("我爱你"), 5, 3, SPACE)) == [SPACE]
    far = seq + list(range(100, 1300)) + ids(" 我爱你")  # 1,200 other ids later
    assert list(loop_banned(far, 5, 3, SPACE)) == []
    assert list(loop_banned(far, 5, 3, SPACE, window=len(far))) == [SPACE]


def test_narrow_lines_with_a_changing_first_character_are_stopped():
    """argmax on a weak model: "X我的我 / 不不的我 / 我的我的我" - no n-gram comes three
    times, yet every line is made of the same few characters."""
    chars = " 我的不是爱你天地"
    seq = [chars.index(c) for c in " 是我的我 不不的我 我的我的我"]
    assert list(loop_banned(seq, 5, 3, SPACE)) == [SPACE]           # may not end here
    assert list(loop_banned(seq[:-5] + [chars.index(c) for c in "我的"], 5, 3, SPACE)) \
        == [SPACE]
    # two narrow lines are allowed, and so is a third made of other characters
    assert list(loop_banned(seq[:10], 5, 3, SPACE)) == []
    assert list(loop_banned(seq[:10] + [chars.index(c) for c in "天地爱你"], 5, 3,
                            SPACE)) == []
    assert list(loop_banned(seq, 0, 3, SPACE)) == []                  # repeat_ngram off


def test_ordinary_lyrics_are_left_alone():
    """Made-up lines with shared words and one refrain repeated: nothing banned at any
    point of the text but where a line would come a third time."""
    text = " 天地我爱你 我爱你天地 是你是我 天地我爱你 不是我 爱你不是啦 "
    chars = sorted(set(text))
    seq = [chars.index(c) for c in text]
    for i in range(1, len(seq)):
        assert seq[i] not in loop_banned(seq[:i], 5, 3, chars.index(" ")), text[:i + 1]


@pytest.fixture(scope="module")
def weak(tmp_path_factory):
    """A model trained 3 steps: it repeats its favourite characters forever."""
    save, proc = train_tiny(str(tmp_path_factory.mktemp("weak")), "--max_steps", "3",
                            epochs=1)
    assert proc.returncode == 0, proc.stderr
    return save


@pytest.mark.slow
def test_weak_model_loops_without_the_guard_and_not_with_it(weak):
    from conftest import draw
    from sampler import Sampler, start_ids
    s = Sampler(weak)
    _, start = start_ids("我", s.vocab, warn=lambda m: None)
    looped = False
    guard = ["--max_copy", "0"]                        # the loop guard's defaults alone
    for mode in ("argmax", "combined", "weighted"):
        off = s.decode(draw(s, start, 200, mode, seed=1))
        looped |= longest_char_run(off) >= 4 or max_line_repeats(off) > 2
        for flags in (guard, guard + ["--lines", "30", "--line_len", "2-9"]):
            lines = 30 if len(flags) > 2 else None
            out = draw(s, start, 200, mode, seed=1, flags=flags, lines=lines)
            text = s.decode(out)
            assert longest_char_run(text) <= 3 and "  " not in text, (mode, text)
            assert max_line_repeats(text) <= 2, (mode, text)
            seq = list(start) + list(out)
            for i in range(len(start), len(seq)):
                assert seq[i] not in loop_banned(seq[:i], 5, 3, s.space_id) or \
                    len(loop_banned(seq[:i], 5, 3, s.space_id)) == len(s.chars)
    assert looped, "the weak model should loop without the guard (else this proves nothing)"


@pytest.mark.slow
def test_cli_flags(weak):
    proc = run("sample.py", "--save_dir", weak, "--sample", "argmax", "--n", "80",
               "--out", "", "--raw", "--max_run", "0", "--repeat_ngram", "0", check=0)
    off = proc.stdout.strip()
    assert not off or longest_char_run(off) >= 4      # off: it loops (or says nothing)
    proc = run("sample.py", "--save_dir", weak, "--sample", "argmax", "--n", "80",
               "--out", "", "--raw", check=0)
    on = proc.stdout.strip()
    assert len(on) > 40 and longest_char_run(on) <= 3 and "  " not in on
    proc = run("sample.py", "--save_dir", weak, "--repeat_ngram", "1")
    assert_one_line_error(proc, 2, "--repeat_ngram")
    help_text = run("sample.py", "--help", check=0).stdout
    assert "--max_run" in help_text and "--repeat_ngram" in help_text and \
        "refrain" in help_text
    assert os.path.exists(weak)
