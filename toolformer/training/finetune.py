"""Stage 5, finetune: causal-LM training on the augmented corpus (transformers Trainer + peft LoRA).

    toolformer finetune --run NAME [--model REF] [--full] [--mask-results] [--resume] [--merge]

The loss covers the whole augmented text, calls and results included (the paper); --mask-results
leaves the result tokens (between the arrow and the end marker) out of it, since at inference the
tool writes them. The held-out split's perplexity is evaluated every --eval-steps and the best
checkpoint is the one kept (paper). Writes <run>/model/: adapter/ (LoRA; or model/ with --full),
merged/ with --merge, checkpoints/ (--resume continues from the last complete one), finetune.json.
Under `torchrun --nproc_per_node N` the Trainer runs data-parallel (gloo on CPU); only the first
process writes the outputs and logs.

Defaults finish in minutes on a CPU with the embedded 135M model: LoRA r=8 on all linear layers,
lr 2e-4, 8 documents a step (4 per forward pass), 256 tokens, 30 steps (about 40k tokens; we
measured ~55 tokens/s on one busy core, ~130 on two idle ones). Memory: the loss is taken at the
label positions only, the LM head a chunk at a time (no [batch, length, vocab] logits),
activations are recomputed in the backward pass (checkpointing, on by default) and a step's
documents go 4 at a time: bench/finetune_memory.py measures the peaks (8.6 GB naive, 2.6 GB ours
on the demo's corpora).
"""
from __future__ import annotations

import json
import math
import re
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from toolformer.config import FinetuneSettings
from toolformer.corpus.syntax import CallSyntax, get_syntax
from toolformer.errors import UserFileNotFound, UserValueError
from toolformer.lm.loading import FINETUNE_INFO, default_device, fresh_causal_lm, load_tokenizer, peft_wrapping
from toolformer.lm.tokens import padded, sequence_start


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
        ids, mask = padded([r["input_ids"] for r in rows], self.pad_id)
        labels, _ = padded([r["labels"] for r in rows], -100)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


LOSS_ROWS = 256  # label positions per LM-head call: [rows, vocab] fp32 logits exist for one chunk at a time


def _chunk_loss(head, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # fp32 logits as the model's own loss takes them (under bf16 autocast too)
    return torch.nn.functional.cross_entropy(head(hidden).float(), targets, reduction="sum")


def label_loss(hidden: torch.Tensor, labels: torch.Tensor, head, num_items: int | torch.Tensor | None = None,
               rows: int = LOSS_ROWS) -> torch.Tensor:
    """The causal-LM cross-entropy of `labels` given the final hidden states [batch, length, dim],
    equal to the model's own loss (the sum over label positions / num_items, else their mean).

    The LM head runs on the positions with a label only, `rows` at a time, each chunk recomputed
    in the backward pass instead of kept: the [batch, length, vocab] fp32 logits, their softmax and
    its gradient (four copies, 1.6 GB for 8 × 256 tokens of a 49k vocabulary) never exist."""
    from torch.utils.checkpoint import checkpoint
    keep = labels[:, 1:] != -100  # position t predicts token t + 1
    states, targets = hidden[:, :-1][keep], labels[:, 1:][keep]
    if not len(targets):
        return hidden.sum() * 0.0  # no label in the batch: zero, still attached to the graph
    total = sum(checkpoint(_chunk_loss, head, states[a:a + rows], targets[a:a + rows], use_reentrant=False)
                for a in range(0, len(targets), rows))
    return total / (num_items if num_items is not None else len(targets))


def _trainer_class():
    from transformers import Trainer

    class LabelLossTrainer(Trainer):
        """The Trainer with label_loss in place of the model's loss. The model still runs through
        its wrappers (peft, DDP), its LM head on the last position alone; a hook on its decoder
        takes the final hidden states."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            lm = self.accelerator.unwrap_model(model)
            captured = []
            hook = lm.get_decoder().register_forward_hook(lambda module, args, out: captured.append(out[0]))
            try:
                outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                logits_to_keep=1, use_cache=False)
            finally:
                hook.remove()
            loss = label_loss(captured[0], inputs["labels"], lm.get_output_embeddings(), num_items_in_batch)
            return (loss, outputs) if return_outputs else loss

    return LabelLossTrainer


def _checkpoint_step(path: Path) -> int:
    return int(re.fullmatch(r"checkpoint-(\d+)", path.name).group(1))


def _is_complete(checkpoint: Path) -> bool:
    """The Trainer writes trainer_state.json last: a checkpoint without a readable one was cut by a kill."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
        return True
    except (OSError, ValueError):
        return False


def resume_point(checkpoints: Path, resume: bool) -> str | None:
    """The checkpoint to continue from: with `resume` the last complete one (newer, half-written
    ones are removed), else None, after clearing old checkpoints (training starts over)."""
    if not resume:
        shutil.rmtree(checkpoints, ignore_errors=True)
        return None
    found = [p for p in checkpoints.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name)]
    for checkpoint in sorted(found, key=_checkpoint_step, reverse=True):
        if _is_complete(checkpoint):
            return str(checkpoint)
        shutil.rmtree(checkpoint, ignore_errors=True)
    return None


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


def _quiet_logs(trainer) -> None:
    """The Trainer prints a dict of figures every logging step (PrinterCallback, or ProgressCallback
    under its bar): the bar shows the loss instead, and finetune.json keeps the figures."""
    from transformers import PrinterCallback, ProgressCallback

    class LossOnTheBar(ProgressCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            super().on_train_begin(args, state, control, **kwargs)
            if self.training_bar is not None:
                self.training_bar.set_description("finetune")
                self.training_bar.unit = "step"

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and self.training_bar is not None and "loss" in (logs or {}):
                self.training_bar.set_postfix(loss=f"{float(logs['loss']):.3f}")

    trainer.remove_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(LossOnTheBar())


def _load_corpus(folders: list[Path], tokenizer, s: FinetuneSettings, counts: dict):
    """(syntax name, train dataset, validation dataset or None) of one or more built augmented
    corpora (e.g. a math run's and a facts run's), their splits side by side; one call syntax."""
    from datasets import Dataset, load_from_disk

    syntaxes, train_texts, val_texts = {}, [], []
    for data in folders:
        if not (data / "dataset_dict.json").exists():
            raise UserFileNotFound(f"{data} is not an augmented corpus: run `toolformer build` on the run first")
        built = json.loads((data / "build.json").read_text()) if (data / "build.json").exists() else {}
        syntaxes[str(data)] = built.get("syntax", "toolformer")
        # build.json's count, before loading: a split that an earlier build saved empty does not load
        if built.get("train") == 0:
            raise UserValueError(f"{data} holds no train documents: no document of its run has a kept call "
                                 f"(see `toolformer report`)")
        splits = load_from_disk(str(data))
        train_texts += splits["train"]["text"]
        val_texts += splits["validation"]["text"] if "validation" in splits else []
    if len(set(syntaxes.values())) > 1:
        raise UserValueError("the corpora are written in different call syntaxes: "
                             + ", ".join(f"{k} ({v})" for k, v in syntaxes.items()))
    syntax_name = next(iter(syntaxes.values()))
    syntax = get_syntax(syntax_name)

    def rows(texts):
        return Dataset.from_list(tokenize(list(texts), tokenizer, syntax, s.max_length, s.mask_results, counts))

    return syntax_name, rows(train_texts), rows(val_texts) if val_texts else None


def _training_args(s: FinetuneSettings, checkpoints: Path, lr: float, validate: bool):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(checkpoints), max_steps=s.max_steps, per_device_train_batch_size=s.batch_size,
        per_device_eval_batch_size=s.batch_size, gradient_accumulation_steps=s.grad_accum, learning_rate=lr,
        warmup_steps=s.warmup_steps, lr_scheduler_type="linear", weight_decay=0.0,
        eval_strategy="steps" if validate else "no", eval_steps=s.eval_steps,
        save_strategy="steps", save_steps=s.eval_steps, save_total_limit=2,
        load_best_model_at_end=validate, metric_for_best_model="eval_loss", greater_is_better=False,
        logging_steps=max(1, min(10, s.eval_steps)), report_to="none", seed=s.seed, data_seed=s.seed,
        bf16=s.bf16, include_num_input_tokens_seen="non_padding", disable_tqdm=not s.progress,
        remove_unused_columns=False, dataloader_pin_memory=torch.cuda.is_available(),
        # batches of similar lengths: short problems are not padded to a long solution's length
        # (2x fewer tokens per step on a seed of ASDiv problems and GSM8K solutions)
        train_sampling_strategy="group_by_length",
        use_cpu=default_device() == "cpu",  # also what makes torchrun on CPU data-parallel (gloo)
        ddp_find_unused_parameters=False,  # every trainable weight takes part in every step
        **_checkpointing_args(s.gradient_checkpointing))


def _checkpointing_args(on: bool) -> dict:
    """Activation checkpointing under the argument's name in this transformers (activation_checkpointing,
    formerly gradient_checkpointing, which now warns that it is deprecated); nothing when off."""
    from transformers import TrainingArguments
    if not on:
        return {}
    name = "activation" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__ else "gradient"
    return {f"{name}_checkpointing": True, f"{name}_checkpointing_kwargs": {"use_reentrant": False}}


def _save(trainer, tokenizer, out_dir: Path, info: dict, s: FinetuneSettings) -> dict:
    """Write the adapter (or full model) and, with --merge, the merged model; return their paths."""
    final = out_dir / ("model" if s.full else "adapter")
    trainer.model.save_pretrained(final)
    tokenizer.save_pretrained(final)
    # a full model stands alone; an adapter names its base model
    (final / FINETUNE_INFO).write_text(json.dumps(info if not s.full else {**info, "base_model": str(final)}, indent=2))
    saved = {"model" if s.full else "adapter": str(final)}
    if s.merge and not s.full:
        merged_dir = out_dir / "merged"
        trainer.model.merge_and_unload().save_pretrained(merged_dir)
        tokenizer.save_pretrained(merged_dir)
        (merged_dir / FINETUNE_INFO).write_text(json.dumps({**info, "base_model": str(merged_dir)}, indent=2))
        saved["merged"] = str(merged_dir)
    return saved


def finetune(run_dir: str | Path, settings: FinetuneSettings | None = None, callbacks: list | None = None,
             **fields) -> dict:
    """Finetune a model on the run's augmented corpus; return figures (losses, perplexity,
    throughput, paths). `settings` (or FinetuneSettings fields as keyword arguments) say how."""
    from transformers import set_seed

    s = replace(settings or FinetuneSettings(), **fields)
    run_dir = Path(run_dir)
    data = [Path(d) for d in s.data.split(",")] if s.data else [run_dir / "augmented"]
    out_dir = Path(s.out_dir or run_dir / "model")
    tokenizer = load_tokenizer(s.model)
    counts = {"truncated": 0, "masked_tokens": 0}
    syntax_name, train, val = _load_corpus(data, tokenizer, s, counts)

    lm = fresh_causal_lm(s.model)
    set_seed(s.seed)  # the LoRA weights start random: the same seed, the same run
    if not s.full:
        from peft import LoraConfig, get_peft_model
        targets = s.target_modules if s.target_modules == "all-linear" else s.target_modules.split(",")
        with peft_wrapping():
            lm = get_peft_model(lm, LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout,
                                               target_modules=targets, task_type="CAUSAL_LM"))
    lr = s.lr if s.lr is not None else (1e-5 if s.full else 2e-4)
    checkpoints = out_dir / "checkpoints"
    args = _training_args(s, checkpoints, lr, val is not None)  # under torchrun: joins the process group
    with args.main_process_first(local=False, desc="checkpoints"):
        last = resume_point(checkpoints, s.resume)
    timer = _step_timer()
    trainer = _trainer_class()(model=lm, args=args, train_dataset=train, eval_dataset=val,
                      data_collator=PadCollator(tokenizer.pad_token_id), callbacks=[timer, *(callbacks or [])])
    _quiet_logs(trainer)
    result = trainer.train(resume_from_checkpoint=last)
    state = trainer.state

    info = {"base_model": s.model, "syntax": syntax_name, "method": "full" if s.full else "lora",
            "mask_results": s.mask_results, "data": ",".join(map(str, data))}
    train_losses = [h["loss"] for h in state.log_history if "loss" in h]
    best = state.best_metric
    figures = {
        "run": str(run_dir), "out": str(out_dir), "method": info["method"], "syntax": syntax_name,
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
        "main_process": trainer.is_world_process_zero(),
    }
    if figures["main_process"]:  # data-parallel runs: one writer
        out_dir.mkdir(parents=True, exist_ok=True)
        figures.update(_save(trainer, tokenizer, out_dir, info, s))
        (out_dir / "finetune.json").write_text(json.dumps(
            {**figures, "settings": {**asdict(s), "lr": lr}}, indent=2, default=str) + "\n")
    return figures
