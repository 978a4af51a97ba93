"""The tools a decoder may call, and which of them each input is offered (a tool retriever's top k)."""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from toolformer.tools import Tool, get_tool, run_call


class ToolBox:
    """The tools a decoder may call; executors are built on first use (an index may be slow)."""

    def __init__(self, tools: Iterable[Tool | str], wiki_corpus: str | None = None):
        self.wiki_corpus = wiki_corpus  # a user's Wikipedia dump for WikiSearch and QA (None: the embedded leads)
        self.tools = {}
        for t in tools:
            tool = t if isinstance(t, Tool) else get_tool(t)
            self.tools[tool.name.lower()] = tool
        self._executors: dict[str, object] = {}

    def run(self, name: str, input: str, meta: Mapping,
            offered: frozenset[str] | None = None) -> tuple[str | None, str | None]:
        """(result, error) of one call; never raises. A tool outside `offered` (this input's share
        of the toolbox, e.g. a retriever's top K) is not run."""
        tool = self.tools.get(name.lower())
        if tool is None:
            return None, f"tool {name!r} is not available here"
        if offered is not None and tool.name not in offered:
            return None, f"tool {tool.name} was not offered for this input"
        if tool.name not in self._executors:
            try:
                self._executors[tool.name] = tool.make_executor(**{**tool.options,
                                                                   **tool.corpus_options(self.wiki_corpus)})
            except Exception as err:  # noqa: BLE001 - a broken tool is a result, not a crash
                self._executors[tool.name] = err
        executor = self._executors[tool.name]
        if isinstance(executor, Exception):
            return None, f"tool {tool.name} could not start: {executor}"
        out = run_call(tool, executor, input, meta)
        return out.result, out.error


def offer_tools(retriever_ref: str | None, texts: Sequence[str], toolbox: ToolBox | None,
                k: int) -> list[frozenset[str]] | None:
    """Per text, the toolbox's k best tools by the retriever (None: no retriever, every tool)."""
    if retriever_ref is None or toolbox is None:
        return None
    from toolformer.retrieval import rank_tools
    return [frozenset(names) for names in rank_tools(retriever_ref, list(texts), list(toolbox.tools.values()), k)]
