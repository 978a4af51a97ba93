"""Resolve a model reference and load it: hub id, local folder, .gguf file, or embedded alias.

CPU -> fp32, GPU -> bf16. A GGUF file is de-quantised once and cached as safetensors (a cold
GGUF load costs ~30 s on 2 cores; the cached copy loads in well under a second).
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from toolformer.assets import cache_dir, embedded_path, file_fingerprint, is_embedded_alias


class ModelNotFound(RuntimeError):
    pass


@dataclass(frozen=True)
class ModelRef:
    ref: str            # what the user wrote
    path: str           # folder or hub id that from_pretrained receives
    gguf_file: str | None = None


def resolve(ref: str) -> ModelRef:
    if is_embedded_alias(ref):
        gguf = embedded_path(ref)
        return ModelRef(ref, str(gguf.parent), gguf.name)
    p = Path(ref).expanduser()
    if p.suffix == ".gguf":
        if not p.is_file():
            raise ModelNotFound(f"GGUF file not found: {p}")
        return ModelRef(ref, str(p.parent.resolve()), p.name)
    if p.is_dir():
        return ModelRef(ref, str(p.resolve()))
    if p.exists() or ref.startswith((".", "/", "~")):
        raise ModelNotFound(f"model path {ref!r} is not a folder or a .gguf file")
    return ModelRef(ref, ref)  # a hub id


def default_device() -> str:
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str):
    import torch
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def _gguf_cache(mref: ModelRef) -> Path:
    gguf = Path(mref.path) / mref.gguf_file
    st = gguf.stat()
    # key on path, size and mtime: hashing 100 MB at every load would cost more than it saves
    key = file_fingerprint(Path(__file__), f"{gguf.resolve()}:{st.st_size}:{st.st_mtime_ns}")
    return cache_dir("models") / f"{gguf.stem}-{key}"


def _convert_gguf(mref: ModelRef, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(mref.path, gguf_file=mref.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(mref.path, gguf_file=mref.gguf_file, dtype=torch.float32)
    # the de-quantised weights are plain fp32: drop the GGUF quantizer so they serialise
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # write aside, then rename: a killed conversion never leaves a half-written cache entry
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    try:
        os.rename(tmp, target)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)


def local_folder(ref: str) -> str:
    """A folder or hub id that plain `from_pretrained(x)` loads (GGUF converted and cached)."""
    mref = resolve(ref)
    if mref.gguf_file is None:
        return mref.path
    target = _gguf_cache(mref)
    if not target.exists():
        _convert_gguf(mref, target)
    return str(target)


def _offline_hint(ref: str, err: Exception) -> ModelNotFound:
    return ModelNotFound(
        f"cannot load model {ref!r}: it is not a local folder, a .gguf file or an embedded alias, "
        f"and the hub could not be reached ({type(err).__name__}). Pass a local path "
        f"(--model /path/to/folder or file.gguf) or the embedded default 'smollm2-135m-instruct'.")


@lru_cache(maxsize=4)
def load_tokenizer(ref: str):
    from transformers import AutoTokenizer
    folder = local_folder(ref)
    try:
        tok = AutoTokenizer.from_pretrained(folder)
    except OSError as err:
        raise _offline_hint(ref, err) from err
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


@lru_cache(maxsize=2)
def load_causal_lm(ref: str, device: str | None = None):
    """(model, tokenizer), model in eval mode on `device` with the device's default dtype."""
    from transformers import AutoModelForCausalLM
    device = device or default_device()
    folder = local_folder(ref)
    t0 = time.time()
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=default_dtype(device))
    except OSError as err:
        raise _offline_hint(ref, err) from err
    model.to(device).eval()
    model.load_seconds = time.time() - t0
    return model, load_tokenizer(ref)
