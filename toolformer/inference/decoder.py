"""Decoding with live tools (DESIGN.md §1, "Inference with tools"), on the LM backend only.

Greedy decoding, batched in one backend decode session. A call starts whenever the start marker
(its first token, spelled " [" or "[") is among the top-k next tokens (k=1: plain greedy); the
marker is then forced. When the model has written the arrow (checked on the decoded text: token
boundaries vary), decoding of that row pauses, the tool runs, and its result and the end marker
are fed in with the row's next token before decoding goes on; a call still without its arrow after
`max_call_tokens` tokens is closed there and run. After `max_calls` calls (default 1)
every token that begins the start marker is banned; "tools off" bans them from the start:
p(<API>) = 0, the paper's baseline, and so does an input offered no tool the toolbox holds. Where
a tool retriever offers one tool alone (its top 1), a call that opens is given that tool's name:
the model writes the input. A start marker right after a backslash is text, as in the
corpus ("\\[Calculator(", CallSyntax.escape): no call opens there.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import torch
from tqdm import tqdm

from toolformer.config import DecodingSettings, GenerateSettings
from toolformer.corpus.calls import inline_result, strip_calls
from toolformer.corpus.syntax import ESCAPE, CallSyntax, TOOLFORMER, get_syntax
from toolformer.inference.toolbox import ToolBox, offer_tools
from toolformer.lm.backend import LMBackend, get_backend
from toolformer.lm.loading import adapter_info
from toolformer.lm.tokens import marker_token_ids, start_marker_ids
from toolformer.tools import TOOL_KEYS

# what may follow the start marker of a named call while it is being written: "Calc", "Calculator(40"
NAME_SO_FAR = re.compile(r"[A-Za-z_]\w*(\(|$)")


@dataclass
class Generation:
    prompt: str
    output: str                 # the generated text with calls inline
    answer: str                 # the output without its calls: what the model states
    calls: list[dict] = field(default_factory=list)  # {"tool", "input", "result", "error"}
    new_tokens: int = 0         # tokens the model generated (tool results not counted)
    false_starts: int = 0       # forced start markers the model did not follow with a call ("[5 + 14]")


@dataclass
class _Row:
    """One prompt's decoding state."""
    pending: list[int]          # tokens to feed at the next step
    meta: Mapping
    offered: frozenset[str] | None
    callable: frozenset[str] = frozenset()  # the offered tools the toolbox holds: what a call may name
    generated: list[int] = field(default_factory=list)  # model tokens and tool results
    new_tokens: int = 0
    calls: list[dict] = field(default_factory=list)
    starts: int = 0             # start markers emitted: the call budget counts these
    call_from: int | None = None  # index in `generated` where an open call starts
    escaped: bool = False       # the text ends with a backslash: a start marker now is text ("\\[")
    done: bool = False


class ToolDecoder:
    def __init__(self, lm: LMBackend, syntax: CallSyntax = TOOLFORMER, toolbox: ToolBox | None = None,
                 top_k: int = 10, max_calls: int = 1,
                 max_call_tokens: int = DecodingSettings.max_call_tokens):
        self.lm, self.syntax = lm, syntax
        self.toolbox = toolbox  # None: tools off
        self.top_k, self.max_calls, self.max_call_tokens = top_k, max_calls, max_call_tokens
        self.tool_names = frozenset(t.name for t in toolbox.tools.values()) if toolbox is not None else frozenset()
        self.start_set = set(start_marker_ids(lm, syntax.start))
        self.start_ids = torch.tensor(sorted(self.start_set))
        self.banned = torch.tensor(marker_token_ids(lm, syntax.start))
        self.escape_ids = {i for i, t in enumerate(lm.token_texts()) if t.endswith(ESCAPE)}
        # what follows the arrow before the result: " " for "→ 0.29", "" for ">>0.29"
        self.after_arrow = syntax.arrow[len(syntax.arrow.rstrip()):]

    def generate(self, prompts: Sequence[str], metas: Sequence[Mapping] | None = None, max_new_tokens: int = 64,
                 batch_size: int = 8, stop_at_newline: bool = False, progress: bool = False,
                 offered: Sequence[frozenset[str]] | None = None) -> list[Generation]:
        """offered: per prompt, the names of the tools it may call (None: the whole toolbox)."""
        metas = metas or [{}] * len(prompts)
        offered = offered or [None] * len(prompts)
        encoded = [self.lm.start_ids + self.lm.encode(p) for p in prompts]
        # similar lengths together: less padding
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        results: list[Generation | None] = [None] * len(prompts)
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        for batch in tqdm(batches, desc="generate", unit="batch", disable=not progress, file=sys.stderr):
            rows = [_Row(list(encoded[i]), metas[i], offered[i], self._callable(offered[i])) for i in batch]
            self._decode(rows, max_new_tokens, stop_at_newline)
            for i, row in zip(batch, rows):
                results[i] = self._finish(row, prompts[i], stop_at_newline)
        return results

    def _callable(self, offered: frozenset[str] | None) -> frozenset[str]:
        return self.tool_names if offered is None else self.tool_names & offered

    def _next_tokens(self, logits: torch.Tensor, may_call: list[bool], may_start: list[bool]) -> torch.Tensor:
        """Greedy choice per row; rows that may call are forced into a call when a start token is in the top k."""
        logits = logits.clone()
        start_ids, banned = self.start_ids.to(logits.device), self.banned.to(logits.device)
        ban = torch.tensor([not m for m in may_start], device=logits.device)
        if ban.any():
            logits[ban.nonzero()[:, 0][:, None], banned[None, :]] = float("-inf")
        tokens = logits.argmax(-1)
        if self.toolbox is not None and any(may_call):
            top = logits.topk(min(self.top_k, logits.shape[-1]), dim=-1).indices
            hit = torch.isin(top, start_ids).any(-1)
            best_start = start_ids[logits[:, start_ids].argmax(-1)]
            force = hit & torch.tensor(may_call, device=logits.device)
            tokens = torch.where(force, best_start, tokens)
        return tokens

    def _decode(self, rows: list[_Row], max_new_tokens: int, stop_at_newline: bool) -> None:
        """Decode a batch to the end; finished rows leave the session (and its cache)."""
        session = self.lm.decode_session()
        active = rows
        while active:
            logits = session.step([row.pending for row in active])
            may_call = [row.call_from is None and row.starts < self.max_calls and bool(row.callable)
                        for row in active]
            may_start = ([m or row.call_from is not None for m, row in zip(may_call, active)]
                         if self.toolbox is not None else [False] * len(active))
            may_call = [m and not row.escaped for m, row in zip(may_call, active)]
            tokens = self._next_tokens(logits, may_call, may_start).tolist()
            for row, token, may in zip(active, tokens, may_call):
                self._take(row, token, may, max_new_tokens, stop_at_newline)
            keep = [b for b, row in enumerate(active) if not row.done]
            session.keep(keep)
            active = [active[b] for b in keep]

    def _take(self, row: _Row, token: int, may_call: bool, max_new_tokens: int, stop_at_newline: bool) -> None:
        """Record the row's chosen token and what follows from it (a call opens, a tool runs, the row ends)."""
        row.pending = [token]
        row.new_tokens += 1
        if token in self.lm.eos_ids:
            row.done = True
            return
        row.generated.append(token)
        if row.call_from is None and may_call and token in self.start_set:
            row.call_from = len(row.generated) - 1
            row.starts += 1
            if self.syntax.named and row.offered is not None and len(row.callable) == 1:
                # the retriever chose the tool: the call names it, whatever the model would have
                # guessed (without a retriever the model names it, and "[5 + 14]" stays text)
                named = self.lm.encode(next(iter(row.callable)))
                row.generated += named
                row.pending += named
        elif row.call_from is not None:
            row.pending += self._advance_call(row)
        elif stop_at_newline and "\n" in self.lm.decode([token]) and self.lm.decode(row.generated).strip():
            row.done = True
        row.escaped = row.generated[-1] in self.escape_ids
        row.done = row.done or row.new_tokens >= max_new_tokens

    def _advance_call(self, row: _Row) -> list[int]:
        """Inside a call: at the arrow run the tool and return the result tokens to feed."""
        syntax = self.syntax
        text = self.lm.decode(row.generated[row.call_from:])
        body_at = text.find(syntax.start) + len(syntax.start)
        if syntax.named and not NAME_SO_FAR.match(text[body_at:]):
            row.call_from = None  # "[5 + 14]": a bracket, not a call; the text stays as it is
            return []
        arrows_at = [at for a in syntax.arrows if (at := text.find(a, body_at)) >= 0]
        if arrows_at:
            return self._run(row, text[body_at:min(arrows_at)], "" if text[-1:].isspace() else self.after_arrow)
        closed = syntax.end and syntax.parse(text.lstrip())
        if closed:  # written without an arrow, e.g. "[Calculator(1 + 2)]": no result to fetch
            row.calls.append({"tool": closed[0].tool, "input": closed[0].input, "result": None,
                              "error": "closed without an arrow"})
            row.call_from = None
        elif len(row.generated) - row.call_from >= self.max_call_tokens:
            # a sentence, not a call input: closed here and run on what it holds, so the row keeps
            # tokens to answer with (it spent them all inside the call before)
            body = text[body_at:]
            close = ")" if syntax.named and not body.rstrip().endswith(")") else ""
            return self._run(row, body + close, close + syntax.arrow, cut=True)
        return []

    def _run(self, row: _Row, body: str, lead: str, cut: bool = False) -> list[int]:
        """Run the call written as `body` ("Calculator(1 + 2)"); the tokens to feed: `lead` (what
        comes before the result), the result and the end marker."""
        parsed = self.syntax.parse_body(body)
        if parsed is None:
            call = {"tool": None, "input": body.strip(), "result": None, "error": "unparseable call"}
            result = ""
        else:
            result, error = self.toolbox.run(parsed[0], parsed[1], row.meta, row.offered)
            call = {"tool": parsed[0], "input": parsed[1], "result": result, "error": error}
            result = inline_result(result) if result is not None else ""
        row.calls.append({**call, "cut_at": self.max_call_tokens} if cut else call)
        fed = self.lm.encode(lead + result + self.syntax.end)
        row.generated += fed
        row.call_from = None
        return fed

    def _finish(self, row: _Row, prompt: str, stop_at_newline: bool) -> Generation:
        ids, open_from, calls = row.generated, row.call_from, row.calls
        false_starts = row.starts - len(calls)
        output = self.lm.decode(ids, skip_special=True)
        # an unfinished call at the end says nothing: leave it out of the answer
        said = self.lm.decode(ids[:open_from], skip_special=True) if open_from is not None else output
        answer = strip_calls(said, self.syntax)[0]
        if stop_at_newline:
            output, answer = (_first_line(t) for t in (output, answer))
        if open_from is not None:  # the call the model was still writing when decoding stopped
            calls = calls + [{"tool": None, "input": None, "result": None, "error": "unfinished call"}]
            false_starts -= 1
        return Generation(prompt, output, answer.strip(), calls, row.new_tokens, false_starts)


def _first_line(text: str) -> str:
    lead = len(text) - len(text.lstrip())
    cut = text.find("\n", lead)
    return text if cut < 0 else text[:cut]


def generate(prompts: Sequence[str], settings: GenerateSettings | None = None,
             metas: Sequence[Mapping] | None = None, stop_at_newline: bool = False, **fields) -> list[Generation]:
    """Greedy generations with live tool calls. `settings` (or GenerateSettings fields as keyword
    arguments) choose the model, adapter, tools and limits; with a tool retriever each prompt may
    call only its top `tools_per_input` tools."""
    s = replace(settings or GenerateSettings(), **fields)
    lm = get_backend(s.model, backend=s.backend, adapter=s.adapter)
    syntax_name = s.syntax or adapter_info(s.adapter).get("syntax") or "toolformer"
    toolbox = None if s.tools == "off" else ToolBox(s.allow_tools.split(",") if s.allow_tools else TOOL_KEYS,
                                                    s.wiki_corpus)
    decoder = ToolDecoder(lm, get_syntax(syntax_name), toolbox, s.top_k, s.max_calls, s.max_call_tokens)
    return decoder.generate(prompts, metas, s.max_new_tokens, s.batch_size, stop_at_newline,
                            offered=offer_tools(s.tool_retriever, prompts, toolbox, s.tools_per_input))
