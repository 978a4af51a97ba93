"""The second source of candidates: calls already written in the corpus (issue 11 §1).

    toolformer curate --tools calculator --run R --corpus gsm8k_train.jsonl --from-annotations gsm8k

Ingesting reads the annotated corpus with toolformer.corpus.annotations.read_annotated: the run's
documents are its texts with the calls removed, and <run>/annotations.jsonl holds each call at its
character position. The sample stage then writes one candidate per annotation, at that position
and at the token of the run's windows that starts there, the same fields the sampler writes plus
`source: "annotation"` (sampled candidates carry no `source`). Execute, filter, report, build and
finetune treat them like any others, so the filter decides which annotations lower the loss.

An annotation whose position no token starts at (a call inside a word), or that stands at the very
end of a document (no text after it to score), cannot be scored: it is counted, never dropped
silently. Equation-field rows (asdiv, svamp, mawps) become "Question: …\\nAnswer: <call> <answer>".

`--from-annotations facts` reads a plain corpus (dated State of the Union passages, Wikipedia
leads) and proposes Calendar, WikiSearch and QA calls where its text states what they would
return (toolformer/corpus/facts.py); the ingest counts the documents without a date (`undated`:
they get no Calendar candidate).

Never train on evaluation data: a format that is a benchmark with a seeded train/test split (ASDiv)
is read in its train part only (unless annotation_split="all"), the same problems `toolformer
eval` leaves out of its test part; the split is recorded in the manifest. SVAMP is a test set and
is refused.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

from toolformer.benchmarks import BENCHMARKS
from toolformer.corpus import facts  # registers the "facts" format
from toolformer.corpus.annotations import FORMATS, AnnotationStats, read_annotated, split_rows
from toolformer.corpus.syntax import CallSyntax
from toolformer.errors import UserError, UserValueError
from toolformer.lm.backend import TokenizerOnly
from toolformer.lm.loading import model_tokenizer
from toolformer.pipeline.sample import candidate_record
from toolformer.pipeline.stage import Stage
from toolformer.pipeline.windows import document_windows, tokenizer_fingerprint
from toolformer.run import layout
from toolformer.run.manifest import Run, missing
from toolformer.run.records import Document, read_jsonl, write_jsonl_atomic
from toolformer.tools import Tool

# formats whose data is an evaluation set and nothing else
TEST_ONLY = {"svamp": "SVAMP is a test set (`toolformer eval --benchmark svamp`)"}
ANNOTATION = {"doc_id": str, "position": int, "tool": str, "input": str, "result": (str, type(None))}
P_ANNOTATED = 1.0  # an annotation is proposed with certainty: its p_start


def check_format(format: str) -> None:
    FORMATS.get(format)  # an unknown format: one line listing the known ones
    if format.lower() in TEST_ONLY:
        raise UserValueError(f"--from-annotations {format}: {TEST_ONLY[format.lower()]}; training on it would "
                             f"make its evaluation meaningless. Use asdiv (its train part), mawps or gsm8k data")


def ingest_annotated(run: Run, corpus: str | Path, format: str, limit: int | None, skip_bad: bool,
                     split: str = "train", wiki_corpus: str | None = None) -> dict:
    """Read an annotated corpus into the run: documents.jsonl (calls removed) and annotations.jsonl.
    Returns the ingest counts: documents, annotations, skips per reason (with examples), the split.
    wiki_corpus: the Wikipedia dump the run's WikiSearch reads (--wiki-corpus), for the formats that
    search it to place candidates (facts)."""
    check_format(format)
    bench = BENCHMARKS.get(format) if format in BENCHMARKS else None
    split_of = bench.split if bench is not None and split == "train" else None
    source = {"annotations": format.lower(), "split": None if split_of is None else
              {"benchmark": bench.name, "part": "train", "test_fraction": split_of.test_fraction,
               "seed": split_of.seed}, **({"wiki_corpus": str(wiki_corpus)} if wiki_corpus else {})}

    def read(path: Path, limit: int | None, skip_bad: bool) -> tuple[list[Document], dict]:
        stats = AnnotationStats()
        annotated = list(read_annotated(path, format, skip_bad, stats, wiki_corpus=wiki_corpus))
        left_out = 0
        if split_of is not None:
            annotated, test = split_rows(annotated, split_of.test_fraction, split_of.seed)
            left_out = len(test)
        annotated = annotated[:limit] if limit is not None else annotated
        write_jsonl_atomic(run.path / layout.ANNOTATIONS, (
            {"doc_id": a.id, "position": n.position, "tool": n.tool, "input": n.input, "result": n.result}
            for a in annotated for n in a.annotations))
        figures = stats.as_dict()
        counts = {"documents": len(annotated), "annotations": sum(len(a.annotations) for a in annotated),
                  "read": figures["documents"], "skipped_bad": sum(stats.skipped.values()),
                  "skipped": figures["skipped"], "skipped_examples": figures["examples"],
                  "test_left_out": left_out}
        if format.lower() == "facts":
            counts["undated"] = facts.undated(a.document for a in annotated)
        return [a.document for a in annotated], counts

    return run.ingest(corpus, limit, skip_bad, read=read, source=source)


class AnnotationStage(Stage):
    """The sample stage of a run ingested from annotations: writes <tool>/candidates.jsonl with a
    candidate per annotation of this tool. It needs the run model's tokenizer only (for windows)."""
    kind = "sample"
    counts = ("documents", "windows", "annotations", "other_tools", "inside_a_token", "at_the_end", "duplicates",
              "candidates")

    def __init__(self, run: Run, tool: Tool, syntax: CallSyntax, window: int, model: str):
        super().__init__(run, tool)
        self.syntax, self.window, self.model = syntax, window, model
        # facts proposes a tool only where its heuristic holds (Calendar: a dated document); the
        # report's funnel shows how many documents that leaves
        self.by_heuristic = (run.config().source or {}).get("annotations") == "facts" and tool.heuristic is not None
        if self.by_heuristic:
            self.counts = self.counts + ("documents_heuristic",)

    @cached_property
    def text(self) -> TokenizerOnly:
        return TokenizerOnly(model_tokenizer(self.model))  # the tokenizer alone, never the weights

    def model_spec(self) -> None:
        return None  # tokenising only: it runs on the driver, never on Ray workers

    def settings(self) -> dict:
        source = self.run.config().source or {}
        if "annotations" not in source:
            raise UserError(f"run {self.run.name} was not ingested from annotations: give --corpus FILE with "
                            f"--from-annotations FORMAT on a new --run")
        return {"source": "annotations", "format": source["annotations"], "split": source["split"],
                "model": self.model, "syntax": self.syntax.name, "window": self.window,
                "tokenizer": tokenizer_fingerprint(self.text.tokenizer)}

    def start(self, output, docs) -> None:
        path = self.run.path / layout.ANNOTATIONS
        if not path.exists():
            raise missing(path, f"toolformer sample --tool {self.tool.key} --run {self.run.name} --corpus FILE "
                                f"--from-annotations FORMAT")
        self.annotations: dict[str, list[dict]] = {}
        for _, rec in read_jsonl(path, ANNOTATION):
            self.annotations.setdefault(rec["doc_id"], []).append(rec)

    def process(self, docs: list[Document], inputs: dict) -> tuple[list[dict], dict]:
        counts = dict.fromkeys(self.counts, 0)
        counts["documents"] = len(docs)
        if self.by_heuristic:
            counts["documents_heuristic"] = sum(self.tool.heuristic(d.text, d.meta) for d in docs)
        records, seen = [], set()
        for doc in docs:
            windows = document_windows(self.text, doc, self.window)
            counts["windows"] += len(windows)
            # the first token that starts at each character: (window, index in it)
            token_at: dict[int, tuple[int, int]] = {}
            for w in windows:
                for i, start in enumerate(w.char_starts):
                    token_at.setdefault(start, (w.index, i))
            for ann in self.annotations.get(doc.id, ()):
                counts["annotations"] += 1
                if ann["tool"] != self.tool.name:
                    counts["other_tools"] += 1
                elif ann["position"] >= len(doc.text):
                    counts["at_the_end"] += 1
                elif ann["position"] not in token_at:
                    counts["inside_a_token"] += 1
                elif (doc.id, ann["position"], ann["input"]) in seen:
                    counts["duplicates"] += 1
                else:
                    seen.add((doc.id, ann["position"], ann["input"]))
                    w, i = token_at[ann["position"]]
                    records.append(candidate_record(
                        doc.id, self.tool, self.syntax, w, w * self.window + i, ann["position"], P_ANNOTATED,
                        ann["input"], source="annotation", annotated_result=ann["result"]))
        counts["candidates"] = len(records)
        return records, counts
