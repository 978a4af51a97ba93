"""The surface form of an API call (DESIGN.md §4).

One CallSyntax describes start, arrow and end markers and whether the tool name is written.
Parsing, rendering, sampling stop strings and inference triggers all derive from it.

    toolformer  [Calculator(400 / 1400) → 0.29]     e(c) = [Calculator(400 / 1400)]
    hw3         <<400/1400>>0.29                    calculator only; the result is the number after >>,
                                                    which is also the text's own (HW3's and GSM8K's way)

Literal marker text. A document may itself contain "[Calculator(2+2)]" or "<<": in written text
a marker with a backslash before it is text, never a call ("\\[Calculator(2+2)]", "\\<<", the
escape Markdown uses). `escape` puts one more backslash before every marker of plain text (one
already there included, so "\\<<" survives too) and `unescape` takes it away; a call is never
written right after a backslash, so parsing tells the two apart. Markers: the start of a named
call ("[" before a name and "("), and hw3's "<<" and ">>".
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Iterator

from toolformer.registry import Registry

ESCAPE = "\\"
NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# a number as hw3 writes a result: "16", "-3", "0.29", "1,005"
NUMBER = re.compile(r"-?[\d,]*\.?\d+(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Call:
    tool: str                 # tool name as written ("Calculator"); hw3 calls are "Calculator"
    input: str
    result: str | None = None  # None: e(c), no arrow; "": e(c, ε)
    span: tuple[int, int] | None = None  # character span in the parsed text


@dataclass(frozen=True)
class CallSyntax:
    name: str
    start: str                # first characters of a call, e.g. "["
    arrow: str                # canonical arrow between input and result, e.g. " → "
    end: str                  # closing marker, e.g. "]"; "" when the result is a bare number
    named: bool = True        # Tool(input) vs bare input
    arrow_variants: tuple[str, ...] = ()  # also accepted when parsing and sampling ("->")
    default_tool: str = "Calculator"      # tool of an unnamed call
    result_in_text: bool = False  # the result is the number the text goes on with (hw3), not an addition

    # ---- rendering
    def render(self, tool: str, input: str, result: str | None = None) -> str:
        body = f"{tool}({input})" if self.named else input
        if result is None:
            return f"{self.start}{body}{self.end if self.named else self.arrow}"
        return f"{self.start}{body}{self.arrow}{result}{self.end}"

    def render_call(self, call: Call) -> str:
        return self.render(call.tool, call.input, call.result)

    def prefix_for_result(self, tool: str, input: str) -> str:
        """Text up to and including the arrow: where decoding pauses for the tool to run."""
        body = f"{tool}({input})" if self.named else input
        return f"{self.start}{body}{self.arrow}"

    def safe_result(self, result: str) -> str:
        """A tool result that cannot end or break the call it is written in: one line, and
        no end marker inside (a Wikipedia snippet may contain "]")."""
        return " ".join((result.replace(self.end, " ") if self.end else result).split())

    # ---- markers the LM backend needs
    @property
    def arrows(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.arrow.strip(),) + tuple(a.strip() for a in self.arrow_variants)))

    def stop_strings(self) -> tuple[str, ...]:
        """Where sampling a call stops: at an arrow (the tool supplies the result) or the end."""
        return tuple(s for s in self.arrows + (self.end,) if s)

    # ---- literal markers in plain text
    @cached_property
    def _marker(self) -> re.Pattern:
        """A marker with the backslashes right before it (named: the name is group "name")."""
        if self.named:
            marker = re.escape(self.start) + rf"(?=\s*(?P<name>{NAME})\()"  # as readers spot a broken call
        else:
            marker = "|".join(re.escape(m) for m in (self.start, self.arrow.strip()))
        return re.compile(rf"(?P<escape>\\*)(?P<marker>{marker})")

    def escape(self, text: str) -> str:
        """Plain text as it is written beside calls: one more backslash before each marker."""
        return self._marker.sub(lambda m: ESCAPE + m.group(), text)

    def unescape(self, text: str) -> str:
        """The inverse of `escape`, on the text between calls."""
        return self._marker.sub(lambda m: m.group()[1:] if m.group("escape") else m.group(), text)

    def markers(self, text: str) -> Iterator[re.Match]:
        """Every marker in written text that no backslash makes literal: each belongs to a call
        or is a broken one (readers check)."""
        return (m for m in self._marker.finditer(text) if not m.group("escape"))

    # ---- parsing
    def parse_body(self, body: str) -> tuple[str, str] | None:
        """(tool, input) from the text between start and arrow/end, e.g. 'Calculator(1 + 2)'."""
        body = body.strip()
        if not self.named:
            return (self.default_tool, body) if body else None
        m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", body)
        if not m or not body.endswith(")"):
            return None
        inner = body[m.end():-1]
        depth = 0  # the outer parentheses must enclose the whole input
        for ch in inner:
            depth += ch == "("
            depth -= ch == ")"
            if depth < 0:
                return None
        return (m.group(1), inner.strip()) if depth == 0 else None

    def parse(self, text: str) -> list[Call]:
        """Every call in `text`, left to right, with character spans."""
        return self._parse_named(text) if self.named else self._parse_unnamed(text)

    def _parse_named(self, text: str) -> list[Call]:
        calls, i = [], 0
        arrows = sorted(self.arrows, key=len, reverse=True)
        while (s := text.find(self.start, i)) >= 0:
            j = s + len(self.start)
            m = re.match(NAME + r"\(", text[j:])
            if not m or text[s - 1:s] == ESCAPE:
                i = s + 1
                continue
            # scan the balanced parenthesised input
            depth, k = 0, j + m.end() - 1
            while k < len(text):
                depth += text[k] == "("
                depth -= text[k] == ")"
                if depth == 0:
                    break
                k += 1
            if depth != 0:
                i = s + 1
                continue
            tool, inp = text[j:j + m.end() - 1], text[j + m.end():k]
            rest, result = k + 1, None
            stripped = len(text[rest:]) - len(text[rest:].lstrip(" "))
            for a in arrows:
                if text.startswith(a, rest + stripped):
                    r0 = rest + stripped + len(a)
                    close = text.find(self.end, r0)
                    if close < 0:
                        break
                    result, rest = text[r0:close].strip(), close
                    break
            if not text.startswith(self.end, rest):
                i = s + 1
                continue
            end = rest + len(self.end)
            calls.append(Call(tool, inp.strip(), result, (s, end)))
            i = end
        return calls

    @cached_property
    def _unnamed(self) -> re.Pattern:
        # not after a backslash (literal) nor after the start's own first character ("\\<<<" is text)
        start, arrow = re.escape(self.start), re.escape(self.arrow.strip())
        body = rf"[^{re.escape(self.start + self.arrow.strip())}\n]*?"  # no marker inside a call
        return re.compile(rf"(?<!\\)(?<!{re.escape(self.start[0])}){start}({body}){arrow}({NUMBER.pattern})?")

    def _parse_unnamed(self, text: str) -> list[Call]:
        return [Call(self.default_tool, m.group(1).strip(), m.group(2) if m.group(2) is not None else "",
                     (m.start(), m.end()))
                for m in self._unnamed.finditer(text) if m.group(1).strip()]


TOOLFORMER = CallSyntax("toolformer", start="[", arrow=" → ", end="]", arrow_variants=("->",))
HW3 = CallSyntax("hw3", start="<<", arrow=">>", end="", named=False, result_in_text=True)

SYNTAXES: Registry[CallSyntax] = Registry("call syntax")
for _syntax in (TOOLFORMER, HW3):
    SYNTAXES.register(_syntax.name, _syntax)


def get_syntax(name: str) -> CallSyntax:
    """The registered syntax `name`; an unknown name is a UserError listing the known ones."""
    return SYNTAXES.get(name)
