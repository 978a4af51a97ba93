"""Named, registered units (tools, call syntaxes, benchmarks, LM backends), in the style of
lm-evaluation-harness: a unit is declared once where it is defined and found by name.

    TOOLS = Registry("tool")
    TOOLS.register("calculator", CALCULATOR)
    TOOLS.get("Calculator")   # names are case-insensitive; an unknown one is a UserError listing the known
"""
from __future__ import annotations

from typing import Generic, Iterator, TypeVar

from toolformer.errors import UserValueError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._units: dict[str, T] = {}

    def register(self, name: str, unit: T) -> T:
        key = name.lower()
        if key in self._units:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._units[key] = unit
        return unit

    def get(self, name: str) -> T:
        try:
            return self._units[name.strip().lower()]
        except KeyError:
            raise UserValueError(f"unknown {self.kind} {name!r} (available: {', '.join(self._units)})") from None

    def names(self) -> list[str]:
        return list(self._units)

    def __contains__(self, name: str) -> bool:
        return name.strip().lower() in self._units

    def __iter__(self) -> Iterator[str]:
        return iter(self._units)
