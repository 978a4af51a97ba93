"""Calls in running text: insert rendered calls into a text and strip them out again.

Insertion rule. A call e(c, r) goes in at its character position p with exactly one space beside
it: before the call when the character before p is not whitespace, after it otherwise.

    "... 400 passed| 29%"  ->  "... 400 passed [Calculator(400 / 1400) → 0.29] 29%"
    "Total:\n|29"          ->  "Total:\n[Calculator(13 + 16) → 29] 29"

A position right after "word " renders exactly like the position before that space, so positions
are first made canonical (moved back before the space); two calls at one canonical position
conflict and the more useful one wins. `strip_calls` inverts the rule exactly: it gives back the
original text and each call's canonical position.
"""
from __future__ import annotations

from toolformer.corpus.syntax import Call, CallSyntax


def inline_result(result: str) -> str:
    """A tool result as it appears inside a call: one line, no outer whitespace."""
    return " ".join(result.split())


def canonical_position(text: str, p: int) -> int:
    if p >= 2 and text[p - 1] == " " and not text[p - 2].isspace():
        return p - 1
    return p


def insert_calls(text: str, calls: list[tuple[int, str]]) -> str:
    """Insert rendered calls at distinct canonical positions (see the module docstring)."""
    pieces, last = [], 0
    for p, rendered in sorted(calls):
        pieces.append(text[last:p])
        pieces.append(" " + rendered if p > 0 and not text[p - 1].isspace() else rendered + " ")
        last = p
    pieces.append(text[last:])
    return "".join(pieces)


def strip_calls(text: str, syntax: CallSyntax) -> tuple[str, list[tuple[int, Call]]]:
    """(text without its calls, [(position in that text, call)]): the inverse of `insert_calls`.

    On model output (not built here) it removes each call and at most one space beside it.
    """
    pieces, found, last, length = [], [], 0, 0
    for call in syntax.parse(text):
        s, e = call.span
        if s - 2 >= last and text[s - 1] == " " and not text[s - 2].isspace():
            cut_from, cut_to = s - 1, e   # the space was put before the call
        else:
            cut_from, cut_to = s, e + (text[e:e + 1] == " ")
        pieces.append(text[last:cut_from])
        length += cut_from - last
        found.append((length, call))
        last = cut_to
    pieces.append(text[last:])
    return "".join(pieces), found
