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
