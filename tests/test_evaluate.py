"""Lenient metrics on hand-made cases, benchmark loading, dateset, and evaluation end to end."""
from __future__ import annotations

import json
import re
from datetime import date, datetime

import pytest

from conftest import SHARED_DATA, tiny_llama
from test_generate import Steered, counting_tool
from toolformer.evaluation.benchmarks import (Example, dateset, first_number, load_examples, numeric_gold, score,
                                   words_contain)
from toolformer.evaluation.evaluate import evaluate, run_mode
from toolformer.inference.decoder import ToolBox, ToolDecoder
from toolformer.run.records import BadRecord, dumps
from toolformer.corpus.syntax import TOOLFORMER


# ---------------------------------------------------------------------------- metrics

@pytest.mark.parametrize("text, number", [
    ("The answer is 1,234.5 apples", 1234.5), (" 3, 4 and 5", 3), ("-7 degrees", -7), ("12,3456", 12),
    ("It costs $2,000,000.", 2000000), ("9.", 9), ("no number here", None), ("0.29 of them", 0.29)])
def test_first_number(text, number):
    assert first_number(text) == number


@pytest.mark.parametrize("answer, gold", [
    ("9 (apples)", 9), (145.0, 145), ("1,200", 1200), (" 72\n", 72), ("0.5 (cup)", 0.5),
    ("3:30 p.m.", None), ("Yes", None), ("5:6", None), ("6th", None)])
def test_numeric_gold(answer, gold):
    assert numeric_gold(answer) == gold


def math(gold: float) -> Example:
    return Example("m", "Question: ...\nAnswer:", (repr(float(gold)),), "number")


@pytest.mark.parametrize("answer, correct", [
    (" 9 apples", True), ("There are 9 apples.", True), ("7 + 2 = 9", False), ("9.0", True),
    ("nine", False), ("", False), ("1,234 people", False)])
def test_math_first_number_only(answer, correct):
    assert score(math(9), answer)[0] is correct
    assert score(math(1234), "1,234 people")[0]


def test_words_within_the_first_n():
    assert words_contain("He was born in Lebanon.", ["Lebanon"], 5)
    assert not words_contain("He was born in the city of Lebanon", ["Lebanon"], 5)  # 7th word
    assert words_contain("born in New York City", ["New York"], 5)
    assert not words_contain("born in Yorkshire", ["York"], 5)  # whole words only
    assert words_contain("beatles played", ["The Beatles"], 5)  # articles dropped
    assert words_contain("It was Wilhelm Conrad Rontgen in 1901", ["Wilhelm Conrad Röntgen"], 20)  # accents
    assert words_contain("on May 18, 2018.", ["May 18 , 2018"], 20)  # punctuation
    words = " ".join(f"w{i}" for i in range(19))
    assert words_contain(words + " Paris", ["Paris"], 20) and not words_contain(words + " x Paris", ["Paris"], 20)
    assert not words_contain("anything", ["", "..."], 20)  # an empty gold matches nothing


def test_score_metrics_by_kind():
    lama = Example("l", "Peter Martin (born", ("1941",), "words5")
    assert score(lama, "1941) is an American")[0] and not score(lama, "in the early year of 1941")[0]  # 6th word
    qa = Example("q", "Question: who?\nAnswer:", ("Cyrus", "Cyrus the Great"), "words20")
    assert score(qa, "It was Cyrus.") == (True, "It was Cyrus.")


# ---------------------------------------------------------------------------- loading

def write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(dumps(r) + "\n" for r in rows))


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("TOOLFORMER_DATA", raising=False)
    write(tmp_path / "math" / "asdiv.jsonl", [
        {"body": "Seven red apples and two green apples are in the basket.", "question": "How many apples?",
         "answer": "9 (apples)"},
        {"body": "Who is taller?", "question": "Name?", "answer": "Mrs. Hilt"},
        {"body": "A clock.", "question": "When?", "answer": "3:30 p.m."}])
    write(tmp_path / "lama" / "squad.jsonl", [
        {"masked_sentence": "Von Miller plays in [MASK] position.", "obj_label": "linebacker"},
        {"masked_sentence": "The first choice was [MASK].", "obj_label": "Manning"}])
    write(tmp_path / "qa" / "nq_test.jsonl", [{"question": "who wrote it", "answers": ["Cyrus"]},
                                             {"question": "no answers"}])
    return tmp_path


def test_load_formats_and_left_out_counts(data_dir):
    examples, info = load_examples("asdiv", data_dir=data_dir)
    assert [e.prompt for e in examples] == ["Question: Seven red apples and two green apples are in the basket. "
                                            "How many apples?\nAnswer:"]
    assert examples[0].gold == ("9.0",) and info["left_out"] == 2 and info["available"] == 1
    examples, info = load_examples("lama-squad", data_dir=data_dir)
    assert [(e.prompt, e.gold) for e in examples] == [("The first choice was", ("Manning",))] and info["left_out"] == 1
    with pytest.raises(BadRecord, match=r"qa/nq_test.jsonl:2: a QA row needs question and answers"):
        load_examples("nq", data_dir=data_dir)


def test_missing_data_says_what_to_pass(tmp_path, monkeypatch):
    monkeypatch.delenv("TOOLFORMER_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match=r"--data-dir DIR.*TOOLFORMER_DATA.*--data-file"):
        load_examples("svamp")
    with pytest.raises(FileNotFoundError, match=r"math/svamp.jsonl not found"):
        load_examples("svamp", data_dir=tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match=r"triviaqa: loading mandarjoshi/trivia_qa:rc.nocontext .* --data-file"):
        load_examples("triviaqa")
    write(tmp_path / "mawps.jsonl", [{"sQuestion": "Tom has 3 apples and gets 4. How many?", "lSolutions": [7.0]}])
    examples, info = load_examples("mawps", data_file=tmp_path / "mawps.jsonl")
    assert examples[0].gold == ("7.0",) and info["data"] == str(tmp_path / "mawps.jsonl")


def test_limit_is_a_seeded_subset(data_dir):
    write(data_dir / "qa" / "webq_test.jsonl", [{"question": f"q{i}", "answers": [str(i)]} for i in range(50)])
    a, _ = load_examples("webq", data_dir=data_dir, limit=10, seed=1)
    b, _ = load_examples("webq", data_dir=data_dir, limit=10, seed=1)
    c, _ = load_examples("webq", data_dir=data_dir, limit=10, seed=2)
    assert [e.id for e in a] == [e.id for e in b] != [e.id for e in c]
    assert [e.id for e in a] == sorted((e.id for e in a), key=lambda s: int(s.split(":")[1]))  # order kept


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.exists(), reason=f"shared data not found at {SHARED_DATA}")
def test_real_benchmark_files():
    counts = {}
    for name in ("svamp", "asdiv", "gsm8k", "lama-google-re", "lama-squad", "nq", "webq"):
        examples, info = load_examples(name, data_dir=SHARED_DATA)
        counts[name] = (len(examples), info["left_out"])
    assert counts["svamp"] == (1000, 0) and counts["gsm8k"] == (7473, 0)
    assert sum(counts["asdiv"]) == 2215 and counts["asdiv"][1] > 100  # names, times, ratios left out
    assert counts["nq"] == (3610, 0) and counts["webq"] == (2032, 0)
    assert sum(counts["lama-google-re"]) == 1825 + 2937 + 766 and sum(counts["lama-squad"]) == 305


def test_dateset_answers_follow_the_hidden_date():
    from toolformer.tools.calendar import make_executor
    calendar = make_executor()
    examples = dateset(70, seed=5)
    assert [e.prompt for e in examples] == [e.prompt for e in dateset(70, seed=5)]
    assert all("Today" not in e.prompt and re.search(r"\d{4}-\d\d", e.prompt) is None for e in examples)
    for e in examples:
        today = date.fromisoformat(e.meta["date"])
        question = e.prompt.split("\n")[0]
        if question.endswith("is it today?"):
            assert calendar("", e.meta).startswith(f"Today is {e.gold[0]},")
        elif question == "Question: What year is it?":
            assert e.gold == (str(today.year),) and e.metric == "number"
        elif m := re.search(r"How many days ago was (\w+ \d+)\?", question):
            day = datetime.strptime(f"{m.group(1)} {today.year}", "%B %d %Y").date()
            day = day if day <= today else day.replace(year=today.year - 1)
            assert e.gold == (str((today - day).days),)


# ---------------------------------------------------------------------------- evaluation

def test_run_mode_scores_the_answer_after_the_call(tokenizer):
    base = tiny_llama(len(tokenizer))
    tool, log = counting_tool("Calculator", "9")
    ex = [math(9)]
    script = " [Calculator(7 + 2) → 9] 9 apples"
    on = ToolDecoder(Steered(base, tokenizer, script), tokenizer, TOOLFORMER, ToolBox([tool]))
    records, figures = run_mode(on, ex, 30, 4, progress=False)
    assert records[0]["answer"] == "9 apples" and records[0]["parsed"] == 9 and records[0]["correct"]
    assert (figures["accuracy"], figures["call_rate"], figures["calls_per_tool"]) == (1.0, 1.0, {"Calculator": 1})
    off = ToolDecoder(Steered(base, tokenizer, script), tokenizer, TOOLFORMER, None)
    records, figures = run_mode(off, ex, 30, 4, progress=False)
    assert (figures["call_rate"], records[0]["calls"]) == (0.0, []) and len(log) == 1


def test_evaluate_end_to_end_writes_records_summary_and_table(tmp_path, tokenizer):
    model_dir = tmp_path / "tiny"
    tiny_llama(len(tokenizer), layers=1).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    data = tmp_path / "svamp.jsonl"
    write(data, [{"Body": f"Tom has {i} apples and buys {i + 1} more.", "Question": "How many apples now?",
                  "Answer": float(2 * i + 1)} for i in range(6)])
    table = tmp_path / "results.md"
    summary = evaluate("svamp", str(model_dir), data_file=data, limit=4, tools="both", batch_size=2,
                       max_new_tokens=6, out_dir=tmp_path / "eval", table=table, progress=False)
    assert summary["n"] == 4 and summary["available"] == 6
    assert summary["tools_off"]["call_rate"] == 0.0 and summary["tools_allowed"] == ["Calculator", "Calendar",
                                                                                    "WikiSearch", "QA"]
    for mode in ("on", "off"):
        rows = [json.loads(line) for line in open(tmp_path / "eval" / f"svamp.tools-{mode}.jsonl")]
        assert len(rows) == 4 and sum(r["correct"] for r in rows) == round(4 * summary[f"accuracy_tools_{mode}"])
        assert set(rows[0]) >= {"prompt", "output", "answer", "parsed", "gold", "correct", "calls"}
    assert json.loads((tmp_path / "eval" / "svamp.summary.json").read_text())["n"] == 4
    # a tool retriever offers each example its top tool only; every on-record says which
    picked = evaluate("svamp", str(model_dir), data_file=data, limit=2, tools="on", max_new_tokens=4,
                      out_dir=tmp_path / "eval3", progress=False, tool_retriever="bm25", tools_per_input=1)
    assert (picked["tool_retriever"], picked["tools_per_input"]) == ("bm25", 1)
    assert "calls_not_offered" in picked["tools_on"]
    rows = [json.loads(line) for line in open(tmp_path / "eval3" / "svamp.tools-on.jsonl")]
    assert [len(r["tools_offered"]) for r in rows] == [1, 1]
    assert all(set(r["tools_offered"]) <= set(picked["tools_allowed"]) for r in rows)
    evaluate("svamp", str(model_dir), data_file=data, limit=2, tools="off", max_new_tokens=4,
             out_dir=tmp_path / "eval2", table=table, progress=False)
    lines = table.read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith("| model |") and lines[3].split("|")[4:7] == [" 2 ", " 0.0 ", " – "]
