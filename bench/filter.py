"""The filter against a naive filter, on the candidates a real sample stage proposes.

Candidates: by default the calculator's sample stage at the paper's defaults (k=20, m=10, τ_s=0)
on --docs GSM8K solutions, executed; or those of a curated run (--run DIR: its
calculator/executed.jsonl, at most --limit). Ours: Scorer (shared passes, L(ε) once per window,
sequences cut after the last weighted token, length-sorted batches, LM head only at weighted
positions), in float32 and, with --bf16, again in bfloat16; and lazily (filter --lazy: only the
losses that can change a decision). Naive: one unbatched float32
forward per variant over the whole window, L(ε) recomputed for each candidate, full-vocabulary
logits everywhere. Prints one JSON line: candidates/s, the speed-ups (target ≥ 5), whether the
kept sets are identical to the naive one's and how many kept calls differ. Rates are per CPU
second of this process (other jobs on a shared machine barely change them).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import Timer, gsm8k_documents, parser  # noqa: E402
from toolformer.tools import get_tool, run_call  # noqa: E402
from toolformer.config import SampleSettings  # noqa: E402
from toolformer.pipeline.filter import WEIGHTS, Scorer, scored_record  # noqa: E402
from toolformer.pipeline.sample import Sampler  # noqa: E402
from toolformer.lm.hf import HFBackend  # noqa: E402
from toolformer.run.records import Document  # noqa: E402
from toolformer.pipeline.windows import document_windows  # noqa: E402
from toolformer.corpus.syntax import TOOLFORMER  # noqa: E402

WINDOW = 512


def naive_loss(lm, z: list[int], x: list[int], i: int) -> float:
    seq = torch.tensor([lm.start_ids + z + x])
    with torch.inference_mode():
        logp = torch.log_softmax(lm.model(seq).logits[0].float(), -1)
    head = len(lm.start_ids) + len(z)
    return -sum(WEIGHTS[t] * logp[head + i + t - 1, x[i + t]].item() for t in range(5) if i + t < len(x))


def main() -> None:
    p = parser(__doc__)
    p.set_defaults(docs=2)
    p.add_argument("--tau-f", type=float, default=0.5)
    p.add_argument("--run", help="a run folder: score its calculator candidates (at most --limit)")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--bf16", action="store_true", help="also score in bfloat16 and count the kept calls that differ")
    args = p.parse_args()
    lm = HFBackend.from_ref(args.model)
    items = run_items(lm, Path(args.run), args.limit) if args.run else sampled_items(lm, args)
    compare(lm, items, args)


def sampled_items(lm, args) -> list:
    """The executed candidates of a calculator sample stage at the paper's defaults."""
    tool = get_tool("calculator")
    windows = [w for d, (text, _) in enumerate(gsm8k_documents(args.data, args.docs))
               for w in document_windows(lm, Document(str(d), text, {}), WINDOW)]
    counts = dict.fromkeys(("positions", "samples", "unclosed", "unparseable", "duplicates"), 0)
    settings = SampleSettings(window=WINDOW, tau_s=0.0, k=20, m=10).for_tool(tool)
    records = Sampler(lm, tool, TOOLFORMER, settings).run_windows(windows, counts)
    executor, by_key = tool.make_executor(), {(w.doc.id, w.index): w for w in windows}
    items = []
    for r in records:
        out = run_call(tool, executor, r["input"])
        if out.error is None:
            w = by_key[r["doc_id"], r["window"]]
            items.append(((r["doc_id"], r["window"]), w.ids, r["token_index"] - WINDOW * r["window"], r["input"],
                          TOOLFORMER.safe_result(out.result)))
    return items


def run_items(lm, run_dir: Path, limit: int) -> list:
    docs = {json.loads(line)["id"]: json.loads(line)["text"] for line in open(run_dir / "documents.jsonl")}
    windows, items = {}, []
    for line in open(run_dir / "calculator" / "executed.jsonl"):
        r = json.loads(line)
        if r["error"] is None and len(items) < limit:
            if r["doc_id"] not in windows:
                windows[r["doc_id"]] = document_windows(lm, Document(r["doc_id"], docs[r["doc_id"]], {}), WINDOW)
            w = windows[r["doc_id"]][r["window"]]
            items.append(((r["doc_id"], r["window"]), w.ids, r["token_index"] - WINDOW * r["window"], r["input"],
                          r["result"]))
    return items


def timed_scores(lm, items, lazy_tau: float | None = None) -> tuple[list, float]:
    scorer = Scorer(lm, get_tool("calculator"), TOOLFORMER)
    scorer.score(items[:2])  # warm-up
    with Timer() as t:
        losses = scorer.score(items, lazy_tau)
    return losses, t.cpu


def compare(lm, items, args) -> None:
    fast, ours = timed_scores(lm, items)
    lazy, lazy_seconds = timed_scores(lm, items, args.tau_f)
    scorer = Scorer(lm, get_tool("calculator"), TOOLFORMER)
    with Timer() as naive:
        slow = []
        for _, x, i, inp, res in items:
            z_plus, z_empty = list(scorer.prefix(inp, res)), list(scorer.prefix(inp, ""))
            slow.append((naive_loss(lm, z_plus, x, i), naive_loss(lm, [], x, i), naive_loss(lm, z_empty, x, i)))
    kept = lambda losses: np.array([scored_record({"error": None}, l, args.tau_f)["kept"] for l in losses])  # noqa: E731
    n = len(items)
    out = {"bench": "filter", "candidates": n, "windows": len({key for key, *_ in items}),
           "ours_candidates_per_s": round(n / ours, 2), "naive_candidates_per_s": round(n / naive.cpu, 2),
           "speedup": round(naive.cpu / ours, 2), "target": 5,
           "kept_sets_identical": bool((kept(fast) == kept(slow)).all()), "kept": int(kept(fast).sum()),
           "lazy_speedup": round(naive.cpu / lazy_seconds, 2), "lazy_vs_full": round(ours / lazy_seconds, 2),
           "lazy_kept_sets_identical": bool((kept(lazy) == kept(slow)).all()),
           "lazy_fully_scored": sum(no_result is not None for _, _, no_result in lazy),
           "max_abs_loss_diff": float(np.abs(np.array(fast) - np.array(slow)).max())}
    if args.bf16:
        half, seconds = timed_scores(HFBackend(lm.model, lm.tokenizer, dtype=torch.bfloat16), items)
        out.update({"bf16_speedup": round(naive.cpu / seconds, 2), "bf16_vs_fp32": round(ours / seconds, 2),
                    "bf16_kept": int(kept(half).sum()),
                    "bf16_kept_calls_differing": int((kept(half) != kept(slow)).sum()),
                    "bf16_max_abs_loss_diff": float(np.abs(np.array(half) - np.array(slow)).max())})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
