"""Calculator: arithmetic as people write it, evaluated exactly by a small parser (never `eval`).

Accepted input (at most MAX_INPUT_CHARS characters):
  numbers      12, 3.5, .5, 2,500 (thousands separators must be well formed: 1,5 is rejected),
               an optional leading $ € £; ASCII digits only: other scripts' digits ('٣', '３')
               are rejected rather than guessed
  operators    + -  * x X ×  / ÷  − (unicode minus), unary minus/plus, parentheses; // divides
               and rounds down to a whole number (GSM8K's annotators write it): 7 // 2 = 3
  powers       ^ or **, right-associative, -2^2 = -4; the exponent is a whole number or a
               fraction p/q with q <= MAX_ROOT (100^(1/2) = 10, 8^(2/3) = 4, 2^0.5 = 1.41), its
               size |e| <= MAX_EXPONENT, so 9**9**9**9 is an error at once, not a hang
  functions    gcd(a, b, ...) and lcm(a, b, ...) of whole numbers (ASDiv writes LCM[20,10,8]:
               square brackets work too, names in any case), sqrt(x); inside their brackets
               a comma separates arguments, so write 1000 there, not 1,000
  percentages  `%` after a number or a bracket divides it by 100, where that is unambiguous:
               `20% of 50` = 10, `50 * 20%` = 10, `50 / 20%` = 250, `20%` = 0.2; a bare
               percentage added or subtracted (`50 + 20%`: 50.2 or 60?) is rejected, and so is
               `10 % 3` (modulo is not supported)
Arithmetic is exact (fractions.Fraction), but for a root that is not rational, computed to
ROOT_DIGITS decimals; the result is rounded half away from zero to 2 decimals (0.125 -> "0.13",
-0.125 -> "-0.13") with trailing zeros dropped: "0.29", "120", "-3.5".
Bounds (input length, bracket depth, digits per number, size of every intermediate value, gcd and
lcm arguments and results included) keep every call under about a millisecond; anything outside
them is a ToolError, as is 1 / 0.
"""
from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Mapping

from toolformer.errors import UserValueError
from toolformer.tools.base import Executor, Tool, ToolError, register

MAX_INPUT_CHARS = 200
MAX_DEPTH = 20            # nested brackets; the parser recurses once per level
MAX_DIGITS = 30           # digits in one written number
MAX_EXPONENT = 100
MAX_ROOT = 10             # largest q of a fractional exponent p/q
ROOT_DIGITS = 20          # decimals of a root that is not rational
MAX_ABS = 10 ** 30        # largest magnitude of any intermediate value
MAX_BITS = 1000          # in a denominator, and in a power's parts before it is computed

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]*)?|\.[0-9]+)
  | (?P<function>(?i:gcd|lcm|sqrt)(?=\s*[(\[]))
  | (?P<op>\*\*|//|[-+*/^%()\[\]xX×÷−]|of(?![A-Za-z]))
  | (?P<currency>[$€£](?=[0-9.]))
""", re.VERBOSE)
_ARGUMENT_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")  # no thousands commas: they separate
_CANONICAL_OP = {"**": "^", "x": "*", "X": "*", "×": "*", "÷": "/", "−": "-"}
_CLOSE = {"(": ")", "[": "]"}


def tokenize(text: str) -> list[Fraction | str]:
    """Numbers as Fractions, operators as canonical strings (plus "of"), function names in lower
    case, and "," between a function's arguments."""
    tokens: list[Fraction | str] = []
    brackets: list[bool] = []  # per open bracket: whether it holds a function's arguments
    in_arguments = 0           # of those open, how many do
    pos = 0
    while pos < len(text):
        if in_arguments and text[pos] == ",":
            tokens.append(",")
            pos += 1
            continue
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ToolError(f"unexpected character {text[pos]!r} at position {pos}")
        if m.lastgroup == "number":
            if in_arguments:
                m = _ARGUMENT_NUMBER.match(text, pos)
            digits = m.group().replace(",", "")
            if sum(ch.isdigit() for ch in digits) > MAX_DIGITS:
                raise ToolError(f"number too long (more than {MAX_DIGITS} digits)")
            tokens.append(Fraction(digits.rstrip(".")))
        elif m.lastgroup == "function":
            tokens.append(m.group().lower())
        elif m.lastgroup == "op":
            op = _CANONICAL_OP.get(m.group(), m.group())
            if op in _CLOSE:
                brackets.append(bool(tokens) and isinstance(tokens[-1], str) and tokens[-1] in FUNCTIONS)
                in_arguments += brackets[-1]
            elif op in _CLOSE.values() and brackets:
                in_arguments -= brackets.pop()
            tokens.append(op)
        pos = m.end()
    return tokens


def _checked(value: Fraction) -> Fraction:
    if abs(value) > MAX_ABS:
        raise ToolError("number too large")
    if value.denominator.bit_length() > MAX_BITS:
        raise ToolError("too many decimal places")
    return value


def _whole_power(base: Fraction, e: int) -> Fraction:
    if base == 0 and e < 0:
        raise ToolError("division by zero")
    # estimate the size before computing it: a huge power would take long to build
    bits = max(base.numerator.bit_length(), base.denominator.bit_length()) * abs(e)
    if bits > MAX_BITS:
        raise ToolError("power too large to compute exactly")
    return _checked(base ** e)


def _iroot(n: int, q: int) -> int:
    """floor(n ** (1/q)) of an integer n >= 0, exactly (Newton's method from above)."""
    if n < 2:
        return n
    x = 1 << -(-n.bit_length() // q)  # 2^ceil(bits/q) is above the root
    while True:
        y = ((q - 1) * x + n // x ** (q - 1)) // q
        if y >= x:
            return x
        x = y


def _root(value: Fraction, q: int) -> Fraction:
    """The real q-th root: exact where it is rational (100 -> 10, 8/27 -> 2/3), else truncated to
    ROOT_DIGITS decimals, far below the 2 the result is rounded to."""
    if value < 0 and q % 2 == 0:
        raise ToolError("even root of a negative number")
    n, d = abs(value.numerator), value.denominator
    root_n, root_d = _iroot(n, q), _iroot(d, q)
    if root_n ** q == n and root_d ** q == d:
        root = Fraction(root_n, root_d)
    else:
        scale = 10 ** ROOT_DIGITS
        root = Fraction(_iroot(n * scale ** q // d, q), scale)
    return _checked(-root if value < 0 else root)


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator > MAX_ROOT or abs(exponent) > MAX_EXPONENT:
        raise ToolError(f"exponent must be a whole number or a fraction p/q with q <= {MAX_ROOT}, "
                        f"from -{MAX_EXPONENT} to {MAX_EXPONENT}")
    # base^(p/q) is the q-th root of base^p: the power is exact, so only the root can round
    value = _whole_power(base, exponent.numerator)
    return value if exponent.denominator == 1 else _root(value, exponent.denominator)


def _whole(name: str, value: Fraction) -> int:
    if value.denominator != 1:
        raise ToolError(f"{name} takes whole numbers, not {format_number(value)}")
    return int(value)


def _sqrt(args: list[Fraction]) -> Fraction:
    if len(args) != 1:
        raise ToolError(f"sqrt takes one number, not {len(args)}")
    if args[0] < 0:
        raise ToolError("no real square root of a negative number")
    return _root(args[0], 2)


# name -> function of the argument values; every argument and result is within MAX_ABS (the
# parser checks both), so gcd and lcm work on integers of at most 100 bits
FUNCTIONS = {
    "gcd": lambda args: Fraction(math.gcd(*(_whole("gcd", a) for a in args))),
    "lcm": lambda args: Fraction(math.lcm(*(_whole("lcm", a) for a in args))),
    "sqrt": _sqrt,
}


class _Parser:
    """Precedence climbing over the token list; each method returns (value, is_percentage).

    expr   := term (('+' | '-') term)*
    term   := signed (('*' | '/' | '//' | 'of') signed)*   'of' only right after a percentage
    signed := ('+' | '-')* pct ('^' ('+' | '-')* pct)*   signs bind looser than '^'
    pct    := primary '%'?
    primary:= number | '(' expr ')' | function ('(' args ')' | '[' args ']')
    args   := expr (',' expr)*
    """

    def __init__(self, tokens: list[Fraction | str]):
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    def peek(self) -> Fraction | str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> Fraction | str | None:
        token = self.peek()
        self.pos += 1
        return token

    def parse(self) -> Fraction:
        if not self.tokens:
            raise ToolError("empty expression")
        value, _ = self.expr()
        if self.pos < len(self.tokens):
            raise ToolError(f"unexpected {_describe(self.peek())} after a complete expression")
        return value

    def expr(self) -> tuple[Fraction, bool]:
        value, is_pct = self.term()
        any_pct, n_terms = is_pct, 1
        while self.peek() in ("+", "-"):
            op = self.take()
            right, right_pct = self.term()
            any_pct, n_terms = any_pct or right_pct, n_terms + 1
            value = _checked(value + right if op == "+" else value - right)
        if any_pct and n_terms > 1:
            raise ToolError("ambiguous percentage in a sum: write 50 * 1.2 or 50 + 50 * 20%")
        return value, is_pct and n_terms == 1

    def term(self) -> tuple[Fraction, bool]:
        value, last_pct = self.signed()
        n_factors = 1
        while self.peek() in ("*", "/", "//", "of"):
            op = self.take()
            if op == "of" and not last_pct:
                raise ToolError("'of' must follow a percentage, as in 20% of 50")
            right, last_pct = self.signed()
            n_factors += 1
            if op in ("/", "//"):
                if right == 0:
                    raise ToolError("division by zero")
                value = _checked(value / right if op == "/" else Fraction(value // right))
            else:
                value = _checked(value * right)
        return value, last_pct and n_factors == 1

    def signed(self) -> tuple[Fraction, bool]:
        # a chain s0 p0 ^ s1 p1 ^ ... ^ sn pn means s0(p0 ^ s1(p1 ^ ... sn(pn))); built in a
        # loop and folded from the right, so long chains cost no recursion
        chain = []
        while True:
            negative = False
            while self.peek() in ("+", "-"):
                negative ^= self.take() == "-"
            chain.append((negative, self.pct()))
            if self.peek() != "^":
                break
            self.take()
        negative, (value, is_pct) = chain.pop()
        value = -value if negative else value
        while chain:
            negative, (base, _) = chain.pop()
            value = _power(base, value)
            value, is_pct = (-value if negative else value), False
        return value, is_pct

    def pct(self) -> tuple[Fraction, bool]:
        value, is_pct = self.primary()
        if self.peek() == "%":
            self.take()
            if isinstance(self.peek(), Fraction) or self.peek() == "(":
                raise ToolError("'%' means percent here; modulo is not supported")
            return value / 100, True
        return value, is_pct

    def primary(self) -> tuple[Fraction, bool]:
        token = self.take()
        if isinstance(token, Fraction):
            return _checked(token), False
        if token == "(":
            self.open()
            result = self.expr()
            self.close("(")
            return result
        if token in FUNCTIONS:
            bracket = self.take()  # the tokenizer emits a name only before its bracket
            self.open()
            args = [self.expr()[0]]
            while self.peek() == ",":
                self.take()
                args.append(self.expr()[0])
            self.close(bracket)
            return _checked(FUNCTIONS[token](args)), False
        raise ToolError(f"expected a number or '(', got {_describe(token)}")

    def open(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ToolError(f"brackets nested deeper than {MAX_DEPTH}")

    def close(self, bracket: str) -> None:
        if self.take() != _CLOSE[bracket]:
            raise ToolError(f"missing {_CLOSE[bracket]!r}")
        self.depth -= 1


def _describe(token: Fraction | str | None) -> str:
    if token is None:
        return "end of input"
    return "number" if isinstance(token, Fraction) else repr(token)


def evaluate(expression: str) -> Fraction:
    """The exact value of an arithmetic expression; ToolError if it is not one we accept."""
    if len(expression) > MAX_INPUT_CHARS:
        raise ToolError(f"expression longer than {MAX_INPUT_CHARS} characters")
    return _Parser(tokenize(expression)).parse()


def format_number(value: Fraction, decimals: int = 2) -> str:
    """Round half away from zero to `decimals` places; drop trailing zeros ("0.29", "120")."""
    scale = 10 ** decimals
    # |value| * scale + 1/2, floored, in integers: exact for any Fraction
    scaled = (2 * abs(value.numerator) * scale + value.denominator) // (2 * value.denominator)
    whole, frac = divmod(scaled, scale)
    text = f"{whole}.{frac:0{decimals}d}".rstrip("0").rstrip(".") if decimals else str(whole)
    return f"-{text}" if value < 0 and scaled else text


def make_executor(decimals: int = 2) -> Executor:
    if not isinstance(decimals, int) or isinstance(decimals, bool) or not 0 <= decimals <= 10:
        raise UserValueError(f"decimals must be a whole number 0..10, got {decimals!r}")

    def calculate(input: str, meta: Mapping) -> str:
        return format_number(evaluate(input), decimals)
    return calculate


# ---- document heuristic (paper, Appendix A.1): only texts that look like they hold arithmetic
_NUMBER = re.compile(r"(?<![0-9.,])(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?(?![0-9])")
_RESULT_CUE = re.compile(
    r"(?:=|\bequals?\b|\bequal to\b|\btotal of\b|\baverage of\b)\s*[$€£]?[0-9]", re.IGNORECASE)
WINDOW_CHARS = 400        # ~100 tokens, the paper's window for the three numbers
MAX_NUMBERS = 100         # numbers looked at per text: bounds the pair search


def _operations(a: float, b: float) -> list[float]:
    """What a text might have computed from a and b (percentages too: 400 of 1400 -> 29%)."""
    out = [a + b, abs(a - b), a * b]
    if b:
        out += [a / b, 100 * a / b]
    if a:
        out += [b / a, 100 * b / a]
    return [r for r in out if r != a and r != b]  # a*1, a+0 prove nothing


def _rounded(x: float, decimals: int) -> int:
    return math.floor(x * 10 ** decimals + 0.5)


def looks_like_math(text: str, meta: Mapping | None = None) -> bool:
    """≥3 numbers within a ~100-token window where one is an operation on two others, or "=",
    "equals", "total of", "average of" before a number.

    A result matches when the operation rounds to it at the decimals it is written with
    (400 / 1400 -> 0.29); an inexact match needs ≥2 significant digits, so 1898 / 1895 ≈ 1
    or 10 / 3 ≈ 3 do not count."""
    if _RESULT_CUE.search(text):
        return True
    numbers = []  # (position, value)
    # (decimals, rounded value) -> [(position, value, may match inexactly)]
    results: dict[tuple[int, int], list[tuple[int, float, bool]]] = {}
    for m in _NUMBER.finditer(text):
        written = m.group().replace(",", "")
        if len(written) > 15:  # nobody does prose arithmetic on these; floats stay exact below
            continue
        value, decimals = float(written), len(written.partition(".")[2])
        two_digits = len(written.replace(".", "").lstrip("0")) >= 2
        numbers.append((m.start(), value))
        key = (decimals, _rounded(value, decimals))
        results.setdefault(key, []).append((m.start(), value, two_digits))
        if len(numbers) == MAX_NUMBERS:
            break
    all_decimals = {d for d, _ in results}
    for i, (pos_a, a) in enumerate(numbers):
        for pos_b, b in numbers[i + 1:]:
            if pos_b - pos_a > WINDOW_CHARS:
                break
            lo, hi = pos_b - WINDOW_CHARS, pos_a + WINDOW_CHARS  # c keeps all three in a window
            for r in _operations(a, b):
                for d in all_decimals:
                    for pos_c, c, two_digits in results.get((d, _rounded(r, d)), ()):
                        if (lo <= pos_c <= hi and pos_c != pos_a and pos_c != pos_b
                                and (two_digits or math.isclose(r, c))):
                            return True
    return False


TOOL = register(Tool(
    name="Calculator",
    description="Computes an arithmetic expression: + - * / with brackets, decimals, percentages, "
                "powers and roots, gcd and lcm; the result is rounded to 2 decimals.",
    examples=(
        "Of the 1,400 applicants, 400 [Calculator(400 / 1400) → 0.29] or 29% were admitted.",
        "The tickets cost 12 x 3 = [Calculator(12 * 3) → 36] 36 dollars.",
        "After the 20% discount the $50 jacket costs [Calculator(50 - 20% of 50) → 40] $40.",
        "The average of 4, 8 and 15 is [Calculator((4 + 8 + 15) / 3) → 9] 9.",
    ),
    uses=("Question: Ann has 3 bags of 12 marbles and gives away 9. How many marbles are left?",
          "Question: What is 15% of 240?",
          "The 4 tickets cost $7.50 each, so in total they paid"),
    tau_s=0.0, k=20, m=10, tau_f=0.5,
    make_executor=make_executor,
    heuristic=looks_like_math,
    timeout_s=1.0,
))
