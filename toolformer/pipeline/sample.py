"""Stage 1, sample: propose API calls for one tool (DESIGN.md §1, "Sampling").

For each document window x, ONE forward pass over P(x) + x gives p_i = p(<API> | P(x), x_{1:i-1})
at every position i (the larger of the start marker's two spellings, " [" and "["). The top k
positions with p_i > τ_s get m sampled calls each: the model continues P(x) + x_{1:i-1} + <API>
until the arrow or the end marker. The scoring pass's KV cache is reused for those prefixes.

The sampler may be a finetuned model (settings.adapter, issue 11 §2): one that learnt to write
calls needs no few-shot prompt, and with settings.no_prompt P(x) is empty, so p_i is read on x
alone; the call opening and the stop strings stay the same.

Writes <run>/<tool>/candidates.jsonl, committed a chunk of documents at a time (resumable).
Candidates from annotations (pipeline/annotated.py) are the same records plus `source`.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from toolformer.config import SampleSettings
from toolformer.errors import UserFileNotFound
from toolformer.tools import Tool, load_prompt
from toolformer.lm.backend import LMBackend
from toolformer.lm.loading import model_tokenizer
from toolformer.lm.tokens import start_marker_ids
from toolformer.run.records import Document
from toolformer.run.manifest import Run
from toolformer.corpus.syntax import CallSyntax
from toolformer.pipeline.stage import Stage
from toolformer.pipeline.windows import Window, document_windows, tokenizer_fingerprint


def derive_seed(*parts) -> int:
    return int.from_bytes(hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


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


def candidate_record(doc_id: str, tool: Tool, syntax: CallSyntax, window: int, token_index: int, position: int,
                     p_start: float, inp: str, **extra) -> dict:
    """A candidate call: `input` to `tool` before the token `token_index` of the document (in
    window `window`), which starts at character `position`."""
    return {"id": f"{doc_id}/{tool.key}/{token_index}/{hashlib.sha1(inp.encode()).hexdigest()[:8]}",
            "doc_id": doc_id, "tool": tool.key, "window": window, "position": position,
            "token_index": token_index, "p_start": round(p_start, 6), "input": inp,
            "call": syntax.render(tool.name, inp), **extra}


def top_positions(p: list[float], tau_s: float, k: int, min_context: int = 0) -> list[int]:
    """The k positions with the largest p_i among those with p_i > τ_s and at least `min_context`
    tokens before them (ties: earlier first)."""
    ranked = sorted((i for i, v in enumerate(p) if v > tau_s and i >= min_context), key=lambda i: (-p[i], i))
    return sorted(ranked[:k])


class Sampler:
    """Calls for windows of one tool's documents. `settings` are resolved for the tool (for_tool)."""

    def __init__(self, lm: LMBackend, tool: Tool, syntax: CallSyntax, settings: SampleSettings, seed: int = 0):
        self.lm, self.tool, self.syntax, self.s, self.seed = lm, tool, syntax, settings, seed
        self.prompt_head, self.prompt_tail = (None, None) if settings.no_prompt else load_prompt(tool).split("{input}")
        self.markers = start_marker_ids(lm, syntax.start)
        self.openings = {m: call_opening(lm, syntax, tool, m) for m in self.markers}

    def prompt_ids(self, window: Window) -> list[int]:
        if self.prompt_head is None:
            return list(self.lm.start_ids)
        return self.lm.start_ids + self.lm.encode(self.prompt_head + window.text + self.prompt_tail)

    def jobs(self, windows: list[Window], prompts: list[list[int]], logp: list[np.ndarray],
             counts: dict | None = None) -> list[tuple]:
        """The samples to draw, (window, its prompt, position, marker, p_start, sample number): m at
        each of a window's top k positions by p_i (logp: the scoring pass's log p of each marker),
        one where the tool takes no input (its one possible call needs no sampling)."""
        jobs = []
        for w, prompt, lp in zip(windows, prompts, logp):
            best = lp[:len(w.ids)].max(axis=1)
            which = lp[:len(w.ids)].argmax(axis=1)
            p = np.exp(best).tolist()
            positions = top_positions(p, self.s.tau_s, self.s.k, self.s.min_context)
            if counts is not None:
                counts["positions"] += len(positions)
            draws = range(self.s.m) if self.tool.takes_input else range(1)
            jobs += [(w, prompt, i, self.markers[int(which[i])], p[i], j) for i in positions for j in draws]
        return jobs

    def sample_inputs(self, jobs: list[tuple]) -> tuple[list[list[int]], list[int]]:
        """lm.sample's prefixes and seeds for the jobs: a prefix ends with the call opening; a seed
        depends on the document, tool, window, position and sample number alone."""
        return ([prompt + w.ids[:i] + self.openings[marker] for w, prompt, i, marker, _, _ in jobs],
                [derive_seed(self.seed, w.doc.id, self.tool.key, w.index, i, j) for w, _, i, _, _, j in jobs])

    def run_windows(self, windows: list[Window], counts: dict) -> list[dict]:
        """Score positions in one pass per window, then sample at the kept positions."""
        prompts = [self.prompt_ids(w) for w in windows]
        seqs = [p + w.ids for p, w in zip(prompts, windows)]
        # p_i for i = 0..n-1 is read after P(x) + x_{1:i-1}: t runs from len(P) to len(P) + n - 1
        logp = self.lm.next_token_logprobs(seqs, [len(p) for p in prompts], self.markers, retain_cache=True)
        jobs = self.jobs(windows, prompts, logp, counts)
        if not self.tool.takes_input:
            self.lm.release()
            counts["samples"] += len(jobs)
            return [self._record(w, i, p_start, "") for w, _, i, _, p_start, _ in jobs]
        samples = self.lm.sample(*self.sample_inputs(jobs), stop=self.syntax.stop_strings(),
                                 max_new_tokens=self.s.max_new_tokens, temperature=self.s.temperature)
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
        return candidate_record(w.doc.id, self.tool, self.syntax, w.index, w.index * self.s.window + i,
                                w.char_starts[i], p_start, inp)


ANNOTATION_FIELDS = ("from_annotations", "annotation_split")  # settings of the other source (annotated.py)


def dtype_setting(backend_options: dict) -> dict:
    """{"dtype": ...} when the stage's backend computes in another dtype than its device's default
    (bfloat16 on a CPU): its samples and losses differ, so a resumed stage must use the same. Known
    from the backend's options (Stage.backend_options), without loading the model; the vLLM
    backend records none."""
    from toolformer.lm.loading import default_device
    from toolformer.lm.loading import dtype_setting as of_dtype
    if backend_options.get("backend", "hf") != "hf":
        return {}
    return of_dtype(backend_options.get("dtype"), default_device())


def adapter_fingerprint(folder: str) -> str:
    """The adapter's weights, by content: a retrained adapter in the same folder samples anew."""
    from toolformer.assets import file_fingerprint
    weights = sorted(Path(folder).glob("adapter_model.*"))
    if not weights:
        raise UserFileNotFound(f"{folder} is not a LoRA adapter folder (no adapter_model.safetensors)")
    return file_fingerprint(weights[0])


class SampleStage(Stage):
    """Writes <tool>/candidates.jsonl. With `only_docs` (a tool retriever's choice), the other
    documents are counted and skipped."""
    kind = "sample"
    counts = ("documents", "documents_not_retrieved", "documents_heuristic", "windows", "windows_heuristic",
              "positions", "samples", "unclosed", "unparseable", "duplicates", "candidates")

    def __init__(self, run: Run, tool: Tool, syntax: CallSyntax, settings: SampleSettings, model: str,
                 load_lm: Callable[[], LMBackend], seed: int = 0, only_docs: set[str] | None = None):
        super().__init__(run, tool)
        self.syntax, self.s, self.model, self.load_lm, self.seed = syntax, settings.for_tool(tool), model, load_lm, seed
        self.only_docs = only_docs

    @cached_property
    def lm(self) -> LMBackend:
        return self.load_lm()

    def model_spec(self) -> dict | None:
        # a Ray worker loads the sampler itself: the base model with the adapter merged in
        if not self.s.adapter:
            return super().model_spec()
        from toolformer.lm.loading import adapter_info
        return {"model_ref": adapter_info(self.s.adapter).get("base_model") or self.model.split(" + ")[0],
                "adapter": self.s.adapter, **self.backend_options}

    def settings(self) -> dict:
        sampling = {k: v for k, v in asdict(self.s).items() if k not in ANNOTATION_FIELDS}
        adapter = {"adapter_weights": adapter_fingerprint(self.s.adapter)} if self.s.adapter else {}
        return {"source": "model", "model": self.model, "syntax": self.syntax.name, "seed": self.seed, **sampling,
                **adapter, "prompt": None if self.s.no_prompt else load_prompt(self.tool),
                "tokenizer": tokenizer_fingerprint(model_tokenizer(self.model)), **dtype_setting(self.backend_options)}

    def start(self, output, docs) -> None:
        self.sampler = Sampler(self.lm, self.tool, self.syntax, self.s, self.seed)

    def process(self, docs: list[Document], inputs: dict) -> tuple[list[dict], dict]:
        counts = dict.fromkeys(self.counts, 0)
        counts["documents"] = len(docs)
        windows = []  # the chunk's windows, batched across documents
        for doc in docs:
            if self.only_docs is not None and doc.id not in self.only_docs:
                counts["documents_not_retrieved"] += 1
                continue
            doc_windows = document_windows(self.lm, doc, self.s.window)
            counts["windows"] += len(doc_windows)
            if self.tool.heuristic is not None:
                doc_windows = [w for w in doc_windows if self.tool.heuristic(w.text, doc.meta)]
            counts["windows_heuristic"] += len(doc_windows)
            counts["documents_heuristic"] += bool(doc_windows)
            windows += doc_windows
        records = []
        for a in range(0, len(windows), self.s.windows_per_pass):
            records += self.sampler.run_windows(windows[a:a + self.s.windows_per_pass], counts)
        counts["candidates"] = len(records)
        return records, counts
