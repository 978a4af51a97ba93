"""The filter against a naive filter on real GSM8K candidates.

Candidates: those of a curated run (--run DIR: its calculator/executed.jsonl), or else, at each
GSM8K calculator annotation, the gold call and a distractor call.
Ours: Scorer (shared passes, L(ε) once per window, sequences cut after the last weighted token,
length-sorted batches, LM head only at weighted positions). Naive: one unbatched forward per
variant over the whole window, L(ε) recomputed for each candidate, full-vocabulary logits
everywhere. Prints one JSON line: candidates/s of both, the speed-up (target ≥ 5) and whether the
kept sets are identical.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import Timer, gsm8k_documents, parser  # noqa: E402
from toolformer.tools import get_tool  # noqa: E402
from toolformer.pipeline.filter import WEIGHTS, Scorer, scored_record  # noqa: E402
from toolformer.lm.hf import HFBackend  # noqa: E402
from toolformer.run.records import Document  # noqa: E402
from toolformer.pipeline.windows import document_windows  # noqa: E402
from toolformer.corpus.syntax import TOOLFORMER  # noqa: E402


def naive_loss(lm, z: list[int], x: list[int], i: int) -> float:
    seq = torch.tensor([lm.start_ids + z + x])
    with torch.inference_mode():
        logp = torch.log_softmax(lm.model(seq).logits[0].float(), -1)
    head = len(lm.start_ids) + len(z)
    return -sum(WEIGHTS[t] * logp[head + i + t - 1, x[i + t]].item() for t in range(5) if i + t < len(x))


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--tau-f", type=float, default=0.5)
    p.add_argument("--run", help="a run folder: score its calculator candidates (at most --limit)")
    p.add_argument("--limit", type=int, default=200)
    args = p.parse_args()
    lm = HFBackend.from_ref(args.model)
    items = run_items(lm, Path(args.run), args.limit) if args.run else gsm8k_items(lm, args)
    compare(lm, items, args)


def gsm8k_items(lm, args) -> list:
    items = []
    for d, (text, calls) in enumerate(gsm8k_documents(args.data, args.docs)):
        for w in document_windows(lm, Document(str(d), text, {}), 512):
            for pos, expr, result in calls:
                if pos in w.char_starts:
                    i = w.char_starts.index(pos)
                    items += [((d, w.index), w.ids, i, expr, result), ((d, w.index), w.ids, i, "2 * 3", "6")]
    return items


def run_items(lm, run_dir: Path, limit: int) -> list:
    docs = {json.loads(line)["id"]: json.loads(line)["text"] for line in open(run_dir / "documents.jsonl")}
    windows, items = {}, []
    for line in open(run_dir / "calculator" / "executed.jsonl"):
        r = json.loads(line)
        if r["error"] is None and len(items) < limit:
            if r["doc_id"] not in windows:
                windows[r["doc_id"]] = document_windows(lm, Document(r["doc_id"], docs[r["doc_id"]], {}), 512)
            w = windows[r["doc_id"]][r["window"]]
            items.append(((r["doc_id"], r["window"]), w.ids, r["token_index"] - 512 * r["window"], r["input"], r["result"]))
    return items


def compare(lm, items, args) -> None:
    scorer = Scorer(lm, get_tool("calculator"), TOOLFORMER)
    scorer.score(items[:2])  # warm-up
    with Timer() as ours:
        fast = scorer.score(items)
    with Timer() as naive:
        slow = []
        for _, x, i, inp, res in items:
            z_plus, z_empty = list(scorer.prefix(inp, res)), list(scorer.prefix(inp, ""))
            slow.append((naive_loss(lm, z_plus, x, i), naive_loss(lm, [], x, i), naive_loss(lm, z_empty, x, i)))
    kept = lambda losses: [scored_record({"error": None}, l, args.tau_f)["kept"] for l in losses]  # noqa: E731
    n = len(items)
    print(json.dumps({"bench": "filter", "candidates": n, "windows": len({key for key, *_ in items}),
                      "ours_candidates_per_s": round(n / ours.seconds, 2),
                      "naive_candidates_per_s": round(n / naive.seconds, 2),
                      "speedup": round(naive.seconds / ours.seconds, 2), "target": 5,
                      "kept_sets_identical": kept(fast) == kept(slow), "kept": sum(kept(fast)),
                      "max_abs_loss_diff": float(np.abs(np.array(fast) - np.array(slow)).max())}))


if __name__ == "__main__":
    main()
