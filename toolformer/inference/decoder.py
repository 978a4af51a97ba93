"""Decoding with live tools (DESIGN.md §1, "Inference with tools").

    toolformer generate [--model REF] [--adapter DIR] [--tools on|off] [--top-k 10] "text" ...

Greedy decoding, batched with a KV cache. A call starts whenever the start marker (its first
token, spelled " [" or "[") is among the top-k next tokens (k=1: plain greedy); the marker is then
forced. When the model has written the arrow (checked on the decoded text: token boundaries
vary), decoding of that row pauses, the tool runs, and its result and the end marker are fed in
before decoding goes on. After `max_calls` calls (default 1) every token that begins the start
marker is banned; "tools off" bans them from the start: p(<API>) = 0, the paper's baseline.

Rows of a batch may need different numbers of new tokens at one step (a tool result): each step
feeds every row's pending tokens left-padded to the longest, with explicit position ids and an
attention mask, so pads anywhere in the cache are never attended to.
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch
from tqdm import tqdm

from toolformer.tools import Tool, get_tool, run_call, TOOL_MODULES
from toolformer.assets import DEFAULT_LM
from toolformer.corpus.build import inline_result, strip_calls
from toolformer.corpus.syntax import CallSyntax, TOOLFORMER, get_syntax

FINETUNE_INFO = "toolformer_finetune.json"  # written beside an adapter or model by finetune.py
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


class ToolBox:
    """The tools a decoder may call; executors are built on first use (an index may be slow)."""

    def __init__(self, tools: Iterable[Tool | str]):
        self.tools = {}
        for t in tools:
            tool = t if isinstance(t, Tool) else get_tool(t)
            self.tools[tool.name.lower()] = tool
        self._executors: dict[str, object] = {}

    def run(self, name: str, input: str, meta: Mapping,
            offered: frozenset[str] | None = None) -> tuple[str | None, str | None]:
        """(result, error) of one call; never raises. A tool outside `offered` (this input's share
        of the toolbox, e.g. a retriever's top K) is not run."""
        tool = self.tools.get(name.lower())
        if tool is None:
            return None, f"tool {name!r} is not available here"
        if offered is not None and tool.name not in offered:
            return None, f"tool {tool.name} was not offered for this input"
        if tool.name not in self._executors:
            try:
                self._executors[tool.name] = tool.make_executor(**tool.options)
            except Exception as err:  # noqa: BLE001 - a broken tool is a result, not a crash
                self._executors[tool.name] = err
        executor = self._executors[tool.name]
        if isinstance(executor, Exception):
            return None, f"tool {tool.name} could not start: {executor}"
        out = run_call(tool, executor, input, meta)
        return out.result, out.error


def start_token_ids(tokenizer, syntax: CallSyntax) -> list[int]:
    """First token of the start marker, after a space and not."""
    return list(dict.fromkeys(tokenizer.encode(s, add_special_tokens=False)[0]
                              for s in (" " + syntax.start, syntax.start)))


@lru_cache(maxsize=8)
def marker_token_ids(tokenizer, syntax: CallSyntax) -> list[int]:
    """Every token that begins the start marker (" [", "[", "[[", ...): banned when calls are off."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    start = syntax.start
    return [i for i, t in enumerate(texts)
            if (s := t.lstrip()) and (s.startswith(start) or start.startswith(s))]


def sequence_start(tokenizer) -> list[int]:
    """The token every sequence begins with, in training and at inference (BOS, else EOS)."""
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    return [start]


class ToolDecoder:
    def __init__(self, model, tokenizer, syntax: CallSyntax = TOOLFORMER, toolbox: ToolBox | None = None,
                 top_k: int = 10, max_calls: int = 1):
        self.model, self.tokenizer, self.syntax = model, tokenizer, syntax
        self.toolbox = toolbox  # None: tools off
        self.top_k, self.max_calls = top_k, max_calls
        self.device = next(model.parameters()).device
        self.start_set = set(start_token_ids(tokenizer, syntax))
        self.start_ids = torch.tensor(sorted(self.start_set), device=self.device)
        self.banned = torch.tensor(marker_token_ids(tokenizer, syntax), device=self.device)
        eos = getattr(model.generation_config, "eos_token_id", None) or tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        # what follows the arrow before the result: " " for "→ 0.29", "" for ">>0.29"
        self.after_arrow = syntax.arrow[len(syntax.arrow.rstrip()):]

    def generate(self, prompts: Sequence[str], metas: Sequence[Mapping] | None = None, max_new_tokens: int = 64,
                 batch_size: int = 8, stop_at_newline: bool = False, progress: bool = False,
                 offered: Sequence[frozenset[str]] | None = None) -> list[Generation]:
        """offered: per prompt, the names of the tools it may call (None: the whole toolbox)."""
        metas = metas or [{}] * len(prompts)
        offered = offered or [None] * len(prompts)
        encoded = [sequence_start(self.tokenizer) + self.tokenizer.encode(p, add_special_tokens=False)
                   for p in prompts]
        # similar lengths together: less padding
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        results: list[Generation | None] = [None] * len(prompts)
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        for batch in tqdm(batches, desc="generate", unit="batch", disable=not progress, file=sys.stderr):
            outs = self._batch([encoded[i] for i in batch], [metas[i] for i in batch], max_new_tokens,
                               stop_at_newline, [offered[i] for i in batch])
            for i, out in zip(batch, outs):
                out.prompt = prompts[i]
                results[i] = out
        return results

    def _next_tokens(self, logits: torch.Tensor, may_call: list[bool], may_start: list[bool]) -> torch.Tensor:
        """Greedy choice per row; rows that may call are forced into a call when a start token is in the top k."""
        logits = logits.clone()
        ban = torch.tensor([not m for m in may_start], device=logits.device)
        if ban.any():
            logits[ban.nonzero()[:, 0][:, None], self.banned[None, :]] = float("-inf")
        tokens = logits.argmax(-1)
        if self.toolbox is not None and any(may_call):
            top = logits.topk(min(self.top_k, logits.shape[-1]), dim=-1).indices
            hit = torch.isin(top, self.start_ids).any(-1)
            best_start = self.start_ids[logits[:, self.start_ids].argmax(-1)]
            force = hit & torch.tensor(may_call, device=logits.device)
            tokens = torch.where(force, best_start, tokens)
        return tokens

    @torch.inference_mode()
    def _batch(self, prompts: list[list[int]], metas: list[Mapping], max_new_tokens: int,
               stop_at_newline: bool, offered: list[frozenset[str] | None]) -> list[Generation]:
        B, tok = len(prompts), self.tokenizer
        pending = [list(p) for p in prompts]     # tokens to feed at the next step, per row
        next_pos = [0] * B
        generated: list[list[int]] = [[] for _ in range(B)]  # model tokens and tool results
        new_tokens = [0] * B
        calls: list[list[dict]] = [[] for _ in range(B)]
        starts = [0] * B  # start markers emitted: the call budget counts these
        call_from: list[int | None] = [None] * B  # index in generated[r] where an open call starts
        done = [False] * B
        active = list(range(B))  # rows still decoding; finished rows leave the batch and the cache
        mask = torch.zeros((B, 0), dtype=torch.long, device=self.device)
        cache = None
        while active:
            width = max(len(pending[r]) for r in active)
            ids = torch.full((len(active), width), self.pad_id, dtype=torch.long)
            step_mask = torch.zeros((len(active), width), dtype=torch.long)
            pos = torch.zeros((len(active), width), dtype=torch.long)
            for b, r in enumerate(active):
                n = len(pending[r])
                ids[b, width - n:] = torch.tensor(pending[r])
                step_mask[b, width - n:] = 1
                pos[b, width - n:] = torch.arange(next_pos[r], next_pos[r] + n)
                next_pos[r] += n
            mask = torch.cat([mask, step_mask.to(self.device)], dim=1)
            out = self.model(input_ids=ids.to(self.device), attention_mask=mask, position_ids=pos.to(self.device),
                             past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache = out.past_key_values
            open_call = [call_from[r] is not None for r in active]
            may_call = [not o and starts[r] < self.max_calls for o, r in zip(open_call, active)]
            may_start = [m or o for m, o in zip(may_call, open_call)] if self.toolbox is not None else [False] * len(active)
            tokens = self._next_tokens(out.logits[:, -1].float(), may_call, may_start).tolist()
            for b, r in enumerate(active):
                token = tokens[b]
                pending[r] = [token]
                new_tokens[r] += 1
                if token in self.eos_ids:
                    done[r] = True
                    continue
                generated[r].append(token)
                if call_from[r] is None and may_call[b] and token in self.start_set:
                    call_from[r] = len(generated[r]) - 1
                    starts[r] += 1
                elif call_from[r] is not None:
                    pending[r] += self._advance_call(r, generated, call_from, calls[r], metas[r], offered[r])
                elif stop_at_newline and "\n" in tok.decode([token]) and tok.decode(generated[r]).strip():
                    done[r] = True
                done[r] = done[r] or new_tokens[r] >= max_new_tokens
            keep = [b for b, r in enumerate(active) if not done[r]]
            if len(keep) < len(active) and keep:
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                mask = mask[index]
            active = [active[b] for b in keep]
        return [self._finish(generated[r], calls[r], call_from[r], new_tokens[r], starts[r] - len(calls[r]),
                             stop_at_newline) for r in range(B)]

    def _advance_call(self, r: int, generated: list[list[int]], call_from: list[int | None], calls: list[dict],
                      meta: Mapping, offered: frozenset[str] | None) -> list[int]:
        """Inside a call: at the arrow run the tool and return the result tokens to feed."""
        syntax = self.syntax
        text = self.tokenizer.decode(generated[r][call_from[r]:])
        body_at = text.find(syntax.start) + len(syntax.start)
        if syntax.named and not NAME_SO_FAR.match(text[body_at:]):
            call_from[r] = None  # "[5 + 14]": a bracket, not a call; the text stays as it is
            return []
        hits = [(text.find(a, body_at), a) for a in syntax.arrows if text.find(a, body_at) >= 0]
        if not hits:
            closed = syntax.end and syntax.parse(text.lstrip())
            if closed:  # written without an arrow, e.g. "[Calculator(1 + 2)]": no result to fetch
                calls.append({"tool": closed[0].tool, "input": closed[0].input, "result": None,
                              "error": "closed without an arrow"})
                call_from[r] = None
            return []
        at, arrow = min(hits)
        parsed = syntax.parse_body(text[body_at:at])
        if parsed is None:
            call = {"tool": None, "input": text[body_at:at].strip(), "result": None, "error": "unparseable call"}
            result = ""
        else:
            result, error = self.toolbox.run(parsed[0], parsed[1], meta, offered)
            call = {"tool": parsed[0], "input": parsed[1], "result": result, "error": error}
            result = inline_result(result) if result is not None else ""
        calls.append(call)
        sep = "" if text[-1:].isspace() else self.after_arrow
        fed = self.tokenizer.encode(sep + result + syntax.end, add_special_tokens=False)
        generated[r] += fed
        call_from[r] = None
        return fed

    def _finish(self, ids: list[int], calls: list[dict], open_from: int | None, new_tokens: int,
                false_starts: int, stop_at_newline: bool) -> Generation:
        output = self.tokenizer.decode(ids, skip_special_tokens=True)
        # an unfinished call at the end says nothing: leave it out of the answer
        said = self.tokenizer.decode(ids[:open_from], skip_special_tokens=True) if open_from is not None else output
        answer = strip_calls(said, self.syntax)[0]
        if stop_at_newline:
            output, answer = (_first_line(t) for t in (output, answer))
        if open_from is not None:  # the call the model was still writing when decoding stopped
            calls = calls + [{"tool": None, "input": None, "result": None, "error": "unfinished call"}]
            false_starts -= 1
        return Generation("", output, answer.strip(), calls, new_tokens, false_starts)


def _first_line(text: str) -> str:
    lead = len(text) - len(text.lstrip())
    cut = text.find("\n", lead)
    return text if cut < 0 else text[:cut]


# ---------------------------------------------------------------------------- loading

def adapter_info(adapter: str | Path | None) -> dict:
    """What finetune.py recorded beside an adapter or model folder (base model, syntax), if anything."""
    if adapter is None:
        return {}
    path = Path(adapter) / FINETUNE_INFO
    return json.loads(path.read_text()) if path.exists() else {}


def load_model(model: str | None, adapter: str | Path | None = None, device: str | None = None):
    """(model, tokenizer) for inference: a base model, or a base model with a LoRA adapter merged in.

    `model` may be None with an adapter that finetune.py wrote: its base model is recorded there.
    """
    from toolformer.lm.loading import default_device, default_dtype, load_causal_lm, load_tokenizer, local_folder
    if adapter is None:
        return load_causal_lm(model or DEFAULT_LM, device)
    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").exists():
        raise FileNotFoundError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json); "
                                f"pass a merged or fully finetuned model with --model instead")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    base = model or adapter_info(adapter).get("base_model") or DEFAULT_LM
    device = device or default_device()
    # a fresh copy: merging into the cached base model would change it for every later user
    lm = AutoModelForCausalLM.from_pretrained(local_folder(base), dtype=default_dtype(device))
    lm = PeftModel.from_pretrained(lm, str(adapter)).merge_and_unload()
    return lm.to(device).eval(), load_tokenizer(base)


def offer_tools(retriever_ref: str | None, texts: Sequence[str], toolbox: ToolBox | None,
                k: int) -> list[frozenset[str]] | None:
    """Per text, the toolbox's k best tools by the retriever (None: no retriever, every tool)."""
    if retriever_ref is None or toolbox is None:
        return None
    from toolformer.retrieval.retriever import rank_tools
    return [frozenset(names) for names in rank_tools(retriever_ref, list(texts), list(toolbox.tools.values()), k)]


def generate(prompts: Sequence[str], model: str | None = None, adapter: str | Path | None = None,
             tools: Iterable[Tool | str] | None = TOOL_MODULES, syntax: str | None = None, top_k: int = 10,
             max_calls: int = 1, max_new_tokens: int = 64, batch_size: int = 8,
             metas: Sequence[Mapping] | None = None, stop_at_newline: bool = False,
             tool_retriever: str | None = None, tools_per_input: int = 1) -> list[Generation]:
    """Greedy generations with live tool calls; tools=None decodes with tools off. With a tool
    retriever each prompt may call only its top `tools_per_input` tools."""
    lm, tok = load_model(model, adapter)
    syntax_name = syntax or adapter_info(adapter).get("syntax") or "toolformer"
    toolbox = ToolBox(tools) if tools is not None else None
    decoder = ToolDecoder(lm, tok, get_syntax(syntax_name), toolbox, top_k, max_calls)
    return decoder.generate(prompts, metas, max_new_tokens, batch_size, stop_at_newline,
                            offered=offer_tools(tool_retriever, prompts, toolbox, tools_per_input))


def cmd_generate(args) -> dict:
    tools = None if args.tools == "off" else (args.allow_tools.split(",") if args.allow_tools else TOOL_MODULES)
    meta = {"date": args.date} if args.date else {}
    gens = generate(args.text, args.model, args.adapter, tools, args.syntax, args.top_k, args.max_calls,
                    args.max_new_tokens, args.batch_size, [meta] * len(args.text),
                    tool_retriever=args.tool_retriever, tools_per_input=args.tools_per_input)
    for g in gens:
        print(g.prompt + g.output)
    return {"generations": [vars(g) for g in gens],
            "calls": sum(len(g.calls) for g in gens), "new_tokens": sum(g.new_tokens for g in gens)}


def add_commands(sub, command) -> None:
    p = command(sub, "generate", cmd_generate, "greedy generation with live tool calls, shown inline")
    p.add_argument("text", nargs="+", help="prompt(s)")
    p.add_argument("--model", help="hub id, local folder, .gguf file or embedded alias "
                                   "(default: the adapter's base model, else smollm2-135m-instruct)")
    p.add_argument("--adapter", help="LoRA adapter folder written by `toolformer finetune`")
    p.add_argument("--tools", choices=("on", "off"), default="on", help="off: calls banned (the baseline)")
    p.add_argument("--allow-tools", help=f"comma-separated tools the model may call (default: {','.join(TOOL_MODULES)})")
    p.add_argument("--syntax", help="call syntax (default: the adapter's, else toolformer)")
    p.add_argument("--top-k", type=int, default=10, help="start a call when the start marker is in the top k (1: greedy)")
    p.add_argument("--max-calls", type=int, default=1, help="calls per input at most")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--date", help="today's date (ISO) for the Calendar tool")
    add_retriever_options(p)


def add_retriever_options(p) -> None:
    p.add_argument("--tool-retriever", help="offer each input only its top tools by this retriever "
                                            "(bm25, a model, or a `toolformer retriever train` folder)")
    p.add_argument("--tools-per-input", type=int, default=1, help="tools offered per input with --tool-retriever")
