"""What one report shows, gathered once and rendered twice (html.py, md.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from toolformer.report.summary import RunSummary


class Figure(NamedTuple):
    png: bytes
    name: str   # the file it is saved as beside the report


@dataclass
class Report:
    run: RunSummary
    other: RunSummary | None       # the run compared with, if any
    rows: list[dict]               # the embedded example rows (examples.example_row)
    warnings: list[str]            # about the run as a whole; each tool has its own
    seed: int                      # of the random example sample
    figures: dict[str, Figure]     # tool key -> its figure
    compare_figure: Figure | None = None

    @property
    def all_figures(self) -> list[Figure]:
        return [*self.figures.values(), *([self.compare_figure] if self.compare_figure else [])]

    @property
    def kept(self) -> int:
        return sum(t.counts["kept"] for t in self.run.tools)
