"""The demo's data (ASDiv -> SVAMP from a data folder, else the shipped GSM8K slices; the facts slice),
what its first step prints, and the whole demo end to end with a tiny model."""
import json
import os
import subprocess
import sys

import pytest

from conftest import SHARED_DATA
from toolformer.corpus.annotations import AnnotationStats, read_annotated
from toolformer.demo import FACTS, PACKAGE_DATA, demo_data


def test_a_data_folder_with_asdiv_and_svamp_trains_on_asdiv_and_tests_on_svamp(tmp_path):
    (tmp_path / "math").mkdir()
    for name in ("asdiv.jsonl", "svamp.jsonl"):
        (tmp_path / "math" / name).write_text("")
    data = demo_data(str(tmp_path))
    assert (data.corpus, data.format) == (tmp_path / "math" / "asdiv.jsonl", "asdiv")
    assert data.benchmarks == [["--benchmark", "svamp", "--data-dir", str(tmp_path)],
                               ["--benchmark", "dateset"]]  # no qa/nq_test.jsonl there
    (tmp_path / "qa").mkdir()
    (tmp_path / "qa" / "nq_test.jsonl").write_text("")
    assert demo_data(str(tmp_path)).benchmarks[2] == ["--benchmark", "nq", "--data-dir", str(tmp_path)]


def test_without_svamp_or_a_folder_the_shipped_gsm8k_slices_are_used(tmp_path):
    (tmp_path / "math").mkdir()
    (tmp_path / "math" / "asdiv.jsonl").write_text("")
    for data in (demo_data(str(tmp_path)), demo_data(None)):
        assert (data.corpus, data.format) == (PACKAGE_DATA / "gsm8k_train_slice.jsonl", "gsm8k")
        assert data.benchmarks == [["--benchmark", "gsm8k", "--data-file",
                                    str(PACKAGE_DATA / "gsm8k_heldout_slice.jsonl")], ["--benchmark", "dateset"]]


def test_a_data_folder_that_is_not_there_is_an_error_not_the_gsm8k_fallback(tmp_path):
    # called directly: were the folder taken for absent, the demo itself would run for minutes
    from toolformer.errors import UserFileNotFound
    with pytest.raises(UserFileNotFound) as err:
        demo_data(str(tmp_path / "typo"))
    assert str(err.value) == (f"data folder {tmp_path / 'typo'} (--data-dir or $TOOLFORMER_DATA) is not a folder: "
                              f"give the folder holding math/asdiv.jsonl and math/svamp.jsonl, or leave it out for "
                              f"the shipped GSM8K slices")


def test_the_shipped_slices_are_annotated_gsm8k_and_share_no_problem():
    stats = AnnotationStats()
    train = list(read_annotated(PACKAGE_DATA / "gsm8k_train_slice.jsonl", "gsm8k", skip_bad=True, stats=stats))
    assert len(train) + sum(stats.skipped.values()) == 400
    assert len(train) >= 395 and stats.annotations >= 2 * len(train)
    questions = {json.loads(line)["question"] for line in open(PACKAGE_DATA / "gsm8k_train_slice.jsonl")}
    held_out = [json.loads(line)["question"] for line in open(PACKAGE_DATA / "gsm8k_heldout_slice.jsonl")]
    assert len(held_out) == 200 and not questions & set(held_out)
    assert (PACKAGE_DATA / "GSM8K_LICENSE.md").read_text().count("MIT License") == 2


def test_the_shipped_facts_slice_holds_dated_speeches_leads_and_their_questions():
    """A speech mentions its own year (a Calendar candidate), or never writes it and is asked it
    (only Calendar can tell); every lead and question names its article (left out of the index
    while curated); every question document's answer is the lead's, and its queries the entity's;
    the licence note says where each comes from."""
    import re
    from toolformer.corpus.facts import QUESTION_DOCUMENT, YEAR_QUESTION, date_mentions, wikipedia_lead_documents
    rows = [json.loads(line) for line in open(FACTS, encoding="utf-8")]
    speeches = [r for r in rows if r["id"].startswith("sotu-")]
    leads = [r for r in rows if r["id"].startswith("wiki:") and "#q" not in r["id"]]
    questions = [r for r in rows if "#q" in r["id"]]
    assert (len(speeches), len(leads), len(questions), len({r["id"] for r in rows})) == (120, 100, 180, 400)
    asked = [r for r in speeches if r["text"].endswith(YEAR_QUESTION.format(year=r["year"]))]
    assert len(asked) == 60
    for r in speeches:
        if r in asked:
            assert not re.search(str(r["year"]), r["text"][:-len(YEAR_QUESTION.format(year=r["year"]))])
        else:
            assert date_mentions(r["text"], {"year": r["year"]})
    index = {d.id: d.text for d in wikipedia_lead_documents()}
    assert all(r["meta"]["wiki_title"] == r["id"][5:] and index[r["id"]] == r["text"] for r in leads)
    for r in questions:
        lead, _, _ = r["id"].partition("#")
        asked = QUESTION_DOCUMENT.fullmatch(r["text"])
        assert asked and asked["answer"] in index[lead] and r["meta"]["wiki_title"] == lead[5:]
        entity = r["meta"]["entity"]
        assert entity != asked["answer"] and all(q.startswith(entity) for q in r["meta"]["queries"])
    note = (PACKAGE_DATA / "FACTS_LICENSE.md").read_text()
    assert "public domain" in note and "CC BY-SA 4.0" in note


@pytest.mark.skipif(not (SHARED_DATA / "lama").exists(), reason="needs ../shared/data/lama (the evaluated sentences)")
def test_the_facts_slice_holds_no_evaluated_lama_sentence():
    """Nothing is trained on an evaluation set: no LAMA sentence (its mask filled with the answer)
    is in the Wikipedia-derived training text."""
    import re

    def words(text: str) -> str:  # spacing and punctuation as LAMA writes them ("born in Lebanon .") do not matter
        return " " + " ".join(re.findall(r"\w+", text.lower())) + " "

    text = "".join(words(json.loads(line)["text"]) for line in open(FACTS, encoding="utf-8"))
    sentences = [words(json.loads(line)["masked_sentence"].replace("[MASK]", json.loads(line)["obj_label"]))
                 for path in sorted((SHARED_DATA / "lama").glob("*.jsonl")) for line in open(path, encoding="utf-8")]
    assert len(sentences) == 305 + 1825 + 2937 + 766
    assert [s for s in sentences if s in text] == []


ASDIV = SHARED_DATA / "math" / "asdiv.jsonl"
GOOD_ROWS, BAD_ROWS = (1, 2, 3, 4, 5), (30, 885, 888)  # bad: an answer that is no number; two equations


@pytest.mark.skipif(not ASDIV.exists(), reason="needs ../shared/data/math/asdiv.jsonl (real annotated rows)")
def test_curating_bad_rows_prints_one_summary_line_and_no_row_warning_or_loading_bar(tmp_path, tiny_model_dir):
    """What a user sees of the demo's first step: a line of counts, not one line per skipped problem,
    no FutureWarning and no weight-loading bar; the examples are in the report."""
    rows = ASDIV.read_text().splitlines()
    lines = [rows[n - 1] for n in GOOD_ROWS + BAD_ROWS]
    corpus = tmp_path / "asdiv.jsonl"
    corpus.write_text("".join(line + "\n" for line in lines))
    proc = subprocess.run(
        [sys.executable, "-m", "toolformer.cli", "curate", "--run", "r", "--runs-dir", str(tmp_path / "runs"),
         "--corpus", str(corpus), "--from-annotations", "asdiv", "--tools", "calculator", "--skip-bad",
         "--model", str(tiny_model_dir), "--threads", "1"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    ingest = json.loads((tmp_path / "runs" / "r" / "manifest.json").read_text())["stages"]["ingest"]["counts"]
    assert sum(ingest["skipped"].values()) == len(BAD_ROWS)
    summary = ", ".join(f"{n} {why}" for why, n in ingest["skipped"].items())
    assert f"skipped: {summary}" in " ".join(out.split())  # the console may wrap the line
    assert str(corpus) + ":" not in out  # no "FILE:LINE: why" per skipped row
    assert "Warning" not in out and "deprecated" not in out and "Loading weights" not in out, out
    # the examples are in the report instead
    from toolformer.cli import main
    assert main(["report", "--run", "r", "--runs-dir", str(tmp_path / "runs")]) == 0
    report = (tmp_path / "runs" / "r" / "report.md").read_text()
    assert all(f"{corpus}:{n}:" in report for n in range(len(GOOD_ROWS) + 1, len(lines) + 1)), report


def test_the_demo_end_to_end_with_a_tiny_model(tmp_path, tiny_model_dir, capsys):
    """Every step of the demo runs and ends with the suite table: both runs curated, one model trained
    on both corpora (calls of all four tools), the control on the same documents without calls, and
    every benchmark evaluated for both, paired. τ_f = -inf keeps every executed call (a tiny random
    model's losses decide nothing). bfloat16 as --precision auto picks it on a CPU with bf16 units."""
    from toolformer.cli import main
    data = [("--data-dir", str(SHARED_DATA))] if (SHARED_DATA / "math" / "svamp.jsonl").exists() else []
    argv = ["demo", "--runs-dir", str(tmp_path), "--model", str(tiny_model_dir), "--documents", "12",
            "--facts-documents", "12", "--steps", "2", "--batch-size", "4", "--limit", "3", "--tau-f=-inf",
            "--precision", "bfloat16", "--no-progress", *[x for pair in data for x in pair]]
    assert main(argv) == 0
    home = tmp_path / "demo"
    built = {run: [json.loads(line) for line in open(home / run / "augmented" / "train.jsonl")]
             + [json.loads(line) for line in open(home / run / "augmented" / "validation.jsonl")]
             for run in ("math", "facts")}
    tools = {c["tool"] for rows in built.values() for r in rows for c in r["calls"]}
    assert tools == {"Calculator", "Calendar", "WikiSearch", "QA"}
    trained = json.loads((home / "model" / "finetune.json").read_text())
    control = json.loads((home / "control" / "finetune.json").read_text())
    documents = sum(len(rows) for rows in built.values())
    assert trained["train_documents"] + trained["validation_documents"] == documents
    assert control["train_documents"] + control["validation_documents"] == documents
    assert (home / "model" / "adapter" / "adapter_config.json").exists()
    benchmarks = ["svamp", "dateset", "nq"] if data else ["gsm8k", "dateset"]
    suite = json.loads((home / "eval" / "suite.json").read_text())
    for bench in benchmarks:
        multi = suite["figures"][bench]["multi"]
        assert multi["n"] == 3 and multi["on_vs_off"]["n"] == 3 and multi["on_vs_control"]["n"] == 3
    out = capsys.readouterr().out
    assert out.count("\n$ toolformer ") == 2 * 2 + 4 + 2 + 2 * len(benchmarks)
    commands = [line for line in out.splitlines() if line.startswith("$ toolformer ")]
    assert all("--dtype bfloat16" in c for c in commands if " curate " in c)
    assert not any("--bf16" in c for c in commands if " finetune " in c) and not trained["settings"]["bf16"]
    assert "Accuracy (%)" in out and f"the multi-tool model's adapter is {home / 'model' / 'adapter'}" in out
