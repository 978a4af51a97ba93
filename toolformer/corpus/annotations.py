"""Documents that already carry calls: the text without them, and each call at its exact place.

    gsm8k       Natalia sold 48/2 = <<48/2=24>>24 clips     the number after the call stays in the text
    hw3         Natalia sold 48/2 = <<48/2>>24 clips        the number after >> is the result and stays too
    toolformer  ... passed: [Calculator(400 / 1400) → 0.29] 29%   our own syntax, as `build` writes it
    asdiv       field `formula`, e.g. "(5+3)*2=16"           equation fields: the row becomes the
    svamp       field `Equation`, e.g. "( 290.0 / 2.0 )"     document "Question: <body> <question>\\n
    mawps       field `equation`, e.g. "x=(5+3)*2"           Answer: <answer>", the call before <answer>

Inline formats read JSONL rows with a `text`, or GSM8K's `question` and `answer` (written as
"Question: <question>\\nAnswer: <answer>", the prompt `toolformer eval` uses). A document's id is
its row's `id`, else "<file stem>:<line>", the id `toolformer eval` gives the same row; rows with a
question keep the problem's text in meta["problem"], which decides their side of a train/test
split (`split_rows`) exactly as it does in evaluation.

In hw3 and toolformer text a marker after a backslash is text, not a call (CallSyntax.escape: how
`build` writes a document's own "[Calculator(" or "<<"); both read `build`'s output back exactly.

An annotation's position is a character offset in the stripped text, in `build`'s canonical form
(before the single space that precedes a word), so it is where a sampled call would point and
`build` writes the call back exactly where it was.

Bad input is never dropped silently: an unparseable annotation, one the calculator cannot run, or
a result that disagrees with the calculator's raises BadAnnotation naming file and line; with
skip_bad=True the document is skipped and counted per reason in AnnotationStats (with the first
examples). keep_disagreeing=True keeps annotations whose result disagrees, and counts them.
"""
from __future__ import annotations

import functools
import inspect
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

from toolformer.benchmarks import in_test_split, math_example, problem_text, question_prompt
from toolformer.corpus.calls import canonical_position, strip_calls
from toolformer.corpus.syntax import HW3, TOOLFORMER
from toolformer.errors import UserFileNotFound
from toolformer.registry import Registry
from toolformer.run.records import BadRecord, Document, ReadStats, read_jsonl
from toolformer.tools import get_tool, run_call

# why a document was skipped
BAD_RECORD = "bad record"                   # not a JSON object, or fields missing
UNPARSEABLE = "unparseable"                 # an annotation or formula that cannot be read
CALCULATOR_ERROR = "calculator error"       # the calculator cannot evaluate the expression
DISAGREES = "disagrees with the calculator"
ANSWER_NOT_A_NUMBER = "answer is not a number"   # equation rows: ASDiv has names, times, ratios
FORMULA_VS_ANSWER = "formula result differs from the answer"
EXAMPLES_PER_REASON = 5


class BadAnnotation(BadRecord):
    """A bad annotation at file:line, with the kind of problem it is (one of the reasons above)."""

    def __init__(self, path: str | Path, line: int, kind: str, reason: str):
        super().__init__(path, line, reason)
        self.kind = kind


@dataclass(frozen=True)
class Annotation:
    position: int            # character offset in the stripped text (canonical, see the module docstring)
    tool: str                # as written in calls: "Calculator"
    input: str
    result: str | None       # the annotated result; None when the format writes none


@dataclass(frozen=True)
class AnnotatedDocument:
    document: Document       # its text has no call left in it
    annotations: tuple[Annotation, ...]

    @property
    def id(self) -> str:
        return self.document.id


@dataclass
class AnnotationStats:
    documents: int = 0
    annotations: int = 0
    skipped: Counter = field(default_factory=Counter)      # reason -> documents skipped (skip_bad)
    disagreeing_kept: int = 0                              # annotations kept by keep_disagreeing
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> first "file:line: why"

    def note(self, kind: str, message: str) -> None:
        shown = self.examples.setdefault(kind, [])
        if len(shown) < EXAMPLES_PER_REASON:
            shown.append(message)

    def skip(self, err: BadRecord) -> None:
        kind = getattr(err, "kind", BAD_RECORD)
        self.skipped[kind] += 1
        self.note(kind, str(err))

    def as_dict(self) -> dict:
        return {"documents": self.documents, "annotations": self.annotations,
                "skipped": dict(self.skipped), "disagreeing_kept": self.disagreeing_kept,
                "examples": self.examples}


Where = tuple[Path, int]
# a format: (row, document id, where) -> (the document without its calls, its annotations)
RowParser = Callable[[dict, str, Where], tuple[Document, list[Annotation]]]
FORMATS: Registry[RowParser] = Registry("annotation format")
CALCULATOR = get_tool("calculator")


# ---------------------------------------------------------------------------- numbers

def number_text(value: float) -> str:
    """9.0 -> "9", 21.9 -> "21.9": a number as an answer writes it (no exponent)."""
    return format(Decimal(repr(value)).normalize(), "f")


# a number as annotations write it: "24", "-3.5", ".4" (GSM8K), "1,200", "$5"
NUMBER = re.compile(r"\s*-?\$?(?:\d{1,3}(?:,\d{3})+|\d*)(?:\.\d+)?\s*")


def parse_number(text: str) -> float | None:
    if not NUMBER.fullmatch(text) or not any(ch.isdigit() for ch in text):
        return None
    return float(text.replace(",", "").replace("$", ""))


def agrees(written: str, calculated: str) -> bool:
    """Two numbers agree when they are equal up to the calculator's rounding to 2 decimals."""
    a, b = parse_number(written), parse_number(calculated)
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-4, abs_tol=0.005 + 1e-9)


# ---------------------------------------------------------------------------- inline formats

def _row_text(row: dict, where: Where) -> tuple[str, dict]:
    """(text, meta) of an inline row: its `text`, or GSM8K's question and answer in the eval's prompt."""
    if isinstance(row.get("text"), str):
        meta = row.get("meta", {})
        return row["text"], meta if isinstance(meta, dict) else {}
    problem = problem_text(row)
    if isinstance(problem, str) and isinstance(row.get("answer"), str):
        return f"{question_prompt(problem)} {row['answer'].strip()}", {"problem": problem}
    raise BadRecord(*where, "a row needs a `text`, or a `question` and an `answer` (strings)")


def _check_markers(text: str, spans: list[tuple[int, int]], markers: Iterable[re.Match], where: Where) -> None:
    """Every start or end marker in the text belongs to a parsed annotation."""
    for m in markers:
        if not any(s <= m.start() < e for s, e in spans):
            context = text[max(0, m.start() - 20):m.end() + 20]
            raise BadAnnotation(*where, UNPARSEABLE, f"{m.group()!r} at character {m.start()} is not part of an "
                                                     f"annotation: ...{context}...")


def _remove_marked(text: str, marked: list[tuple[int, int, str, str | None]]) -> tuple[str, list[Annotation]]:
    """Cut each (start, end, input, result) span out of the text; nothing else changes."""
    pieces, offsets, last = [], [], 0
    for start, end, input, result in marked:
        pieces.append(text[last:start])
        offsets.append(sum(map(len, pieces)))
        last = end
    plain = "".join(pieces) + text[last:]
    return plain, [Annotation(canonical_position(plain, p), CALCULATOR.name, input, result)
                   for p, (_, _, input, result) in zip(offsets, marked)]


GSM8K_CALL = re.compile(r"<<([^<>]*)>>")


def _gsm8k_row(row: dict, doc_id: str, where: Where):
    text, meta = _row_text(row, where)
    marked = []
    for m in GSM8K_CALL.finditer(text):
        input, eq, result = m.group(1).rpartition("=")
        if not eq or not input.strip() or parse_number(result) is None:
            raise BadAnnotation(*where, UNPARSEABLE, f"{m.group()!r} is not <<expression=number>>")
        marked.append((m.start(), m.end(), input.strip(), result.strip()))
    _check_markers(text, [(s, e) for s, e, _, _ in marked], re.finditer("<<|>>", text), where)
    plain, annotations = _remove_marked(text, marked)
    return Document(doc_id, plain, meta), annotations


def _hw3_row(row: dict, doc_id: str, where: Where):
    text, meta = _row_text(row, where)
    # the number after >> is the result and the text's own number: only <<expression>> goes
    plain, found = strip_calls(text, HW3)
    _check_markers(text, [c.span for _, c in found], HW3.markers(text), where)
    return Document(doc_id, plain, meta), [Annotation(p, CALCULATOR.name, c.input, c.result or None)
                                           for p, c in found]


def _tool_name(name: str) -> str | None:
    try:
        return get_tool(name).name
    except ValueError:
        return None


def _toolformer_row(row: dict, doc_id: str, where: Where):
    text, meta = _row_text(row, where)
    plain, found = strip_calls(text, TOOLFORMER)
    spans = [c.span for _, c in found]
    for m in TOOLFORMER.markers(text):  # "[Calculator(" that did not parse: a broken call
        if _tool_name(m.group("name")) and not any(s <= m.start() < e for s, e in spans):
            raise BadAnnotation(*where, UNPARSEABLE, f"the call at character {m.start()} does not parse: "
                                                     f"{text[m.start():m.start() + 60]!r}")
    annotations = []
    for position, call in found:
        name = _tool_name(call.tool)
        if name is None:
            raise BadAnnotation(*where, UNPARSEABLE, f"unknown tool {call.tool!r} in {TOOLFORMER.render_call(call)!r}")
        annotations.append(Annotation(position, name, call.input, call.result))
    return Document(doc_id, plain, meta), annotations


# ---------------------------------------------------------------------------- equation fields

EQUATION = re.compile(r"\s*(?:[A-Za-z]\s*=)?(?P<input>[^=;]+?)(?:=(?P<result>[^=;]+))?\s*")


# ASDiv writes units into formulas: "1 (quarter)*25 (cent/quarter) = 25 (cent)", "99+99=198 cents"
UNIT = re.compile(r"\(\s*[A-Za-z][A-Za-z /.'-]*\)")
TRAILING_UNIT = re.compile(r"(=\s*-?[\d.,]+)\s*[A-Za-z][A-Za-z ]*$")


def split_equation(equation: str) -> tuple[str, str | None] | None:
    """(expression, result or None) of "7+2=9", "( 290.0 / 2.0 )" or "x=(5+3)*2"; None otherwise.
    Units are dropped ("3 (nickel)*5 (cent/nickel) = 15 (cent)" is 3*5=15); of steps chained with
    ";" the last is the call when it states its result ("(1*60) = 60; 60 + 30 = 90" is 60 + 30=90:
    it gives the answer; "x+4=11; x=7" is algebra, None)."""
    steps = UNIT.sub("", equation).split(";")
    m = EQUATION.fullmatch(TRAILING_UNIT.sub(r"\1", steps[-1].strip()))
    if m is None or not m.group("input").strip() or (len(steps) > 1 and m.group("result") is None):
        return None
    result = m.group("result")
    if result is not None and parse_number(result) is None:
        return None
    return m.group("input").strip(), None if result is None else result.strip()


def equation_rows(field_name: str) -> RowParser:
    """Rows with the question, the answer and an equation field: one call before the answer."""
    def parse(row: dict, doc_id: str, where: Where):
        example = math_example(row, doc_id, where)  # the eval's own prompt, "Question: ...\nAnswer:"
        if example is None:
            raise BadAnnotation(*where, ANSWER_NOT_A_NUMBER, "the answer is not a number")
        equation = row.get(field_name)
        parts = split_equation(equation) if isinstance(equation, str) else None
        if parts is None:
            raise BadAnnotation(*where, UNPARSEABLE, f"{field_name} {equation!r} is not expression[=number]")
        input, result = parts
        answer = number_text(float(example.gold[0]))
        if result is not None and not agrees(result, answer):
            raise BadAnnotation(*where, FORMULA_VS_ANSWER, f"{field_name} {equation!r} gives {result}, "
                                                           f"the answer is {answer}")
        document = Document(doc_id, f"{example.prompt} {answer}", {"problem": example.problem})
        return document, [Annotation(len(example.prompt), CALCULATOR.name, input, result or answer)]
    return parse


FORMATS.register("gsm8k", _gsm8k_row)
FORMATS.register("hw3", _hw3_row)
FORMATS.register("toolformer", _toolformer_row)
FORMATS.register("asdiv", equation_rows("formula"))
FORMATS.register("svamp", equation_rows("Equation"))
FORMATS.register("mawps", equation_rows("equation"))


# ---------------------------------------------------------------------------- reading

@functools.cache
def _calculator():
    return CALCULATOR.make_executor(**CALCULATOR.options)


def _check_results(annotations: list[Annotation], where: Where, keep_disagreeing: bool,
                   stats: AnnotationStats) -> None:
    """Each Calculator annotation with a result runs on the calculator, which must agree."""
    for number, annotation in enumerate(annotations, 1):
        if annotation.tool != CALCULATOR.name or annotation.result is None:
            continue
        out = run_call(CALCULATOR, _calculator(), annotation.input)
        if out.error is not None:
            raise BadAnnotation(*where, CALCULATOR_ERROR, f"annotation {number} ({annotation.input!r}): "
                                                          f"the calculator says {out.error}")
        if not agrees(annotation.result, out.result):
            err = BadAnnotation(*where, DISAGREES, f"annotation {number} ({annotation.input!r}) says "
                                                   f"{annotation.result}, the calculator gives {out.result}")
            if not keep_disagreeing:
                raise err
            stats.disagreeing_kept += 1
            stats.note(DISAGREES, str(err))


def read_annotated(path: str | Path, format: str, skip_bad: bool = False, stats: AnnotationStats | None = None,
                   keep_disagreeing: bool = False, wiki_corpus: str | None = None) -> Iterator[AnnotatedDocument]:
    """Each JSONL row of `path` in the annotation `format` (see FORMATS) as the document without its
    calls and its annotations, in file order. A format that searches Wikipedia to place its
    candidates (a parser taking `wiki_corpus`) searches `wiki_corpus` (None: the embedded leads)."""
    path = Path(path)
    if not path.exists():
        raise UserFileNotFound(f"annotated data not found: {path}")
    parse_row = FORMATS.get(format)
    if "wiki_corpus" in inspect.signature(parse_row).parameters:
        parse_row = functools.partial(parse_row, wiki_corpus=wiki_corpus)
    stats = stats if stats is not None else AnnotationStats()
    records = ReadStats()
    seen: set[str] = set()
    try:
        for line, row in read_jsonl(path, skip_bad=skip_bad, stats=records):
            where = (path, line)
            try:
                doc_id = str(row.get("id", f"{path.stem}:{line}"))
                if doc_id in seen:
                    raise BadRecord(*where, f"duplicate id {doc_id!r}")
                document, annotations = parse_row(row, doc_id, where)
                _check_results(annotations, where, keep_disagreeing, stats)
            except BadRecord as err:
                if not skip_bad:
                    raise
                stats.skip(err)
                continue
            seen.add(doc_id)
            stats.documents += 1
            stats.annotations += len(annotations)
            yield AnnotatedDocument(document, tuple(annotations))
    finally:  # lines that are not JSON objects, counted however far the caller read
        if records.skipped_bad:
            stats.skipped[BAD_RECORD] += records.skipped_bad
            for message in records.examples:
                stats.note(BAD_RECORD, message)


# ---------------------------------------------------------------------------- train/test split

Row = TypeVar("Row")


def problem_of(row) -> str:
    """What decides a row's side of a split: the problem text, as `toolformer eval` uses."""
    if isinstance(row, AnnotatedDocument):
        return row.document.meta.get("problem") or row.document.text
    return problem_text(row) or ""


def split_rows(rows: Iterable[Row], test_fraction: float, seed: int,
               key: Callable[[Row], str] = problem_of) -> tuple[list[Row], list[Row]]:
    """(train, test) by the evaluation's own rule (`in_test_split` on each problem's text, fixed by
    the text and the seed alone): with a benchmark's split, e.g. get_benchmark("asdiv").split, no
    problem `toolformer eval` tests on is ever in the train part, whichever rows were dropped here."""
    train, test = [], []
    for row in rows:
        (test if in_test_split(key(row), test_fraction, seed) else train).append(row)
    return train, test
