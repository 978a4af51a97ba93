"""The surface form of an API call (DESIGN.md §4).

One CallSyntax describes start, arrow and end markers and whether the tool name is written.
Parsing, rendering, sampling stop strings and inference triggers all derive from it.

    toolformer  [Calculator(400 / 1400) → 0.29]     e(c) = [Calculator(400 / 1400)]
    hw3         <<400/1400>>0.29                    calculator only; the result is the number after >>
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from toolformer.registry import Registry


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
            m = re.match(r"[A-Za-z_][A-Za-z0-9_]*\(", text[j:])
            if not m:
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

    def _parse_unnamed(self, text: str) -> list[Call]:
        arrow = re.escape(self.arrow.strip())
        pattern = re.compile(re.escape(self.start) + r"(.*?)" + arrow + r"(-?[\d,]*\.?\d+(?:[eE][-+]?\d+)?)?")
        return [Call(self.default_tool, m.group(1).strip(), m.group(2) if m.group(2) is not None else "",
                     (m.start(), m.end()))
                for m in pattern.finditer(text) if m.group(1).strip()]


TOOLFORMER = CallSyntax("toolformer", start="[", arrow=" → ", end="]", arrow_variants=("->",))
HW3 = CallSyntax("hw3", start="<<", arrow=">>", end="", named=False)

SYNTAXES: Registry[CallSyntax] = Registry("call syntax")
for _syntax in (TOOLFORMER, HW3):
    SYNTAXES.register(_syntax.name, _syntax)


def get_syntax(name: str) -> CallSyntax:
    """The registered syntax `name`; an unknown name is a UserError listing the known ones."""
    return SYNTAXES.get(name)
