"""Sampling against a bare batched forward pass at the same batch size.

The work of a real sample stage: the calculator at the paper's defaults (k=20, m=10, τ_s=0) on
--docs GSM8K solutions. The position-scoring pass keeps its KV caches and `sample` continues them.
Ours: tokens drawn per second inside `sample` (each position's call opening fed once, then every
decoding step feeds each row the token it drew last). Bare: the model's own forward over
[rows, 1] new tokens without any cache, the least work a decoding step of that many rows does,
at rows = the mean rows per step of ours. Then the same
prefixes are sampled again in another order, in batches of 7 rows, from contexts encoded anew:
the samples must be the same (seeds, not batches, decide them).
Rates are per CPU second of this process (other jobs on a shared machine barely change them).
Prints one JSON line: tokens/s of both, their ratio (target ≥ 0.7) and the samples that repeat.
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402

from bench.common import Timer, gsm8k_documents, parser  # noqa: E402
from toolformer.tools import get_tool  # noqa: E402
from toolformer.lm.hf import HFBackend  # noqa: E402
from toolformer.run.records import Document  # noqa: E402
from toolformer.config import SampleSettings  # noqa: E402
from toolformer.pipeline.sample import Sampler  # noqa: E402
from toolformer.pipeline.windows import document_windows  # noqa: E402
from toolformer.corpus.syntax import TOOLFORMER  # noqa: E402


def main() -> None:
    p = parser(__doc__)
    p.set_defaults(docs=4)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--rows", type=int, help="rows per decoding batch (default: the backend's)")
    p.add_argument("--recheck", type=int, default=100, help="samples drawn again in other batches")
    args = p.parse_args()
    lm = HFBackend.from_ref(args.model, dtype=args.dtype, max_sample_rows=args.rows)
    tool = get_tool("calculator")
    sampler = Sampler(lm, tool, TOOLFORMER, SampleSettings(tau_s=0.0, k=20, m=10).for_tool(tool))
    windows = [w for i, (text, _) in enumerate(gsm8k_documents(args.data, args.docs))
               for w in document_windows(lm, Document(str(i), text, {}), 512)]
    calls, sampling = [], Timer()
    sample = lm.sample

    def timed_sample(prefixes, seeds, **kwargs):
        with sampling:
            out = sample(prefixes, seeds, **kwargs)
        calls.append((prefixes, seeds, kwargs, out))
        return out
    lm.sample = timed_sample
    counts = dict.fromkeys(("positions", "samples", "unclosed", "unparseable", "duplicates"), 0)
    sampler.run_windows(windows, counts)
    tokens, steps = lm.sampled["tokens"], lm.sampled["steps"]
    rows = round(lm.sampled["rows"] / steps)  # rows per decoding forward

    with torch.inference_mode():
        ids = torch.randint(1000, 2000, (rows, 1))
        lm.model(input_ids=ids, logits_to_keep=1)  # warm-up
        with Timer() as bare:
            for _ in range(10):
                lm.model(input_ids=ids, logits_to_keep=1).logits.sum().item()
    # CPU seconds: the machine may be shared
    bare_rate, ours_rate = 10 * rows / bare.cpu, tokens / sampling.cpu

    prefixes, seeds, kwargs, first = calls[0]
    picked = random.Random(0).sample(range(len(prefixes)), min(args.recheck, len(prefixes)))
    other = HFBackend(lm.model, lm.tokenizer, max_sample_rows=7)
    again = other.sample([prefixes[i] for i in picked], [seeds[i] for i in picked], **kwargs)
    print(json.dumps({"bench": "sample", "dtype": args.dtype, "windows": len(windows), "samples": counts["samples"],
                      "sampled_tokens": tokens, "decoding_steps": steps, "mean_rows_per_step": rows,
                      "ours_tokens_per_s": round(ours_rate, 1), "bare_tokens_per_s": round(bare_rate, 1),
                      "ratio_ours_vs_bare": round(ours_rate / bare_rate, 3), "target": 0.7,
                      "samples_repeated_in_other_batches": f"{sum(first[i] == s for i, s in zip(picked, again))}"
                                                           f"/{len(picked)}"}))


if __name__ == "__main__":
    main()
