"""Stage 3, filter: keep a call when its result lowers the loss of the next tokens (DESIGN.md §1).

    w_t  = max(0, 1 − 0.2·t) / Σ_s max(0, 1 − 0.2·s)          = [1, .8, .6, .4, .2] / 3
    L_i(z) = − Σ_{j ≥ i} w_{j−i} · log p(x_j | z, x_{1:j−1})   z is a PREFIX before the window
    L⁺ = L_i(e(c, r));   L⁻ = min(L_i(ε), L_i(e(c, ε)));   keep iff L⁻ − L⁺ ≥ τ_f

Every loss is read from one sequence start + z + x_{1:i+4} of the call's window. Sequences are
shared wherever they can be: L_i(ε) for every candidate of a window comes from a single pass, and
candidates with the same call text z in a window share one pass for all their positions. The
sequence stops at the last weighted token, and the LM head runs only at weighted positions.
A continuation shorter than 5 tokens keeps the same weights over the tokens there are.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from toolformer.config import FilterSettings
from toolformer.tools import Tool
from toolformer.lm.backend import LMBackend
from toolformer.lm.loading import model_tokenizer
from toolformer.run.records import EXECUTED, Document
from toolformer.run.manifest import Run
from toolformer.pipeline.sample import dtype_setting
from toolformer.pipeline.stage import Stage
from toolformer.pipeline.windows import DEFAULT_SIZE, WindowSpec, document_windows, tokenizer_fingerprint
from toolformer.corpus.syntax import CallSyntax

SPAN = 5  # tokens with non-zero weight


def loss_weights() -> np.ndarray:
    raw = np.maximum(0.0, 1.0 - 0.2 * np.arange(SPAN + 1))
    return raw / raw.sum()


WEIGHTS = loss_weights()


def weighted_loss(logp: np.ndarray) -> float:
    """−Σ_t w_t log p for the first ≤ 5 tokens of a continuation."""
    return float(-(WEIGHTS[:len(logp)] * logp[:SPAN]).sum())


class Scorer:
    """Builds the shared sequences for a set of candidates and turns log-probs into losses."""

    def __init__(self, lm: LMBackend, tool: Tool, syntax: CallSyntax):
        self.lm, self.tool, self.syntax = lm, tool, syntax

    def prefix(self, input: str, result: str) -> tuple[int, ...]:
        return tuple(self.lm.encode(self.syntax.render(self.tool.name, input, result)))

    def score(self, items: list[tuple[object, list[int], int, str, str]],
              lazy_tau: float | None = None) -> list[tuple[float | None, float, float | None]]:
        """items: (window key, window token ids x, position i, input, result) ->
        (L_i(e(c, r)), L_i(ε), L_i(e(c, ε))) for each.

        With lazy_tau = τ_f, only the losses that can change the decision are computed, so the kept
        set is the same: L⁺ where L(ε) ≥ τ_f (else L⁻ ≤ L(ε) < τ_f ≤ τ_f + L⁺), and L(e(c, ε)) where
        L(ε) − L⁺ ≥ τ_f (else L⁻ − L⁺ ≤ L(ε) − L⁺ < τ_f); the others are None."""
        z = {"plus": [self.prefix(inp, res) for _, _, _, inp, res in items],
             "no_result": [self.prefix(inp, "") for _, _, _, inp, _ in items]}
        if lazy_tau is None:
            variants = [z["plus"], [()] * len(items), z["no_result"]]
            flat = self._losses([(key, x, i, zs[n]) for zs in variants for n, (key, x, i, _, _) in enumerate(items)])
            return list(zip(*(flat[k * len(items):(k + 1) * len(items)] for k in range(3))))
        no_call = self._losses([(key, x, i, ()) for key, x, i, _, _ in items])
        plus: list[float | None] = [None] * len(items)
        no_result: list[float | None] = [None] * len(items)
        for zs, out, wanted in (
                (z["plus"], plus, lambda n: no_call[n] >= lazy_tau),
                (z["no_result"], no_result, lambda n: plus[n] is not None and no_call[n] - plus[n] >= lazy_tau)):
            todo = [n for n in range(len(items)) if wanted(n)]
            for n, loss in zip(todo, self._losses([(*items[n][:3], zs[n]) for n in todo])):
                out[n] = loss
        return list(zip(plus, no_call, no_result))

    def _losses(self, requests: list[tuple[object, list[int], int, tuple[int, ...]]]) -> list[float]:
        """L_i(z) for each (window key, x, i, z): one sequence per distinct (window, z), serving
        every position that needs it, cut after its last weighted token."""
        seq_of: dict[tuple, int] = {}
        parts: list[tuple[list[int], tuple[int, ...]]] = []  # (x, z) per sequence
        positions: list[set[int]] = []
        plan = []
        for key, x, i, z in requests:
            s = seq_of.setdefault((key, z), len(parts))
            if s == len(parts):
                parts.append((x, z))
                positions.append(set())
            positions[s].add(i)
            plan.append(s)
        if not parts:
            return []
        heads = [len(self.lm.start_ids) + len(z) for _, z in parts]
        seqs, targets = [], []
        for (x, z), head, pos in zip(parts, heads, positions):
            seqs.append(self.lm.start_ids + list(z) + x[:min(len(x), max(pos) + SPAN)])
            # every weighted token of every position this sequence serves, each once
            targets.append(sorted({head + j for i in pos for j in range(i, min(i + SPAN, len(x)))}))
        logps = [dict(zip(t, lp)) for t, lp in zip(targets, self.lm.token_logprobs(seqs, targets))]
        return [weighted_loss(np.array([logps[s][heads[s] + j] for j in range(i, min(i + SPAN, len(x)))]))
                for (_, x, i, _), s in zip(requests, plan)]


def keeps_every_call(tau_f: float) -> bool:
    """τ_f = -inf (e.g. iterate --seed-filter all): every call that executed is kept, whatever its
    losses, so none is computed."""
    return tau_f == float("-inf")


def scored_record(rec: dict, losses: tuple[float | None, float, float | None] | None, tau_f: float) -> dict:
    if rec["error"] is not None or losses is None:
        kept = rec["error"] is None and keeps_every_call(tau_f)
        return {**rec, "loss_plus": None, "loss_no_call": None, "loss_no_result": None, "loss_minus": None,
                "usefulness": None, "kept": kept, "reason": None if kept else f"tool error: {rec['error']}"}
    plus, no_call, no_result = losses
    if plus is None:  # lazy: L(ε) alone rules the call out
        return {**rec, "loss_plus": None, "loss_no_call": round(no_call, 6), "loss_no_result": None,
                "loss_minus": None, "usefulness": None, "kept": False,
                "reason": f"L(ε) {no_call:.3f} < tau_f {tau_f:g}: no call here can be kept (lazy)"}
    if no_result is None:  # lazy: L⁻ ≤ L(ε) rules it out
        return {**rec, "loss_plus": round(plus, 6), "loss_no_call": round(no_call, 6), "loss_no_result": None,
                "loss_minus": None, "usefulness": None, "kept": False,
                "reason": f"usefulness ≤ L(ε) − L+ = {no_call - plus:.3f} < tau_f {tau_f:g} (lazy)"}
    minus = min(no_call, no_result)
    usefulness = minus - plus
    kept = usefulness >= tau_f
    return {**rec, "loss_plus": round(plus, 6), "loss_no_call": round(no_call, 6),
            "loss_no_result": round(no_result, 6), "loss_minus": round(minus, 6),
            "usefulness": round(usefulness, 6), "kept": kept,
            "reason": None if kept else f"usefulness {usefulness:.3f} < tau_f {tau_f:g}"}


class FilterStage(Stage):
    """Writes <tool>/scored.jsonl. Windows are the sampler's: its window size, and a model with
    its tokenizer (another model with the same tokenizer may filter, e.g. in a later round)."""
    kind = "filter"
    counts = ("scored", "kept")
    input_schema = EXECUTED

    def __init__(self, run: Run, tool: Tool, syntax: CallSyntax, settings: FilterSettings, model: str,
                 load_lm: Callable[[], LMBackend]):
        super().__init__(run, tool)
        self.syntax, self.s, self.model, self.load_lm = syntax, settings.for_tool(tool), model, load_lm

    @cached_property
    def lm(self) -> LMBackend:
        return self.load_lm()

    def settings(self) -> dict:
        spec = WindowSpec.of_sampling(self.run.stage("sample", self.tool.key))
        if spec is not None:
            spec.check_filter(self.run.name, self.s.window, model_tokenizer(self.model), self.model)
        self.window = spec.size if spec else self.s.window or DEFAULT_SIZE
        return {"model": self.model, "syntax": self.syntax.name, "window": self.window, "tau_f": self.s.tau_f,
                "tokenizer": tokenizer_fingerprint(model_tokenizer(self.model)), **dtype_setting(self.backend_options),
                **({"lazy": True} if self.s.lazy else {})}

    def start(self, output: Path, docs: list[Document]) -> None:
        self.scorer = Scorer(self.lm, self.tool, self.syntax)

    def process(self, docs: list[Document], inputs: dict[str, list[dict]]) -> tuple[list[dict], dict]:
        items, owners = [], []
        for doc in docs:
            if not inputs.get(doc.id):
                continue
            windows = {w.index: w.ids for w in document_windows(self.lm, doc, self.window)}
            for rec in inputs[doc.id]:
                if rec["error"] is None and not keeps_every_call(self.s.tau_f):
                    i = rec["token_index"] - rec["window"] * self.window
                    items.append(((doc.id, rec["window"]), windows[rec["window"]], i, rec["input"], rec["result"]))
                    owners.append(rec["id"])
        lazy = self.s.tau_f if self.s.lazy else None
        losses = dict(zip(owners, self.scorer.score(items, lazy))) if items else {}
        records = [scored_record(rec, losses.get(rec["id"]), self.s.tau_f) for d in docs for rec in inputs.get(d.id, ())]
        return records, {"scored": len(records), "kept": sum(r["kept"] for r in records)}
