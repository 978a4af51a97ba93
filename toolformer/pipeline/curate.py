"""The curation stages of one run, for any set of tools: the library behind `toolformer sample`,
`execute`, `filter` and `curate`, usable from a notebook:

    from toolformer.config import RunSettings, SampleSettings
    from toolformer.pipeline.curate import curate
    figures = curate(RunSettings(run="demo", corpus="docs.jsonl"), ["calculator"], SampleSettings(k=5))

Each stage resumes where a killed run stopped (pipeline/stage.py).
"""
from __future__ import annotations

from toolformer.config import ExecuteSettings, FilterSettings, RunSettings, SampleSettings
from toolformer.run.manifest import Run
from toolformer.corpus.syntax import get_syntax
from toolformer.tools import TOOL_MODULES, Tool, get_tool

STAGES = ("sample", "execute", "filter")


class Pipeline:
    """One run with its settings and its model (loaded once, when a stage first needs it)."""

    def __init__(self, settings: RunSettings, sample: SampleSettings = SampleSettings(),
                 execute: ExecuteSettings = ExecuteSettings(), filter: FilterSettings = FilterSettings()):
        self.settings, self.sample_settings, self.execute_settings, self.filter_settings = \
            settings, sample, execute, filter
        self.run = Run(settings.run, settings.runs_dir)
        self._lm = None

    def lm(self):
        if self._lm is None:
            from toolformer.lm.backend import get_backend
            self._lm = get_backend(self.settings.model)
        return self._lm

    def syntax(self):
        return get_syntax(self.run.settle_syntax(self.settings.syntax))

    def ingest(self) -> dict | None:
        """Read --corpus into the run's documents (None when none is given: the run has them)."""
        s = self.settings
        return None if s.corpus is None else self.run.ingest(s.corpus, s.limit, s.skip_bad)

    def retrieved_docs(self, tools: list[Tool]) -> dict[str, set[str]] | None:
        """With a tool retriever: for each tool, the documents that rank it among their top K."""
        ref = self.sample_settings.tool_retriever
        if not ref:
            return None
        from toolformer.retrieval import rank_tools
        docs = self.run.documents()
        ranked = rank_tools(ref, [d.text[:2000] for d in docs], tools, self.sample_settings.tools_per_doc)
        return {t.key: {d.id for d, names in zip(docs, ranked) if t.name in names} for t in tools}

    def _run(self, stage) -> dict:
        from toolformer.pipeline.stage import run_stage
        return run_stage(stage, self.settings.chunk_docs, progress=not self.settings.no_progress)

    def sample(self, tool: Tool, only_docs: set[str] | None = None) -> dict:
        from toolformer.pipeline.sample import SampleStage
        return self._run(SampleStage(self.run, tool, self.syntax(), self.sample_settings, self.settings.model,
                                     self.lm, self.settings.seed, only_docs))

    def execute(self, tool: Tool) -> dict:
        from toolformer.pipeline.execute import ExecuteStage
        return self._run(ExecuteStage(self.run, tool, self.syntax(), self.execute_settings))

    def filter(self, tool: Tool) -> dict:
        from toolformer.pipeline.filter import FilterStage
        return self._run(FilterStage(self.run, tool, self.syntax(), self.filter_settings, self.settings.model,
                                     self.lm))


def resolve_tools(names: list[str] | str | None) -> list[Tool]:
    """Tools by name ("calculator,qa" or a list); None: every registered tool."""
    if names is None:
        names = list(TOOL_MODULES)
    elif isinstance(names, str):
        names = names.split(",")
    return [get_tool(n.strip()) for n in names]


def curate(settings: RunSettings, tools: list[str] | str | None = None, sample: SampleSettings = SampleSettings(),
           execute: ExecuteSettings = ExecuteSettings(), filter: FilterSettings = FilterSettings(),
           stages: tuple[str, ...] = STAGES) -> dict:
    """Run `stages` for each tool in turn (all tools by default): {"run", "path", "ingest": its
    counts or None, "stages": {"sample/calculator": counts and seconds, ...}}."""
    pipe = Pipeline(settings, sample, execute, filter)
    ingest = pipe.ingest()
    tools = resolve_tools(tools)
    chosen = pipe.retrieved_docs(tools) if "sample" in stages else None
    figures = {}
    for tool in tools:
        for kind in stages:
            if kind == "sample":
                figures[f"sample/{tool.key}"] = pipe.sample(tool, chosen[tool.key] if chosen else None)
            else:
                figures[f"{kind}/{tool.key}"] = getattr(pipe, kind)(tool)
    return {"run": pipe.run.name, "path": str(pipe.run.path), "ingest": ingest, "stages": figures}

