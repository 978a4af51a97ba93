"""Shared fixtures: a tiny randomly initialised Llama on the real default tokenizer."""
from __future__ import annotations

import os
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


@pytest.fixture(scope="session")
def tokenizer():
    from toolformer.models import load_tokenizer
    return load_tokenizer("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_backend(tokenizer):
    from toolformer.lm import HFBackend
    return HFBackend(tiny_llama(len(tokenizer)), tokenizer, max_batch_tokens=256, max_sample_tokens=2048)
