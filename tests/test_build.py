"""Building the augmented corpus: insertion positions, conflicts, caps, splits, round trip, bad input."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from toolformer.cli import command
from toolformer.cli.build import add_commands
from toolformer.corpus.build import build_augmented, read_kept_calls
from toolformer.corpus.calls import canonical_position, insert_calls, strip_calls
from toolformer.corpus.syntax import HW3, TOOLFORMER
from toolformer.run.records import BadRecord, dumps

DOC_A = "Of 1400 participants, 400 passed: 29%. It is 2013 now."
DOC_B = "Nothing to compute here."
DOC_C = "Total:\n29 apples"
DOC_D = "12 eggs, 3 boxes"
CALENDAR = "Today is Friday, April 19, 2013."


def scored(doc_id: str, tool: str, position: int, input: str, result: str | None, usefulness: float | None,
           kept: bool = True) -> dict:
    return {"id": f"{doc_id}/{tool}/{position}/{input}", "doc_id": doc_id, "tool": tool, "window": 0,
            "position": position, "token_index": 0, "p_start": 0.5, "input": input,
            "call": TOOLFORMER.render(tool, input), "result": result, "error": None, "latency_ms": 1.0,
            "loss_plus": 1.0, "loss_no_call": 2.0, "loss_no_result": 2.0, "loss_minus": 2.0,
            "usefulness": usefulness, "kept": kept, "reason": None}


def write_run(path: Path, calls: dict[str, list[dict]], syntax: str = "toolformer", manifest: dict | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps(manifest or {"config": {"syntax": syntax}}))
    docs = [("a", DOC_A), ("b", DOC_B), ("c", DOC_C), ("d", DOC_D)]
    (path / "documents.jsonl").write_text("".join(dumps({"id": i, "text": t, "meta": {}}) + "\n" for i, t in docs))
    for tool, records in calls.items():
        (path / tool).mkdir()
        (path / tool / "scored.jsonl").write_text("".join(dumps(r) + "\n" for r in records))
    return path


P29 = DOC_A.index(" 29%")       # the space before "29%": where a sampled position points
P2013 = DOC_A.index(" 2013")


@pytest.fixture
def run(tmp_path):
    return write_run(tmp_path / "run", {
        "calculator": [
            scored("a", "calculator", P29, "400 / 1400", "0.29", 1.2),
            scored("a", "calculator", P2013, "2000 + 13", "2013", 0.7),       # loses to Calendar here
            scored("a", "calculator", P2013 + 1, "2014 - 1", "2013", 0.6),    # same place, after the space
            scored("a", "calculator", 3, "1400 * 1", "1400", 5.0, kept=False),  # not kept: ignored
            scored("c", "calculator", DOC_C.index("29"), "13 + 16", "29", 0.9),  # after a newline
            scored("d", "calculator", 0, "3 * 4", "12", 0.8),                    # at the very start
        ],
        "calendar": [scored("a", "calendar", P2013, "", CALENDAR, 2.0)],
    })


def test_positions_and_spans_with_two_tools(run):
    figures = build_augmented(run, heldout=0.0)
    rows = {json.loads(line)["id"]: json.loads(line) for line in open(run / "augmented" / "train.jsonl")}
    assert rows["a"]["text"] == ("Of 1400 participants, 400 passed: [Calculator(400 / 1400) → 0.29] 29%. "
                                 f"It is [Calendar() → {CALENDAR}] 2013 now.")
    assert rows["c"]["text"] == "Total:\n[Calculator(13 + 16) → 29] 29 apples"
    assert rows["d"]["text"] == "[Calculator(3 * 4) → 12] 12 eggs, 3 boxes"
    assert "b" not in rows  # no kept call, keep rate 0
    assert (figures["conflict_dropped"], figures["calls_Calculator"], figures["calls_Calendar"]) == (2, 3, 1)
    assert figures["documents_with_calls"] == 3 and figures["train"] == 3 and figures["validation"] == 0


def test_round_trip_gives_back_exactly_the_kept_calls(run):
    build_augmented(run, heldout=0.0)
    docs = {"a": DOC_A, "c": DOC_C, "d": DOC_D}
    for line in open(run / "augmented" / "train.jsonl"):
        row = json.loads(line)
        plain, calls = strip_calls(row["text"], TOOLFORMER)
        assert plain == docs[row["id"]]
        assert [(p, c.tool, c.input, c.result) for p, c in calls] == \
               [(c["position"], c["tool"], c["input"], c["result"]) for c in row["calls"]]
    assert [c["position"] for c in json.loads(open(run / "augmented" / "train.jsonl").readline())["calls"]] == [P29, P2013]


def test_saved_dataset_matches_jsonl(run):
    from datasets import load_from_disk
    build_augmented(run, heldout=0.5, seed=3)
    ds = load_from_disk(str(run / "augmented"))
    for split in ("train", "validation"):
        rows = [json.loads(line) for line in open(run / "augmented" / f"{split}.jsonl")]
        assert list(ds[split]["text"]) == [r["text"] for r in rows]
        assert list(ds[split]["calls"]) == [r["calls"] for r in rows]
    assert (len(ds["train"]), len(ds["validation"])) == (1, 2)  # round(0.5 * 3) held out
    assert sorted(list(ds["train"]["id"]) + list(ds["validation"]["id"])) == ["a", "c", "d"]


def test_cap_keep_rate_and_hw3(run):
    figures = build_augmented(run, max_per_tool=1, keep_uncalled_rate=1.0, heldout=0.0)
    rows = {json.loads(line)["id"]: json.loads(line) for line in open(run / "augmented" / "train.jsonl")}
    # the most useful Calculator call (1.2) stays; 0.9 and 0.8 are over the cap
    assert figures["cap_dropped"] == 2 and rows["c"]["text"] == DOC_C and rows["b"]["text"] == DOC_B
    assert rows["a"]["n_calls"] == 2

    figures = build_augmented(run, syntax="hw3", heldout=0.0)
    assert figures["out"] == str(run / "augmented-hw3") and figures["other_tool_dropped"] == 1
    rows = {json.loads(line)["id"]: json.loads(line) for line in open(run / "augmented-hw3" / "train.jsonl")}
    # without the Calendar call the Calculator call at " 2013" (0.7) wins its place
    assert rows["a"]["text"] == "Of 1400 participants, 400 passed: <<400 / 1400>>0.29 29%. It is <<2000 + 13>>2013 2013 now."
    plain, calls = strip_calls(rows["a"]["text"], HW3)
    assert plain == DOC_A and [(p, c.input, c.result) for p, c in calls] == [(P29, "400 / 1400", "0.29"),
                                                                             (P2013, "2000 + 13", "2013")]


def test_unrenderable_result_is_dropped_and_counted(tmp_path):
    run = write_run(tmp_path / "run", {"wikisearch": [
        scored("a", "wikisearch", P29, "participants", "a list [1] of\nnames", 3.0),  # "]" would end the call
        scored("a", "wikisearch", P2013, "year", "  2013\n is a year ", 3.0)]})       # whitespace is made inline
    figures = build_augmented(run, heldout=0.0)
    row = json.loads(open(run / "augmented" / "train.jsonl").readline())
    assert figures["unrenderable_dropped"] == 1
    assert row["text"] == DOC_A.replace(" 2013", " [WikiSearch(year) → 2013 is a year] 2013")


def test_bad_records_name_file_and_line(tmp_path):
    run = write_run(tmp_path / "run", {"calculator": [
        scored("a", "calculator", P29, "400 / 1400", "0.29", 1.2),
        scored("a", "calculator", len(DOC_A) + 5, "1 + 1", "2", 1.0),
        scored("zzz", "calculator", 0, "1 + 1", "2", 1.0)]})
    with pytest.raises(BadRecord, match=r"calculator/scored.jsonl:2: position 59 is outside the document \(54 characters\)"):
        build_augmented(run)
    figures = build_augmented(run, skip_bad=True, heldout=0.0)
    assert figures["skipped_bad"] == 2 and "scored.jsonl:3: doc_id 'zzz'" in figures["skipped_examples"][1]
    assert figures["calls_Calculator"] == 1


@pytest.mark.parametrize("text", ["a b", "ab", "a\nb", "  x y", "a  b", "x", "a [b] c", "", " a"])
def test_insert_strip_inverse_everywhere(text):
    # any set of distinct canonical positions round-trips exactly
    positions = sorted({canonical_position(text, p) for p in range(len(text) + 1)})
    for k in range(1, len(positions) + 1):
        chosen = positions[:k] if k % 2 else positions[-k:]
        calls = [(p, TOOLFORMER.render("Calculator", f"{p} + 1", str(p + 1))) for p in chosen]
        plain, found = strip_calls(insert_calls(text, calls), TOOLFORMER)
        assert plain == text and [p for p, _ in found] == chosen


def rows_of(folder: Path, split: str = "train") -> dict[str, dict]:
    return {json.loads(line)["id"]: json.loads(line) for line in open(folder / f"{split}.jsonl")}


CALCULATOR_CALLS = {"calculator": [scored("a", "calculator", P29, "400 / 1400", "0.29", 1.2),
                                   scored("c", "calculator", DOC_C.index("29"), "13 + 16", "29", 0.9)]}


@pytest.mark.parametrize("manifest", [
    {"config": {"syntax": "hw3"}, "stages": {}},                                  # where curation records it
    {"config": {}, "stages": {"sample/calculator": {"config": {"syntax": "hw3"}}}},  # runs curated before that
])
def test_a_run_curated_in_hw3_is_built_in_hw3_without_syntax(tmp_path, manifest):
    run = write_run(tmp_path / "run", CALCULATOR_CALLS, manifest=manifest)
    figures = build_augmented(run, heldout=0.0)
    assert figures["syntax"] == "hw3" and figures["out"] == str(run / "augmented")
    assert rows_of(run / "augmented")["c"]["text"] == "Total:\n<<13 + 16>>29 29 apples"


def test_no_calls_control_has_the_same_documents_and_split(run):
    augmented = build_augmented(run, heldout=0.5, keep_uncalled_rate=1.0, seed=4)
    control = build_augmented(run, heldout=0.5, keep_uncalled_rate=1.0, seed=4, no_calls=True)
    assert control["out"] == str(run / "augmented-no-calls") and control["settings"]["no_calls"]
    assert (control["train"], control["validation"]) == (augmented["train"], augmented["validation"])
    for split in ("train", "validation"):
        aug, plain = rows_of(run / "augmented", split), rows_of(run / "augmented-no-calls", split)
        assert list(aug) == list(plain) and aug  # the same documents, in the same order, in each split
        for doc_id, row in aug.items():
            assert plain[doc_id] == {"id": doc_id, "text": strip_calls(row["text"], TOOLFORMER)[0], "n_calls": 0,
                                     "calls": []}
    assert sum(r["n_calls"] for r in rows_of(run / "augmented").values()) > 0
    hw3 = build_augmented(run, syntax="hw3", no_calls=True)
    assert hw3["out"] == str(run / "augmented-hw3-no-calls")


def test_cli_flags(run):
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(), command)
    args = parser.parse_args(["build", "--run", run.name, "--runs-dir", str(run.parent), "--no-calls",
                              "--heldout", "0", "--max-per-tool", "1"])
    figures = args.func(args)
    assert figures["out"] == str(run / "augmented-no-calls") and figures["cap_dropped"] == 2
    assert figures["settings"] == {"max_per_tool": 1, "keep_uncalled_rate": 0.0, "heldout": 0.0, "seed": 0,
                                   "no_calls": True}


def test_read_kept_calls_with_a_usefulness_threshold(run):
    texts = {"a": DOC_A, "b": DOC_B, "c": DOC_C, "d": DOC_D}
    kept = list(read_kept_calls(run, texts))
    assert len(kept) == 6 and kept[0].where == f"{run / 'calculator' / 'scored.jsonl'}:1"
    assert kept[1].position == kept[2].position == P2013  # canonical: before the space
    # every scored call whose usefulness reaches 0.9, kept by the filter or not
    assert sorted(c.usefulness for c in read_kept_calls(run, texts, min_usefulness=0.9)) == [0.9, 1.2, 2.0, 5.0]
