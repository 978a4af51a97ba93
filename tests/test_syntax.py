import pytest

from toolformer.corpus.syntax import HW3, TOOLFORMER, get_syntax

TEXT = ("Out of 1400 participants, 400 (or [Calculator(400 / 1400) → 0.29] 29%) passed. "
        "[WikiSearch(Brown Act (California)) → The Ralph M. Brown Act is ...] It was "
        "[Calendar() → Today is Friday, April 19, 2013.] a Friday.")


def test_parse_finds_three_calls_with_spans():
    calls = TOOLFORMER.parse(TEXT)
    assert [(c.tool, c.input, c.result) for c in calls] == [
        ("Calculator", "400 / 1400", "0.29"),
        ("WikiSearch", "Brown Act (California)", "The Ralph M. Brown Act is ..."),
        ("Calendar", "", "Today is Friday, April 19, 2013."),
    ]
    for c in calls:
        assert TEXT[c.span[0]:c.span[1]] == TOOLFORMER.render_call(c)


def test_render_parse_round_trip_rebuilds_text_exactly():
    calls = TOOLFORMER.parse(TEXT)
    rebuilt, last = [], 0
    for c in calls:
        rebuilt += [TEXT[last:c.span[0]], TOOLFORMER.render_call(c)]
        last = c.span[1]
    assert "".join(rebuilt) + TEXT[last:] == TEXT


def test_call_without_result_and_empty_result():
    assert TOOLFORMER.render("Calculator", "1 + 2") == "[Calculator(1 + 2)]"
    assert TOOLFORMER.render("Calculator", "1 + 2", "") == "[Calculator(1 + 2) → ]"
    (c,) = TOOLFORMER.parse("x [Calculator(1 + 2)] y")
    assert c.result is None and c.span == (2, 21)
    (c,) = TOOLFORMER.parse("[Calculator(1 + 2) → ]")
    assert c.result == ""


def test_ascii_arrow_and_garbage_brackets():
    (c,) = TOOLFORMER.parse("see [1] and [Calculator((2+3)*4) -> 20] and [not a call")
    assert (c.tool, c.input, c.result) == ("Calculator", "(2+3)*4", "20")


def test_parse_body():
    assert TOOLFORMER.parse_body("Calculator((2 + 3) * 4) ") == ("Calculator", "(2 + 3) * 4")
    assert TOOLFORMER.parse_body("Calculator(1))(") is None
    assert TOOLFORMER.parse_body("Calculator 1 + 2") is None
    assert TOOLFORMER.stop_strings() == ("→", "->", "]")


def test_hw3_round_trip():
    text = "He has <<8*2>>16 apples and <<16/3>>5.33 each, then <<1,000+5>>1,005."
    calls = HW3.parse(text)
    assert [(c.input, c.result) for c in calls] == [("8*2", "16"), ("16/3", "5.33"), ("1,000+5", "1,005")]
    for c in calls:
        assert text[c.span[0]:c.span[1]] == HW3.render_call(c)
    assert get_syntax("hw3").render("Calculator", "400/1400", "0.29") == "<<400/1400>>0.29"


LITERALS = ["a [Calculator(2+2)] b", "[Calculator(2+2) → 4]", "<<3*4>>12", "x << y", "<<", "<<<", "a >> b",
            "\\<<1+1>>2", "\\[Calculator(1)", "\\\\[Foo(x)]", "[ Calculator(2)", "[1] and [f(x)]", "a < b > c"]


@pytest.mark.parametrize("syntax", [TOOLFORMER, HW3])
@pytest.mark.parametrize("text", LITERALS)
def test_escaped_plain_text_holds_no_call_and_unescapes_back(syntax, text):
    written = syntax.escape(text)
    assert syntax.parse(written) == [] and list(syntax.markers(written)) == [] and syntax.unescape(written) == text


def test_escape_touches_markers_only():
    assert TOOLFORMER.escape("a [Calculator(2+2)] b, [1], [ f(x)") == "a \\[Calculator(2+2)] b, [1], \\[ f(x)"
    assert TOOLFORMER.escape("\\[Calculator(") == "\\\\[Calculator(" and TOOLFORMER.escape("<<3*4>>12") == "<<3*4>>12"
    assert HW3.escape("<<3*4>>12, a < b, <<<") == "\\<<3*4\\>>12, a < b, \\<<<"
    # a marker after a backslash is text; an unescaped one is a call (or, unparsed, a broken one)
    assert [c.input for c in HW3.parse("\\<<1+1>>2 <<2+2>>4 <<<3+3>>6")] == ["2+2"]
    assert [c.input for c in TOOLFORMER.parse("\\[Calculator(1) → 1] [Calculator(2) → 2]")] == ["2"]
    assert [m.start() for m in TOOLFORMER.markers("\\[Calculator(1)] [ Calculator(2")] == [17]


def test_hw3_inputs_with_spaces_and_signed_results():
    text = "<<400 / 1400>>0.29 and <<5 - 8>>-3, <<7 / 4>>1.75 or <<2 * 500>>1,000."
    assert [(c.input, c.result, text[c.span[0]:c.span[1]]) for c in HW3.parse(text)] == [
        ("400 / 1400", "0.29", "<<400 / 1400>>0.29"), ("5 - 8", "-3", "<<5 - 8>>-3"), ("7 / 4", "1.75", "<<7 / 4>>1.75"),
        ("2 * 500", "1,000", "<<2 * 500>>1,000")]
