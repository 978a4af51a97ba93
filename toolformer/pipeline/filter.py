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

from dataclasses import dataclass, asdict
from itertools import groupby

import numpy as np
from tqdm import tqdm

from toolformer.tools import Tool
from toolformer.lm.hf import LMBackend
from toolformer.run.records import EXECUTED, ResumableWriter, read_jsonl
from toolformer.run.manifest import Run
from toolformer.pipeline.sample import document_windows
from toolformer.corpus.syntax import CallSyntax

SPAN = 5  # tokens with non-zero weight


def loss_weights() -> np.ndarray:
    raw = np.maximum(0.0, 1.0 - 0.2 * np.arange(SPAN + 1))
    return raw / raw.sum()


WEIGHTS = loss_weights()


@dataclass(frozen=True)
class FilterSettings:
    model: str
    syntax: str
    window: int = 512
    tau_f: float = 1.0
    chunk_docs: int = 8


def weighted_loss(logp: np.ndarray) -> float:
    """−Σ_t w_t log p for the first ≤ 5 tokens of a continuation."""
    return float(-(WEIGHTS[:len(logp)] * logp[:SPAN]).sum())


class Scorer:
    """Builds the shared sequences for a set of candidates and turns log-probs into losses."""

    def __init__(self, lm: LMBackend, tool: Tool, syntax: CallSyntax):
        self.lm, self.tool, self.syntax = lm, tool, syntax

    def prefix(self, input: str, result: str) -> tuple[int, ...]:
        return tuple(self.lm.encode(self.syntax.render(self.tool.name, input, result)))

    def score(self, items: list[tuple[object, list[int], int, str, str]]) -> list[tuple[float, float, float]]:
        """items: (window key, window token ids x, position i, input, result) ->
        (L_i(e(c, r)), L_i(ε), L_i(e(c, ε))) for each."""
        # one sequence per distinct (window, prefix), serving every position that needs it
        seq_of: dict[tuple, int] = {}
        parts: list[tuple[list[int], tuple[int, ...]]] = []  # (x, z) per sequence
        positions: list[set[int]] = []
        plan = []
        for key, x, i, inp, res in items:
            ids = []
            for z in (self.prefix(inp, res), (), self.prefix(inp, "")):
                s = seq_of.setdefault((key, z), len(parts))
                if s == len(parts):
                    parts.append((x, z))
                    positions.append(set())
                positions[s].add(i)
                ids.append(s)
            plan.append(ids)
        heads = [len(self.lm.start_ids) + len(z) for _, z in parts]
        seqs, targets = [], []
        for (x, z), head, pos in zip(parts, heads, positions):
            seqs.append(self.lm.start_ids + list(z) + x[:min(len(x), max(pos) + SPAN)])
            # every weighted token of every position this sequence serves, each once
            targets.append(sorted({head + j for i in pos for j in range(i, min(i + SPAN, len(x)))}))
        logps = [dict(zip(t, lp)) for t, lp in zip(targets, self.lm.token_logprobs(seqs, targets))]
        out = []
        for (_, x, i, _, _), ids in zip(items, plan):
            out.append(tuple(weighted_loss(np.array([logps[s][heads[s] + j] for j in range(i, min(i + SPAN, len(x)))]))
                             for s in ids))
        return out


def scored_record(rec: dict, losses: tuple[float, float, float] | None, tau_f: float) -> dict:
    if losses is None:
        return {**rec, "loss_plus": None, "loss_no_call": None, "loss_no_result": None, "loss_minus": None,
                "usefulness": None, "kept": False, "reason": f"tool error: {rec['error']}"}
    plus, no_call, no_result = losses
    minus = min(no_call, no_result)
    usefulness = minus - plus
    kept = usefulness >= tau_f
    return {**rec, "loss_plus": round(plus, 6), "loss_no_call": round(no_call, 6),
            "loss_no_result": round(no_result, 6), "loss_minus": round(minus, 6),
            "usefulness": round(usefulness, 6), "kept": kept,
            "reason": None if kept else f"usefulness {usefulness:.3f} < tau_f {tau_f:g}"}


def filter_tool(run: Run, lm: LMBackend, tool: Tool, syntax: CallSyntax, settings: FilterSettings,
                progress: bool = True) -> dict:
    src = run.tool_dir(tool.key) / "executed.jsonl"
    if not src.exists():
        raise FileNotFoundError(f"{src} does not exist: run `toolformer execute --tool {tool.key} --run {run.name}`")
    path = src.with_name("scored.jsonl")
    run.check_config(f"stages.filter/{tool.key}.config", asdict(settings), str(path))
    writer = ResumableWriter(path)
    docs = {d.id: d for d in run.documents()}
    by_doc = [list(group) for _, group in groupby((r for _, r in read_jsonl(src, EXECUTED)), key=lambda r: r["doc_id"])]
    scorer = Scorer(lm, tool, syntax)
    bar = tqdm(total=sum(map(len, by_doc)), desc=f"filter {tool.key}", unit="call", disable=not progress)
    for number, a in enumerate(range(0, len(by_doc), settings.chunk_docs)):
        chunk = by_doc[a:a + settings.chunk_docs]
        n = sum(map(len, chunk))
        if str(number) in writer.done:
            bar.update(n)
            continue
        items, owners = [], []
        for group in chunk:
            windows = {w.index: w.ids for w in document_windows(lm, docs[group[0]["doc_id"]], settings.window)}
            for rec in group:
                if rec["error"] is None:
                    i = rec["token_index"] - rec["window"] * settings.window
                    items.append(((rec["doc_id"], rec["window"]), windows[rec["window"]], i, rec["input"], rec["result"]))
                    owners.append(rec["id"])
        losses = dict(zip(owners, scorer.score(items))) if items else {}
        records = [scored_record(rec, losses.get(rec["id"]), settings.tau_f) for group in chunk for rec in group]
        writer.commit(str(number), records, kept=sum(r["kept"] for r in records))
        bar.update(n)
    bar.close()
    if not writer.complete:
        writer.mark_complete()
    scored = kept = 0
    for _, rec in read_jsonl(path):
        scored += 1
        kept += rec["kept"]
    return {"scored": scored, "kept": kept, "seconds": writer.seconds}
