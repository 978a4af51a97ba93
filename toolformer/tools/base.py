"""What a tool is, where tools are registered, and how one call runs.

A tool declares what the sampler, executor, filter and retriever need: its name as written in
calls, a description and example uses (read by the tool retriever), the paper's default
thresholds (τ_s, k, m, τ_f; Schick et al. 2023, Appendix A), an optional document heuristic, and
a factory for its executor. Each tool module declares one `Tool` and registers it in `TOOLS`.
Executors are untrusted-input code: `run_call` bounds their time and result length and turns
every failure into an error value.
"""
from __future__ import annotations

import inspect
import time
from concurrent.futures import ThreadPoolExecutor, TimeoutError as _Timeout
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from toolformer.assets import PROMPTS_DIR
from toolformer.errors import UserValueError
from toolformer.registry import Registry

# executor(input, doc_meta) -> result string; raise ToolError (or anything) on failure
Executor = Callable[[str, Mapping], str]


class ToolError(Exception):
    """A failure the tool explains itself (bad input, nothing found)."""


@dataclass(frozen=True)
class Tool:
    name: str                       # as written in calls: "Calculator"
    description: str
    examples: tuple[str, ...]       # example uses, rendered in the Toolformer syntax
    tau_s: float                    # sampling threshold on p(call start)
    k: int                          # positions kept per window
    m: int                          # calls sampled per position
    tau_f: float                    # filtering threshold on L⁻ − L⁺
    make_executor: Callable[..., Executor]  # make_executor(**options) -> Executor
    heuristic: Callable[[str, Mapping], bool] | None = None  # (text, meta) -> worth sampling?
    timeout_s: float = 5.0
    max_result_chars: int = 200
    options: Mapping = field(default_factory=dict)  # default executor options
    meta_keys: tuple[str, ...] = ()  # document metadata the executor reads (results are cached per value)
    takes_input: bool = True         # False: the call is always Tool(), nothing to sample (Calendar)
    # texts the tool helps to answer or continue, as a retriever's queries look (retrieval only,
    # never in a prompt): the call-syntax examples alone are too unlike a question or a sentence
    uses: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The registry key, module name and prompt file stem: "calculator"."""
        return self.name.lower()

    def executor(self, **overrides) -> Executor:
        """The executor with the tool's default options, updated by `overrides`."""
        known = inspect.signature(self.make_executor).parameters
        unknown = [name for name in overrides if name not in known]
        if unknown:  # most likely a typo in --option
            raise UserValueError(f"{self.name} has no option {', '.join(map(repr, unknown))} "
                                 f"(options: {', '.join(known) or 'none'})")
        return self.make_executor(**{**self.options, **overrides})

    def corpus_options(self, wiki_corpus: str | None) -> dict:
        """{"corpus": wiki_corpus} where this tool's executor reads a Wikipedia corpus (WikiSearch,
        QA), else {}: one flag points every such tool at a user's dump."""
        if wiki_corpus is None or "corpus" not in inspect.signature(self.make_executor).parameters:
            return {}
        return {"corpus": wiki_corpus}

    def retrieval_text(self) -> str:
        """What a tool retriever embeds for this tool: the uses before the examples, since an
        encoder reads only its first max_length (128) tokens."""
        uses = "For texts like:\n" + "\n".join(self.uses) + "\n" if self.uses else ""
        return f"{self.name}: {self.description}\n{uses}Examples:\n" + "\n".join(self.examples)


TOOLS: Registry[Tool] = Registry("tool")


def register(tool: Tool) -> Tool:
    """Register `tool` under its key; a tool module ends with `TOOL = register(Tool(...))`."""
    return TOOLS.register(tool.key, tool)


def load_prompt(tool: Tool) -> str:
    """The few-shot annotation prompt tools/prompts/<key>.txt (package data).

    The file ends with `Input: {input}\nOutput:`; the sampler fills {input} with the document
    window and appends the window's tokens after `Output:`.
    """
    path = PROMPTS_DIR / f"{tool.key}.txt"
    text = path.read_text(encoding="utf-8")
    if text.count("{input}") != 1 or not text.rstrip().endswith("Output:"):
        raise ValueError(f"{path}: a prompt must contain one {{input}} slot and end with 'Output:'")
    return text.rstrip()


@dataclass(frozen=True)
class CallResult:
    result: str | None
    error: str | None
    latency_ms: float


_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tool")


def _bounded(tool: Tool, result) -> tuple[str | None, str | None]:
    """(result, error) of what an executor returned: text, cut to the tool's length cap."""
    if isinstance(result, ToolError):
        return None, str(result) or type(result).__name__
    if not isinstance(result, str):
        return None, f"tool returned {type(result).__name__}, not text"
    return (result[:tool.max_result_chars].rstrip() if len(result) > tool.max_result_chars else result), None


def run_call(tool: Tool, executor: Executor, input: str, meta: Mapping | None = None,
             timeout_s: float | None = None) -> CallResult:
    """Run one call with a timeout and a result-length cap; never raises."""
    t0 = time.perf_counter()
    future = _pool.submit(executor, input, meta or {})
    try:
        result, error = _bounded(tool, future.result(timeout=timeout_s or tool.timeout_s))
    except _Timeout:
        # the worker thread cannot be killed; it finishes in the background and is ignored
        result, error = None, f"timeout after {timeout_s or tool.timeout_s:g} s"
    except ToolError as err:
        result, error = None, str(err) or type(err).__name__
    except Exception as err:  # noqa: BLE001 - untrusted input must not crash a stage
        result, error = None, f"{type(err).__name__}: {err}"
    return CallResult(result, error, (time.perf_counter() - t0) * 1000)


def run_calls(tool: Tool, executor: Executor, inputs: Sequence[str], metas: Sequence[Mapping],
              timeout_s: float | None = None) -> list[CallResult]:
    """Run several calls, together where the executor can (`executor.batch(inputs, metas)`, which
    returns a result or a ToolError per call: an LM-backed tool decodes them as one batch), else
    one by one; never raises. A batch has the time its calls would have one at a time; if it runs
    out, or the batch fails as a whole, every call of it fails. Latency is the batch's share per call."""
    batch = getattr(executor, "batch", None)
    if batch is None or len(inputs) < 2:
        return [run_call(tool, executor, i, m, timeout_s) for i, m in zip(inputs, metas)]
    limit = (timeout_s or tool.timeout_s) * len(inputs)
    t0 = time.perf_counter()
    future = _pool.submit(batch, list(inputs), [m or {} for m in metas])
    try:
        outs = future.result(timeout=limit)
        if len(outs) != len(inputs):
            raise ValueError(f"{len(outs)} results for {len(inputs)} calls")
        results = [_bounded(tool, out) for out in outs]
    except _Timeout:
        results = [(None, f"timeout after {limit:g} s (a batch of {len(inputs)} calls)")] * len(inputs)
    except Exception as err:  # noqa: BLE001 - untrusted input must not crash a stage
        results = [(None, f"{type(err).__name__}: {err}")] * len(inputs)
    share = (time.perf_counter() - t0) * 1000 / len(inputs)
    return [CallResult(result, error, share) for result, error in results]
