"""Shared fixtures: a tiny randomly initialised Llama on the real default tokenizer."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
# CI uses the real tokenizer; tests never reach a hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tiny_llama(vocab_size: int, seed: int = 0, layers: int = 2):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                      tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).eval()
    # a wider spread of logits than the default init, so losses differ visibly between variants
    with torch.no_grad():
        model.lm_head.weight.mul_(40)
    return model


def favouring_llama(tokenizer, favoured: list[str], seed: int = 0):
    """A tiny Llama that, whatever the input, samples almost only the `favoured` tokens.

    Hidden dimension 0 carries a large constant from every embedding through the residual
    stream, and only the favoured tokens' LM-head rows read it. Random tiny models never close
    a call; this one writes calls like "12 + 3) →" so every pipeline stage has work to do.
    """
    import torch
    model = tiny_llama(len(tokenizer), seed)
    ids = sorted({tokenizer.encode(t, add_special_tokens=False)[0] for t in favoured})
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 30.0
        model.lm_head.weight[:, 0] = 0.0
        model.lm_head.weight[ids, 0] = 3.0
    return model


CALL_TOKENS = ["1", "2", " +", ")", " →"]


@pytest.fixture(scope="session")
def tokenizer():
    from toolformer.lm.loading import load_tokenizer
    return load_tokenizer("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_backend(tokenizer):
    from toolformer.lm.hf import HFBackend
    return HFBackend(tiny_llama(len(tokenizer)), tokenizer, max_batch_tokens=256, max_sample_tokens=2048)


@pytest.fixture(scope="session")
def real_backend():
    """The real default model (SmolLM2-135M-Instruct), loaded once per test session."""
    from toolformer.lm.hf import HFBackend
    return HFBackend.from_ref("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def favouring_model_dir(tmp_path_factory, tokenizer):
    """A folder holding a favouring tiny Llama and the real tokenizer: `--model <folder>` for
    commands run in other processes (the CLI, Ray workers)."""
    folder = tmp_path_factory.mktemp("favouring-model")
    favouring_llama(tokenizer, CALL_TOKENS).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A folder holding a one-layer tiny Llama and the real tokenizer (finetuning, evaluation)."""
    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_llama(len(tokenizer), layers=1).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def sigkill_when(proc, ready, timeout: float = 300, poll: float = 0.02) -> bool:
    """SIGKILL `proc` as soon as `ready()` is true; False if it finished (or the timeout passed) first."""
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(poll)
    return False


@contextmanager
def lock_held_elsewhere(output: Path, run_name: str, stage: str):
    """Another process holding the lock on `output`, as a running stage does; yields its PID."""
    code = ("import time\nfrom pathlib import Path\nfrom toolformer.run.lock import exclusive\n"
            f"from toolformer.run.manifest import Run\nwith exclusive(Path({str(output)!r}), Run({run_name!r}), "
            f"{stage!r}):\n    print('held', flush=True)\n    time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()
