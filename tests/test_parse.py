"""data/parse.py: the cleaning rule, encodings, LRC/credit lines and errors."""
import pytest

from conftest import assert_one_line_error, run
from data.parse import clean, decode_bytes, parse_file, strip_lrc_and_credits
from utils import UserError

SIMPLE = "从前有座山\n山里有座庙\n\n庙里有个老和尚\n"


def test_article_rule_whitespace_to_one_space_and_only_chinese_kept():
    assert clean("  你好 \t 世界\n\n再见  ") == "你好 世界 再见"
    # letters, digits, kana, full-width letters are dropped; a line break still ends a line
    assert clean("abc你好123\nＡＢ世界ｶﾀ") == "你好 世界"
    assert clean("天下\u9fa5\u9fa6") == "天下\u9fa5"          # U+9FA6 is outside the range


def test_punctuation_ends_a_line_instead_of_gluing_lines():
    assert clean("春风吹过，小河边。我在等你！真的？是；好：对、嗯") == \
        "春风吹过 小河边 我在等你 真的 是 好 对 嗯"
    assert clean("hello,world。你好,世界.再见") == "你好 世界 再见"


def test_non_chinese_word_between_spaces_leaves_one_space():
    assert clean("你好 OK 世界") == "你好 世界"


def test_lrc_time_tags_and_headers_are_removed():
    lrc = ("[ti:晴朗的日子]\n[ar:某人]\n[offset:0]\n[00:01.00]第一行歌词\n"
           "[00:05.50][01:05.50]第二行歌词\n[02:10]第三行\n")
    assert clean(strip_lrc_and_credits(lrc)) == "第一行歌词 第二行歌词 第三行"


def test_credit_lines_are_removed():
    text = ("作词：张三\n作曲 : 李四\n编曲：王五\n演唱：赵六\n制作人：孙七\n"
            "Lyrics by: 钱八\n歌词第一句\n词：周九 曲：吴十\n歌词第二句\n")
    assert clean(strip_lrc_and_credits(text)) == "歌词第一句 歌词第二句"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le",
                                      "gb18030", "gbk"])
def test_encodings_simplified_text(encoding):
    raw = SIMPLE.encode(encoding)
    text, _ = decode_bytes(raw)
    assert clean(text) == "从前有座山 山里有座庙 庙里有个老和尚"


def test_big5_traditional_text_is_detected():
    trad = "從前有座山\n山裡有座廟\n廟裡有個老和尚\n我們愛這個世界\n"
    text, used = decode_bytes(trad.encode("big5"))
    assert used == "big5"
    assert clean(text) == "從前有座山 山裡有座廟 廟裡有個老和尚 我們愛這個世界"


SIMPLIFIED_LINES = ["春风吹过小河边", "我在窗前等你回来", "月光洒满旧街道", "雨停了我们还在笑"]
TRADITIONAL_LINES = ["春風吹過小河邊", "我在窗前等你回來", "月光灑滿舊街道", "雨停了我們還在笑"]


@pytest.mark.parametrize("big5_first", [False, True])
def test_a_file_half_gbk_half_big5_reads_each_half_right_and_warns(tmp_path, big5_first):
    # pasted together from two sources: decoded whole as GB18030, the Big5 half used to
    # come out as mojibake (1,196 of 4,581 characters) without a word
    gbk = "\n".join(SIMPLIFIED_LINES * 20).encode("gbk")
    big5 = "\n".join(TRADITIONAL_LINES * 20).encode("big5")
    src = tmp_path / "origin.txt"
    src.write_bytes(b"\n".join([big5, gbk] if big5_first else [gbk, big5]))
    out = tmp_path / "lyrics.txt"
    proc = run("data/parse.py", "--input", src, "--output", out, check=0)
    halves = [" ".join(TRADITIONAL_LINES * 20), " ".join(SIMPLIFIED_LINES * 20)]
    assert out.read_text(encoding="utf-8") == " ".join(halves if big5_first else halves[::-1])
    assert "mixes encodings" in proc.stdout
    assert f"(gb18030, 80 lines in big5: {'1-80' if big5_first else '81-160'})" in proc.stdout


def test_gbk_text_is_not_mistaken_for_big5():
    text, used = decode_bytes("我们的爱情故事就从这里开始\n".encode("gbk"))
    assert used == "gb18030"
    assert clean(text) == "我们的爱情故事就从这里开始"


def test_forced_encoding_error_says_where():
    raw = "第一行\n第二行\n".encode("utf-8") + b"\xff\xfe\xfa\n"
    with pytest.raises(UserError, match=r"line 3"):
        decode_bytes(raw, "utf-8")


def test_undecodable_bytes_say_where(tmp_path):
    # Valid UTF-8 at first, then bytes that are neither UTF-8, GB18030 nor Big5.
    raw = "第一行\n".encode("utf-8") + b"\x80\x80\x80\x80\xff\xff\n"
    src = tmp_path / "bad.txt"
    src.write_bytes(raw)
    out = tmp_path / "out.txt"
    proc = run("data/parse.py", "--input", src, "--output", out)
    assert_one_line_error(proc, 1, "byte 10", "line 2")
    assert not out.exists()


def test_simplified_option_converts_traditional(tmp_path):
    src = tmp_path / "t.txt"
    src.write_text("從前有個人愛你很久\n", encoding="utf-8")
    out, _ = parse_file(str(src), simplified=True)
    assert out == "从前有个人爱你很久"


def test_cli_writes_output_and_reports(tmp_path):
    src = tmp_path / "origin.txt"
    src.write_bytes(("[00:01.00]作词：某人\n[00:02.00]春风吹过，小河边\n[00:03.00]我在窗前\n")
                    .encode("gbk"))
    out = tmp_path / "lyrics.txt"
    proc = run("data/parse.py", "--input", src, "--output", out, check=0)
    assert out.read_text(encoding="utf-8") == "春风吹过 小河边 我在窗前"
    assert "chars in" in proc.stdout and "distinct" in proc.stdout and "3 lines" in proc.stdout


@pytest.mark.parametrize("content, needle", [
    (None, "not found"),
    (b"", "empty"),
    (b"hello world 123\n", "no Chinese characters"),
])
def test_cli_errors_leave_existing_output_untouched(tmp_path, content, needle):
    src = tmp_path / "origin.txt"
    if content is not None:
        src.write_bytes(content)
    out = tmp_path / "lyrics.txt"
    out.write_text("旧的文本", encoding="utf-8")
    proc = run("data/parse.py", "--input", src, "--output", out)
    assert_one_line_error(proc, 1, needle)
    assert out.read_text(encoding="utf-8") == "旧的文本"


def test_unknown_encoding_is_a_usage_error(tmp_path):
    src = tmp_path / "origin.txt"
    src.write_text("你好", encoding="utf-8")
    proc = run("data/parse.py", "--input", src, "--output", tmp_path / "o.txt",
               "--encoding", "klingon")
    assert_one_line_error(proc, 2, "unknown encoding")


def test_a_gbk_line_in_a_big5_file_is_read_as_gbk_even_when_big5_makes_words_of_it():
    """Regression: the GBK line 春风吹过杨柳岸 read as Big5 is 景瑞斯徹栦霞偉, six of seven
    characters common in Big5, so it was kept as that."""
    big5 = "\n".join(TRADITIONAL_LINES * 10).encode("big5")
    raw = big5 + b"\n" + "春风吹过杨柳岸".encode("gbk") + b"\n" + big5
    text, used = decode_bytes(raw)
    assert "春风吹过杨柳岸" in text.split("\n") and "景瑞斯" not in text, used
    assert used.startswith("big5") and "in gb18030" in used
