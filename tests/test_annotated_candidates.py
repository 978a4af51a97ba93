"""Candidates from annotations (pipeline/annotated.py) on real lines of ../shared/data/math."""
import json
import re

import numpy as np
import pytest

from conftest import SHARED_DATA
from toolformer.benchmarks import load_examples
from toolformer.config import RunSettings, SampleSettings
from toolformer.corpus.calls import canonical_position
from toolformer.errors import UserValueError
from toolformer.pipeline.curate import curate
from toolformer.pipeline.filter import weighted_loss
from toolformer.pipeline.windows import document_windows
from toolformer.run.manifest import Run
from toolformer.run.records import SCORED, read_jsonl

MATH = SHARED_DATA / "math"
pytestmark = pytest.mark.skipif(not MATH.is_dir(), reason="needs ../shared/data/math (real annotated data)")
WINDOW = 64  # small, so that annotations fall in later windows too


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir):
    return str(tiny_model_dir)


def head(name: str, n: int, tmp_path):
    lines = (MATH / name).read_text().splitlines()[:n]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path, [json.loads(line) for line in lines]


def gold_positions(row: dict) -> list[tuple[int, str]]:
    """(canonical position, expression) of each <<expression=result>> once all are cut out: by hand."""
    text = f"Question: {row['question']}\nAnswer: {row['answer'].strip()}"
    out, removed = [], 0
    plain = re.sub(r"<<[^<>]*>>", "", text)
    for m in re.finditer(r"<<([^<>]*)=[^<>]*>>", text):
        out.append((canonical_position(plain, m.start() - removed), m.group(1)))
        removed += len(m.group())
    return out


def test_gsm8k_annotations_are_scored_at_their_own_tokens(tmp_path, model_dir):
    from toolformer.lm.hf import HFBackend
    corpus, rows = head("gsm8k_train.jsonl", 10, tmp_path)
    settings = RunSettings(run="gsm", runs_dir=str(tmp_path / "runs"), corpus=str(corpus), model=model_dir,
                           no_progress=True)
    figures = curate(settings, "calculator", SampleSettings(window=WINDOW, from_annotations="gsm8k"))
    gold = {f"gsm8k_train:{n}": gold_positions(row) for n, row in enumerate(rows, 1)}
    total = sum(map(len, gold.values()))
    assert total == sum(row["answer"].count("<<") for row in rows) == 34
    assert figures["ingest"]["documents"] == 10 and figures["ingest"]["annotations"] == total
    sample = figures["stages"]["sample/calculator"]
    assert (sample["annotations"], sample["candidates"], sample["inside_a_token"], sample["at_the_end"]) == \
        (34, 34, 0, 0)
    assert figures["stages"]["execute/calculator"]["executed_ok"] == 34
    assert figures["stages"]["filter/calculator"]["scored"] == 34

    lm = HFBackend.from_ref(model_dir)
    run = Run("gsm", tmp_path / "runs")
    docs = {d.id: d for d in run.documents()}
    scored = [rec for _, rec in read_jsonl(run.tool_dir("calculator") / "scored.jsonl", SCORED)]
    assert sorted((r["doc_id"], r["position"], r["input"]) for r in scored) == \
        sorted((d, p, e) for d, calls in gold.items() for p, e in calls)
    assert max(r["window"] for r in scored) >= 2  # positions in later windows are right too
    for rec in scored:
        assert rec["source"] == "annotation" and rec["p_start"] == 1.0
        doc = docs[rec["doc_id"]]
        windows = document_windows(lm, doc, WINDOW)
        w = windows[rec["window"]]
        i = rec["token_index"] - rec["window"] * WINDOW
        assert w.char_starts[i] == rec["position"]  # the token that starts where the call was
        assert doc.text[rec["position"]:].startswith(lm.decode([w.ids[i]]))
        # the executed result is the annotated one, and the filter's L(ε) is read at that token
        assert float(rec["result"]) == pytest.approx(float(rec["annotated_result"]), abs=0.01)
        x = w.ids
        targets = list(range(len(lm.start_ids) + i, len(lm.start_ids) + min(i + 5, len(x))))
        logp = lm.token_logprobs([lm.start_ids + x[:i + 5]], [targets])[0]
        assert rec["loss_no_call"] == pytest.approx(weighted_loss(np.asarray(logp)), abs=1e-4)


def test_asdiv_is_read_in_its_train_part_and_svamp_is_refused(tmp_path, model_dir):
    corpus, rows = head("asdiv.jsonl", 40, tmp_path)
    settings = RunSettings(run="asdiv", runs_dir=str(tmp_path / "runs"), corpus=str(corpus), model=model_dir,
                           skip_bad=True, no_progress=True)
    figures = curate(settings, "calculator", SampleSettings(window=WINDOW, from_annotations="asdiv"),
                     stages=("sample",))
    ingest = figures["ingest"]
    test_part, _ = load_examples("asdiv", data_file=corpus, split="test")
    docs = Run("asdiv", tmp_path / "runs").documents()
    assert not {d.meta["problem"] for d in docs} & {e.problem for e in test_part}
    assert ingest["documents"] + ingest["test_left_out"] == ingest["read"]
    assert ingest["read"] + ingest["skipped_bad"] == 40
    assert ingest["skipped"] == {"answer is not a number": 1}  # line 30 (31 and 32 have units: read)
    # 8 of the 40 are in the eval's test part (lines 31 and 32 among them), all left out
    assert (ingest["test_left_out"], len(test_part), ingest["documents"]) == (8, 8, 31)
    assert Run("asdiv", tmp_path / "runs").config().source == {
        "annotations": "asdiv", "split": {"benchmark": "asdiv", "part": "train", "test_fraction": 0.3, "seed": 0}}
    # "Question: …\nAnswer: 9": the call goes before the answer, at the token " 9"
    candidates = {r["doc_id"]: r for _, r in read_jsonl(Run("asdiv", tmp_path / "runs").tool_dir("calculator")
                                                        / "candidates.jsonl")}
    assert figures["stages"]["sample/calculator"]["candidates"] == len(docs) == len(candidates)
    first = docs[0]
    assert first.text == "Question: Seven red apples and two green apples are in the basket. How many apples " \
                         "are in the basket?\nAnswer: 9"
    assert candidates[first.id]["position"] == first.text.index(" 9") and candidates[first.id]["input"] == "7+2"

    with pytest.raises(UserValueError, match="SVAMP is a test set"):
        curate(RunSettings(run="svamp", runs_dir=str(tmp_path / "runs"), corpus=str(MATH / "svamp.jsonl"),
                           model=model_dir), "calculator", SampleSettings(from_annotations="svamp"))
