"""Peak memory of `toolformer finetune`: ours against the Trainer's own loss, on the same corpus.

Each variant is a fresh process running toolformer.training.finetune.finetune at the demo's
settings (LoRA, 8 documents of at most 256 tokens a step, --threads threads) for --steps steps
with one evaluation and one checkpoint, so its peak RSS is the whole stage's: model, optimizer,
activations, logits, evaluation, saving.

  naive  the plain transformers Trainer (the model's loss over [batch, length, vocab] fp32 logits),
         every activation kept, 8 documents per forward pass: finetune as it was
  ours   finetune as it is: the loss at label positions only, the LM head a chunk at a time,
         activation checkpointing, 4 documents per forward pass and 2 passes a step (the same
         gradient; glibc keeps the heap that larger activations grew)
  ours in one pass of 8: what the micro-batches bring
  ours without checkpointing: what the loss alone brings
  ours with a fixed mmap threshold (glibc): what the allocator's fragmentation costs (not the
         default: the page faults cost more CPU than checkpointing)

The corpus is --data (built augmented folders, e.g. runs/demo/math/augmented,runs/demo/facts/
augmented), else the GSM8K training slice shipped in the package (the demo's data without a data
folder), written as a corpus here. Prints one JSON line: peak RSS per variant (MB), the ratios to
naive, wall seconds per optimizer step, the ratio of the stage's CPU seconds (user + system, which
other jobs on a shared machine barely change) to naive's, and whether the first logged training
loss is the same for all variants that batch alike (it must be; 4 documents a pass group them
otherwise).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# FinetuneSettings fields per variant
ONE_PASS = {"batch_size": 8, "grad_accum": 1}
VARIANTS = {"naive": {"gradient_checkpointing": False, **ONE_PASS}, "ours": {},
            "ours in one pass of 8": ONE_PASS,
            "ours without checkpointing": {"gradient_checkpointing": False},
            "ours with a fixed mmap threshold": {}}
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def fixed_mmap_threshold(size: int = 128 * 1024) -> None:
    """Large blocks straight from and back to the system: glibc raises its mmap threshold each time
    a large block is freed, so later activations come from the heap, which fragments and keeps what
    was freed. Fixing it lowers the peak RSS a lot, and costs page faults (CPU) on every allocation."""
    import ctypes
    ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, size)


def shipped_corpus(folder: Path) -> Path:
    """The shipped GSM8K slice's problems and solutions as an augmented corpus folder."""
    from toolformer.corpus.build import write_corpus
    from toolformer.demo import PACKAGE_DATA
    rows = [json.loads(line) for line in open(PACKAGE_DATA / "gsm8k_train_slice.jsonl")]
    split = [{"id": str(i), "text": f"{r['question']}\n{r['answer']}", "n_calls": 0, "calls": []}
             for i, r in enumerate(rows)]
    out = folder / "augmented"
    write_corpus(out, {"train": split[20:], "validation": split[:20]}, {"syntax": "hw3"})
    return out


def child(variant: str, data: str, out: str, steps: int, model: str, threads: int) -> None:
    import torch
    torch.set_num_threads(threads)
    import toolformer.training.finetune as ft
    if variant == "naive":
        from transformers import Trainer
        ft._trainer_class = lambda: Trainer  # the Trainer's own compute_loss: model(**batch).loss
    if variant == "ours with a fixed mmap threshold":
        fixed_mmap_threshold()
    cpu0 = time.process_time()
    figures = ft.finetune(out, model=model, data=data, out_dir=out, max_steps=steps, eval_steps=steps,
                          max_length=256, lr=2e-3, progress=False, **VARIANTS[variant])
    cpu = time.process_time() - cpu0  # CPU seconds of the whole stage: other jobs barely change it
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print(json.dumps({"peak_rss_mb": round(peak), "first_loss": figures["first_train_loss"],
                      "seconds_per_step": round(figures["train_seconds"] / figures["steps"], 1),
                      "cpu_seconds": round(cpu, 1),
                      "tokens_per_second": figures["tokens_per_second"]}))


def same_first_loss(results: dict) -> dict:
    """Per batching ("8 x 1", "4 x 2": documents per pass x passes per step), whether every variant
    run with it logged the same first training loss."""
    from toolformer.config import FinetuneSettings
    default = {"batch_size": FinetuneSettings.batch_size, "grad_accum": FinetuneSettings.grad_accum}
    groups = {}
    for variant, r in results.items():
        fields = {**default, **VARIANTS[variant]}
        groups.setdefault(f"{fields['batch_size']} x {fields['grad_accum']}", []).append(r["first_loss"])
    return {k: max(losses) - min(losses) < 1e-4 for k, losses in groups.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--data", help="built augmented corpus folders, comma-separated (default: the shipped GSM8K slice)")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch threads (the demo's machine has 2 cores)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="which variants, comma-separated (naive first)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return child(a.child, a.data, a.out, a.steps, a.model, a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = a.data or str(shipped_corpus(Path(tmp)))
        results = {}
        for variant in a.variants.split(","):
            proc = subprocess.run([sys.executable, __file__, "--child", variant, "--data", data, "--out",
                                   str(Path(tmp) / f"v{len(results)}"), "--steps", str(a.steps),
                                   "--model", a.model, "--threads", str(a.threads)],
                                  capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"{variant} failed:\n{proc.stderr[-3000:]}")
            results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
    naive = results[next(iter(results))]  # the first variant: naive unless --variants says otherwise
    print(json.dumps({
        "data": a.data or "shipped GSM8K slice", "documents_per_step": 8, "max_length": 256, "steps": a.steps,
        "threads": a.threads,
        "peak_rss_mb": {v: r["peak_rss_mb"] for v, r in results.items()},
        "ratios_to": next(iter(results)),
        "rss_ratio_to_naive": {v: round(r["peak_rss_mb"] / naive["peak_rss_mb"], 2) for v, r in results.items()},
        "seconds_per_step": {v: r["seconds_per_step"] for v, r in results.items()},
        "cpu_seconds_ratio_to_naive": {v: round(r["cpu_seconds"] / naive["cpu_seconds"], 2) for v, r in results.items()},
        "same_first_loss_per_batching": same_first_loss(results),
        "first_loss": {v: r["first_loss"] for v, r in results.items()}}))


if __name__ == "__main__":
    main()
