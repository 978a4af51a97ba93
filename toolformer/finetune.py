"""Stage 5, finetune: causal-LM training on the augmented corpus (transformers Trainer + peft LoRA).

    toolformer finetune --run NAME [--model REF] [--full] [--mask-results] [--resume] [--merge]

The loss covers the whole augmented text, calls and results included (the paper); --mask-results
leaves the result tokens (between the arrow and the end marker) out of it, since at inference the
tool writes them. The held-out split's perplexity is evaluated every --eval-steps and the best
checkpoint is the one kept (paper). Writes <run>/model/: adapter/ (LoRA; or model/ with --full),
merged/ with --merge, checkpoints/ (--resume continues from the last one), finetune.json.

Defaults finish in minutes on a CPU with the embedded 135M model: LoRA r=8 on all linear layers,
lr 2e-4, batch 8, 256 tokens, 30 steps (about 40k tokens; we measured ~55 tokens/s on one busy
core). For 1B+ models on one GPU, see GPU_SETTINGS.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import torch

from toolformer.assets import DEFAULT_LM
from toolformer.inference.decoder import FINETUNE_INFO, sequence_start
from toolformer.corpus.syntax import CallSyntax, get_syntax

GPU_SETTINGS = (
    "1B+ models on one GPU (e.g. Pythia-1b, Llama-3.2-1B): --bf16 --gradient-checkpointing --batch-size 8 "
    "--grad-accum 16 --max-length 1024 --max-steps 2000 (effective batch 128, as in the paper) with "
    "--lora-r 16 --lora-alpha 32 --lr 1e-4, or full finetuning with --full --lr 1e-5 (the paper's setting). "
    "Weights are loaded in fp32 and run under bf16 autocast.")


def result_spans(text: str, syntax: CallSyntax) -> list[tuple[int, int]]:
    """Character ranges of the tool results in `text` (what the tool, not the model, writes)."""
    spans = []
    for call in syntax.parse(text):
        if not call.result:
            continue
        s, e = call.span
        r0 = text.rfind(call.result, s, e - len(syntax.end))
        if r0 >= 0:
            spans.append((r0, r0 + len(call.result)))
    return spans


def tokenize(texts: list[str], tokenizer, syntax: CallSyntax, max_length: int, mask_results: bool,
             counts: dict) -> list[dict]:
    """input_ids and labels per text: start token + text + EOS, labels -100 where no loss is taken."""
    eos = tokenizer.eos_token_id
    start = sequence_start(tokenizer)
    rows = []
    for text in texts:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = start + enc["input_ids"] + [eos]
        labels = list(ids)
        labels[0] = -100  # nothing predicts the start token
        if mask_results:
            spans = result_spans(text, syntax)
            for t, (a, b) in enumerate(enc["offset_mapping"], len(start)):
                if any(a < r1 and b > r0 for r0, r1 in spans):
                    labels[t] = -100
                    counts["masked_tokens"] += 1
        if len(ids) > max_length:
            counts["truncated"] += 1
            ids, labels = ids[:max_length], labels[:max_length]
        rows.append({"input_ids": ids, "labels": labels})
    return rows


class PadCollator:
    """Right padding: pad id in the inputs, mask 0, labels -100."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict:
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _step_timer():
    """A Trainer callback timing the optimizer steps of this run (evaluation and saving excluded)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        seconds = 0.0
        _t0 = 0.0
        tokens_before = 0  # tokens seen by the checkpoint this run resumed from

        def on_train_begin(self, args, state, control, **kwargs):
            self.tokens_before = state.num_input_tokens_seen

        def on_step_begin(self, args, state, control, **kwargs):
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds += time.perf_counter() - self._t0

    return StepTimer()


def finetune(run_dir: str | Path, model: str = DEFAULT_LM, data: str | Path | None = None,
             out_dir: str | Path | None = None, full: bool = False, lora_r: int = 8, lora_alpha: int = 16,
             lora_dropout: float = 0.05, target_modules: str | list[str] = "all-linear", lr: float | None = None,
             max_steps: int = 30, batch_size: int = 8, grad_accum: int = 1, max_length: int = 256,
             eval_steps: int = 10, warmup_steps: int = 0, mask_results: bool = False, merge: bool = False,
             resume: bool = False, bf16: bool = False, gradient_checkpointing: bool = False, seed: int = 0,
             callbacks: list | None = None, progress: bool = True) -> dict:
    """Finetune `model` on the run's augmented corpus; return figures (losses, perplexity, throughput, paths)."""
    from datasets import Dataset, load_from_disk
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, set_seed
    from transformers.trainer_utils import get_last_checkpoint
    from toolformer.lm.loading import load_tokenizer, local_folder

    run_dir = Path(run_dir)
    data = Path(data or run_dir / "augmented")
    if not (data / "dataset_dict.json").exists():
        raise FileNotFoundError(f"{data} is not an augmented corpus: run `toolformer build --run {run_dir.name}` first")
    built = json.loads((data / "build.json").read_text()) if (data / "build.json").exists() else {}
    syntax_name = built.get("syntax", "toolformer")
    splits = load_from_disk(str(data))
    if len(splits["train"]) == 0:
        raise ValueError(f"{data}: the train split is empty (no document has a kept call?)")
    out_dir = Path(out_dir or run_dir / "model")
    checkpoints = out_dir / "checkpoints"
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if not resume and checkpoints.exists():
        shutil.rmtree(checkpoints)  # without --resume training starts over
        last = None

    tokenizer = load_tokenizer(model)
    counts = {"truncated": 0, "masked_tokens": 0}
    syntax = get_syntax(syntax_name)
    train = Dataset.from_list(tokenize(list(splits["train"]["text"]), tokenizer, syntax, max_length, mask_results, counts))
    val_texts = list(splits["validation"]["text"]) if "validation" in splits else []
    val = Dataset.from_list(tokenize(val_texts, tokenizer, syntax, max_length, mask_results, counts)) if val_texts else None

    lm = AutoModelForCausalLM.from_pretrained(local_folder(model), dtype=torch.float32)
    set_seed(seed)  # the LoRA weights start random: the same seed, the same run
    if not full:
        from peft import LoraConfig, get_peft_model
        lm = get_peft_model(lm, LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                                           target_modules=target_modules, task_type="CAUSAL_LM"))
    lr = lr if lr is not None else (1e-5 if full else 2e-4)
    args = TrainingArguments(
        output_dir=str(checkpoints), max_steps=max_steps, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size, gradient_accumulation_steps=grad_accum, learning_rate=lr,
        warmup_steps=warmup_steps, lr_scheduler_type="linear", weight_decay=0.0,
        eval_strategy="steps" if val is not None else "no", eval_steps=eval_steps,
        save_strategy="steps", save_steps=eval_steps, save_total_limit=2,
        load_best_model_at_end=val is not None, metric_for_best_model="eval_loss", greater_is_better=False,
        logging_steps=max(1, min(10, eval_steps)), report_to="none", seed=seed, data_seed=seed,
        bf16=bf16, include_num_input_tokens_seen="non_padding", disable_tqdm=not progress,
        remove_unused_columns=False, dataloader_pin_memory=torch.cuda.is_available(),
        # only when asked: the argument is being renamed (activation_checkpointing) and warns when given
        **({"gradient_checkpointing": True, "gradient_checkpointing_kwargs": {"use_reentrant": False}}
           if gradient_checkpointing else {}))
    timer = _step_timer()
    trainer = Trainer(model=lm, args=args, train_dataset=train, eval_dataset=val,
                      data_collator=PadCollator(tokenizer.pad_token_id), callbacks=[timer, *(callbacks or [])])
    result = trainer.train(resume_from_checkpoint=last)
    state = trainer.state

    out_dir.mkdir(parents=True, exist_ok=True)
    info = {"base_model": model, "syntax": syntax_name, "method": "full" if full else "lora",
            "mask_results": mask_results, "data": str(data)}
    saved = {}
    final = out_dir / ("model" if full else "adapter")
    trainer.model.save_pretrained(final)
    tokenizer.save_pretrained(final)
    # a full model stands alone; an adapter names its base model
    (final / FINETUNE_INFO).write_text(json.dumps(info if not full else {**info, "base_model": str(final)}, indent=2))
    saved["adapter" if not full else "model"] = str(final)
    if merge and not full:
        merged_dir = out_dir / "merged"
        trainer.model.merge_and_unload().save_pretrained(merged_dir)
        tokenizer.save_pretrained(merged_dir)
        (merged_dir / FINETUNE_INFO).write_text(json.dumps({**info, "base_model": str(merged_dir)}, indent=2))
        saved["merged"] = str(merged_dir)

    train_losses = [h["loss"] for h in state.log_history if "loss" in h]
    best = state.best_metric
    figures = {
        "run": str(run_dir), "out": str(out_dir), **saved, "method": info["method"], "syntax": syntax_name,
        "train_documents": len(train), "validation_documents": len(val) if val is not None else 0, **counts,
        "steps": state.global_step, "resumed_from": Path(last).name if last else None,
        "first_train_loss": train_losses[0] if train_losses else None,
        "last_train_loss": train_losses[-1] if train_losses else None,
        "best_eval_loss": best, "best_perplexity": math.exp(best) if best is not None else None,
        "best_checkpoint": Path(state.best_model_checkpoint).name if state.best_model_checkpoint else None,
        "train_seconds": round(result.metrics.get("train_runtime", 0.0), 1),
        "train_tokens": sum(len(ids) for ids in train["input_ids"]), "tokens_seen": state.num_input_tokens_seen,
        # over this run's optimizer steps only (no evaluation, no saving, nothing before a resume)
        "tokens_per_second": round((state.num_input_tokens_seen - timer.tokens_before) / timer.seconds, 1)
        if timer.seconds else None,
    }
    (out_dir / "finetune.json").write_text(json.dumps({**figures, "settings": {
        "model": model, "full": full, "lora_r": lora_r, "lora_alpha": lora_alpha, "lora_dropout": lora_dropout,
        "target_modules": target_modules, "lr": lr, "max_steps": max_steps, "batch_size": batch_size,
        "grad_accum": grad_accum, "max_length": max_length, "eval_steps": eval_steps, "seed": seed,
        "bf16": bf16, "gradient_checkpointing": gradient_checkpointing}}, indent=2) + "\n")
    return figures


def cmd_finetune(args) -> dict:
    from toolformer.run.manifest import Run
    targets = args.target_modules if args.target_modules == "all-linear" else args.target_modules.split(",")
    figures = finetune(Run(args.run, args.runs_dir).path, args.model, args.data, args.out, args.full, args.lora_r,
                       args.lora_alpha, args.lora_dropout, targets, args.lr, args.max_steps, args.batch_size,
                       args.grad_accum, args.max_length, args.eval_steps, args.warmup_steps, args.mask_results,
                       args.merge, args.resume, args.bf16, args.gradient_checkpointing, args.seed,
                       progress=not args.no_progress)
    ppl = figures["best_perplexity"]
    print(f"finetuned {figures['steps']} steps; held-out perplexity {ppl:.2f}" if ppl else
          f"finetuned {figures['steps']} steps (no validation split)")
    print(f"saved: {figures.get('adapter') or figures.get('model')}" +
          (f" and {figures['merged']}" if "merged" in figures else ""))
    return figures


def add_commands(sub, command) -> None:
    p = command(sub, "finetune", cmd_finetune, "finetune a model on the augmented corpus (LoRA or full)")
    p.epilog = GPU_SETTINGS
    p.add_argument("--run", required=True, help="run name: reads RUNS_DIR/NAME/augmented, writes RUNS_DIR/NAME/model")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--model", default=DEFAULT_LM, help="base model: hub id, local folder, .gguf file or embedded alias")
    p.add_argument("--data", help="augmented corpus folder (default: RUNS_DIR/NAME/augmented)")
    p.add_argument("--out", help="output folder (default: RUNS_DIR/NAME/model)")
    p.add_argument("--full", action="store_true", help="full finetuning instead of LoRA")
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--lora-alpha", type=int, default=16)
    p.add_argument("--lora-dropout", type=float, default=0.05)
    p.add_argument("--target-modules", default="all-linear", help="comma-separated module names, or all-linear")
    p.add_argument("--lr", type=float, help="learning rate (default 2e-4 LoRA, 1e-5 full)")
    p.add_argument("--max-steps", type=int, default=30, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    p.add_argument("--max-length", type=int, default=256, help="tokens per document (longer ones are cut)")
    p.add_argument("--eval-steps", type=int, default=10, help="evaluate and checkpoint every N steps")
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--mask-results", action="store_true", help="no loss on tool result tokens")
    p.add_argument("--merge", action="store_true", help="also save the base model with the adapter merged in")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint (else start over)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    p.add_argument("--gradient-checkpointing", action="store_true", help="trade compute for memory (large models)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
