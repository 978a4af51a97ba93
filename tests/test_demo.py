"""The demo's data: ASDiv -> SVAMP from a data folder, else the shipped GSM8K slices (no model loaded)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import SHARED_DATA
from toolformer.corpus.annotations import AnnotationStats, read_annotated
from toolformer.demo import PACKAGE_DATA, demo_data


def test_a_data_folder_with_asdiv_and_svamp_trains_on_asdiv_and_tests_on_svamp(tmp_path):
    (tmp_path / "math").mkdir()
    for name in ("asdiv.jsonl", "svamp.jsonl"):
        (tmp_path / "math" / name).write_text("")
    data = demo_data(str(tmp_path))
    assert (data.corpus, data.format) == (tmp_path / "math" / "asdiv.jsonl", "asdiv")
    assert data.benchmark == ["--benchmark", "svamp", "--data-dir", str(tmp_path)]


def test_without_svamp_or_a_folder_the_shipped_gsm8k_slices_are_used(tmp_path):
    (tmp_path / "math").mkdir()
    (tmp_path / "math" / "asdiv.jsonl").write_text("")
    for data in (demo_data(str(tmp_path)), demo_data(None)):
        assert (data.corpus, data.format) == (PACKAGE_DATA / "gsm8k_train_slice.jsonl", "gsm8k")
        assert data.benchmark == ["--benchmark", "gsm8k", "--data-file",
                                  str(PACKAGE_DATA / "gsm8k_heldout_slice.jsonl")]


def test_the_shipped_slices_are_annotated_gsm8k_and_share_no_problem():
    stats = AnnotationStats()
    train = list(read_annotated(PACKAGE_DATA / "gsm8k_train_slice.jsonl", "gsm8k", skip_bad=True, stats=stats))
    assert len(train) + sum(stats.skipped.values()) == 400
    assert len(train) >= 395 and stats.annotations >= 2 * len(train)
    questions = {json.loads(line)["question"] for line in open(PACKAGE_DATA / "gsm8k_train_slice.jsonl")}
    held_out = [json.loads(line)["question"] for line in open(PACKAGE_DATA / "gsm8k_heldout_slice.jsonl")]
    assert len(held_out) == 200 and not questions & set(held_out)
    assert (PACKAGE_DATA / "GSM8K_LICENSE.md").read_text().count("MIT License") == 2


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
