"""Calculator: hand-computed values, documented errors, a 10k-input fuzz against an independent
reference, the prompt's own examples, the document heuristic and the CLI."""
from __future__ import annotations

import builtins
import importlib
import json
import random
import re
import shutil
import subprocess
import sys
import time
from decimal import ROUND_HALF_UP, Context, Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from toolformer.assets import PROMPTS_DIR
from toolformer.corpus.syntax import TOOLFORMER
from toolformer.errors import UserValueError
from toolformer.tools import TOOL_KEYS, ToolError, get_tool, load_prompt, run_call
from toolformer.tools.calculator import MAX_ABS, MAX_DEPTH, MAX_INPUT_CHARS, TOOL, looks_like_math, make_executor

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
calc = make_executor()


@pytest.mark.parametrize("expression, expected", [
    ("400 / 1400", "0.29"),
    ("(2+3)*4", "20"),
    ("10 - 4 - 3", "3"),            # left-associative
    ("100 / 10 / 5", "2"),
    ("2 + 3 * 4", "14"),
    ("12 x 3", "36"),
    ("12X3", "36"),
    ("12 × 3", "36"),
    ("7 ÷ 2", "3.5"),
    ("7 − 10", "-3"),
    ("2,500 * 3", "7500"),
    ("1,234,567.5 + 0.5", "1234568"),
    ("$2,500 * 3", "7500"),
    ("0.1 + 0.2", "0.3"),            # exact: no 0.30000000000000004
    (".5 + .25", "0.75"),
    ("3.10 * 2", "6.2"),
    ("-3.5", "-3.5"),
    ("-(2 + 3) * 2", "-10"),
    ("4 - -2", "6"),
    ("--3", "3"),
    ("-+-3", "3"),
    ("  ( ( 1 ) )  ", "1"),
    ("2 ^ 10", "1024"),
    ("2 ** 3 ** 2", "512"),          # right-associative
    ("-2^2", "-4"),
    ("(-2)^2", "4"),
    ("2^-2", "0.25"),
    ("20% of 50", "10"),
    ("50 * 20%", "10"),
    ("50 / 20%", "250"),
    ("20% of 30% of 50", "3"),
    ("50 - 20% of 50", "40"),
    ("(50 + 30)%", "0.8"),
    ("20%", "0.2"),
    ("1 / 3", "0.33"),
    ("2 / 3", "0.67"),
    ("1,000,000 * 1,000,000", "1000000000000"),
    ("1\u00a0+\u00a02", "3"),         # no-break spaces are spaces
])
def test_values(expression, expected):
    assert calc(expression, {}) == expected


@pytest.mark.parametrize("expression, expected", [
    ("0.125", "0.13"),       # half away from zero, not banker's 0.12
    ("-0.125", "-0.13"),
    ("0.135", "0.14"),
    ("2.675", "2.68"),       # float arithmetic would give 2.67
    ("1 / 8", "0.13"),
    ("0.005", "0.01"),
    ("0.00499", "0"),
    ("-0.001", "0"),         # never "-0"
    ("1 / 200", "0.01"),
    ("-1 / 200", "-0.01"),
    ("1.999", "2"),
    ("10 / 4", "2.5"),
])
def test_rounding(expression, expected):
    assert calc(expression, {}) == expected


def test_decimals_option():
    assert make_executor(decimals=0)("7 / 2", {}) == "4"
    assert make_executor(decimals=0)("-7 / 2", {}) == "-4"
    assert make_executor(decimals=4)("1 / 3", {}) == "0.3333"
    with pytest.raises(ValueError):
        make_executor(decimals=-1)


@pytest.mark.parametrize("expression, message", [
    ("", "empty"),
    ("   ", "empty"),
    ("1 / 0", "division by zero"),
    ("1 / (3 - 3)", "division by zero"),
    ("0 ^ -1", "division by zero"),
    ("50 + 20%", "ambiguous percentage"),
    ("20% - 5", "ambiguous percentage"),
    ("10 % 3", "modulo"),
    ("5 of 20", "'of' must follow a percentage"),
    ("1,5 + 1", "unexpected character ','"),
    ("1234,567", "unexpected character ','"),
    ("2 3", "unexpected number"),
    ("2(3)", "unexpected '('"),
    ("(1 + 2", "missing ')'"),
    ("1 + 2)", "unexpected ')'"),
    ("1 +", "end of input"),
    ("1e5", "unexpected character 'e'"),
    ("٣ + ١", "unexpected character '٣'"),     # Arabic-Indic digits are rejected, not guessed
    ("３ + １", "unexpected character '３'"),   # so are fullwidth digits
    ("abs(-1)", "unexpected character 'a'"),
    ("2 ^ 0.35", "exponent must be a whole number or a fraction p/q with q <= 10"),   # 7/20
    ("2 ^ (1/3) ^ 3", "exponent must be a whole number or a fraction"),     # right-associative: 1/27
    ("2 ^ 101", "exponent must be a whole number"),
    ("9**9**9**9", "exponent must be a whole number"),
    ("10 ^ 31", "too large"),
    ("1" + "0" * 29 + " * 11", "too large"),
    ("1" * 31, "more than 30 digits"),
    ("1" * 201, "longer than 200 characters"),
])
def test_errors(expression, message):
    with pytest.raises(ToolError, match=re.escape(message)):
        calc(expression, {})


@pytest.mark.parametrize("expression, expected", [
    ("gcd(12, 18)", "6"),
    ("GCD(15,9,18)", "3"),          # ASDiv's spelling
    ("gcd(252,198)", "18"),         # 252 = 2^2*3^2*7, 198 = 2*3^2*11: commas separate, never group
    ("gcd(7)", "7"),
    ("gcd(0, 0)", "0"),
    ("gcd(-4, 6)", "2"),
    ("gcd(4.0, 6)", "2"),           # a whole number written with a decimal point
    ("lcm(6, 8)", "24"),
    ("LCM[20,10,8]", "40"),         # ASDiv's square brackets
    ("LCM[252,198]", "2772"),       # 2^2*3^2*7*11
    ("lcm(4, 6) / gcd(4, 6)", "6"),
    ("lcm(0, 5)", "0"),
    ("lcm(-4, 6)", "12"),
    ("lcm(2 + 2, 3 * 2)", "12"),    # arguments are expressions
    ("1,000 * gcd(2, 4)", "2000"),  # outside the brackets commas still group thousands
    ("gcd(1,000, 5)", "1"),         # inside they separate, as documented: gcd(1, 0, 5)
    ("Lcm ( 3 , 5 )", "15"),
    ("lcm(10^15, 10^15 - 1)", str(10 ** 15 * (10 ** 15 - 1))),   # coprime: the product, exactly
    ("sqrt(16)", "4"),
    ("sqrt(16/9)", "1.33"),
    ("sqrt(2)", "1.41"),            # 1.41421...
    ("sqrt(2) * sqrt(2)", "2"),     # the root is exact to 20 decimals, so the product rounds back
    ("100^(1/2)*4", "40"),          # ASDiv: a square room of 100 square feet
    ("(400^(1/2)/2)*(400^(1/2)/2)*3.14", "314"),
    ("2 ^ 0.5", "1.41"),
    ("8^(2/3)", "4"),
    ("(-8)^(1/3)", "-2"),           # an odd root of a negative number is real
    ("27^(-1/3)", "0.33"),
    ("10^(1/10)", "1.26"),          # 1.2589...: the largest root allowed
    ("560//10", "56"),              # GSM8K writes //
    ("7 // 2", "3"),
    ("-7 // 2", "-4"),              # rounds down, as Python's //
    ("7.5 // 2.5", "3"),
])
def test_functions_roots_and_floor_division(expression, expected):
    assert calc(expression, {}) == expected


@pytest.mark.parametrize("expression, message", [
    ("gcd(2.5, 5)", "gcd takes whole numbers, not 2.5"),
    ("lcm(1/3, 2)", "lcm takes whole numbers, not 0.33"),
    ("gcd(50%, 10)", "gcd takes whole numbers, not 0.5"),
    ("lcm(10^20, 10^20 + 1)", "too large"),          # 10^40 > MAX_ABS
    ("lcm(" + ", ".join(["97", "89", "83", "79", "73", "71", "67", "61", "59", "53", "47", "43", "41", "37",
                         "31", "29", "23", "19"]) + ")", "too large"),   # ~1.1e31
    ("gcd(10^31, 2)", "too large"),                  # arguments are bounded like every value
    ("gcd()", "expected a number"),
    ("gcd(4, 6]", "missing ')'"),
    ("LCM[4, 6)", "missing ']'"),
    ("lcm(4, 6", "missing ')'"),
    ("gcd 4, 6", "unexpected character 'g'"),        # a name needs its brackets
    ("[4]", "expected a number or '(', got '['"),    # square brackets only hold arguments
    ("(4, 6)", "unexpected character ','"),
    ("sqrt(4, 9)", "sqrt takes one number, not 2"),
    ("sqrt(-4)", "no real square root"),
    ("(-4)^(1/2)", "even root of a negative number"),
    ("2 ^ (1/11)", "q <= 10"),
    ("10 // 0", "division by zero"),
    ("max(1, 2)", "unexpected character 'm'"),
])
def test_function_errors(expression, message):
    with pytest.raises(ToolError, match=re.escape(message)):
        calc(expression, {})


def test_depth_limit_is_exact():
    assert calc("(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH, {}) == "1"
    with pytest.raises(ToolError, match="deeper"):
        calc("(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1), {})


def test_magnitude_bound_is_exact():
    assert calc("10 ^ 30", {}) == str(MAX_ABS)
    with pytest.raises(ToolError, match="too large"):
        calc("10 ^ 30 + 1", {})


def test_run_call_turns_errors_into_values():
    out = run_call(TOOL, calc, "1 / 0")
    assert out.result is None and out.error == "division by zero"
    out = run_call(TOOL, calc, "400 / 1400")
    assert out.result == "0.29" and out.error is None


# ---- examples the LM learns from must compute to what they claim

def example_calls(prompt: str, examples: tuple[str, ...]) -> list:
    """The calls in the prompt's Output: lines and in the tool's example uses."""
    outputs = [line for line in prompt.splitlines() if line.startswith("Output: ")]
    calls = [call for text in outputs + list(examples) for call in TOOLFORMER.parse(text)]
    assert len(calls) == len(outputs) + len(examples), "one call per example"
    return calls


def test_prompt_and_tool_examples_are_correct():
    prompt = load_prompt(get_tool("calculator"))
    assert prompt.endswith("Input: {input}\nOutput:")
    raw = (REPO / "toolformer" / "tools" / "prompts" / "calculator.txt").read_text(encoding="utf-8")
    assert raw.endswith("Input: {input}\nOutput:")
    calls = example_calls(prompt, TOOL.examples)
    assert len(calls) == 5 + 4  # prompt Output: lines + the tool's example uses
    for call in calls:
        assert call.tool == "Calculator"
        assert calc(call.input, {}) == call.result, call


def test_prompt_length(tokenizer):
    # the few-shot part is encoded once per tool (the backend's prefix cache): five examples fit
    n = len(tokenizer(load_prompt(TOOL))["input_ids"])
    assert 250 <= n <= 500, n


def test_tool_fields():
    assert get_tool("Calculator") is TOOL
    assert (TOOL.tau_s, TOOL.k, TOOL.m, TOOL.tau_f) == (0.0, 20, 10, 0.5)


def test_every_tool_module_registers_its_tool():
    # a tool's key is its module's name and its prompt file's stem; lookups ignore case
    assert TOOL_KEYS == ("calculator", "calendar", "wikisearch", "qa")
    for key in TOOL_KEYS:
        assert importlib.import_module(f"toolformer.tools.{key}").TOOL is get_tool(key.upper())
        assert (PROMPTS_DIR / f"{key}.txt").is_file()
    with pytest.raises(UserValueError, match="unknown tool 'abacus' .available: calculator, calendar"):
        get_tool("abacus")


def test_executor_options():
    assert TOOL.executor(decimals=0)("7 / 2", {}) == "4"
    with pytest.raises(UserValueError, match="Calculator has no option 'decimal' .options: decimals."):
        TOOL.executor(decimal=3)
    for bad in (11, -1, 1.5, "2", True):  # --option decimals=1.5 once failed on the first call
        with pytest.raises(UserValueError, match="decimals must be a whole number 0..10"):
            TOOL.executor(decimals=bad)


# ---- document heuristic

@pytest.mark.parametrize("text, expected", [
    ("They scored 12 points in the first half and 15 in the second, 27 in all.", True),   # a+b
    ("The receipts were $560,396,674 and expenses $506,099,007, a surplus of $54,297,667.", True),
    ("Of 1,400 applicants, 400 were admitted (29%).", True),                           # 100a/b
    ("Of 1,400 applicants, 400 were admitted, a rate of 0.29.", True),                 # a/b rounded
    ("Each of the 6 crates holds 24 bottles, 144 bottles.", True),                     # a*b
    ("They paid a total of $45.", True),
    ("The total of the bill was high; 45 people came.", False),
    ("So x = 5 here.", True),
    ("Two plus two equals 4.", True),
    ("They scored an average of 81.5 points.", True),
    ("There were 3 cats, 7 dogs and 11 birds.", False),
    ("There were 3 cats, 7 dogs and 2 birds.", False),        # 7/3 ≈ 2 is too coarse to count
    ("On March 1, 1895 and again on March 11, 1898.", False),  # 1898/1895 ≈ 1 does not count
    ("He was born in 1950 and had 3 children.", False),
    ("No numbers at all.", False),
    ("12 and 15" + " word" * 100 + " made 27.", False),         # 500 characters apart
    ("12 and 15" + " word" * 60 + " made 27.", True),           # still within ~100 tokens
])
def test_heuristic(text, expected):
    assert looks_like_math(text, {}) is expected
    assert TOOL.heuristic is looks_like_math


def test_heuristic_is_cheap_on_number_soup():
    # numbers in [10^6, 2*10^6) never combine into one another (sums too big, ratios ≈ 1),
    # so the search runs to the end: its cost is bounded by MAX_NUMBERS, not by the text
    rng = random.Random(0)
    text = " ".join(str(rng.randrange(10 ** 6, 2 * 10 ** 6)) for _ in range(20_000)) + " " + "9" * 5000
    t0 = time.thread_time()
    assert looks_like_math(text, {}) is False
    assert time.thread_time() - t0 < 0.5


# ---- fuzz: random valid expressions against an independent reference, and hostile soup

def reference_text(value: Fraction) -> str:
    """Half-up rounding to 2 decimals via decimal, independent of the tool's integer rounding."""
    exact = Context(prec=200).divide(Decimal(value.numerator), Decimal(value.denominator))
    text = f"{exact.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):f}"
    text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


SPELLINGS = {"+": ["+"], "-": ["-", "−"], "*": ["*", "x", "×"], "/": ["/", "÷"]}


def _number(rng: random.Random) -> tuple[str, Fraction]:
    whole = rng.choice([rng.randrange(10), rng.randrange(1000), rng.randrange(10000)])
    text = f"{whole:,}" if whole >= 1000 and rng.random() < 0.5 else str(whole)
    if rng.random() < 0.3:
        frac = str(rng.randrange(100)).zfill(rng.choice([2, 3]))
        text = f"{'' if whole == 0 and rng.random() < 0.5 else text}.{frac}"
        return text, Fraction(whole) + Fraction(int(frac), 10 ** len(frac))
    return text, Fraction(whole)


def _apply(acc: Fraction | None, op: str, value: Fraction | None) -> Fraction | None:
    """One left-fold step; None once the tool must refuse (1/0, a value beyond MAX_ABS)."""
    if acc is None or value is None or (op == "/" and value == 0):
        return None
    if op in "+-":
        result = acc + value if op == "+" else acc - value
    else:
        result = acc * value if op == "*" else acc / value
    return None if abs(result) > MAX_ABS else result


def _factor(rng: random.Random, depth: int, percent_ok: bool) -> tuple[str, Fraction | None]:
    r = rng.random()
    if depth < 2 and r < 0.2:
        inner, value = random_expression(rng, depth + 1)
        text = f"({rng.choice(['', ' '])}{inner}{rng.choice(['', ' '])})"
    elif r < 0.3:
        base, exponent = rng.randrange(-3, 10), rng.randrange(4)
        text = f"{f'({base})' if base < 0 else base}{rng.choice(['^', '**'])}{exponent}"
        value = Fraction(base) ** exponent
    elif r < 0.4 and percent_ok:  # never a bare percentage in a sum: that one must be refused
        pct = rng.randrange(1, 200)
        text, value = f"{pct}%", Fraction(pct, 100)
    else:
        text, value = _number(rng)
    if rng.random() < 0.15:  # unary minus binds looser than ^: -2^2 = -(2^2)
        text, value = rng.choice(["-", "−"]) + text, None if value is None else -value
    return text, value


def random_expression(rng: random.Random, depth: int = 0) -> tuple[str, Fraction | None]:
    """(text, exact value), value None where the tool must refuse.

    Built as a sum of products of factors and folded left here, so the tool's precedence and
    associativity are checked without reusing its parser."""
    sp = lambda: rng.choice(["", " ", " ", "  "])  # noqa: E731
    terms, total = [], Fraction(0)
    for t in range(rng.randint(1, 4)):
        n_factors = rng.randint(1, 3)
        factors, product = [], Fraction(1)
        for f in range(n_factors):
            op = rng.choice("*/") if f else "*"
            text, value = _factor(rng, depth, percent_ok=n_factors > 1)
            product = _apply(product, op, value)
            of = op == "*" and f and factors[-1].endswith("%") and rng.random() < 0.5
            spelled = "of" if of else rng.choice(SPELLINGS[op])
            factors.append(text if not f else f"{sp()}{spelled}{sp()}{text}")
        op = rng.choice("+-") if t else "+"
        total = _apply(total, op, product)
        term = "".join(factors)
        terms.append(term if not t else f"{sp()}{rng.choice(SPELLINGS[op])}{sp()}{term}")
    return "".join(terms), total


SOUP = ("0123456789" * 3 + "+-*/x×÷−^%().,$ " * 2 + "abeEjo_'\"[]{}:;=<>!&|~@#\\\n\t"
        + "٣３①²½∞—–\u202e\x00é€😀")


def hostile_inputs(canary_dir: Path) -> list[str]:
    canary = canary_dir / "canary"
    return [
        "__import__('os').system('echo hi')",
        f"__import__('pathlib').Path({str(canary)!r}).write_text('x')",
        f"open({str(canary)!r}, 'w').write('x')",
        "setattr(__import__('builtins'), 'toolformer_canary', 1)",
        "globals().update(toolformer_canary=1)",
        "(lambda: 1)()", "lambda x: x", "[x for x in range(10**9)]", "().__class__.__bases__[0]",
        "1 if 1 else 2", "exec('1')", "eval('1+1')", "True + 1", "None", "nan", "inf", "1e308 * 1e308",
        "0x10", "0b11", "1_000", "1j", "[1, 2]", "{}", "''", "'1' + '1'", "1;2", "1 and 2", "~1", "1 << 100",
        "9**9**9**9", "9^9^9^9", "2**100000", "10**10**10", "(2^10)^10", "2^100^100", "(0.5)^100^2",
        "(" * 10000 + ")" * 10000, "(" * 10000 + "1" + ")" * 10000, "(" * 99 + "1" + ")" * 99,
        "1" * 500, "1" * 199, "9" * 30 + " * " + "9" * 30, "0." + "3" * 29 + " / 7 / 7 / 7 / 7 / 7",
        "1" + " / 7" * 49, "-" * 199 + "1", "1" + "+1" * 99, "2" + "*2" * 99, "2" + "^2" * 99,
        "٣ + ٤", "３ + ４", "①", "²", "½", "", " ", "\x00", "\n", "-", "+", "()", ")(", "%", "of",
        "20% of", "of of", "1,,000", "1,00", "$", "$$5", "5$", "\u202e1+1", "1 % 3", "20%%", "50 + 20%",
        "1/(1-1)", "0^-1", "2^-100", "0.1^100", "(1/3)^100",
    ]


def mutate(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(chars) + 1)
        action = rng.random()
        if action < 0.4 and chars:
            del chars[min(i, len(chars) - 1)]
        elif action < 0.8:
            chars.insert(i, rng.choice(SOUP))
        else:
            chars[i:i] = chars[:rng.randrange(len(chars) + 1)]
    return "".join(chars)


def fuzz_cases(seed: int, canary_dir: Path) -> list[tuple[str, Fraction | None, bool]]:
    """(input, exact value or None, whether the value is known): ≥10,000 cases."""
    rng = random.Random(seed)
    cases = []
    for _ in range(4000):
        text, value = random_expression(rng)
        cases.append((text, value if len(text) <= MAX_INPUT_CHARS else None, True))
    valid = [text for text, _, _ in cases]
    cases += [(mutate(rng, rng.choice(valid)), None, False) for _ in range(2500)]
    cases += [("".join(rng.choice(SOUP) for _ in range(rng.randrange(250))), None, False)
              for _ in range(2500)]
    cases += [(rng.randbytes(rng.randrange(120)).decode(rng.choice(["latin-1", "utf-8"]), errors="replace"),
               None, False) for _ in range(1000)]
    cases += [(text, None, False) for text in hostile_inputs(canary_dir)]
    return cases


def _timed(func, *args) -> tuple[float, object]:
    t0 = time.perf_counter()
    try:
        out = func(*args)
    except ToolError as err:
        out = err
    return time.perf_counter() - t0, out


def test_fuzz(tmp_path):
    cases = fuzz_cases(seed=1234, canary_dir=tmp_path)
    assert len(cases) >= 10_000
    assert all(len(text) < 200 for text in hostile_inputs(tmp_path)[:5])  # canaries pass the length bound
    n_checked = n_refused = 0
    worst = 0.0
    for text, value, known in cases:
        seconds, out = _timed(calc, text, {})
        if seconds > 0.1:  # a busy shared machine can stall any call once: a slow input stays slow
            seconds = min(seconds, *(_timed(calc, text, {})[0] for _ in range(2)))
        worst = max(worst, seconds)
        assert isinstance(out, (str, ToolError)), (text, out)  # anything else raised out of calc
        if known:
            if value is None:
                assert isinstance(out, ToolError), (text, out)
                n_refused += 1
            else:
                assert out == reference_text(value), (text, value)
                n_checked += 1
        via_run_call = run_call(TOOL, calc, text)  # must never raise
        expected = (out, None) if isinstance(out, str) else (None, str(out))
        assert (via_run_call.result, via_run_call.error) == expected, text
    assert worst < 0.1, f"slowest input took {worst * 1000:.1f} ms"
    assert n_checked > 3000 and n_refused > 10, (n_checked, n_refused)  # the generator covers both
    # nothing was executed as Python
    assert not any(tmp_path.iterdir())
    assert not hasattr(builtins, "toolformer_canary")


# ---- real data: every GSM8K calculator annotation `<<48/2=24>>` recomputes to its written result

@pytest.mark.slow
def test_gsm8k_annotations():
    path = SHARED_DATA / "math" / "gsm8k_train.jsonl"
    if not path.exists():
        pytest.skip(f"real data not found at {path}")
    agree, refused = 0, []
    for line in path.open(encoding="utf-8"):
        for expression, written in re.findall(r"<<([^=<>]*)=([^<>]*)>>", json.loads(line)["answer"]):
            try:
                result = calc(expression, {})
            except ToolError:
                refused.append(expression)
                continue
            assert abs(Fraction(result) - Fraction(written.replace(",", ""))) <= Fraction(1, 200), \
                (expression, written, result)
            agree += 1
    assert agree > 23_000 and refused == []  # the two written with // included (560//10=56)


@pytest.mark.slow
def test_asdiv_gcd_lcm_and_root_formulas():
    # 142 ASDiv formulas (the reader's: units dropped, last step) use GCD(...), LCM[...] or ^(1/2);
    # the calculator once refused them all
    from toolformer.corpus.annotations import split_equation
    path = SHARED_DATA / "math" / "asdiv.jsonl"
    if not path.exists():
        pytest.skip(f"real data not found at {path}")
    checked = 0
    for line in path.open(encoding="utf-8"):
        formula = json.loads(line)["formula"]
        parts = split_equation(formula)
        if parts is None or parts[1] is None or not re.search(r"GCD|LCM|\^\(1/2\)", parts[0]):
            continue
        assert calc(parts[0], {}) == parts[1].replace(",", ""), formula
        checked += 1
    assert checked == 142, checked


# ---- the CLI

def _toolformer() -> list[str]:
    script = shutil.which("toolformer", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "toolformer.cli"]


def test_cli():
    ok = subprocess.run(_toolformer() + ["tool", "calculator", "400 / 1400"],
                        capture_output=True, text=True, cwd=REPO, timeout=120)
    assert (ok.returncode, ok.stdout) == (0, "0.29\n"), ok.stderr
    bad = subprocess.run(_toolformer() + ["tool", "calculator", "1 / 0"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert bad.returncode == 1 and bad.stdout == ""
    assert "division by zero" in bad.stderr
