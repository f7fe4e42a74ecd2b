"""The sampling engine (engine.py): every registered rule keeps its promise on sampled
text in every mode, a rule that cannot be met gives way and says so, the acrostic, and
text streamed as it is drawn equals the text printed whole."""
import io
import random

import pytest

from conftest import MADE_UP_LINES, assert_one_line_error, run
from engine import RULES, Engine, build_rules, plan
from sample import Printer, show
from sampler import Sampler, build_parser, start_ids, write_one

# The flags that turn each registered rule on, as a user would type them.  A rule added
# to engine.RULES without a case here fails test_every_rule_has_a_case.
CASES = {
    "line_len": ["--lines", "8", "--line_len", "3-6"],
    "acrostic": ["--acrostic", "春我月风雨"],
    "max_copy": ["--max_copy", "4"],
    "loop_guard": ["--max_run", "2", "--repeat_ngram", "4"],
    "rhyme": ["--lines", "8", "--rhyme", "auto"],
    "top_p": ["--top_p", "0.8"],          # its promise is about the distribution: below
}


@pytest.fixture(scope="module")
def sampler(trained):
    return Sampler(trained("lstm"), max_copy=4)


def test_every_rule_has_a_case():
    assert sorted(r.name for r in RULES) == sorted(CASES)


@pytest.mark.parametrize("mode", ["argmax", "weighted", "combined"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_each_rule_keeps_its_promise_in_every_mode(sampler, name, mode):
    args = build_parser().parse_args(CASES[name] + ["--sample", mode, "--max_copy",
                                                    "4" if name == "max_copy" else "0"])
    kept, ids = start_ids("", sampler.vocab)
    for seed in range(3):
        result = write_one(sampler, args, ids, kept, seed)
        rule = next(r for r in build_rules(args, sampler) if r.name == name)
        if name == "rhyme":
            rule.target = result["target"]
        assert not result["gave_way"].get(name), result
        assert rule.broken(result["text"]) == [], (result["text"], rule.broken(result["text"]))
        _, lines = plan(args)
        if lines:
            assert result["text"].count(" ") + 1 == lines, result["text"]


def test_a_promise_check_can_fail():
    """broken() finds what breaks each promise (else the test above proves nothing)."""
    class S:
        vocab = {c: i for i, c in enumerate(" 春天边路来")}

        def rhyme_groups(self):
            from craft import vocab_groups
            import numpy as np
            return np.array([g or "" for g in vocab_groups(list(self.vocab))], dtype=object)
    args = build_parser().parse_args(["--line_len", "2-3", "--acrostic", "春天",
                                      "--max_run", "2", "--repeat_ngram", "3",
                                      "--rhyme", "言前"])
    S.index = None
    rules = {r.name: r for r in build_rules(args, S())}
    assert rules["line_len"].broken("x 春边边边 天 ")
    assert rules["acrostic"].broken("路边 天边")
    assert rules["loop_guard"].broken("来来来 天")
    assert rules["loop_guard"].broken("天边 天边 天边 ")
    assert rules["rhyme"].broken("x 春路 天边 ")
    assert not rules["rhyme"].broken("x 春天 天边 ")


@pytest.mark.slow
def test_a_rule_that_cannot_be_met_gives_way_and_says_so(trained):
    # one-character lines and no pair of characters a third time: after two lines of
    # each character every next one is banned, so the loop guard has to give way
    proc = run("sample.py", "--save_dir", trained("lstm"), "--lines", "200", "--line_len",
               "1-1", "--repeat_ngram", "2", "--seed", "1", "--out", "", check=0)
    assert len(proc.stdout.split()) == 200
    assert "the loop guard rule gave way" in proc.stderr


def test_acrostic_lines_begin_with_their_characters(trained, tmp_path):
    out = tmp_path / "seq"
    proc = run("sample.py", "--save_dir", trained("lstm"), "--acrostic", "春我月风",
               "--line_len", "5-7", "--rhyme", "auto", "--seed", "4", "--out", out,
               "--start", "夜里", check=0)
    lines = proc.stdout.strip().split("\n")
    assert lines[0] == "夜里"                      # the start text ends its own line
    assert [line[0] for line in lines[1:]] == list("春我月风"), lines
    assert all(5 <= len(line) <= 7 for line in lines[1:]), lines
    assert "| acrostic 春我月风" in out.read_text(encoding="utf-8")
    assert "rhyme rate" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("argv, code, needles", [
    (["--acrostic", "春X"], 2, ["--acrostic", "never saw X"]),
    (["--acrostic", "春我", "--lines", "3"], 2, ["--acrostic", "(2)", "leave out --lines"]),
    (["--acrostic", "春" * 600], 2, ["--acrostic (600 lines)", "at most 20,000"]),
])
def test_bad_acrostics_are_one_line(trained, argv, code, needles):
    proc = run("sample.py", "--save_dir", trained("lstm"), "--out", "", *argv)
    assert_one_line_error(proc, code, *needles)


def test_streamed_text_is_the_text_printed_whole():
    rng = random.Random(3)
    for k in range(300):
        text = "".join(rng.choice(["", " ", "  "]) + rng.choice(MADE_UP_LINES)[:rng.randint(0, 5)]
                       for _ in range(rng.randint(0, 6))) + rng.choice(["", " "])
        raw, stanza = bool(k % 3 == 0), rng.choice([0, 1, 2, 3])
        # a line plan's breaks (--template, --form) instead of every `stanza` lines
        breaks = set(rng.sample(range(1, 7), 2)) if k % 4 == 1 else None
        out = io.StringIO()
        printer = Printer(out, raw, stanza, breaks=breaks)
        cut = sorted(rng.sample(range(len(text) + 1), min(3, len(text) + 1)))
        for a, b in zip([0] + cut, cut + [len(text)]):
            printer(text[a:b])
        printer.end()
        assert out.getvalue() == show(text.strip(), raw, stanza, breaks=breaks) + "\n", \
            (text, raw, stanza, breaks)
    assert show("a b c d", False, 1, breaks={2}) == "a\nb\n\nc\nd"


def test_the_engine_yields_characters_as_they_are_drawn(sampler):
    """The first characters come before the rest are drawn (streaming), with a revising
    rule one character late."""
    kept, ids = start_ids("我在", sampler.vocab)
    for flags in ([], ["--rhyme", "auto", "--lines", "4"]):
        rules = build_rules(build_parser().parse_args(flags), sampler)
        steps = []
        real = sampler.logits

        class Counting:
            space_id = sampler.space_id
            zero_state = staticmethod(sampler.zero_state)

            @staticmethod
            def logits(x, state):
                steps.append(x)
                return real(x, state)
        engine = iter(Engine(Counting, ids, rules, 100, plan(build_parser().parse_args(
            flags))[1], seed=2))
        next(engine)
        assert len(steps) <= len(ids) + 1          # warm-up, then one or two steps
        rest = list(engine)
        assert len(rest) >= 10


class Fixed:
    """A model whose next-character probabilities never change."""
    space_id = 0

    def __init__(self, probs):
        import numpy as np
        self.log = np.log(np.array(probs))

    def zero_state(self):
        return None

    def logits(self, x, state):
        return self.log, state


def test_top_p_draws_only_from_the_nucleus_in_its_proportions():
    from collections import Counter
    from engine import Nucleus
    model = Fixed([0.1, 0.4, 0.3, 0.2])          # by probability: 1, 2, 3, 0
    counts = Counter(Engine(model, [0], [Nucleus(0.6, 1.0)], 4000, seed=1))
    assert set(counts) == {1, 2}                 # 0.4 + 0.3 reach 0.6
    assert 4 / 3 * 0.85 < counts[1] / counts[2] < 4 / 3 * 1.15
    assert set(Engine(model, [0], [Nucleus(0.4, 1.0)], 200, seed=1)) == {1}
    # at temperature 2 the distribution is flatter (0.33, 0.28, 0.23, 0.16): 0.75
    # takes three characters
    assert set(Engine(model, [0], [Nucleus(0.75, 2.0)], 2000, seed=1,
                      temperature=2.0)) == {1, 2, 3}
    assert len(set(Engine(model, [0], [], 2000, seed=1))) == 4      # off: all four


class _Flat:
    """A model without TensorFlow for the engine: V characters, logits that move a little
    each step (no rule is needed to make the text vary), the rhyme groups of its
    characters."""

    def __init__(self, V=3000):
        import numpy as np
        self.V, self.space_id, self.index = V, 0, None
        self.chars = [" ", "春", "花", "秋", "月"] + [chr(0x4E00 + i) for i in range(V - 5)]
        self.vocab = {c: i for i, c in enumerate(self.chars)}
        self.base = np.random.default_rng(0).standard_normal(V) * 2

    def zero_state(self):
        return 0

    def logits(self, x, state):
        import numpy as np
        return self.base + 0.5 * np.sin(np.arange(self.V) * (state + 1)), state + 1

    def rhyme_groups(self):
        import numpy as np
        from craft import vocab_groups
        return np.array([g or "" for g in vocab_groups(self.chars)], dtype=object)


@pytest.mark.parametrize("flags", [
    ["--acrostic", "春" * 60, "--line_len", "2-2"],
    ["--acrostic", "春花秋月" * 15, "--line_len", "2-2", "--sample", "argmax"],
    ["--lines", "60", "--line_len", "2-2"],
    ["--lines", "30", "--line_len", "2-2", "--rhyme", "auto"],
])
def test_the_rules_cost_a_bounded_number_of_checks_per_character(flags, monkeypatch):
    """Two-character lines whose forced line end the loop guard refuses used to try every
    character of the vocabulary at every line end (about 1,000 rule passes a character at
    V = 3,000: 250 ms); the work is now bounded whatever the rules, and what the rules
    promise still holds or is counted as given way."""
    from engine import TRIES
    model = _Flat()
    calls = [0]
    real = Engine.allowed

    def counted(self, *a, **kw):
        calls[0] += 1
        return real(self, *a, **kw)
    monkeypatch.setattr(Engine, "allowed", counted)
    args = build_parser().parse_args(flags)
    n, lines = plan(args)
    rules = build_rules(args, model)
    engine = Engine(model, [0], rules, n, lines, args.sample, 1.0, 0, 1)
    out = list(engine)
    assert out.count(0) == lines - 1 or out.count(0) == lines     # every line drawn
    # one pass for the character, one look ahead; at a line end at most 2 * TRIES + 1
    # looks ahead (and as many again for a rhyme's re-draw), once every 3 characters
    assert calls[0] / len(out) <= 2 + 2 * (2 * TRIES + 1) / 3, calls[0] / len(out)
    text = "".join(model.chars[i] for i in [0] + out).rstrip(" ")   # as write_one ends it
    for rule in rules:
        if not engine.gave_way.get(rule.name) and rule.name != "rhyme":
            assert rule.broken(text) == [], (rule.name, text)
