"""The curation stages of one run, for any set of tools: the library behind `toolformer sample`,
`execute`, `filter` and `curate`, usable from a notebook:

    from toolformer.config import RunSettings, SampleSettings
    from toolformer.pipeline.curate import curate
    figures = curate(RunSettings(run="demo", corpus="docs.jsonl"), ["calculator"], SampleSettings(k=5))

Each stage resumes where a killed run stopped (pipeline/stage.py). Candidates come from the
model (pipeline/sample.py), or, with SampleSettings(from_annotations=FORMAT), from the calls the
corpus already carries (pipeline/annotated.py).

Which model does what: the sampler is --model, or --model's finetuned adapter (SampleSettings.
adapter). The filter scores with --model, the base model M, as the paper does (the call is a
prefix before the window); filter_with="sampler" scores with the sampler instead.
"""
from __future__ import annotations

from toolformer.config import ExecuteSettings, FilterSettings, RunSettings, SampleSettings
from toolformer.run.manifest import Run
from toolformer.corpus.syntax import get_syntax
from toolformer.errors import UserValueError
from toolformer.tools import TOOL_KEYS, Tool, get_tool

STAGES = ("sample", "execute", "filter")
FILTER_MODELS = ("base", "sampler")


class Pipeline:
    """One run with its settings and its model (loaded once, when a stage first needs it)."""

    def __init__(self, settings: RunSettings, sample: SampleSettings = SampleSettings(),
                 execute: ExecuteSettings = ExecuteSettings(), filter: FilterSettings = FilterSettings(),
                 filter_with: str = "base"):
        if filter_with not in FILTER_MODELS:
            raise UserValueError(f"filter_with must be one of {FILTER_MODELS}, not {filter_with!r}")
        self.settings, self.sample_settings, self.execute_settings, self.filter_settings = \
            settings, sample, execute, filter
        self.filter_with = filter_with
        self.run = Run(settings.run, settings.runs_dir)
        self._lm = self._sampler_lm = None
        self.cluster = None  # Ray workers, started when a stage first needs them (--ray)

    def backend_options(self) -> dict:
        """How every model of the run is served (--backend, --dtype): get_backend's keywords, the same
        here and on Ray workers."""
        s = self.settings
        return {"backend": s.backend, **({"dtype": s.dtype} if s.dtype else {})}

    def lm(self):
        """The base model M (--model)."""
        if self._lm is None:
            from toolformer.lm.backend import get_backend
            self._lm = get_backend(self.settings.model, **self.backend_options())
        return self._lm

    def sampler_model(self) -> str:
        """What samples, as recorded: --model, or the adapter's base model + the adapter."""
        adapter = self.sample_settings.adapter
        if not adapter:
            return self.settings.model
        from toolformer.lm.loading import adapter_info
        return f"{adapter_info(adapter).get('base_model') or self.settings.model} + {adapter}"

    def sampler_lm(self):
        adapter = self.sample_settings.adapter
        if not adapter:
            return self.lm()
        if self._sampler_lm is None:
            from toolformer.lm.backend import get_backend
            from toolformer.lm.loading import adapter_info
            self._sampler_lm = get_backend(adapter_info(adapter).get("base_model") or self.settings.model,
                                           adapter=adapter, **self.backend_options())
        return self._sampler_lm

    def syntax(self):
        return get_syntax(self.run.settle_syntax(self.settings.syntax))

    def ingest(self) -> dict | None:
        """Read --corpus into the run's documents (None when none is given: the run has them)."""
        s, fmt = self.settings, self.sample_settings.from_annotations
        if s.corpus is None:
            return None
        if fmt:
            from toolformer.pipeline.annotated import ingest_annotated
            return ingest_annotated(self.run, s.corpus, fmt, s.limit, s.skip_bad, self.sample_settings.annotation_split,
                                    self.execute_settings.wiki_corpus)
        return self.run.ingest(s.corpus, s.limit, s.skip_bad)

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
        s = self.settings
        if s.ray and self.cluster is None:
            from toolformer.pipeline.distributed import Cluster
            self.cluster = Cluster(s.ray, s.workers, progress=not s.no_progress)
        stage.backend_options = self.backend_options()
        return run_stage(stage, s.chunk_docs, progress=not s.no_progress, cluster=self.cluster)

    def sample(self, tool: Tool, only_docs: set[str] | None = None) -> dict:
        if self.sample_settings.from_annotations:
            from toolformer.pipeline.annotated import AnnotationStage
            return self._run(AnnotationStage(self.run, tool, self.syntax(), self.sample_settings.window,
                                             self.settings.model))
        from toolformer.pipeline.sample import SampleStage
        return self._run(SampleStage(self.run, tool, self.syntax(), self.sample_settings, self.sampler_model(),
                                     self.sampler_lm, self.settings.seed, only_docs))

    def execute(self, tool: Tool) -> dict:
        from toolformer.pipeline.execute import ExecuteStage
        return self._run(ExecuteStage(self.run, tool, self.syntax(), self.execute_settings))

    def filter(self, tool: Tool) -> dict:
        from toolformer.pipeline.filter import FilterStage
        if self.filter_with == "sampler":
            return self._run(FilterStage(self.run, tool, self.syntax(), self.filter_settings, self.sampler_model(),
                                         self.sampler_lm))
        return self._run(FilterStage(self.run, tool, self.syntax(), self.filter_settings, self.settings.model,
                                     self.lm))


def resolve_tools(names: list[str] | str | None) -> list[Tool]:
    """Tools by name ("calculator,qa" or a list); None: every registered tool."""
    if names is None:
        names = list(TOOL_KEYS)
    elif isinstance(names, str):
        names = names.split(",")
    return [get_tool(n.strip()) for n in names]


def curate(settings: RunSettings, tools: list[str] | str | None = None, sample: SampleSettings = SampleSettings(),
           execute: ExecuteSettings = ExecuteSettings(), filter: FilterSettings = FilterSettings(),
           stages: tuple[str, ...] = STAGES, filter_with: str = "base") -> dict:
    """Run `stages` for each tool in turn (all tools by default): {"run", "path", "ingest": its
    counts or None, "stages": {"sample/calculator": counts and seconds, ...}}."""
    tools = resolve_tools(tools)
    for tool in tools:  # a bad --tau-f is refused now, not after hours of sampling
        sample.for_tool(tool), filter.for_tool(tool)
    pipe = Pipeline(settings, sample, execute, filter, filter_with)
    ingest = pipe.ingest()
    chosen = pipe.retrieved_docs(tools) if "sample" in stages else None
    figures = {}
    for tool in tools:
        for kind in stages:
            if kind == "sample":
                figures[f"sample/{tool.key}"] = pipe.sample(tool, chosen[tool.key] if chosen else None)
            else:
                figures[f"{kind}/{tool.key}"] = getattr(pipe, kind)(tool)
    return {"run": pipe.run.name, "path": str(pipe.run.path), "ingest": ingest, "stages": figures}

