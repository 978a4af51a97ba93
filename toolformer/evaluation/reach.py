"""Knowledge within reach: does the index the tools read hold an example's gold answer?

A tool can only help where its source holds the answer (DESIGN §9). For a knowledge benchmark
(LAMA, NQ, WebQ, TriviaQA) each example's query, the question or LAMA's sentence up to its mask,
is searched in the WikiSearch index (the QA tool reads the same passages). `reach_rank` is the
rank (1..DEPTH) of the first of the top passages whose text holds a gold answer as a run of whole
words, under the benchmarks' normalisation (case, accents, punctuation, articles), or None. An
example is in reach when that rank is at most IN_REACH_K, the passages the tools return as
configured (WikiSearch top=1, QA passages=1; WikiSearch shows the first 250 characters of it).
The ceiling, the share in reach, bounds what a perfect tool user gains through the tool.

Dateset has a ceiling of its own: Calendar() says one thing, today's date, so an example is in
reach when that text holds its gold answer ("What year is it?", today's weekday, and the few
questions whose answer happens to be written there, e.g. a weekday 7 days off). The rest need
date arithmetic the model must do itself after the call.
"""
from __future__ import annotations

from toolformer.benchmarks import Benchmark, Example, question_prompt, words_contain
from toolformer.stats import accuracy
from toolformer.tools import wikisearch
from toolformer.tools.calendar import calendar_text

KNOWLEDGE_KINDS = ("lama", "qa")
DEPTH = 5          # passages looked at per example: ceilings at top-1 and top-5 come from one search
IN_REACH_K = 1     # the passages the tools read: "in reach" means a gold answer is in the top 1


def is_knowledge(bench: Benchmark) -> bool:
    return bench.kind in KNOWLEDGE_KINDS


def reach_query(example: Example) -> str:
    """What a tool would be asked: the question of a QA prompt, else (LAMA) the prompt itself,
    the sentence up to its mask."""
    prefix, suffix = question_prompt("\0").split("\0")
    prompt = example.prompt
    if prompt.startswith(prefix) and prompt.endswith(suffix):
        return prompt[len(prefix):len(prompt) - len(suffix)]
    return prompt


def reach_rank(index: "wikisearch.WikiIndex", example: Example, depth: int = DEPTH) -> int | None:
    """Rank of the first of the top-`depth` passages holding a gold answer, or None."""
    for rank, (_, text, _) in enumerate(index.search(reach_query(example), depth), 1):
        if words_contain(text, example.gold, len(text.split())):
            return rank
    return None


def reach_fields(examples: list[Example], index: "wikisearch.WikiIndex") -> dict[str, dict]:
    """Per example id, the fields its evaluation records carry: reach_rank and in_reach."""
    fields = {}
    for e in examples:
        rank = reach_rank(index, e)
        fields[e.id] = {"reach_rank": rank, "in_reach": rank is not None and rank <= IN_REACH_K}
    return fields


def calendar_reach(examples: list[Example]) -> dict[str, dict]:
    """Per example id, reach_rank (1, or None) and in_reach: does Calendar() for the example's date
    (meta["date"]) hold a gold answer as a run of whole words?"""
    fields = {}
    for e in examples:
        text = calendar_text(e.meta) or ""
        held = words_contain(text, e.gold, len(text.split()))
        fields[e.id] = {"reach_rank": 1 if held else None, "in_reach": held}
    return fields


def ceilings(ranks: list[int | None]) -> dict:
    """The share of examples in reach at top-1 and top-DEPTH, each with its Wilson interval."""
    return {f"top{k}": accuracy([r is not None and r <= k for r in ranks]) for k in (1, DEPTH)}


def index_info(index: "wikisearch.WikiIndex") -> dict:
    """What reach depends on: the index (its corpus and cache key) and the depths."""
    return {"index": index.key, "corpus": index.meta["corpus"], "passages": len(index), "depth": DEPTH,
            "in_reach_k": IN_REACH_K}
