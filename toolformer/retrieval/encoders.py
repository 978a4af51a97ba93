"""Texts -> L2-normalised vectors: a sentence-transformers bi-encoder, or a causal LM as embedder.

The LLM embedder appends EOS and pools the last token (E5, Wang et al. 2024) or the mean of all
tokens; queries get the E5 instruction "Instruct: {task}\\nQuery: {q}". A trained retriever folder
holds the weights plus retriever.json (encoder type, pooling, instruction, max length).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from toolformer.assets import DEFAULT_EMBEDDER, embedded_path
from toolformer.config import DEFAULT_MAX_LENGTH, POOLINGS
from toolformer.errors import UserValueError

DEFAULT_INSTRUCTION = "Given a text, retrieve the tool that helps to continue or answer it"
CONFIG_FILE = "retriever.json"


def pool_hidden(hidden, mask, pooling: str):
    """(batch, seq, dim) hidden states -> (batch, dim): the last non-pad token, or the mean over
    non-pad tokens. The last index is found from the mask, so left and right padding both work."""
    import torch
    if pooling == "last":
        last = mask.shape[1] - 1 - mask.flip(1).argmax(1)
        return hidden[torch.arange(len(hidden), device=hidden.device), last]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)


def _fingerprint(folder: Path, extra: str) -> str:
    """Cache key of a model folder: its weight files' names, sizes and mtimes, plus `extra`."""
    digest = hashlib.sha256(f"{folder.resolve()}\0{extra}".encode())
    for f in sorted(folder.rglob("*")):
        if f.suffix in (".safetensors", ".bin", ".json"):
            st = f.stat()
            digest.update(f"{f.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


class Encoder:
    """Texts -> L2-normalised vectors. `embed` keeps gradients (training); `encode` does not."""
    kind = ""

    def __init__(self, model, instruction: str | None, max_length: int):
        self.model, self.instruction, self.max_length = model, instruction, max_length
        self.fingerprint: str | None = None  # embedding-cache key; None once the weights change

    @property
    def device(self):
        return next(self.model.parameters()).device

    def embed(self, texts: Sequence[str], is_query: bool):
        import torch.nn.functional as F
        if is_query and self.instruction:
            texts = [f"Instruct: {self.instruction}\nQuery: {t}" for t in texts]
        return F.normalize(self._forward(list(texts)).float(), dim=-1)

    def encode(self, texts: Sequence[str], is_query: bool, batch_size: int = 32) -> np.ndarray:
        import torch
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        was_training = self.model.training
        self.model.eval()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad less
        chunks = []
        with torch.inference_mode():
            for i in range(0, len(order), batch_size):
                chunks.append(self.embed([texts[j] for j in order[i:i + batch_size]], is_query).cpu().numpy())
        self.model.train(was_training)
        out = np.empty((len(texts), chunks[0].shape[1]), dtype=np.float32)
        out[order] = np.concatenate(chunks)
        return out

    def _forward(self, texts: list[str]):
        raise NotImplementedError

    def save(self, folder: Path) -> None:
        raise NotImplementedError

    def config(self) -> dict:
        return {"encoder": self.kind, "instruction": self.instruction, "max_length": self.max_length}


class SentenceEncoder(Encoder):
    kind = "sentence-transformers"

    def __init__(self, folder: str, instruction: str | None = None, max_length: int = DEFAULT_MAX_LENGTH):
        from sentence_transformers import SentenceTransformer
        from toolformer.lm.loading import default_device
        model = SentenceTransformer(folder, device=default_device())
        model.max_seq_length = max_length
        super().__init__(model, instruction, max_length)
        self.fingerprint = _fingerprint(Path(folder), json.dumps(self.config()))

    def _forward(self, texts: list[str]):
        from sentence_transformers.util import batch_to_device
        # `preprocess` replaced `tokenize` in sentence-transformers 5.2
        features = getattr(self.model, "preprocess", self.model.tokenize)(texts)
        return self.model(batch_to_device(features, self.device))["sentence_embedding"]

    def save(self, folder: Path) -> None:
        self.model.save(str(folder), create_model_card=False)


class LLMEncoder(Encoder):
    """A decoder LM as embedder: text + EOS, then last-token or mean pooling of the final layer."""
    kind = "llm"

    def __init__(self, model, tokenizer, pooling: str = "last", instruction: str | None = None,
                 max_length: int = DEFAULT_MAX_LENGTH):
        super().__init__(model, instruction, max_length)
        self.tokenizer, self.pooling = tokenizer, pooling
        if pooling not in POOLINGS:
            raise UserValueError(f"unknown pooling {pooling!r}: use {' or '.join(POOLINGS)}")

    @classmethod
    def load(cls, ref: str, **kwargs) -> LLMEncoder:
        from transformers import AutoModel
        from toolformer.lm.loading import ModelNotFound, default_device, default_dtype, load_tokenizer, local_folder
        folder = local_folder(ref)  # first: it says clearly when a path `ref` is not there
        if Path(folder).is_dir() and not (Path(folder) / "config.json").is_file():
            # transformers would fail on the tokenizer with an error that names neither
            raise ModelNotFound(f"model folder {ref!r} holds no model: it has no config.json")
        tokenizer = load_tokenizer(ref)  # a hub id that cannot be reached fails here, before the weights
        device = default_device()
        model = AutoModel.from_pretrained(folder, dtype=default_dtype(device)).to(device).eval()
        encoder = cls(model, tokenizer, **kwargs)
        encoder.fingerprint = _fingerprint(Path(folder), json.dumps(encoder.config()))
        return encoder

    def add_lora(self, r: int, top_layers: int | None = None) -> None:
        """LoRA on every linear layer; with `top_layers`, only the adapters of the last blocks train,
        so the backward pass stops there (the main cost of training on a CPU)."""
        from peft import LoraConfig, get_peft_model
        self.model = get_peft_model(self.model, LoraConfig(r=r, lora_alpha=2 * r, target_modules="all-linear"))
        if top_layers:
            first = self.model.config.num_hidden_layers - top_layers
            for name, param in self.model.named_parameters():
                block = re.search(r"\.(\d+)\.", name)  # layers.12.self_attn... / h.3.attn...
                if param.requires_grad and block and int(block.group(1)) < first:
                    param.requires_grad = False

    def _forward(self, texts: list[str]):
        from toolformer.lm.tokens import padded
        tok = self.tokenizer
        ids = tok(texts, add_special_tokens=False, truncation=True, max_length=self.max_length - 1)["input_ids"]
        input_ids, mask = padded([x + [tok.eos_token_id] for x in ids], tok.pad_token_id,
                                 left=tok.padding_side == "left")
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        # positions count real tokens only, so a left-padded text embeds as it does alone (this
        # matters for absolute position embeddings; rotary ones are shift-invariant anyway)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        hidden = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions).last_hidden_state
        return pool_hidden(hidden, mask, self.pooling)

    def save(self, folder: Path) -> None:
        model = self.model.merge_and_unload() if hasattr(self.model, "merge_and_unload") else self.model
        model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    def config(self) -> dict:
        return {**super().config(), "pooling": self.pooling}


def load_encoder(ref: str, pooling: str | None = None, instruction: str | None = None,
                 max_length: int | None = None) -> Encoder:
    """A trained retriever folder (retriever.json), a sentence-transformers model, or a causal LM.
    Arguments left None take the folder's recorded value, else the encoder's default."""
    folder = Path(ref) if ref != DEFAULT_EMBEDDER else embedded_path(DEFAULT_EMBEDDER)
    config = folder / CONFIG_FILE
    saved = json.loads(config.read_text()) if config.is_file() else {}
    if saved and saved.get("encoder") not in (SentenceEncoder.kind, LLMEncoder.kind):
        raise UserValueError(f"{config}: unknown encoder {saved.get('encoder')!r}")
    sentence = saved.get("encoder") == SentenceEncoder.kind or (folder / "modules.json").is_file()
    if instruction is None:  # sentence-transformers models are not instruction-tuned: none by default
        instruction = saved.get("instruction") if saved else (None if sentence else DEFAULT_INSTRUCTION)
    max_length = max_length or saved.get("max_length", DEFAULT_MAX_LENGTH)
    if sentence:
        return SentenceEncoder(str(folder), instruction or None, max_length)
    return LLMEncoder.load(ref, pooling=pooling or saved.get("pooling", "last"),
                           instruction=instruction or None, max_length=max_length)


def save_retriever(encoder: Encoder, folder: str | Path, training: dict) -> None:
    """The weights and retriever.json (the encoder's config plus how it was trained)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    encoder.save(folder)
    (folder / CONFIG_FILE).write_text(json.dumps({**encoder.config(), "training": training}, indent=2) + "\n")
