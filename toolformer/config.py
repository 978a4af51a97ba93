"""One settings dataclass per stage: the single place where each default is written.

The CLI generates its flags from these classes (toolformer/cli/flags.py), the Python API takes
them as keyword arguments, and the curation stages record them in the run's manifest.
Fields with `opt(..., cli=False)` are set by code, never by a flag.
"""
from __future__ import annotations

from dataclasses import dataclass

from toolformer.assets import DEFAULT_LM
from toolformer.cli.flags import opt

# ---- run (shared by the curation stages)

# ---- sample

# ---- execute

# ---- filter

# ---- build

# ---- finetune

# ---- generate

# ---- evaluate

# ---- retrieval

# ---- report
