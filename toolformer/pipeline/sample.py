"""Stage 1, sample: propose API calls for one tool (DESIGN.md §1, "Sampling").

For each document window x, ONE forward pass over P(x) + x gives p_i = p(<API> | P(x), x_{1:i-1})
at every position i (the larger of the start marker's two spellings, " [" and "["). The top k
positions with p_i > τ_s get m sampled calls each: the model continues P(x) + x_{1:i-1} + <API>
until the arrow or the end marker. The scoring pass's KV cache is reused for those prefixes.

Writes <run>/<tool>/candidates.jsonl, committed a chunk of documents at a time (resumable).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, asdict

import numpy as np
from tqdm import tqdm

from toolformer.tools import Tool, load_prompt
from toolformer.lm.hf import LMBackend
from toolformer.run.records import ResumableWriter, Document
from toolformer.run.manifest import Run
from toolformer.corpus.syntax import CallSyntax


@dataclass(frozen=True)
class SampleSettings:
    model: str
    syntax: str
    window: int = 512          # tokens of x per window
    tau_s: float = 0.0
    k: int = 20
    m: int = 10
    seed: int = 0
    max_new_tokens: int = 32
    temperature: float = 1.0
    chunk_docs: int = 8        # documents per committed chunk (the unit of resumption)
    windows_per_pass: int = 8  # windows whose KV caches are held at once
    min_context: int = 0       # positions with fewer tokens of the window before them are not proposed
    tool_retriever: str | None = None  # documents were chosen for this tool by a retriever
    tools_per_doc: int | None = None


@dataclass
class Window:
    doc: Document
    index: int
    ids: list[int]              # tokens of x in this window
    char_starts: list[int]      # character offset in doc.text where each token's text begins
    text: str                   # the window's text (fills the prompt's Input slot)


def document_windows(lm: LMBackend, doc: Document, size: int) -> list[Window]:
    """Tokenise " " + text once (so x reads naturally after "Output:") and cut it into windows."""
    ids, offsets = lm.encode_with_offsets(" " + doc.text)
    starts = [max(0, a - 1) for a, _ in offsets]
    ends = [max(0, b - 1) for _, b in offsets]
    windows = []
    for w, lo in enumerate(range(0, len(ids), size)):
        hi = min(lo + size, len(ids))
        text = doc.text[starts[lo]:ends[hi - 1]].strip()
        windows.append(Window(doc, w, ids[lo:hi], starts[lo:hi], text))
    return windows


def derive_seed(*parts) -> int:
    return int.from_bytes(hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


def start_marker_ids(lm: LMBackend, syntax: CallSyntax) -> list[int]:
    """First token of the start marker in both spellings, after a space and not."""
    return list(dict.fromkeys(lm.encode(s)[0] for s in (" " + syntax.start, syntax.start)))


def call_opening(lm: LMBackend, syntax: CallSyntax, tool: Tool, marker: int) -> list[int]:
    """Tokens that open a call to `tool` after the start-marker token `marker`: "[" + "Calculator(".

    The prompt is the tool's own, so its name is given rather than sampled: samples then spend
    their tokens on the input alone, and none is wasted on another tool's name.
    """
    if not syntax.named:
        return [marker]
    spelling = lm.decode([marker])
    ids = lm.encode(spelling + tool.name + "(")
    return ids if ids[0] == marker else [marker] + lm.encode(tool.name + "(")


def top_positions(p: list[float], tau_s: float, k: int, min_context: int = 0) -> list[int]:
    """The k positions with the largest p_i among those with p_i > τ_s and at least `min_context`
    tokens before them (ties: earlier first)."""
    ranked = sorted((i for i, v in enumerate(p) if v > tau_s and i >= min_context), key=lambda i: (-p[i], i))
    return sorted(ranked[:k])


class Sampler:
    def __init__(self, lm: LMBackend, tool: Tool, syntax: CallSyntax, settings: SampleSettings):
        self.lm, self.tool, self.syntax, self.s = lm, tool, syntax, settings
        prompt = load_prompt(tool)
        self.prompt_head, self.prompt_tail = prompt.split("{input}")
        self.markers = start_marker_ids(lm, syntax)
        self.openings = {m: call_opening(lm, syntax, tool, m) for m in self.markers}

    def prompt_ids(self, window: Window) -> list[int]:
        return self.lm.start_ids + self.lm.encode(self.prompt_head + window.text + self.prompt_tail)

    def run_windows(self, windows: list[Window], counts: dict) -> list[dict]:
        """Score positions in one pass per window, then sample at the kept positions."""
        prompts = [self.prompt_ids(w) for w in windows]
        seqs = [p + w.ids for p, w in zip(prompts, windows)]
        # p_i for i = 0..n-1 is read after P(x) + x_{1:i-1}: t runs from len(P) to len(P) + n - 1
        logp = self.lm.next_token_logprobs(seqs, [len(p) for p in prompts], self.markers, retain_cache=True)
        jobs = []  # (window, its prompt, position, marker, p_start, sample number)
        for w, prompt, lp in zip(windows, prompts, logp):
            best = lp[:len(w.ids)].max(axis=1)
            which = lp[:len(w.ids)].argmax(axis=1)
            p = np.exp(best).tolist()
            positions = top_positions(p, self.s.tau_s, self.s.k, self.s.min_context)
            counts["positions"] += len(positions)
            # a tool without input has one possible call per position: no sampling needed
            draws = range(self.s.m) if self.tool.takes_input else range(1)
            jobs += [(w, prompt, i, self.markers[int(which[i])], p[i], j) for i in positions for j in draws]
        if not self.tool.takes_input:
            self.lm.release()
            counts["samples"] += len(jobs)
            return [self._record(w, i, p_start, "") for w, _, i, _, p_start, _ in jobs]
        samples = self.lm.sample(
            [prompt + w.ids[:i] + self.openings[marker] for w, prompt, i, marker, _, _ in jobs],
            [derive_seed(self.s.seed, w.doc.id, self.tool.key, w.index, i, j) for w, _, i, _, _, j in jobs],
            stop=self.syntax.stop_strings(), max_new_tokens=self.s.max_new_tokens,
            temperature=self.s.temperature)
        self.lm.release()
        counts["samples"] += len(samples)
        records, seen = [], set()
        for (w, _, i, _, p_start, _), sample in zip(jobs, samples):
            if sample.stop is None:
                counts["unclosed"] += 1
                continue
            parsed = self.syntax.parse_body(self.tool.name + "(" + sample.text if self.syntax.named else sample.text)
            if parsed is None:
                counts["unparseable"] += 1
                continue
            inp = parsed[1]
            if (w.doc.id, w.index, i, inp) in seen:
                counts["duplicates"] += 1
                continue
            seen.add((w.doc.id, w.index, i, inp))
            records.append(self._record(w, i, p_start, inp))
        return records

    def _record(self, w: Window, i: int, p_start: float, inp: str) -> dict:
        token_index = w.index * self.s.window + i
        return {"id": f"{w.doc.id}/{self.tool.key}/{token_index}/{hashlib.sha1(inp.encode()).hexdigest()[:8]}",
                "doc_id": w.doc.id, "tool": self.tool.key, "window": w.index,
                "position": w.char_starts[i], "token_index": token_index, "p_start": round(p_start, 6),
                "input": inp, "call": self.syntax.render(self.tool.name, inp)}


def sample_tool(run: Run, lm: LMBackend, tool: Tool, syntax: CallSyntax, settings: SampleSettings,
                progress: bool = True, only_docs: set[str] | None = None) -> dict:
    """Sample candidates for every document (or those in `only_docs`: a tool retriever's choice)."""
    out_dir = run.tool_dir(tool.key)
    path = out_dir / "candidates.jsonl"
    run.check_config(f"stages.sample/{tool.key}.config", asdict(settings) | {"prompt": load_prompt(tool)},
                     str(path))
    writer = ResumableWriter(path)
    docs = run.documents()
    sampler = Sampler(lm, tool, syntax, settings)
    chunks = [docs[a:a + settings.chunk_docs] for a in range(0, len(docs), settings.chunk_docs)]
    bar = tqdm(total=len(docs), desc=f"sample {tool.key}", unit="doc", disable=not progress)
    for number, chunk in enumerate(chunks):
        key = str(number)
        if key in writer.done:
            bar.update(len(chunk))
            continue
        counts = dict.fromkeys(COUNT_KEYS, 0)
        counts["documents"] = len(chunk)
        windows = []  # the chunk's windows, batched across documents
        for doc in chunk:
            if only_docs is not None and doc.id not in only_docs:
                counts["documents_not_retrieved"] += 1
                continue
            doc_windows = document_windows(lm, doc, settings.window)
            counts["windows"] += len(doc_windows)
            if tool.heuristic is not None:
                doc_windows = [w for w in doc_windows if tool.heuristic(w.text, doc.meta)]
            counts["windows_heuristic"] += len(doc_windows)
            counts["documents_heuristic"] += bool(doc_windows)
            windows += doc_windows
        records = []
        for a in range(0, len(windows), settings.windows_per_pass):
            records += sampler.run_windows(windows[a:a + settings.windows_per_pass], counts)
        counts["candidates"] = len(records)
        writer.commit(key, records, counts=counts)
        bar.update(len(chunk))
        bar.set_postfix(candidates=sum(e["counts"]["candidates"] for e in writer.chunk_info()))
    bar.close()
    totals = dict.fromkeys(COUNT_KEYS, 0)
    for entry in writer.chunk_info():
        for k in COUNT_KEYS:
            totals[k] += entry["counts"][k]
    if not writer.complete:
        writer.mark_complete()
    return totals | {"seconds": writer.seconds}


COUNT_KEYS = ("documents", "documents_not_retrieved", "documents_heuristic", "windows", "windows_heuristic", "positions", "samples",
              "unclosed", "unparseable", "duplicates", "candidates")
