"""Command-line flags generated from a settings dataclass, so every default is written once.

A field `max_new_tokens: int = opt(32, "length cap")` becomes `--max-new-tokens N` (default 32);
`bool` fields with a False default become switches; `X | None` fields take an X or stay None;
`list[str]` fields take several values after one flag, or with `repeat=True` one value per
repeated flag (--run A --run B). `opt(..., positional=True)` makes a positional argument,
`flag="--x"` another spelling, `choices=` a closed set, `const=` the value of the bare flag,
`low=`/`high=`/`above=` a number's bounds (argparse refuses a value outside them: exit 2).
`opt` lives in toolformer/config.py, next to the settings it declares.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any


def _base_type(hint) -> tuple[type, bool, bool]:
    """(element type, optional, is a list) of a field's type hint."""
    optional = False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0]
        origin = typing.get_origin(hint)
    if origin in (list, tuple):
        return typing.get_args(hint)[0], optional, True
    return hint, optional, False


def bounded(kind: type, low=None, high=None, above=None):
    """An argparse type: `kind` of the text, refused outside [low, high] or at or below `above`."""
    def parse(text: str):
        value = kind(text)
        if low is not None and not value >= low:  # NaN fails every comparison: refused too
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {text}")
        if high is not None and not value <= high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {text}")
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"must be greater than {above}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in "invalid int value: 'x'"
    return parse


def add_flags(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """Add one flag per field of the dataclass `cls` (fields in `skip` or with cli=False left out)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if f.name in skip or not meta.get("cli", True):
            continue
        kind, optional, many = _base_type(hints[f.name])
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required else (f.default if f.default is not dataclasses.MISSING else f.default_factory())
        help_text = meta.get("help", "")
        # by identity: 0 == False, and a default of 0 is worth showing
        if default is not None and default is not False and default not in ([], ()) and "default" not in help_text:
            help_text = f"{help_text} (default: {default})" if help_text else f"default: {default}"
        kwargs: dict[str, Any] = {"help": help_text}
        if meta.get("choices"):
            kwargs["choices"] = meta["choices"]
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        if kind is bool and not many:
            if default:
                kwargs["action"] = argparse.BooleanOptionalAction
                kwargs["default"] = True
            else:
                kwargs["action"] = "store_true"
        else:
            bounds = {b: meta[b] for b in ("low", "high", "above") if meta.get(b) is not None}
            kwargs["type"] = bounded(kind, **bounds) if bounds else kind
            if many and meta.get("repeat"):
                kwargs["action"] = "append"
            elif many:
                kwargs["nargs"] = "+" if required else "*"
            if meta.get("const") is not None:
                kwargs["nargs"], kwargs["const"] = "?", meta["const"]
            if not (meta.get("positional") and required):
                kwargs["default"] = default
        if meta.get("positional"):
            if not required:
                kwargs["nargs"] = kwargs.get("nargs", "?")
            parser.add_argument(f.name, **kwargs)
        else:
            name = meta.get("flag") or "--" + f.name.replace("_", "-")
            if required and kind is not bool:
                kwargs["required"] = True
            parser.add_argument(name, dest=f.name, **kwargs)


def from_args(cls, args: argparse.Namespace, **overrides):
    """The dataclass built from parsed flags (fields the parser does not carry keep their default)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **overrides})
