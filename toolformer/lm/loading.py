"""Every model and tokenizer load goes through here.

A model reference is a hub id, local folder, .gguf file, or embedded alias. A GGUF file is
de-quantised once and cached as safetensors (a cold GGUF load costs ~30 s on 2 cores; the cached
copy loads in well under a second). Inference runs in the device's dtype (CPU fp32, GPU bf16);
training loads fp32 weights. The tokenizer always has a pad token. A finetuned adapter or model
folder carries FINETUNE_INFO (base model, call syntax), so `load_model(None, adapter)` needs
nothing else.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from toolformer.assets import DEFAULT_LM, cache_dir, embedded_path, file_fingerprint, is_embedded_alias
from toolformer.errors import UserError, UserFileNotFound

FINETUNE_INFO = "toolformer_finetune.json"  # written beside an adapter or model by finetune.py


class ModelNotFound(UserError, RuntimeError):
    """A model reference that is neither here nor reachable."""


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
    if p.exists():
        raise ModelNotFound(f"model path {ref!r} is not a folder or a .gguf file")
    if ref.startswith((".", "/", "~")):
        raise ModelNotFound(f"model not found: {ref!r} does not exist")
    return ModelRef(ref, ref)  # a hub id


def default_device() -> str:
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str):
    import torch
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


# bump when _convert_gguf changes what it writes: the cache key holds it, not this file's bytes,
# so an edit elsewhere in this module never costs a new 500 MB copy
CONVERSION_VERSION = 1


def _gguf_cache(mref: ModelRef) -> Path:
    import transformers
    gguf = Path(mref.path) / mref.gguf_file
    return cache_dir("models") / f"{gguf.stem}-{_conversion_key(gguf.resolve(), transformers.__version__)}"


@lru_cache(maxsize=8)
def _conversion_key(gguf: Path, transformers_version: str) -> str:
    """The GGUF's bytes (0.2 s for the default 98 MB), not its path: every clone's environment
    shares one converted copy per transformers version (whose reader does the de-quantising)."""
    return file_fingerprint(gguf, f"conversion={CONVERSION_VERSION}|transformers={transformers_version}")


def quiet_loading() -> None:
    """No progress bars from transformers' loading and saving ("Loading weights", "Writing model
    shards"): a load takes under a second once cached, and a bar per load floods every command."""
    from transformers.utils import logging
    logging.disable_progress_bar()


@contextmanager
def _no_gguf_bar():
    """transformers' GGUF reader draws its own tqdm bar, outside the switch above: off while we convert."""
    from functools import partial
    from transformers import modeling_gguf_pytorch_utils as gguf
    bar = gguf.tqdm
    gguf.tqdm = partial(bar, disable=True)
    try:
        yield
    finally:
        gguf.tqdm = bar


@contextmanager
def peft_wrapping():
    """Around peft's wrapping of a model: peft (0.21) reads transformers' deprecated
    `is_gradient_checkpointing` alias, which warns; nothing of ours calls it, so that one warning
    is ignored here, and only here."""
    import warnings
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def _convert_gguf(mref: ModelRef, target: Path) -> None:
    import sys
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {mref.ref} from GGUF to safetensors, once (cached in {target.parent})", file=sys.stderr)
    quiet_loading()
    with _no_gguf_bar():
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


def model_tokenizer(model: str):
    """The tokenizer of a model as a stage records it: a reference, or "BASE + ADAPTER" (a finetuned
    sampler; an adapter keeps its base model's tokenizer). Loaded alone, without the weights."""
    return load_tokenizer(model.split(" + ")[0])


def cpu_computes_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX): there the 135M model's
    forward pass runs ~3x faster in bf16 than in fp32 (measured on the 2-core machine); elsewhere
    bf16 is emulated and slower."""
    import torch
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private: absent in some torch
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def dtype_setting(dtype, device: str) -> dict:
    """{"dtype": name} when `dtype` is not `device`'s default (bfloat16 on a CPU), else {}: what a
    stage records, since its samples and losses depend on it."""
    import torch
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    return {} if dtype is None or dtype == default_dtype(device) else {"dtype": str(dtype).removeprefix("torch.")}


def fresh_causal_lm(ref: str, dtype=None):
    """A new, uncached copy of the model's weights (fp32 unless `dtype`): for training or merging,
    which change them."""
    import torch
    from transformers import AutoModelForCausalLM
    quiet_loading()
    try:
        return AutoModelForCausalLM.from_pretrained(local_folder(ref), dtype=dtype or torch.float32)
    except OSError as err:
        raise _offline_hint(ref, err) from err


@lru_cache(maxsize=2)
def load_causal_lm(ref: str, device: str | None = None):
    """(model, tokenizer), model in eval mode on `device` with the device's default dtype. Cached:
    callers share it and must not change its weights."""
    device = device or default_device()
    t0 = time.time()
    model = fresh_causal_lm(ref, default_dtype(device))
    model.to(device).eval()
    model.load_seconds = time.time() - t0
    return model, load_tokenizer(ref)


def release_models() -> None:
    """Drop the shared models (load_causal_lm's cache): a process that runs step after step (the
    demo) then holds one step's models at a time, not every step's."""
    import gc
    load_causal_lm.cache_clear()
    gc.collect()
    try:  # glibc keeps freed heap for reuse; hand it back (the next step's peak then starts lower)
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def adapter_info(folder: str | Path | None) -> dict:
    """What finetune.py recorded beside an adapter or model folder (base model, syntax), if anything."""
    if folder is None:
        return {}
    path = Path(folder) / FINETUNE_INFO
    return json.loads(path.read_text()) if path.exists() else {}


def adapter_folder(adapter: str | Path) -> Path:
    """`adapter` as a Path, once it is known to be a LoRA adapter folder."""
    adapter = Path(adapter)
    if not adapter.exists():
        raise UserFileNotFound(f"adapter not found: {adapter}")
    if not (adapter / "adapter_config.json").exists():
        raise UserFileNotFound(f"{adapter} is not a LoRA adapter folder (no adapter_config.json); "
                               f"pass a merged or fully finetuned model with --model instead")
    return adapter


def load_model(model: str | None, adapter: str | Path | None = None, device: str | None = None):
    """(model, tokenizer) for inference: a base model, or a base model with a LoRA adapter merged in.

    `model` may be None with an adapter that finetune.py wrote: its base model is recorded there.
    """
    if adapter is None:
        return load_causal_lm(model or DEFAULT_LM, device)
    adapter = adapter_folder(adapter)
    from peft import PeftModel
    base = model or adapter_info(adapter).get("base_model") or DEFAULT_LM
    device = device or default_device()
    # a fresh copy: merging into the cached base model would change it for every later user
    with peft_wrapping():
        lm = PeftModel.from_pretrained(fresh_causal_lm(base, default_dtype(device)), str(adapter)).merge_and_unload()
    return lm.to(device).eval(), load_tokenizer(base)
