"""Benchmarks (paper §4): data loading, splits, zero-shot prompts and the lenient metrics.

A data layer below both training and evaluation: the corpus readers take ASDiv's train split and
the eval's prompt from here, the evaluation its test split and metrics.

    math     svamp, asdiv, mawps, gsm8k   correct if the first number of the output is the answer
    LAMA     lama-google-re, lama-squad, lama-trex   correct if the answer is in the first 5 words
    QA       nq, webq, triviaqa           correct if a gold answer is in the first 20 words
    dateset  questions about dates relative to "today" (seeded), answered with the Calendar tool

Local files are read from a data folder (--data-dir or $TOOLFORMER_DATA; the layout of the shared
data folder, see its README), or one file given with --data-file; benchmarks without a local file
come from the hub (`datasets.load_dataset`) when it can be reached. LAMA examples whose [MASK] is
not at the end are left out, as in the paper (a left-to-right model completes the sentence);
math examples whose answer is not a number (ASDiv has names, times, ratios) are left out too. Both
are counted.

A benchmark that is also trained on (ASDiv) declares a fixed, seeded train/test split
(`split_examples`); evaluation uses its test part unless told otherwise. One whose train set is a
file of its own (GSM8K) reads it only when told (--split train): never a training file by default.
The others are test sets and are always evaluated whole.
"""
from __future__ import annotations

import hashlib
import math
import os
import random
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Iterable, Iterator

from toolformer.errors import UserError, UserFileNotFound, UserValueError
from toolformer.registry import Registry
from toolformer.run.records import BadRecord, read_jsonl


@dataclass(frozen=True)
class Example:
    id: str
    prompt: str
    gold: tuple[str, ...]   # accepted answers as text (math: one number)
    metric: str             # "number", "words5" or "words20"
    meta: dict = field(default_factory=dict)  # tool context, e.g. {"date": "2021-03-04"} for Calendar
    problem: str = ""       # math: the problem without the prompt frame, which decides its split


@dataclass(frozen=True)
class Split:
    """A fixed train/test split: a problem is in the test part when its hash says so."""
    test_fraction: float
    seed: int


@dataclass(frozen=True)
class Benchmark:
    name: str
    kind: str                               # math, lama, qa or dateset
    files: tuple[str, ...] = ()             # under the data folder
    hub: tuple[str, str | None, str] | None = None  # (dataset id, config, split)
    deny_tools: tuple[str, ...] = ()        # tools the paper does not allow on this task
    max_new_tokens: int = 64
    split: Split | None = None              # None: a test set, evaluated whole
    train_files: tuple[str, ...] = ()       # a separate train set, read only with --split train or all
    get: str = ""                           # how to get the files, said when they are missing
    expected_tool: str | None = None        # the tool that belongs here: the right-tool rate counts calls to it


BENCHMARKS: Registry[Benchmark] = Registry("benchmark")
for _bench in (
    Benchmark("svamp", "math", ("math/svamp.jsonl",), ("ChilleD/SVAMP", None, "test"), expected_tool="Calculator"),
    # ASDiv is also training data (issue 11): a fixed 30% is held out for evaluation
    Benchmark("asdiv", "math", ("math/asdiv.jsonl",), ("EleutherAI/asdiv", None, "validation"),
              split=Split(test_fraction=0.3, seed=0), expected_tool="Calculator"),
    Benchmark("mawps", "math", (), ("MU-NLPC/Calc-mawps", None, "test"), expected_tool="Calculator"),
    # the demo and the seeds train on GSM8K's train set: only the test set is evaluated by default
    Benchmark("gsm8k", "math", ("math/gsm8k_test.jsonl",), ("openai/gsm8k", "main", "test"),
              train_files=("math/gsm8k_train.jsonl",),
              get="GSM8K's test set (1,319 problems) is grade_school_math/data/test.jsonl of "
                  "github.com/openai/grade-school-math: save it as math/gsm8k_test.jsonl in the data folder, "
                  "or pass it with --data-file FILE, or load it with --hub openai/gsm8k:main (online); "
                  "--split train evaluates on the train set instead", expected_tool="Calculator"),
    # the paper keeps the search engine away from LAMA and the QA model away from QA benchmarks
    Benchmark("lama-google-re", "lama", ("lama/google_re_date_of_birth.jsonl", "lama/google_re_place_of_birth.jsonl",
                                         "lama/google_re_place_of_death.jsonl"), None, ("WikiSearch",), 32,
              expected_tool="QA"),
    Benchmark("lama-squad", "lama", ("lama/squad.jsonl",), None, ("WikiSearch",), 32, expected_tool="QA"),
    Benchmark("lama-trex", "lama", (), ("facebook/lama", "trex", "train"), ("WikiSearch",), 32, expected_tool="QA"),
    Benchmark("nq", "qa", ("qa/nq_test.jsonl",), ("google-research-datasets/nq_open", None, "validation"), ("QA",),
              expected_tool="WikiSearch"),
    Benchmark("webq", "qa", ("qa/webq_test.jsonl",), ("stanfordnlp/web_questions", None, "test"), ("QA",),
              expected_tool="WikiSearch"),
    Benchmark("triviaqa", "qa", (), ("mandarjoshi/trivia_qa", "rc.nocontext", "validation"), ("QA",),
              expected_tool="WikiSearch"),
    Benchmark("dateset", "dateset", max_new_tokens=40, expected_tool="Calendar"),
):
    BENCHMARKS.register(_bench.name, _bench)


def get_benchmark(name: str) -> Benchmark:
    return BENCHMARKS.get(name)


# ---------------------------------------------------------------------------- splits and subsets

def _unit(purpose: str, seed: int, key: str) -> float:
    """A number in [0, 1) fixed by (purpose, seed, key): the same on every machine and Python."""
    digest = hashlib.sha256(f"{purpose}\0{seed}\0{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def split_key(problem: str) -> str:
    """What decides a problem's side of a split: its text with whitespace normalised, so a problem
    lands on the same side whatever file, line or id it comes with, and duplicates stay together."""
    return " ".join(problem.split())


def in_test_split(key: str, test_fraction: float, seed: int) -> bool:
    return _unit("split", seed, split_key(key)) < test_fraction


def split_examples(keys: Iterable[str], test_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train keys, test keys), each in the given order. Pure and deterministic: a key's side
    depends only on the key, the fraction and the seed, never on the other keys or their order.
    For math rows the key is the problem text (`problem_text(row)`), as evaluation uses."""
    train, test = [], []
    for key in keys:
        (test if in_test_split(key, test_fraction, seed) else train).append(key)
    return train, test


def seeded_subset(ids: list[str], limit: int, seed: int) -> set[str]:
    """The `limit` ids first in a seeded order. A larger limit keeps every id of a smaller one,
    so an evaluation can be extended and resumed."""
    return set(sorted(ids, key=lambda i: _unit("subset", seed, i))[:limit])


def limit_examples(examples: list[Example], limit: int | None, seed: int) -> list[Example]:
    """A seeded subset of `limit` examples (all with None), in their given order."""
    if limit is None or limit >= len(examples):
        return examples
    keep = seeded_subset([e.id for e in examples], limit, seed)
    return [e for e in examples if e.id in keep]


# ---------------------------------------------------------------------------- lenient metrics

# a number: thousands groups "1,234" or plain digits, an optional decimal part
NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")
ARTICLES = {"a", "an", "the"}


def first_number(text: str) -> float | None:
    m = NUMBER.search(text)
    return float(m.group().replace(",", "")) if m else None


def numeric_gold(answer) -> float | None:
    """The number an answer states: 145.0, "72", "1,200", "9 (apples)"; None for "3:30 p.m." or names."""
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        return float(answer)
    m = re.fullmatch(r"\s*(" + NUMBER.pattern + r")\s*(\([^()]*\))?\s*", str(answer))
    return float(m.group(1).replace(",", "")) if m else None


def normalize_words(text: str) -> list[str]:
    """Lower case, accents and punctuation removed, articles dropped (SQuAD style, punctuation -> space)."""
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text.lower())
    return [w for w in text.split() if w not in ARTICLES]


def words_contain(output: str, golds: Iterable[str], n: int) -> bool:
    """A gold answer (as a run of whole words) occurs in the first n words of the output."""
    said = " " + " ".join(normalize_words(" ".join(output.split()[:n]))) + " "
    return any((g := " ".join(normalize_words(gold))) and f" {g} " in said for gold in golds)


def score(example: Example, answer: str) -> tuple[bool, object]:
    """(correct, what was parsed from the answer)."""
    if example.metric == "number":
        pred = first_number(answer)
        gold = float(example.gold[0])
        return pred is not None and math.isclose(pred, gold, rel_tol=1e-4, abs_tol=1e-6), pred
    n = {"words5": 5, "words20": 20}[example.metric]
    return words_contain(answer, example.gold, n), " ".join(answer.split()[:n])


# ---------------------------------------------------------------------------- prompts and rows

def question_prompt(question: str) -> str:
    return f"Question: {question.strip()}\nAnswer:"


def _field(row: dict, names: tuple[str, ...]):
    return next((row[n] for n in names if row.get(n) not in (None, "", [])), None)


QUESTION = ("question", "Question", "sQuestion", "problem", "Problem", "input")
ANSWER = ("answer", "Answer", "result", "target", "lSolutions", "answers")


def problem_text(row: dict) -> str | None:
    """A math row's problem: its body (ASDiv, SVAMP) and question; None without a question."""
    question = _field(row, QUESTION)
    if question is None:
        return None
    body = _field(row, ("body", "Body"))
    return f"{body.strip()} {question.strip()}" if body else question


def math_example(row: dict, id: str, where: tuple) -> Example | None:
    problem = problem_text(row)
    answer = _field(row, ANSWER)
    if problem is None or answer is None:
        raise BadRecord(*where, f"a math row needs a question ({'/'.join(QUESTION)}) and an answer "
                                f"({'/'.join(ANSWER)})")
    if isinstance(answer, list):
        answer = answer[0]
    if isinstance(answer, str) and "####" in answer:  # GSM8K: worked solution, then "#### 72"
        answer = answer.rsplit("####", 1)[1]
    gold = numeric_gold(answer)
    return None if gold is None else Example(id, question_prompt(problem), (repr(gold),), "number", problem=problem)


def lama_example(row: dict, id: str, where: tuple) -> Example | None:
    sentence = row.get("masked_sentence") or (row.get("masked_sentences") or [None])[0]
    gold = row.get("obj_label")
    if not isinstance(sentence, str) or not isinstance(gold, str):
        raise BadRecord(*where, "a LAMA row needs masked_sentence (or masked_sentences) and obj_label")
    head, mask, tail = sentence.partition("[MASK]")
    if not mask or "[MASK]" in tail or tail.strip(" .!?") or not head.strip():
        return None  # the paper keeps only sentences that end with the mask
    return Example(id, head.rstrip(), (gold,), "words5")


def qa_example(row: dict, id: str, where: tuple) -> Example | None:
    question = _field(row, ("question", "Question", "query"))
    answers = _field(row, ("answers", "answer", "Answer"))
    if isinstance(answers, dict):  # TriviaQA: {"value": ..., "aliases": [...]}
        answers = [answers.get("value")] + list(answers.get("aliases") or [])
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(question, str) or not isinstance(answers, list) or not all(isinstance(a, str) for a in answers if a):
        raise BadRecord(*where, "a QA row needs question and answers (a list of strings)")
    return Example(id, question_prompt(question), tuple(a for a in answers if a), "words20")


ROW_READERS = {"math": math_example, "lama": lama_example, "qa": qa_example}


# ---------------------------------------------------------------------------- dateset

def dateset(n: int = 500, seed: int = 0) -> list[Example]:
    """Date questions relative to a hidden "today" (meta["date"], what Calendar returns), seeded.

    The prompt never states the date: without the Calendar tool a model can only guess.
    """
    from toolformer.tools.calendar import MONTHS, WEEKDAYS
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        today = date(2000, 1, 1) + timedelta(days=rng.randrange(31 * 365))
        k = rng.randint(2, 200)       # days, for "how many days" questions
        near = k % 30 + 1             # days, for weekday questions
        kind = i % 7
        if kind == 0:
            q, gold, metric = "What day of the week is it today?", WEEKDAYS[today.weekday()], "words5"
        elif kind == 1:
            day = today - timedelta(days=near)
            q, gold, metric = f"What day of the week was it {near} days ago?", WEEKDAYS[day.weekday()], "words5"
        elif kind == 2:
            day = today + timedelta(days=near)
            q, gold, metric = f"What day of the week will it be in {near} days?", WEEKDAYS[day.weekday()], "words5"
        elif kind == 3:
            back = k % 11 + 1
            q, gold, metric = f"What month was it {back} months ago?", MONTHS[(today.month - 1 - back) % 12], "words5"
        elif kind == 4:
            q, gold, metric = "What year is it?", str(today.year), "number"
        elif kind == 5:
            day = today - timedelta(days=k)
            q, gold, metric = f"How many days ago was {MONTHS[day.month - 1]} {day.day}?", str(k), "number"
        else:
            day = today + timedelta(days=k)
            q, gold, metric = f"How many days are left until {MONTHS[day.month - 1]} {day.day}?", str(k), "number"
        examples.append(Example(f"dateset-{i}", question_prompt(q), (gold,), metric, {"date": today.isoformat()}))
    return examples


# ---------------------------------------------------------------------------- loading

def _data_dir(data_dir: str | Path | None) -> Path | None:
    value = data_dir or os.environ.get("TOOLFORMER_DATA")
    return Path(value) if value else None


def _hub_rows(bench: Benchmark, hub: str | None, split: str | None) -> tuple[Iterator[tuple[int, dict]], str]:
    if hub is None:
        dataset_id, config, default_split = bench.hub
    else:  # "id" or "id:config"
        dataset_id, _, config = hub.partition(":")
        config, default_split = config or None, "test"
    split = split or default_split
    try:
        from datasets import load_dataset
        rows = load_dataset(dataset_id, config, split=split)
    except Exception as err:  # noqa: BLE001 - offline, unknown id, script datasets: one clear message
        raise UserError(
            f"benchmark {bench.name}: loading {dataset_id}{':' + config if config else ''} [{split}] from the hub "
            f"failed ({type(err).__name__}: {str(err)[:200]}). Offline, pass --data-file FILE "
            f"(JSONL in the format of the {bench.kind} benchmarks, see `toolformer eval --help`)") from None
    return enumerate(rows, 1), f"hub:{dataset_id}{':' + config if config else ''}[{split}]"


def _part_files(bench: Benchmark, part: str) -> tuple[str, ...]:
    """The local files of a part: a separate train set's only with train or all."""
    if not bench.train_files:
        return bench.files
    return {"test": bench.files, "train": bench.train_files, "all": bench.files + bench.train_files}[part]


def _read_sources(bench: Benchmark, part: str, data_file, data_dir, hub, hub_split) -> list[tuple[object, Iterable]]:
    """(where, numbered rows) for each file or hub dataset the benchmark reads."""
    if data_file is not None:
        return [(Path(data_file), read_jsonl(data_file))]
    files = _part_files(bench, part)
    if hub is None and files:
        folder = _data_dir(data_dir)
        get = f". {bench.get}" if bench.get else ""
        if folder is None:
            raise UserFileNotFound(
                f"benchmark {bench.name} reads {', '.join(files)} from a data folder: pass --data-dir DIR "
                f"(e.g. the shared data folder) or set TOOLFORMER_DATA, or give one file with --data-file{get}")
        missing = [f for f in files if not (folder / f).exists()]
        if missing:
            raise UserFileNotFound(f"benchmark {bench.name}: {', '.join(str(folder / f) for f in missing)} "
                                   f"not found{get}")
        return [(folder / f, read_jsonl(folder / f)) for f in files]
    if hub is None and bench.hub is None:
        raise UserFileNotFound(f"benchmark {bench.name} has no default source: pass --data-file FILE or --hub ID")
    rows, label = _hub_rows(bench, hub, hub_split)
    return [(label, rows)]


def split_part(bench: Benchmark, part: str | None) -> str:
    """The part of a benchmark to evaluate: test, train or all (default: test where there is a split
    or a train set)."""
    if part not in (None, "test", "train", "all"):
        raise UserValueError(f"--split must be test, train or all, not {part!r}")
    if bench.split is None and not bench.train_files:
        if part == "train":
            raise UserValueError(f"benchmark {bench.name} is a test set: it has no train part (--split test or all)")
        return "all"
    return part or "test"


def load_examples(name: str, *, data_file: str | Path | None = None, data_dir: str | Path | None = None,
                  hub: str | None = None, hub_split: str | None = None, split: str | None = None,
                  limit: int | None = None, seed: int = 0) -> tuple[list[Example], dict]:
    """(examples, info): info says where they came from, which part of the split, how many were
    left out and why.

    split: test, train or all of a benchmark with a seeded split or a train set of its own (default
    test); test sets are always evaluated whole. With a limit, a seeded subset is taken (benchmarks are often sorted
    by difficulty), in file order; a larger limit keeps the examples of a smaller one.
    """
    bench = get_benchmark(name)
    part = split_part(bench, split)
    info = {"left_out": 0}
    if bench.kind == "dateset":
        examples = dateset(limit or 500, seed)
        return examples, {**info, "data": f"generated (seed {seed})", "split": {"part": part}}
    sources = _read_sources(bench, part, data_file, data_dir, hub, hub_split)
    reader = ROW_READERS[bench.kind]
    examples = []
    for source, rows in sources:
        for number, row in rows:
            ex = reader(row, f"{Path(str(source)).stem}:{number}", (source, number))
            if ex is None:
                info["left_out"] += 1
            else:
                examples.append(ex)
    info["data"] = ", ".join(str(s) for s, _ in sources)
    info["split"] = {"part": part}
    if bench.split is not None and part != "all":
        fraction, split_seed = bench.split.test_fraction, bench.split.seed
        info["split"] |= {"test_fraction": fraction, "seed": split_seed, "key": "problem text",
                          "of": len(examples)}
        examples = [e for e in examples if in_test_split(e.problem, fraction, split_seed) == (part == "test")]
    info["available"] = len(examples)
    return limit_examples(examples, limit, seed), info
