"""A synthetic run folder in the layout the curation stages write (manifest, documents, scored calls).

Used by tests/test_report.py and bench/report_page.py to build large runs (100,000 calls) fast,
without a model. Losses are random but consistent: usefulness = min(L(ε), L(e(c,ε))) − L⁺, and
kept = usefulness ≥ τ_f, as toolformer/filter.py writes them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from toolformer.run.records import dumps
from toolformer.corpus.syntax import TOOLFORMER

# key, name as written in calls, τ_f, share of the calls
TOOLS = (("calculator", "Calculator", 0.5, 0.6), ("calendar", "Calendar", 1.0, 0.2),
         ("wikisearch", "WikiSearch", 1.0, 0.2))
WORDS = ("the", "state", "of", "union", "congress", "revenue", "year", "dollars", "nation", "war", "peace",
         "treasury", "people", "army", "trade", "debt", "tax", "law", "public", "increase", "total")
ERRORS = ("cannot evaluate '{}': unsupported operator", "timeout after 5 s", "no article found for '{}'")


def _document(rng: np.random.Generator, chars: int) -> str:
    words = []
    while sum(len(w) + 1 for w in words) < chars:
        words.append(str(int(rng.integers(1, 5000))) if rng.random() < 0.12 else WORDS[rng.integers(len(WORDS))])
    return " ".join(words).capitalize() + "."


def write_synthetic_run(run_dir: Path, n_calls: int, n_docs: int = 2000, seed: int = 0,
                        failed_share: float = 0.05) -> dict:
    """Write the run; return {tool key: {"records", "kept", "failed"}}."""
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    docs = [_document(rng, 600) for _ in range(n_docs)]
    with open(run_dir / "documents.jsonl", "w", encoding="utf-8") as f:
        for i, text in enumerate(docs):
            f.write(dumps({"id": f"doc-{i}", "text": text, "meta": {"year": 1800 + i % 200}}) + "\n")
    stages, truth = {}, {}
    for key, name, tau, share in TOOLS:
        n = int(n_calls * share)
        doc_ids = rng.integers(n_docs, size=n).tolist()
        no_call = rng.uniform(1, 5, n)
        no_result = no_call + rng.normal(0.1, 0.3, n)
        plus = np.minimum(no_call, no_result) - rng.normal(-0.4, 0.7, n)
        no_call, no_result, plus = no_call.tolist(), no_result.tolist(), plus.tolist()
        failed = rng.random(n) < failed_share
        a, b = rng.integers(1, 2000, (2, n)).tolist()
        positions = (rng.random(n) * np.array([len(docs[d]) for d in doc_ids])).astype(int).tolist()
        p_start = rng.beta(1, 8, n).tolist()
        counts = {"kept": 0, "failed": 0}
        (run_dir / key).mkdir(exist_ok=True)
        with open(run_dir / key / "scored.jsonl", "w", encoding="utf-8") as f:
            for i in range(n):
                input = f"{a[i]} {'+-*/'[i % 4]} {b[i]}" if key == "calculator" else f"topic {a[i] % 300}"
                space = docs[doc_ids[i]].find(" ", positions[i])  # calls go before a word, as tokens do
                rec = {"id": f"{key}-{i}", "doc_id": f"doc-{doc_ids[i]}", "tool": key, "window": 0,
                       "position": space if space >= 0 else positions[i], "token_index": 0, "p_start": p_start[i], "input": input,
                       "call": TOOLFORMER.render(name, input), "latency_ms": 0.5}
                if failed[i]:
                    error = ERRORS[i % len(ERRORS)].format(input)
                    rec |= {"result": None, "error": error, "loss_plus": None, "loss_no_call": None,
                            "loss_no_result": None, "loss_minus": None, "usefulness": None, "kept": False,
                            "reason": f"tool error: {error}"}
                    counts["failed"] += 1
                else:
                    minus = min(no_call[i], no_result[i])
                    useful = round(float(minus - plus[i]), 6)
                    kept = useful >= tau
                    rec |= {"result": str(a[i] % 97), "error": None, "loss_plus": round(plus[i], 6),
                            "loss_no_call": round(no_call[i], 6), "loss_no_result": round(no_result[i], 6),
                            "loss_minus": round(minus, 6), "usefulness": useful, "kept": bool(kept),
                            "reason": None if kept else f"usefulness {useful:.3f} < tau_f {tau:g}"}
                    counts["kept"] += bool(kept)
                f.write(dumps(rec) + "\n")
        truth[key] = {"records": n, **counts}
        stages[f"sample/{key}"] = {"counts": {"documents": n_docs, "documents_heuristic": n_docs // 2,
                                              "windows": n_docs, "windows_heuristic": n_docs // 2,
                                              "positions": n, "samples": n, "candidates": n},
                                   "seconds": 1.0, "config": {"model": "synthetic", "syntax": "toolformer",
                                                              "tau_s": 0.0, "k": 20, "m": 10, "seed": seed}}
        stages[f"execute/{key}"] = {"counts": {"executed_ok": n - counts["failed"],
                                               "executed_failed": counts["failed"]}, "seconds": 1.0}
        stages[f"filter/{key}"] = {"counts": {"scored": n, "kept": counts["kept"]}, "seconds": 1.0,
                                   "config": {"model": "synthetic", "syntax": "toolformer", "tau_f": tau}}
    manifest = {"run": run_dir.name, "config": {"corpus": "synthetic"}, "versions": {"toolformer": "test"},
                "stages": stages}
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return truth
