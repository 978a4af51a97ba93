"""Sampling with prefix reuse against re-encoding the prefix for every sample.

Ours: the position-scoring pass keeps its KV cache and every sample at position i starts from
the cached P(x) + x_{1:i-1}. Naive: each sample encodes P(x) + x_{1:i-1} + <API> again, one
sample at a time. Both use the same seeds, so the samples must be identical.
Prints one JSON line: calls/s of both and the speed-up (target ≥ 2).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402

from bench.common import Timer, gsm8k_documents, parser  # noqa: E402
from toolformer.tools import get_tool  # noqa: E402
from toolformer.lm.hf import HFBackend  # noqa: E402
from toolformer.run.records import Document  # noqa: E402
from toolformer.config import SampleSettings  # noqa: E402
from toolformer.pipeline.sample import Sampler, derive_seed, top_positions  # noqa: E402
from toolformer.pipeline.windows import document_windows  # noqa: E402
from toolformer.corpus.syntax import TOOLFORMER  # noqa: E402


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--m", type=int, default=4)
    args = p.parse_args()
    lm = HFBackend.from_ref(args.model)
    settings = SampleSettings(k=args.k, m=args.m).for_tool(get_tool("calculator"))
    sampler = Sampler(lm, get_tool("calculator"), TOOLFORMER, settings, seed=0)
    windows = [w for i, (text, _) in enumerate(gsm8k_documents(args.data, args.docs))
               for w in document_windows(lm, Document(str(i), text, {}), 512)]
    counts = {"positions": 0, "samples": 0, "unclosed": 0, "unparseable": 0, "duplicates": 0}
    with Timer() as ours:
        records = sampler.run_windows(windows, counts)

    # naive: the same positions and seeds, each sample encoding its whole prefix alone
    naive_samples, naive_calls = [], set()
    with Timer() as naive:
        prompts = [sampler.prompt_ids(w) for w in windows]
        logp = lm.next_token_logprobs([p + w.ids for p, w in zip(prompts, windows)], [len(p) for p in prompts],
                                      sampler.markers)
        for w, pr, lp in zip(windows, prompts, logp):
            best, which = lp[:len(w.ids)].max(axis=1), lp[:len(w.ids)].argmax(axis=1)
            for i in top_positions(np.exp(best).tolist(), settings.tau_s, settings.k):
                for j in range(settings.m):
                    prefix = pr + w.ids[:i] + sampler.openings[sampler.markers[int(which[i])]]
                    seed = derive_seed(0, w.doc.id, "calculator", w.index, i, j)
                    (sample,) = lm.sample([prefix], [seed], TOOLFORMER.stop_strings(), settings.max_new_tokens)
                    naive_samples.append(sample)
                    parsed = TOOLFORMER.parse_body("Calculator(" + sample.text)
                    if sample.stop and parsed:
                        naive_calls.add((w.doc.id, w.index * settings.window + i, parsed[1]))
    calls = counts["samples"]
    print(json.dumps({"bench": "sample", "windows": len(windows), "samples": calls, "candidates": len(records),
                      "ours_samples_per_s": round(calls / ours.seconds, 2),
                      "naive_samples_per_s": round(len(naive_samples) / naive.seconds, 2),
                      "speedup": round(naive.seconds / ours.seconds, 2), "target": 2,
                      "identical_calls": naive_calls == {(r["doc_id"], r["token_index"], r["input"]) for r in records}}))


if __name__ == "__main__":
    main()
