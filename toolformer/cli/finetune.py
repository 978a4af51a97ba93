"""`toolformer finetune --run NAME`: finetune a model on the run's augmented corpus (LoRA or full)."""
from __future__ import annotations

from pathlib import Path

from toolformer.cli.flags import add_flags, from_args
from toolformer.config import FinetuneSettings

GPU_SETTINGS = (
    "1B+ models on one GPU (e.g. Pythia-1b, Llama-3.2-1B): --bf16 --batch-size 8 "
    "--grad-accum 16 --max-length 1024 --max-steps 2000 (effective batch 128, as in the paper) with "
    "--lora-r 16 --lora-alpha 32 --lr 1e-4, or full finetuning with --full --lr 1e-5 (the paper's setting). "
    "Weights are loaded in fp32 and run under bf16 autocast. Several GPUs (or CPU processes, gloo): "
    "torchrun --nproc_per_node N -m toolformer.cli -- finetune ... (the -- keeps torchrun from reading --run).")


def cmd_finetune(args) -> dict | None:
    from toolformer.errors import UserValueError
    from toolformer.training.finetune import finetune
    from toolformer.run.manifest import Run
    settings = from_args(FinetuneSettings, args)
    if args.run is None and not (settings.data and settings.out_dir):
        raise UserValueError("finetune needs --run (its augmented corpus and model folder), "
                             "or both --data and --out")
    run_dir = Run(args.run, args.runs_dir).path if args.run else Path(settings.out_dir)
    figures = finetune(run_dir, settings)
    if not figures["main_process"]:  # data-parallel: the first process reports
        return None
    ppl = figures["best_perplexity"]
    cut = f", {figures['truncated']} cut at {settings.max_length} tokens" if figures["truncated"] else ""
    print(f"finetuned {figures['steps']} steps on {figures['train_documents']} train + "
          f"{figures['validation_documents']} validation documents{cut}; "
          + (f"held-out perplexity {ppl:.2f}" if ppl else "no validation split"))
    print(f"saved: {figures.get('adapter') or figures.get('model')}" +
          (f" and {figures['merged']}" if "merged" in figures else ""))
    return figures


def add_commands(sub, command) -> None:
    p = command(sub, "finetune", cmd_finetune, "finetune a model on the augmented corpus (LoRA or full)")
    p.epilog = GPU_SETTINGS
    p.add_argument("--run", help="run name: reads RUNS_DIR/NAME/augmented, writes RUNS_DIR/NAME/model "
                                 "(not needed with --data and --out)")
    p.add_argument("--runs-dir", default="runs")
    add_flags(p, FinetuneSettings)
