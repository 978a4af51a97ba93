"""The HF and vLLM backends on the same work, in one run (run it with .venv-vllm/bin/python).

  positions  p(<API>) at every position of each window with the calculator's few-shot prompt
  filter     L+, L(ε), L(e(c, ε)) of GSM8K's own calls (the filter's Scorer), and the kept set
  sample     m calls sampled at the k most likely positions of each window (seeded, stop strings)

Prints one JSON line per task: seconds of each backend, their ratio (hf / vllm: > 1 means vLLM is
faster), and how far vLLM's numbers are from HF's; plus the vLLM engines' start time. The same
windows, candidates, prefixes and seeds go to both backends.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Timer, gsm8k_documents, parser  # noqa: E402


def workload(lm, docs, k: int, m: int):
    """(sampler, scoring sequences, their first rows, filter items): the same for both backends,
    which share the tokenizer."""
    from toolformer.config import SampleSettings
    from toolformer.corpus.syntax import TOOLFORMER
    from toolformer.pipeline.sample import Sampler
    from toolformer.pipeline.windows import document_windows
    from toolformer.run.records import Document
    from toolformer.tools import get_tool

    tool = get_tool("calculator")
    sampler = Sampler(lm, tool, TOOLFORMER, SampleSettings(k=k, m=m).for_tool(tool))
    windows = [w for i, (text, _) in enumerate(docs) for w in document_windows(lm, Document(str(i), text, {}), 512)]
    prompts = [sampler.prompt_ids(w) for w in windows]
    items = []
    for w, (_, calls) in zip(windows, docs):  # GSM8K documents fit one window each
        for char, expr, result in calls:
            i = next((t for t, start in enumerate(w.char_starts) if start >= char), len(w.ids) - 1)
            items += [((w.doc.id, 0), w.ids, i, expr, result), ((w.doc.id, 0), w.ids, i, expr, "0")]
    return sampler, windows, prompts, items


def main() -> None:
    import numpy as np
    from toolformer.corpus.syntax import TOOLFORMER
    from toolformer.lm.hf import HFBackend
    from toolformer.lm.vllm import VLLMBackend, shutdown_engines
    from toolformer.pipeline.filter import Scorer, scored_record

    p = parser(__doc__)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--m", type=int, default=5)
    args = p.parse_args()
    docs = gsm8k_documents(args.data, args.docs)
    hf = HFBackend.from_ref(args.model)
    vl = VLLMBackend.from_ref(args.model)
    with Timer() as start:
        vl._engine("score"), vl._engine("generate")
    print(json.dumps({"vllm_engines_start_s": round(start.seconds, 1)}), flush=True)

    sampler, windows, prompts, items = workload(hf, docs, args.k, args.m)
    seqs = [pr + w.ids for pr, w in zip(prompts, windows)]
    first = [len(pr) for pr in prompts]
    vl.next_token_logprobs(seqs[:1], first[:1], sampler.markers)  # warm-up (and the prompt's prefix cache)
    hf.next_token_logprobs(seqs[:1], first[:1], sampler.markers)
    results, logp = {}, {}

    def report(task: str) -> None:
        r = results[task]
        r["hf_over_vllm"] = r["hf"] / r["vllm"]
        print(json.dumps({"task": task, **{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}}),
              flush=True)

    for name, lm in (("hf", hf), ("vllm", vl)):
        with Timer() as t:
            logp[name] = lm.next_token_logprobs(seqs, first, sampler.markers)
        results.setdefault("positions", {})[name] = t.seconds
    rel = max(float(np.abs(np.expm1(v - h)).max()) for v, h in zip(logp["vllm"], logp["hf"]))
    results["positions"].update(tokens=sum(map(len, seqs)), max_rel_diff_p=rel)
    report("positions")

    losses = {}
    for name, lm in (("hf", hf), ("vllm", vl)):
        with Timer() as t:
            losses[name] = np.array(Scorer(lm, sampler.tool, TOOLFORMER).score(items))
        results.setdefault("filter", {})[name] = t.seconds
    kept = {name: [scored_record({"error": None}, tuple(row), sampler.tool.tau_f)["kept"] for row in v] for name, v in losses.items()}
    results["filter"].update(candidates=len(items), kept=int(sum(kept["hf"])), kept_sets_equal=kept["hf"] == kept["vllm"],
                             max_rel_diff_loss=float(np.abs(losses["vllm"] / losses["hf"] - 1).max()))
    report("filter")

    prefixes, seeds = sampler.sample_inputs(sampler.jobs(windows, prompts, logp["hf"]))  # the sample stage's
    for name, lm in (("hf", hf), ("vllm", vl)):
        with Timer() as t:
            samples = lm.sample(prefixes, seeds, TOOLFORMER.stop_strings(), max_new_tokens=32)
        results.setdefault("sample", {})[name] = t.seconds
        results["sample"][f"{name}_closed"] = sum(s.stop is not None for s in samples)
    results["sample"]["samples"] = len(prefixes)
    report("sample")
    shutdown_engines()


if __name__ == "__main__":  # vLLM starts worker processes
    main()
