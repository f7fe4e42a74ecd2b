"""Line plans (lineplan.py): --template keeps fixed lines verbatim and redraws the others,
--form writes a song whose chorus repeats; parsed to exact plans, checked against the
other flags, kept by the engine on sampled text, and reproduced by the printed command."""
import argparse
import shlex

import pytest

from conftest import ROOT, assert_one_line_error, run
from engine import build_rules, check_budget, plan
from lineplan import PlanLine, conflict, parse_form, parse_template
from sample import show
from sampler import Sampler, build_parser, card_plan, command_of, start_ids, write_one


def new(text="", length=None):
    return PlanLine("new", text, length)


def fixed(text):
    return PlanLine("fixed", text)


def same(ref):
    return PlanLine("same", ref=ref)


# ----------------------------------------------------------------------------- parsing


def test_a_template_is_parsed_to_its_exact_lines_and_breaks():
    p = parse_template("春风又绿江南岸/*//*5-7/从前*6/=1/=5/ ")
    assert p.lines == [fixed("春风又绿江南岸"), new(), new(length=(5, 7)),
                       new("从前", (6, 6)), same(0), same(0)]    # a copy of a copy: of line 1
    assert p.breaks == [2] and len(p) == 6
    assert p.template() == "春风又绿江南岸/*//*5-7/从前*6/=1/=1"
    assert parse_template(p.template()).lines == p.lines
    # lengths: a fixed line its own, a bare * --line_len or 1-40, a prefix at least one more
    assert p.lengths((4, 9)) == [(7, 7), (4, 9), (5, 7), (6, 6), (7, 7), (7, 7)]
    assert parse_template("从前从前*3").lengths() == [(5, 5)]
    assert p.bound((4, 9)) == 8 + 10 + 8 + 7 + 8 + 8


@pytest.mark.parametrize("spec, needle", [
    ("", "no lines"),
    ("//", "no lines"),
    ("=1/*", "the first line cannot repeat"),
    ("*/=3", "=1 to =1"),
    ("春风 吹/*", "has a space"),
    ("*0", "not a line length"),
    ("*9-5", "not a line length"),
    ("*a", "not a line length"),
    ("春*风*", "a new line is"),
    ("春=风", "= begins a repeat"),
])
def test_a_bad_template_says_what_is_wrong(spec, needle):
    with pytest.raises(argparse.ArgumentTypeError, match=needle):
        parse_template(spec)


def test_a_form_is_compiled_to_sections_whose_chorus_repeats():
    p = parse_form("verse chorus verse chorus").plan()
    assert len(p) == 16 and p.breaks == [4, 8, 12]
    assert p.lines[:8] == [new(length=(5, 9))] * 8
    assert p.lines[8:12] == [new(length=(5, 9))] * 4                  # the second verse: new
    assert p.lines[12:] == [same(4), same(5), same(6), same(7)]      # the chorus: again
    p = parse_form("主歌:2x7，副歌:3x4-6 桥段 副歌").plan((6, 8), prefix="从前")
    assert p.lines == [new("从前", (7, 7)), new(length=(7, 7)), new(length=(4, 6)),
                       new(length=(4, 6)), new(length=(4, 6)), new(length=(6, 8)),
                       new(length=(6, 8)), same(2), same(3), same(4)]
    assert p.breaks == [2, 5, 7] and p.flag == "form"
    assert str(parse_form("verse  chorus")) == "verse  chorus"       # as typed, for the command


@pytest.mark.parametrize("spec, needle", [
    ("", "no sections"),
    ("verse refrain", "'refrain' is not a section"),
    ("verse:0", "number of lines"),
    ("verse:4x", "optionally x and a length"),
    ("verse:4x0", "not a line length"),
    ("chorus:4 verse chorus:2", "the same text every time"),
])
def test_a_bad_form_says_what_is_wrong(spec, needle):
    with pytest.raises(argparse.ArgumentTypeError, match=needle):
        parse_form(spec)


@pytest.mark.parametrize("flags, needle", [
    (["--template", "*/*", "--lines", "4"], "leave out --lines"),
    (["--form", "verse", "--lines", "4"], "leave out --lines"),
    (["--template", "*/*", "--start", "从前"], "从前*"),
    (["--form", "verse", "--start", "从前。我"], "leave out its line ends"),
    (["--form", "verse chorus", "--stanza", "4"], "leave out --stanza"),
    (["--template", "*//*", "--stanza", "1"], "leave out --stanza"),
    (["--form", "verse", "--acrostic", "春夏秋冬"], "leave out one of them"),
    (["--template", "*/*/*", "--acrostic", "春"], "make them as many"),
    (["--template", "春风/夏*", "--acrostic", "春秋"], "does not begin with 秋"),
    (["--template", "春*/=1", "--acrostic", "春秋"], "repeats line 1"),
])
def test_flags_that_cannot_go_with_a_plan_are_refused_in_words(flags, needle):
    args = build_parser().parse_args(flags)
    assert needle in conflict(args) and conflict(args) == check_budget(args, 10 ** 6)


def test_flags_that_go_with_a_plan_are_accepted():
    for flags in (["--template", "*/*", "--stanza", "2"],
                  ["--template", "起句/春*/秋*", "--acrostic", "春秋"],   # a first line of its own
                  ["--form", "verse chorus", "--start", "从前", "--rhyme", "auto"]):
        args = build_parser().parse_args(flags)
        assert conflict(args) is None and check_budget(args, 10 ** 6) is None, flags


def test_the_budget_covers_every_planned_line_and_is_checked():
    args = build_parser().parse_args(["--form", "verse chorus verse chorus"])
    assert plan(args) == (max(200, 16 * 10), 16)
    args = build_parser().parse_args(["--template", "/".join(["*"] * 60)])
    assert plan(args) == (60 * 41, 60)
    assert "60 lines" in check_budget(args, 2000) and "fewer or shorter" in check_budget(
        args, 2000)


def test_a_card_without_a_plan_is_described_as_one():
    args = build_parser().parse_args(["--lines", "4", "--stanza", "2"])
    p = card_plan(args, "春风 从前", 4)
    assert p.lines == [fixed("春风"), new("从前"), new(), new()] and p.breaks == [2]
    args = build_parser().parse_args(["--acrostic", "春秋"])
    p = card_plan(args, "起句", 3)              # an acrostic's start text is a line of its own
    assert p.lines == [fixed("起句"), new(), new()]
    assert card_plan(args, "", 2).lines == [new(), new()]


# ------------------------------------------------------------------- on sampled text


@pytest.fixture(scope="module")
def sampler(trained):
    return Sampler(trained("lstm"), max_copy=0)


def draw(sampler, flags, seed):
    args = build_parser().parse_args(flags)
    assert check_budget(args, 10 ** 6) is None
    kept, ids = start_ids(args.start, sampler.vocab, warn=lambda m: None)
    return args, write_one(sampler, args, ids, kept, seed)


LOCKED = {1: "月光洒满旧街道", 5: "风把思念吹向远方"}


def test_locked_lines_stay_byte_for_byte_and_the_rest_are_redrawn(sampler):
    """The page's lock and redo: 2 of 8 lines locked, the other 6 drawn again, on 20
    seeds; each redone line within its range, the rules still kept."""
    entries = [LOCKED.get(k, "*3-7") for k in range(8)]
    flags = ["--template", "/".join(entries), "--max_run", "2", "--sample", "weighted"]
    redrawn = set()
    for seed in range(20):
        args, result = draw(sampler, flags, seed)
        lines = result["text"].split(" ")
        assert len(lines) == 8, result["text"]
        for k, line in LOCKED.items():
            assert lines[k] == line, (seed, lines)
        for k in set(range(8)) - set(LOCKED):
            assert 3 <= len(lines[k]) <= 7, (seed, lines)
        rules = build_rules(args, sampler)
        for rule in rules:
            if not result["gave_way"].get(rule.name):
                assert rule.broken(result["text"]) == [], (rule.name, result["text"])
        redrawn.add(tuple(lines[k] for k in range(8) if k not in LOCKED))
    assert len(redrawn) > 10                # the unlocked lines are new text


@pytest.mark.parametrize("mode", ["argmax", "weighted", "combined"])
def test_the_rhyme_of_redone_lines_follows_the_locked_ones(sampler, mode):
    """边 ends the locked line (言前): auto rhyme takes it, the drawn lines follow."""
    flags = ["--template", "*4-7/春风吹过小河边/*4-7/*4-7", "--rhyme", "auto",
             "--sample", mode]
    for seed in range(5):
        args, result = draw(sampler, flags, seed)
        assert result["target"] == "言前", result
        assert result["text"].split(" ")[1] == "春风吹过小河边"
        rhyme = next(r for r in build_rules(args, sampler) if r.name == "rhyme")
        if not result["gave_way"].get("rhyme"):
            assert rhyme.broken(result["text"]) == [], result["text"]


def test_a_form_repeats_its_chorus_and_writes_new_verses(sampler):
    """--form 'verse chorus verse chorus': four stanzas, both choruses the same text,
    the two verses different, on every seed of 20."""
    flags = ["--form", "verse chorus verse chorus", "--line_len", "3-7"]
    for seed in range(20):
        args, result = draw(sampler, flags, seed)
        stanzas = show(result["text"], False, breaks={4, 8, 12}).split("\n\n")
        assert len(stanzas) == 4 and all(len(s.split("\n")) == 4 for s in stanzas), stanzas
        assert stanzas[1] == stanzas[3], stanzas
        assert stanzas[0] != stanzas[2], stanzas
        assert all(3 <= len(line) <= 7 for line in result["text"].split(" "))


def test_a_form_begins_with_the_start_text_and_an_acrostic_template_with_its_own(sampler):
    _, result = draw(sampler, ["--form", "verse:2 chorus:2", "--start", "春风"], 3)
    assert result["text"].startswith("春风") and len(result["text"].split(" ")) == 4
    _, result = draw(sampler, ["--template", "我在窗前等你回来/春*/月*", "--acrostic",
                               "春月"], 3)
    lines = result["text"].split(" ")
    assert lines[0] == "我在窗前等你回来" and lines[1][0] == "春" and lines[2][0] == "月"


def test_the_printed_command_remakes_a_planned_sample(sampler, trained):
    for flags in (["--template", "*3-6/月光洒满旧街道//=1/*", "--rhyme", "auto"],
                  ["--form", "verse:2 chorus:2 verse:2 chorus", "--start", "春风"]):
        args, result = draw(sampler, ["--save_dir", trained("lstm"), "--max_copy", "0"]
                            + flags, 11)
        argv = shlex.split(command_of(args, 11))[2:]
        cli = run("sample.py", *argv, "--out", "", "--raw", cwd=ROOT, check=0)
        assert cli.stdout.strip() == result["text"], (argv, cli.stdout)
        printed = run("sample.py", *argv, "--out", "", cwd=ROOT, check=0).stdout
        assert printed.strip() == show(result["text"], False,
                                       breaks=set(args.template.breaks if args.template
                                                  else args.form.plan().breaks))


def test_a_fixed_line_the_model_cannot_write_is_a_usage_error(trained):
    proc = run("sample.py", "--save_dir", trained("lstm"), "--template", "春风/ABC/*",
               "--out", "")
    assert_one_line_error(proc, 2, "never saw ABC")
    proc = run("sample.py", "--save_dir", trained("lstm"), "--form", "verse", "--stanza",
               "2", "--out", "")
    assert_one_line_error(proc, 2, "leave out --stanza")
