"""Calls in running text: insert calls into a text and strip them out again.

Insertion rule. A call e(c, r) goes in at its character position p with exactly one space beside
it: before the call when the character before p is not whitespace, after it otherwise.

    "... 400 passed| 29%"  ->  "... 400 passed [Calculator(400 / 1400) → 0.29] 29%"
    "Total:\\n|29"          ->  "Total:\\n[Calculator(13 + 16) → 29] 29"

A syntax whose result is the text's own number (hw3) instead writes the call right before the
number that follows p, which must read exactly the result: "Total:\\n<<13 + 16>>29", "is <<8*2>>16
apples"; where the text does not go on with the result the call cannot be written (`place`).

A position right after "word " renders exactly like the position before that space, so positions
are first made canonical (moved back before the space); two calls at one canonical position
conflict and the more useful one wins. The text between calls is written escaped (CallSyntax.escape:
a marker of the text itself, "[Calculator(" or "<<", is not read as a call). `strip_calls` inverts
the rule exactly: it gives back the original text and each call's canonical position.
"""
from __future__ import annotations

from toolformer.corpus.syntax import ESCAPE, NUMBER, Call, CallSyntax

NUMBER_CHARS = "0123456789,.-+eE"  # a number the result is glued to must start where a number can


def inline_result(result: str) -> str:
    """A tool result as it appears inside a call: one line, no outer whitespace."""
    return " ".join(result.split())


def canonical_position(text: str, p: int) -> int:
    if p >= 2 and text[p - 1] == " " and not text[p - 2].isspace():
        return p - 1
    return p


def place(text: str, p: int, call: Call, syntax: CallSyntax) -> int | None:
    """Where the call at canonical position p is written: p, or for a syntax whose result is the
    text's own number the start of that number (after one space); None when the text does not go
    on with exactly call.result there, or a backslash, the start marker's first character or a
    number's is right before it (the call would read as text, as another marker, or inside a number)."""
    if not syntax.result_in_text:
        return p
    q = p + 1 if text[p:p + 1] == " " and canonical_position(text, p + 1) == p else p
    number = NUMBER.match(text, q)
    if number is None or number.group() != call.result:
        return None
    return None if q > 0 and text[q - 1] in NUMBER_CHARS + ESCAPE + syntax.start[0] else q


def insert_calls(text: str, calls: list[tuple[int, Call]], syntax: CallSyntax) -> str:
    """Write calls at distinct canonical positions into `text` (see the module docstring); a call
    `place` refuses is a ValueError."""
    pieces, last = [], 0
    for p, call in sorted(calls, key=lambda pc: pc[0]):
        q = place(text, p, call, syntax)
        if q is None:
            raise ValueError(f"{syntax.render_call(call)!r} cannot be written at {p}: "
                             "the text does not go on with its result")
        pieces.append(syntax.escape(text[last:q]))
        if syntax.result_in_text:
            pieces.append(syntax.render(call.tool, call.input, ""))  # the text's number follows
        else:
            rendered = syntax.render_call(call)
            pieces.append(" " + rendered if q > 0 and not text[q - 1].isspace() else rendered + " ")
        last = q
    pieces.append(syntax.escape(text[last:]))
    return "".join(pieces)


def strip_calls(text: str, syntax: CallSyntax) -> tuple[str, list[tuple[int, Call]]]:
    """(text without its calls, [(canonical position in that text, call)]): the inverse of `insert_calls`.

    On model output (not built here) it removes each call and at most one space beside it.
    """
    pieces, offsets, calls, last, length = [], [], [], 0, 0
    for call in syntax.parse(text):
        s, e = call.span
        if syntax.result_in_text:
            cut_from, cut_to = s, e - len(call.result)  # the result stays: it is the text's
        elif s - 2 >= last and text[s - 1] == " " and not text[s - 2].isspace():
            cut_from, cut_to = s - 1, e   # the space was put before the call
        else:
            cut_from, cut_to = s, e + (text[e:e + 1] == " ")
        pieces.append(syntax.unescape(text[last:cut_from]))
        length += len(pieces[-1])
        offsets.append(length)
        calls.append(call)
        last = cut_to
    pieces.append(syntax.unescape(text[last:]))
    plain = "".join(pieces)
    return plain, [(canonical_position(plain, p), call) for p, call in zip(offsets, calls)]
