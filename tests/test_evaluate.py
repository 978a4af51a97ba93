"""Lenient metrics on hand-made cases, benchmark loading, splits, dateset, and evaluation end to end
(records, summary, table, resuming, paired comparison of two record files)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import date, datetime

import pytest

from conftest import REPO, SHARED_DATA, tiny_llama
from test_generate import Steered, counting_tool
from toolformer.benchmarks import (Example, dateset, first_number, get_benchmark, load_examples,
                                   numeric_gold, score, split_examples, words_contain)
from toolformer.corpus.syntax import TOOLFORMER
from toolformer.cli import main
from toolformer.errors import UserError
from toolformer.evaluation.evaluate import append_table_row, compare_records, decode, evaluate, mode_figures
from toolformer.inference.decoder import ToolDecoder
from toolformer.inference.toolbox import ToolBox
from toolformer.lm.hf import HFBackend
from toolformer.run.records import BadRecord, dumps
from toolformer.stats import mcnemar_exact


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
    examples, info = load_examples("asdiv", data_dir=data_dir, split="all")
    assert [e.prompt for e in examples] == ["Question: Seven red apples and two green apples are in the basket. "
                                            "How many apples?\nAnswer:"]
    assert examples[0].gold == ("9.0",) and info["left_out"] == 2 and info["available"] == 1
    examples, info = load_examples("lama-squad", data_dir=data_dir)
    assert [(e.prompt, e.gold) for e in examples] == [("The first choice was", ("Manning",))] and info["left_out"] == 1
    with pytest.raises(BadRecord, match=r"qa/nq_test.jsonl:2: a QA row needs question and answers"):
        load_examples("nq", data_dir=data_dir)


def test_missing_data_says_what_to_pass(tmp_path, monkeypatch):
    monkeypatch.delenv("TOOLFORMER_DATA", raising=False)
    with pytest.raises(UserError, match=r"unknown benchmark 'svamq'.*svamp"):
        load_examples("svamq")
    with pytest.raises(FileNotFoundError, match=r"--data-dir DIR.*TOOLFORMER_DATA.*--data-file"):
        load_examples("svamp")
    with pytest.raises(FileNotFoundError, match=r"math/svamp.jsonl not found"):
        load_examples("svamp", data_dir=tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match=r"triviaqa: loading mandarjoshi/trivia_qa:rc.nocontext .* --data-file"):
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
    more, _ = load_examples("webq", data_dir=data_dir, limit=20, seed=1)
    assert {e.id for e in a} < {e.id for e in more}  # a larger limit extends a smaller one


def test_split_is_fixed_seeded_and_keyed_by_the_problem(tmp_path, monkeypatch):
    problems = [f"Tom has {i} apples. How many?" for i in range(200)]
    train, test = split_examples(problems, 0.3, seed=0)
    assert sorted(train + test) == sorted(problems) and 40 < len(test) < 80
    again = split_examples(reversed(problems[:50]), 0.3, seed=0)  # order and company do not matter
    assert set(again[1]) == set(test) & set(problems[:50])
    assert split_examples(problems, 0.3, seed=1)[1] != test
    spaced = split_examples([p.replace(". ", ".\n  ") + " " for p in problems], 0.3, seed=0)[1]
    assert [p.split() for p in spaced] == [p.split() for p in test]  # whitespace does not move a problem
    rows = [{"body": f"Tom has {i} apples.", "question": "How many?", "answer": str(i)} for i in range(200)]
    write(tmp_path / "math" / "asdiv.jsonl", rows)
    parts = {part: load_examples("asdiv", data_dir=tmp_path, split=part) for part in ("test", "train", "all")}
    assert load_examples("asdiv", data_dir=tmp_path)[0] == parts["test"][0]  # test is the default
    ids = {part: {e.id for e in examples} for part, (examples, _) in parts.items()}
    assert ids["test"].isdisjoint(ids["train"]) and ids["test"] | ids["train"] == ids["all"]
    assert {e.problem for e in parts["test"][0]} == {p for p in test}
    bench = get_benchmark("asdiv").split
    assert parts["test"][1]["split"] == {"part": "test", "test_fraction": bench.test_fraction, "seed": bench.seed,
                                         "key": "problem text", "of": 200}
    # a test set is evaluated whole and has no train part
    write(tmp_path / "math" / "svamp.jsonl", rows[:5])
    assert len(load_examples("svamp", data_dir=tmp_path, split="test")[0]) == 5
    with pytest.raises(UserError, match="svamp is a test set"):
        load_examples("svamp", data_dir=tmp_path, split="train")


def gsm8k_row(i: int) -> dict:
    return {"question": f"Tom has {i} apples and eats one. How many are left?",
            "answer": f"{i} - 1 = <<{i}-1={i - 1}>>{i - 1}\n#### {i - 1}"}


def test_gsm8k_never_evaluates_its_train_set_by_default(tmp_path, monkeypatch, capsys):
    # the demo and the seeds train on math/gsm8k_train.jsonl; eval once read it by default
    monkeypatch.delenv("TOOLFORMER_DATA", raising=False)
    write(tmp_path / "math" / "gsm8k_train.jsonl", [gsm8k_row(i) for i in range(10, 13)])
    for where in ({"data_dir": tmp_path}, {}):
        with pytest.raises(FileNotFoundError) as err:
            load_examples("gsm8k", **where)
        message = str(err.value)
        assert "math/gsm8k_test.jsonl" in message and "github.com/openai/grade-school-math" in message
        assert "--data-file FILE" in message and "--hub openai/gsm8k:main" in message and "\n" not in message
    # the same refusal from the command line: one line, exit 2, before any model is loaded
    assert main(["eval", "--benchmark", "gsm8k", "--data-dir", str(tmp_path), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: benchmark gsm8k: ") and "gsm8k_test.jsonl not found" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "e").exists()
    # the test set: from the data folder, or one --data-file
    write(tmp_path / "math" / "gsm8k_test.jsonl", [gsm8k_row(i) for i in range(20, 22)])
    examples, info = load_examples("gsm8k", data_dir=tmp_path)
    assert [(e.id, e.gold) for e in examples] == [("gsm8k_test:1", ("19.0",)), ("gsm8k_test:2", ("20.0",))]
    assert info["split"] == {"part": "test"} and info["data"] == str(tmp_path / "math" / "gsm8k_test.jsonl")
    examples, _ = load_examples("gsm8k", data_file=tmp_path / "math" / "gsm8k_test.jsonl")
    assert [e.id for e in examples] == ["gsm8k_test:1", "gsm8k_test:2"]
    # the train set only when asked for
    examples, info = load_examples("gsm8k", data_dir=tmp_path, split="train")
    assert [e.id for e in examples] == ["gsm8k_train:1", "gsm8k_train:2", "gsm8k_train:3"]
    assert info["split"] == {"part": "train"}
    assert len(load_examples("gsm8k", data_dir=tmp_path, split="all")[0]) == 5


def test_no_benchmark_reads_training_data_by_default():
    # by default a benchmark reads test data: no file named train, and a set that is also trained on
    # (ASDiv) only through its held-out split. The hub's facebook/lama has one split, named "train":
    # it is LAMA's probe set, which nothing here trains on
    from toolformer.benchmarks import BENCHMARKS, _part_files, split_part
    for name in BENCHMARKS:
        bench = get_benchmark(name)
        part = split_part(bench, None)
        assert part == ("test" if bench.split or bench.train_files else "all"), name
        assert not any("train" in f for f in _part_files(bench, part)), name
        assert bench.hub is None or bench.hub[2] != "train" or bench.hub[0] == "facebook/lama", name
    assert _part_files(get_benchmark("gsm8k"), "train") == ("math/gsm8k_train.jsonl",)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.exists(), reason=f"shared data not found at {SHARED_DATA}")
def test_real_benchmark_files():
    counts = {}
    for name in ("svamp", "asdiv", "gsm8k", "lama-google-re", "lama-squad", "nq", "webq"):
        # the shared folder holds GSM8K's train set only: read because it is asked for
        examples, info = load_examples(name, data_dir=SHARED_DATA, split="train" if name == "gsm8k" else "all")
        counts[name] = (len(examples), info["left_out"])
    assert counts["svamp"] == (1000, 0) and counts["gsm8k"] == (7473, 0)
    assert sum(counts["asdiv"]) == 2215 and counts["asdiv"][1] > 100  # names, times, ratios left out
    held_out, info = load_examples("asdiv", data_dir=SHARED_DATA)  # the fixed test part
    assert len(held_out) == info["available"] == 587 and info["split"]["of"] == counts["asdiv"][0]
    held_out, info = load_examples("asdiv", data_dir=SHARED_DATA)
    assert len(held_out) == info["available"] == 587 and info["split"]["of"] == counts["asdiv"][0]
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


def test_dateset_reach_is_what_the_calendar_says():
    """In reach: every "What year is it?" and today's weekday, never a month 1-11 months back, and a
    weekday some days off only where it falls on today's weekday (a multiple of 7 days)."""
    from toolformer.evaluation.reach import calendar_reach
    examples = dateset(700, seed=1)
    reached = calendar_reach(examples)
    kinds = {}
    for e in examples:
        question = e.prompt.split("\n")[0]
        kinds.setdefault(re.sub(r"\d+", "N", question), []).append(reached[e.id]["in_reach"])
        if m := re.search(r"(\d+) days (ago|\?)|in (\d+) days", question):
            days = int(m.group(1) or m.group(3))
            if "day of the week" in question:
                assert reached[e.id]["in_reach"] == (days % 7 == 0), question
    assert all(kinds["Question: What year is it?"]) and all(kinds["Question: What day of the week is it today?"])
    assert not any(kinds["Question: What month was it N months ago?"])
    share = sum(r["in_reach"] for r in reached.values()) / len(examples)
    assert 2 / 7 < share < 2 / 7 + 0.06 and all(r["reach_rank"] == (1 if r["in_reach"] else None)
                                                for r in reached.values())


# ---------------------------------------------------------------------------- evaluation

def test_decode_scores_the_answer_after_the_call(tokenizer):
    base = tiny_llama(len(tokenizer))
    tool, log = counting_tool("Calculator", "9")
    ex = [math(9)]
    script = " [Calculator(7 + 2) → 9] 9 apples"
    on = ToolDecoder(HFBackend(Steered(base, tokenizer, script), tokenizer), TOOLFORMER, ToolBox([tool]))
    records = decode(on, ex, 30, 4)
    figures = mode_figures(records)
    assert records[0]["answer"] == "9 apples" and records[0]["parsed"] == 9 and records[0]["correct"]
    assert (figures["accuracy"], figures["call_rate"], figures["calls_per_tool"]) == (1.0, 1.0, {"Calculator": 1})
    assert figures["ci"][0] > 0 and figures["ci"][1] == 1.0
    off = ToolDecoder(HFBackend(Steered(base, tokenizer, script), tokenizer), TOOLFORMER, None)
    records = decode(off, ex, 30, 4)
    assert (mode_figures(records)["call_rate"], records[0]["calls"]) == (0.0, []) and len(log) == 1


@pytest.fixture
def tiny_model(tiny_model_dir):
    return str(tiny_model_dir)


@pytest.fixture
def svamp_file(tmp_path):
    data = tmp_path / "svamp.jsonl"
    write(data, [{"Body": f"Tom has {i} apples and buys {i + 1} more.", "Question": "How many apples now?",
                  "Answer": float(2 * i + 1)} for i in range(40)])
    return str(data)


def read_records(path):
    return [json.loads(line) for line in open(path)]


def test_the_eval_line_says_how_many_rows_were_left_out(tmp_path, tiny_model, svamp_file, capsys):
    from toolformer.cli import main
    rows = open(svamp_file).read() + json.dumps({"Body": "Ann is 3.", "Question": "Who?", "Answer": "Ann"}) + "\n"
    (tmp_path / "mixed.jsonl").write_text(rows)
    assert main(["eval", "--benchmark", "svamp", "--model", tiny_model, "--data-file", str(tmp_path / "mixed.jsonl"),
                 "--limit", "2", "--tools", "off", "--max-new-tokens", "2", "--out", str(tmp_path / "e"),
                 "--no-progress"]) == 0
    assert "svamp (2 examples, all, 1 not scorable, left out):  tools off" in capsys.readouterr().out


def test_evaluate_end_to_end_writes_records_summary_and_table(tmp_path, tiny_model, svamp_file):
    table = tmp_path / "results.md"
    summary = evaluate(benchmark="svamp", model=tiny_model, data_file=svamp_file, limit=4, tools="both",
                       batch_size=2, max_new_tokens=6, out=str(tmp_path / "eval"), table=str(table), progress=False)
    assert summary["n"] == 4 and summary["available"] == 40 and summary["split"] == {"part": "all"}
    assert summary["tools_off"]["call_rate"] == 0.0 and summary["tools_allowed"] == ["Calculator", "Calendar",
                                                                                    "WikiSearch", "QA"]
    for mode in ("on", "off"):
        rows = read_records(tmp_path / "eval" / f"svamp.tools-{mode}.jsonl")
        assert len(rows) == 4 and sum(r["correct"] for r in rows) == summary[f"tools_{mode}"]["correct"]
        assert set(rows[0]) >= {"prompt", "output", "answer", "parsed", "gold", "correct", "calls"}
        low, high = summary[f"tools_{mode}"]["ci"]
        assert 0 <= low <= summary[f"accuracy_tools_{mode}"] <= high <= 1
    pair = summary["on_vs_off"]
    assert pair["n"] == 4 and pair["p_value"] == mcnemar_exact(pair["only_first"], pair["only_second"])
    assert json.loads((tmp_path / "eval" / "svamp.summary.json").read_text())["on_vs_off"] == pair
    # a tool retriever offers each example its top tool only; every on-record says which
    picked = evaluate(benchmark="svamp", model=tiny_model, data_file=svamp_file, limit=2, tools="on",
                      max_new_tokens=4, out=str(tmp_path / "eval3"), progress=False, tool_retriever="bm25")
    assert (picked["tool_retriever"], picked["tools_per_input"]) == ("bm25", 1)
    assert "calls_not_offered" in picked["tools_on"] and "on_vs_off" not in picked
    rows = read_records(tmp_path / "eval3" / "svamp.tools-on.jsonl")
    assert [len(r["tools_offered"]) for r in rows] == [1, 1]
    assert all(set(r["tools_offered"]) <= set(picked["tools_allowed"]) for r in rows)
    # a retriever that does not load stops the evaluation before its first example, tools off included
    from toolformer.lm.loading import ModelNotFound
    with pytest.raises(ModelNotFound, match="tool retriever '.*none'"):
        evaluate(benchmark="svamp", model=tiny_model, data_file=svamp_file, limit=2, tools="both", max_new_tokens=4,
                 out=str(tmp_path / "eval4"), progress=False, tool_retriever=str(tmp_path / "none"))
    assert not (tmp_path / "eval4" / "svamp.tools-off.jsonl").exists()
    evaluate(benchmark="svamp", model=tiny_model, data_file=svamp_file, limit=2, tools="off", max_new_tokens=4,
             out=str(tmp_path / "eval2"), table=str(table), progress=False)
    lines = table.read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith("| model |") and "McNemar p" in lines[0]
    cells = [c.strip() for c in lines[2].split("|")[1:-1]]
    assert cells[3:5] == ["all", "4"] and re.fullmatch(r"\d+\.\d \(\d+\.\d–\d+\.\d\)", cells[5])
    assert re.fullmatch(r"[+-]\d+\.\d \([+-]\d+\.\d to [+-]\d+\.\d\)", cells[8])
    off_only = [c.strip() for c in lines[3].split("|")[1:-1]]
    # no tools-on column, call rate, difference, p, calls, right-tool rate
    assert off_only[4] == "2" and off_only[6:] == ["–"] * 6


def test_a_table_with_old_columns_gets_a_new_header(tmp_path):
    table = tmp_path / "results.md"
    table.write_text("| model | n |\n|---|---:|\n| m | 3 |\n")
    append_table_row(table, "| a | b |\n", "| x | y |\n|---|---|\n")
    append_table_row(table, "| c | d |\n", "| x | y |\n|---|---|\n")
    assert table.read_text().split("\n\n")[1] == "| x | y |\n|---|---|\n| a | b |\n| c | d |\n"


def test_a_larger_limit_continues_and_other_settings_are_refused(tmp_path, tiny_model, svamp_file):
    run = dict(benchmark="svamp", model=tiny_model, data_file=svamp_file, batch_size=2, max_new_tokens=4,
               out=str(tmp_path / "eval"), progress=False)
    first = evaluate(limit=3, **run)
    path = tmp_path / "eval" / "svamp.tools-on.jsonl"
    before = path.read_bytes()
    second = evaluate(limit=6, **run)
    assert path.read_bytes().startswith(before)  # the first three are kept, not redone
    assert (second["tools_on"]["reused"], second["n"]) == (3, 6)
    ids = [r["id"] for r in read_records(path)]
    assert len(ids) == len(set(ids)) == 6
    # the same records as one uninterrupted run of 6
    fresh = evaluate(limit=6, **{**run, "out": str(tmp_path / "fresh")})
    by_id = {r["id"]: r for r in read_records(path)}
    assert [by_id[r["id"]] for r in read_records(tmp_path / "fresh" / "svamp.tools-on.jsonl")] == \
        read_records(tmp_path / "fresh" / "svamp.tools-on.jsonl")
    assert fresh["on_vs_off"] == second["on_vs_off"] and fresh["tools_on"]["ci"] == second["tools_on"]["ci"]
    # a smaller limit reuses everything; the summary covers only its examples
    assert evaluate(limit=2, **run)["tools_off"]["reused"] == 2
    assert first["n"] == 3
    with pytest.raises(UserError, match=r"other settings \(top_k: 10 -> 3\).*another --out"):
        evaluate(limit=6, top_k=3, **run)
    write(tmp_path / "svamp.jsonl", [{"Body": "Changed.", "Question": "How many?", "Answer": 1.0}] * 40)
    with pytest.raises(UserError, match="the data changed"):
        evaluate(limit=6, **run)


def test_a_failed_eval_does_not_claim_its_out_folder(tmp_path, tiny_model, svamp_file, capsys):
    out = tmp_path / "eval"
    argv = ["eval", "--benchmark", "svamp", "--model", tiny_model, "--data-file", svamp_file, "--limit", "2",
            "--tools", "off", "--max-new-tokens", "2", "--out", str(out), "--no-progress"]
    assert main([*argv, "--syntax", "nosuch"]) == 2
    assert "unknown call syntax" in capsys.readouterr().err and not (out / "svamp.settings.json").exists()
    assert main(argv) == 0  # the corrected command runs
    capsys.readouterr()
    # with --out claimed: a model or adapter that is not there is said so, not taken for other settings
    for flag, message in (("--model", f"model not found: {str(tmp_path / 'none')!r} does not exist"),
                          ("--adapter", f"adapter not found: {tmp_path / 'none'}")):
        assert main([*argv, flag, str(tmp_path / "none")]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]


def test_a_killed_evaluation_resumes_to_the_same_records(tmp_path, tiny_model, svamp_file):
    run = dict(benchmark="svamp", model=tiny_model, data_file=svamp_file, limit=24, tools="off", batch_size=1,
               max_new_tokens=12, progress=False)
    out = tmp_path / "killed"
    code = f"from toolformer.evaluation.evaluate import evaluate; evaluate(out={str(out)!r}, **{run!r})"
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO,
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, stderr=subprocess.PIPE)
    progress = out / "svamp.tools-off.jsonl.progress"
    deadline = time.time() + 120
    while child.poll() is None and time.time() < deadline:
        if progress.exists() and progress.read_bytes().count(b"\n") >= 1:
            child.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    child.wait()
    assert child.returncode == -signal.SIGKILL, child.stderr.read().decode()[-2000:]
    committed = progress.read_bytes().count(b"\n")
    assert 1 <= committed < 6  # 24 examples, 4 per chunk: it stopped part-way
    resumed = evaluate(out=str(out), **run)
    assert resumed["tools_off"]["reused"] == 4 * committed
    evaluate(out=str(tmp_path / "once"), **run)
    assert (out / "svamp.tools-off.jsonl").read_bytes() == (tmp_path / "once" / "svamp.tools-off.jsonl").read_bytes()


def test_compare_two_record_files(tmp_path):
    def records(name, correct, ids=None):
        path = tmp_path / name
        write(path, [{"id": i, "gold": ["1.0"], "correct": c} for i, c in zip(ids or map(str, range(len(correct))),
                                                                               correct)])
        return path
    a = records("a.jsonl", [True] * 2 + [False] * 10 + [True] * 3 + [False] * 5)
    b = records("b.jsonl", [False] * 2 + [True] * 10 + [True] * 3 + [False] * 5)
    table = tmp_path / "compare.md"
    result = compare_records(a, b, table=table)
    assert (result["n"], result["only_first"], result["only_second"]) == (20, 2, 10)
    assert result["difference"] == 0.4 and result["p_value"] == 2 * 79 / 4096
    assert result["files"] == [str(a), str(b)] and table.read_text().count("\n") == 3
    shuffled = records("c.jsonl", [True] * 20, ids=[str(i) for i in reversed(range(20))])
    assert compare_records(a, shuffled)["n"] == 20  # paired by id, not by line
    with pytest.raises(UserError, match=r"different examples \(20 and 19; 1 only in the first"):
        compare_records(a, records("d.jsonl", [True] * 19))
    write(tmp_path / "e.jsonl", [{"id": "0", "correct": True}, {"id": "0", "correct": False}])
    with pytest.raises(UserError, match=r"e.jsonl:2: example '0' appears twice"):
        compare_records(a, tmp_path / "e.jsonl")


# ---------------------------------------------------------------------------- knowledge: reach, right tool, suite

# questions whose gold answer the embedded index holds at rank 1, at rank 2, and not in its top 5
REACH_ROWS = [{"question": "Who developed the theory of relativity?", "answers": ["Albert Einstein"]},
              {"question": "Who discovered penicillin?", "answers": ["Alexander Fleming"]},
              {"question": "What is the capital of Australia?", "answers": ["Canberra"]},
              {"question": "Which river flows through Cairo?", "answers": ["Nile"]}]


def test_mode_figures_count_the_right_tool_and_the_in_reach_subset():
    def rec(correct, tools, in_reach):
        return {"correct": correct, "in_reach": in_reach,
                "calls": [{"tool": t, "input": "x", "result": None, "error": None} for t in tools]}
    records = [rec(True, ["WikiSearch", "WikiSearch"], True), rec(False, ["Calculator"], True),
               rec(True, [None], False), rec(False, [], False)]
    f = mode_figures(records, "WikiSearch")
    assert (f["right_tool_calls"], f["right_tool_rate"], f["calls_per_tool"]) == \
        (2, 0.5, {"Calculator": 1, "WikiSearch": 2, "unparsed": 1})   # 2 of 4 calls, the unparsed one counted
    assert (f["in_reach"]["correct"], f["in_reach"]["n"], f["correct"], f["n"]) == (1, 2, 2, 4)
    assert mode_figures([rec(False, [], False)], "QA")["right_tool_rate"] is None  # no call: no rate
    assert "in_reach" not in mode_figures([{"correct": True, "calls": []}], "Calculator")  # not a knowledge set


@pytest.mark.slow  # the real embedded index (built once, cached)
def test_a_knowledge_eval_records_reach_per_example(tmp_path, tiny_model):
    from toolformer.evaluation.reach import reach_query
    data = tmp_path / "nq.jsonl"
    write(data, REACH_ROWS)
    summary = evaluate(benchmark="nq", model=tiny_model, data_file=str(data), tools="both", batch_size=4,
                       max_new_tokens=3, out=str(tmp_path / "eval"), progress=False)
    for mode in ("off", "on"):
        rows = read_records(tmp_path / "eval" / f"nq.tools-{mode}.jsonl")
        assert [r["reach_rank"] for r in rows] == [1, 2, None, None]
        assert [r["in_reach"] for r in rows] == [True, False, False, False]
        inside = summary[f"tools_{mode}"]["in_reach"]
        assert (inside["n"], inside["correct"]) == (1, int(rows[0]["correct"]))
    ceiling = summary["reach_ceiling"]
    assert (ceiling["top1"]["correct"], ceiling["top5"]["correct"], ceiling["top5"]["n"]) == (1, 2, 4)
    assert summary["reach"]["passages"] > 10_033 and summary["on_vs_off_in_reach"]["n"] == 1
    assert summary["tools_on"]["expected_tool"] == "WikiSearch"
    assert reach_query(load_examples("nq", data_file=str(data))[0][0]) == REACH_ROWS[0]["question"]
    lama = Example("l", "The theory of relativity was developed by", ("Einstein",), "words5")
    assert reach_query(lama) == lama.prompt  # LAMA: the sentence up to its mask
    # in reach only: the one example whose answer the top passage holds, of the 4 searched
    inside = evaluate(benchmark="nq", model=tiny_model, data_file=str(data), tools="off", max_new_tokens=3,
                      out=str(tmp_path / "inside"), progress=False, in_reach_only=True)
    rows = read_records(tmp_path / "inside" / "nq.tools-off.jsonl")
    assert [r["id"] for r in rows] == ["nq:1"]
    assert (inside["n"], inside["in_reach"], inside["in_reach_of"], inside["subset"]) == (1, 1, 4, "in reach")


def test_in_reach_only_takes_what_calendar_answers_and_a_seeded_limit(tmp_path, tiny_model, capsys):
    from toolformer.benchmarks import dateset
    from toolformer.evaluation.evaluate import _in_reach
    from toolformer.evaluation.reach import calendar_reach
    summary = evaluate(benchmark="dateset", model=tiny_model, limit=21, tools="off", max_new_tokens=2,
                       out=str(tmp_path / "eval"), progress=False, in_reach_only=True)
    reached = calendar_reach(dateset(21))
    want = [i for i, r in reached.items() if r["in_reach"]]
    assert [r["id"] for r in read_records(tmp_path / "eval" / "dateset.tools-off.jsonl")] == want
    assert (summary["n"], summary["in_reach"], summary["in_reach_of"]) == (len(want), len(want), 21)
    main(["eval", "--benchmark", "dateset", "--limit", "21", "--in-reach-only", "--model", tiny_model, "--tools", "off",
          "--max-new-tokens", "2", "--out", str(tmp_path / "eval"), "--no-progress"])
    assert f"dateset ({len(want)} examples, all, drawn from the {len(want)} of 21 in reach)" in capsys.readouterr().out
    assert 3 < len(want) < 21
    examples, bench = dateset(21), get_benchmark("dateset")
    (two, n2), (three, n3) = (_in_reach(examples, reached, bench, n, 0) for n in (2, 3))
    assert {e.id for e in two} < {e.id for e in three} <= set(want) and len(three) == 3 and n2 == n3 == len(want)


def test_in_reach_only_is_refused_where_there_is_no_reach(tiny_model, svamp_file):
    with pytest.raises(UserError, match="svamp has no reach"):
        evaluate(benchmark="svamp", model=tiny_model, data_file=svamp_file, in_reach_only=True)


@pytest.mark.slow
def test_the_suite_table_holds_exactly_the_figures_of_the_record_files(tmp_path, tiny_model, svamp_file):
    from toolformer.evaluation.suite import run_suite, suite_table
    (tmp_path / "data" / "qa").mkdir(parents=True)
    (tmp_path / "data" / "math").mkdir()
    write(tmp_path / "data" / "qa" / "nq_test.jsonl", REACH_ROWS)
    (tmp_path / "data" / "math" / "svamp.jsonl").write_bytes(open(svamp_file, "rb").read())
    out = tmp_path / "suite"
    run_suite({"multi": None, "control": None}, control="control", benchmarks=("svamp", "nq"), out=out,
              model=tiny_model, data_dir=str(tmp_path / "data"), limit=4, batch_size=4, max_new_tokens=3,
              progress=False)
    assert not (out / "control" / "nq.tools-on.jsonl").exists()  # the control runs tools off only

    # outcomes written into the files by hand: the table must count exactly these
    def rewrite(path, correct, calls=None):
        rows = read_records(path)
        for row, c in zip(rows, correct):
            row["correct"] = c
        for row, tools in zip(rows, calls or []):
            row["calls"] = [{"tool": t, "input": "x", "result": "y", "error": None} for t in tools]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rewrite(out / "multi" / "nq.tools-off.jsonl", [False, False, True, False])
    rewrite(out / "multi" / "nq.tools-on.jsonl", [True, True, True, False],
            [["WikiSearch"], ["WikiSearch", "Calculator"], [], [None]])
    rewrite(out / "control" / "nq.tools-off.jsonl", [False, True, False, False])
    rewrite(out / "multi" / "svamp.tools-on.jsonl", [True, False, False, False], [["Calculator"]] * 4)
    result = suite_table(out, ["multi", "control"], "control", ("svamp", "nq"))
    nq = result["figures"]["nq"]["multi"]
    assert (nq["tools_off"]["correct"], nq["tools_on"]["correct"], nq["n"]) == (1, 3, 4)
    assert (nq["on_vs_off"]["only_second"], nq["on_vs_off"]["only_first"], nq["on_vs_off"]["p_value"]) == (2, 0, 0.5)
    assert (nq["on_vs_control"]["only_second"], nq["on_vs_control"]["only_first"]) == (2, 0)
    assert (nq["tools_on"]["right_tool_calls"], nq["tools_on"]["right_tool_rate"]) == (2, 0.5)  # of 4 calls
    assert nq["reach"]["ceiling"]["top1"]["correct"] == 1 and nq["reach"]["in_reach_n"] == 1
    assert (nq["tools_on"]["in_reach"]["correct"], nq["tools_off"]["in_reach"]["correct"]) == (1, 0)
    assert (nq["on_vs_control_in_reach"]["only_second"], nq["on_vs_control_in_reach"]["n"]) == (1, 1)
    svamp = result["figures"]["svamp"]["multi"]
    assert svamp["tools_on"]["right_tool_rate"] == 1.0 and "reach" not in svamp
    assert result["figures"]["nq"]["control"]["tools_off"]["correct"] == 1 and \
        "on_vs_control" not in result["figures"]["nq"]["control"]
    table = (out / "suite.md").read_text()
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): [c.strip() for c in line.split("|")[1:-1]]
            for line in table.splitlines() if line.startswith("| nq") or line.startswith("| svamp")}
    assert len(rows) == 4  # two models on two benchmarks, in each of the two tables (keyed once)
    accuracy_row = next(line for line in table.splitlines() if line.startswith("| nq | multi |"))
    cells = [c.strip() for c in accuracy_row.split("|")[1:-1]]
    assert cells[2:5] == ["4", "25.0 (4.6–69.9)", "75.0 (30.1–95.4)"] and cells[6] == "0.500"
    tools_row = [line for line in table.splitlines() if line.startswith("| nq | multi |")][1]
    cells = [c.strip() for c in tools_row.split("|")[1:-1]]
    assert cells[2:6] == ["75.0", "Calculator 1, WikiSearch 2, unparsed 1", "WikiSearch", "50.0"]
    assert cells[8] == "1" and cells[6].startswith("25.0") and cells[7].startswith("50.0")


def test_a_table_row_shows_the_right_tool_rate():
    from toolformer.evaluation.evaluate import table_row
    on = {"accuracy": 0.5, "ci": [0.1, 0.9], "expected_tool": "WikiSearch"}
    summary = {"model": "m", "adapter": None, "benchmark": "nq", "split": {"part": "all"}, "n": 4, "tools_on": on,
               "call_rate": 0.75, "calls_per_tool": {"WikiSearch": 2, "unparsed": 2}, "right_tool_rate": 0.5}
    cells = [c.strip() for c in table_row(summary).split("|")[1:-1]]
    assert cells[7] == "75.0" and cells[10:] == ["WikiSearch 2, unparsed 2", "50.0 (WikiSearch)"]
