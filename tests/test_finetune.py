"""Finetuning on a built corpus with a tiny Llama: loss goes down, resume continues exactly (also past a
checkpoint a kill cut short), masking, and two data-parallel processes that write the outputs once."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from test_build import scored
from toolformer.corpus.build import build_augmented
from toolformer.training.finetune import PadCollator, _trainer_class, finetune, label_loss, tokenize
from toolformer.lm.loading import load_model
from toolformer.run.records import dumps
from toolformer.corpus.syntax import TOOLFORMER


@pytest.fixture(scope="module")
def tiny_dir(tiny_model_dir):
    return str(tiny_model_dir)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """12 documents with one Calculator call each, built (2 held out)."""
    path = tmp_path_factory.mktemp("run")
    (path / "manifest.json").write_text(json.dumps({"config": {"syntax": "toolformer"}}))
    docs, calls = [], []
    for i in range(12):
        a, b = 10 + i, 40 + 3 * i
        text = f"Of {b} people, {a} passed: {round(100 * a / b)}%."
        docs.append({"id": f"d{i}", "text": text, "meta": {}})
        calls.append(scored(f"d{i}", "calculator", text.index(": ") + 1, f"{a} / {b}", f"{a / b:.2f}", 1.0))
    (path / "documents.jsonl").write_text("".join(dumps(d) + "\n" for d in docs))
    (path / "calculator").mkdir()
    (path / "calculator" / "scored.jsonl").write_text("".join(dumps(c) + "\n" for c in calls))
    build_augmented(path, heldout=1 / 6)
    return path


SETTINGS = dict(max_steps=4, batch_size=4, eval_steps=2, max_length=64, lr=5e-2, progress=False)


def mean_loss(model, tokenizer, texts) -> float:
    rows = tokenize(texts, tokenizer, TOOLFORMER, 64, False, {"truncated": 0, "masked_tokens": 0})
    batch = PadCollator(tokenizer.pad_token_id)(rows)
    with torch.no_grad():
        return model(**batch).loss.item()


def test_training_lowers_the_loss_and_saves_adapter_and_merged(run, tiny_dir, tmp_path):
    figures = finetune(run, model=tiny_dir, out_dir=tmp_path / "m", merge=True, **SETTINGS)
    assert figures["steps"] == 4 and figures["train_documents"] == 10 and figures["validation_documents"] == 2
    assert figures["best_checkpoint"] in ("checkpoint-2", "checkpoint-4") and figures["tokens_per_second"] > 0
    texts = [json.loads(line)["text"] for line in open(run / "augmented" / "train.jsonl")]
    base, tok = load_model(tiny_dir)
    tuned, _ = load_model(None, figures["adapter"])  # the base model is recorded beside the adapter
    before, after = mean_loss(base, tok, texts), mean_loss(tuned, tok, texts)
    assert after < before - 0.5
    merged, _ = load_model(figures["merged"])
    assert mean_loss(merged, tok, texts) == pytest.approx(after, abs=1e-4)


def test_the_command_takes_a_corpus_and_an_output_folder_without_a_run(run, tiny_dir, tmp_path, capsys):
    from toolformer.cli import main
    out = tmp_path / "model"
    flags = ["--model", tiny_dir, "--max-steps", "1", "--batch-size", "4", "--max-length", "64", "--no-progress"]
    assert main(["finetune", "--data", str(run / "augmented"), *flags]) == 2
    assert "finetune needs --run (its augmented corpus and model folder), or both --data and --out" \
        in capsys.readouterr().err
    assert main(["finetune", "--data", str(run / "augmented"), "--out", str(out), *flags]) == 0
    assert (out / "adapter" / "adapter_config.json").exists() and json.loads((out / "finetune.json").read_text())["steps"] == 1
    assert "finetuned 1 steps on 10 train + 2 validation documents; held-out perplexity" in capsys.readouterr().out


def test_several_built_corpora_train_together_in_one_syntax(run, tiny_dir, tmp_path):
    """--data A,B: both corpora's train and validation documents, side by side; one call syntax."""
    from toolformer.errors import UserValueError
    other = tmp_path / "other"
    shutil.copytree(run / "augmented", other)
    figures = finetune(run, model=tiny_dir, out_dir=tmp_path / "m", data=f"{run / 'augmented'},{other}",
                       **{**SETTINGS, "max_steps": 1})
    assert (figures["train_documents"], figures["validation_documents"]) == (20, 4)
    built = json.loads((other / "build.json").read_text())
    (other / "build.json").write_text(json.dumps({**built, "syntax": "hw3"}))
    with pytest.raises(UserValueError, match="different call syntaxes"):
        finetune(run, model=tiny_dir, out_dir=tmp_path / "m2", data=f"{run / 'augmented'},{other}", **SETTINGS)


def test_a_corpus_without_train_documents_is_one_clear_error(tmp_path, tiny_dir, capsys):
    from toolformer.cli import main
    from test_build import P29, write_run
    run = write_run(tmp_path / "r", {"calculator": [scored("a", "calculator", P29, "400 / 1400", "0.29", 0.1,
                                                           kept=False)]})
    assert build_augmented(run)["train"] == 0  # the filter kept no call
    assert main(["finetune", "--run", "r", "--runs-dir", str(tmp_path), "--model", tiny_dir, "--max-steps", "1",
                 "--no-progress"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {run / 'augmented'} holds no train documents: no document of its run has a kept call "
        f"(see `toolformer report`)"]


def test_resume_continues_where_it_stopped(run, tiny_dir, tmp_path):
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    class StopAfterTwo(TrainerCallback):  # a run killed after its step-2 checkpoint
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step == 2

    straight = finetune(run, model=tiny_dir, out_dir=tmp_path / "a", **SETTINGS)
    cut = finetune(run, model=tiny_dir, out_dir=tmp_path / "b", callbacks=[StopAfterTwo()], **SETTINGS)
    assert cut["steps"] == 2
    # a kill -9 while checkpoint 3 was being written: weights there, no trainer_state.json yet
    half = tmp_path / "b" / "checkpoints" / "checkpoint-3"
    shutil.copytree(tmp_path / "b" / "checkpoints" / "checkpoint-2", half)
    (half / "trainer_state.json").unlink()
    resumed = finetune(run, model=tiny_dir, out_dir=tmp_path / "b", resume=True, **SETTINGS)
    assert (straight["steps"], resumed["steps"], resumed["resumed_from"]) == (4, 4, "checkpoint-2")
    assert not half.exists()
    assert resumed["tokens_seen"] == straight["tokens_seen"] and resumed["tokens_per_second"] > 0
    a = load_file(tmp_path / "a" / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    fresh = load_file(tmp_path / "b" / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors")
    assert not all(torch.allclose(a[k], fresh[k]) for k in a)  # steps 3-4 did change the weights


def test_two_passes_of_four_documents_take_the_step_one_pass_of_eight_takes(run, tiny_dir, tmp_path):
    """The default micro-batches (4 documents a pass, 2 passes a step) only lower the memory: the
    first optimizer step moves the weights exactly as one pass over the same 8 documents does."""
    from safetensors.torch import load_file
    one = {**SETTINGS, "max_steps": 1, "eval_steps": 1, "lora_dropout": 0.0}
    weights, losses = {}, {}
    for name, batching in (("8x1", {"batch_size": 8, "grad_accum": 1}), ("4x2", {"batch_size": 4, "grad_accum": 2})):
        figures = finetune(run, model=tiny_dir, out_dir=tmp_path / name, **{**one, **batching})
        assert figures["tokens_seen"] == sum(sorted(map(len, _train_rows(run, tiny_dir)), reverse=True)[:8])
        weights[name] = load_file(tmp_path / name / "adapter" / "adapter_model.safetensors")
        losses[name] = figures["first_train_loss"]
    # the loss of the step is the mean over its 8 documents' label tokens, not a sum of two means
    assert losses["4x2"] == pytest.approx(losses["8x1"], rel=1e-5)
    a, b = weights["8x1"], weights["4x2"]
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    half = finetune(run, model=tiny_dir, out_dir=tmp_path / "4x1", **{**one, "batch_size": 4, "grad_accum": 1})
    c = load_file(tmp_path / "4x1" / "adapter" / "adapter_model.safetensors")
    assert half["tokens_seen"] < figures["tokens_seen"] and not all(torch.allclose(a[k], c[k], atol=1e-6) for k in a)


def _train_rows(run, tiny_dir) -> list[list[int]]:
    from toolformer.lm.loading import load_tokenizer
    texts = [json.loads(line)["text"] for line in open(run / "augmented" / "train.jsonl")]
    rows = tokenize(texts, load_tokenizer(tiny_dir), TOOLFORMER, 64, False, {"truncated": 0, "masked_tokens": 0})
    return [r["input_ids"] for r in rows]


def loss_case(vocab: int = 300):
    """A tiny Llama with LoRA on every linear layer, and a right-padded batch whose labels skip the
    start token, the padding and a masked stretch (as tokenize writes them)."""
    from peft import LoraConfig, get_peft_model
    from conftest import tiny_llama
    from toolformer.lm.loading import peft_wrapping
    with peft_wrapping():
        lm = get_peft_model(tiny_llama(vocab, seed=3), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                                 target_modules="all-linear", task_type="CAUSAL_LM"))
    g = torch.Generator().manual_seed(0)
    rows = [torch.randint(1, vocab, (n,), generator=g).tolist() for n in (9, 23, 4, 17)]
    batch = PadCollator(0)([{"input_ids": r, "labels": [-100] + r[1:]} for r in rows])
    batch["labels"][1, 5:11] = -100
    return lm, batch


@pytest.mark.parametrize("num_items", [None, 57])
def test_the_label_position_loss_and_its_gradients_equal_the_models_own(num_items):
    lm, batch = loss_case()
    kwargs = {} if num_items is None else {"num_items_in_batch": num_items}
    want = lm(**batch, **kwargs).loss  # transformers' own causal-LM cross-entropy over [B, T, V] logits
    want.backward()
    want_grads = {n: p.grad.clone() for n, p in lm.named_parameters() if p.requires_grad}
    lm.zero_grad()
    hidden = lm.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
    for rows in (3, 256):  # several LM-head chunks, and one
        got = label_loss(hidden, batch["labels"], lm.get_output_embeddings(), num_items, rows=rows)
        assert abs(got.item() - want.item()) < 1e-6
    got.backward()
    assert want_grads and all(torch.allclose(p.grad, want_grads[n], atol=1e-6, rtol=1e-5)
                              for n, p in lm.named_parameters() if p.requires_grad)


def test_the_trainer_takes_the_label_position_loss_without_full_logits(tmp_path):
    from transformers import TrainingArguments
    lm, batch = loss_case()
    trainer = _trainer_class()(model=lm, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True,
                                                                report_to="none"))
    loss, outputs = trainer.compute_loss(lm, dict(batch), return_outputs=True)
    assert abs(loss.item() - lm(**batch).loss.item()) < 1e-6
    assert outputs.logits.shape[1] == 1  # the LM head ran on one position per row, not on all of them
    assert torch.equal(label_loss(torch.zeros(2, 3, 32), torch.full((2, 3), -100), lm.get_output_embeddings()),
                       torch.tensor(0.0))  # a batch without a label adds nothing


def test_mask_results_removes_exactly_the_result_tokens(tokenizer):
    text = "400 passed [Calculator(400 / 1400) → 0.29] 29%, [Calendar() → Today is May 1, 2020.] now"
    counts = {"truncated": 0, "masked_tokens": 0}
    (row,) = tokenize([text], tokenizer, TOOLFORMER, 512, True, counts)
    masked = [t for t, label in zip(row["input_ids"], row["labels"]) if label == -100]
    # [0] is the start token; a token that overlaps a result is masked whole (" Today", ".]")
    assert tokenizer.decode(masked[1:]) == "0.29 Today is May 1, 2020.]"
    assert masked[0] == row["input_ids"][0] and counts["masked_tokens"] == len(masked) - 1
    (plain,) = tokenize([text], tokenizer, TOOLFORMER, 512, False, counts)
    assert plain["labels"][1:] == plain["input_ids"][1:] and plain["input_ids"][-1] == tokenizer.eos_token_id


def test_two_data_parallel_processes_write_the_outputs_once(run, tiny_dir, tmp_path):
    """`torchrun --nproc_per_node 2` on CPU (gloo): both processes train, only the first saves and logs."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # "--" ends torchrun's own flags: it would take --run for an abbreviation of its --run-path
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "toolformer.cli", "--", "finetune",
         "--runs-dir", str(run.parent), "--run", run.name, "--model", tiny_dir, "--out", str(out),
         "--max-steps", "2", "--batch-size", "2", "--eval-steps", "2", "--max-length", "64", "--no-progress",
         "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("finetuned 2 steps") == 1  # the first process alone reports
    assert "'loss'" not in proc.stdout  # no dict of figures per logging step: they are in finetune.json
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["steps"] == 2 and figures["tokens_seen"] > 0
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    assert json.loads((out / "finetune.json").read_text())["steps"] == 2


def test_a_finetune_killed_with_sigkill_resumes_from_its_last_checkpoint(run, tiny_dir, tmp_path):
    import signal
    import time
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "toolformer.cli", "finetune", "--runs-dir", str(run.parent), "--run", run.name,
           "--model", tiny_dir, "--out", str(out), "--max-steps", "40", "--batch-size", "4", "--eval-steps", "4",
           "--max-length", "64", "--lr", "0.05", "--no-progress", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    first = out / "checkpoints" / "checkpoint-8" / "trainer_state.json"
    deadline = time.time() + 240
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists() and not (out / "adapter").exists()  # killed mid-run, before the end
    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    step = int(figures["resumed_from"].split("-")[1])
    assert step >= 8 and figures["steps"] == 40 and (out / "adapter" / "adapter_config.json").exists()
