"""Building the augmented corpus: insertion positions, conflicts, caps, splits, round trip, bad input."""
from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

import pytest

from toolformer.cli import command
from toolformer.cli.build import add_commands
from toolformer.corpus.annotations import Annotation, read_annotated
from toolformer.corpus.build import KeptCall, build_augmented, read_kept_calls, select_calls
from toolformer.corpus.calls import canonical_position, insert_calls, strip_calls
from toolformer.corpus.syntax import HW3, TOOLFORMER, Call
from toolformer.run.records import BadRecord, dumps
from toolformer.tools import get_tool, run_call

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


def write_run(path: Path, calls: dict[str, list[dict]], syntax: str = "toolformer", manifest: dict | None = None,
              docs: list[tuple[str, str]] | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps(manifest or {"config": {"syntax": syntax}}))
    docs = docs or [("a", DOC_A), ("b", DOC_B), ("c", DOC_C), ("d", DOC_D)]
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
    # hw3's result is the text's own number: without the Calendar call the Calculator call at
    # " 2013" (0.7) wins its place and is written before 2013; the text does not say 0.29 before "29%"
    assert rows["a"]["text"] == "Of 1400 participants, 400 passed: 29%. It is <<2000 + 13>>2013 now."
    assert rows["c"]["text"] == "Total:\n<<13 + 16>>29 apples" and rows["d"]["text"] == "<<3 * 4>>12 eggs, 3 boxes"
    assert figures["result_not_in_text_dropped"] == 1
    plain, calls = strip_calls(rows["a"]["text"], HW3)
    assert plain == DOC_A and [(p, c.input, c.result) for p, c in calls] == [(P2013, "2000 + 13", "2013")]


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
        calls = [(p, Call("Calculator", f"{p} + 1", str(p + 1))) for p in chosen]
        plain, found = strip_calls(insert_calls(text, calls, TOOLFORMER), TOOLFORMER)
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
    assert rows_of(run / "augmented")["c"]["text"] == "Total:\n<<13 + 16>>29 apples"


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
                                   "no_calls": True, "min_usefulness": None}


def test_the_build_line_says_calls_per_tool_and_what_was_left_out(run, capsys):
    from toolformer.cli import main
    where = ["--run", run.name, "--runs-dir", str(run.parent), "--heldout", "0"]
    assert main(["build", *where, "--max-per-tool", "1"]) == 0
    assert capsys.readouterr().out == (f"augmented corpus: 1 train + 0 validation documents in {run / 'augmented'}; "
                                       f"calls: Calculator 1, Calendar 1; left out: 2 cap, 2 conflict\n")
    assert main(["build", *where, "--no-calls"]) == 0  # a control has no calls to count
    assert capsys.readouterr().out == (f"control corpus (no calls): 3 train + 0 validation documents in "
                                       f"{run / 'augmented-no-calls'}; left out: 2 conflict\n")


def test_a_run_whose_filter_never_ran_is_refused_and_tools_without_scored_calls_are_named(tmp_path, capsys):
    from toolformer.cli import main
    stages = {f"{kind}/{tool}": {} for kind in ("sample", "execute") for tool in ("calculator", "calendar")}
    run = write_run(tmp_path / "run", {}, manifest={"config": {"syntax": "toolformer"}, "stages": stages})
    where = ["--run", "run", "--runs-dir", str(tmp_path), "--heldout", "0"]
    assert main(["build", *where]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {run} has no scored.jsonl for calculator, calendar: run `toolformer filter --run run --tool TOOL` "
        f"(or `toolformer curate`) first"]
    assert not (run / "augmented").exists()
    # one tool filtered: its calls are built, and the other is named
    (run / "calculator").mkdir()
    kept = scored("a", "calculator", P29, "400 / 1400", "0.29", 1.2)
    (run / "calculator" / "scored.jsonl").write_text(dumps(kept) + "\n")
    assert main(["build", *where]) == 0
    assert capsys.readouterr().out == (f"augmented corpus: 1 train + 0 validation documents in {run / 'augmented'}; "
                                       f"calls: Calculator 1; no scored calls from calendar (run `toolformer filter` "
                                       f"on them first)\n")
    # the empty validation split loads (saved with no shard, it would not)
    from datasets import load_from_disk
    assert len(load_from_disk(str(run / "augmented"))["validation"]) == 0


def test_the_unfiltered_ablation_takes_every_executed_call(run):
    """--min-usefulness=-inf: the call the filter dropped (usefulness 5.0, not kept) is written too,
    in its own folder; a call that failed to execute (no usefulness) never is."""
    failed = scored("b", "calculator", 0, "1 / 0", None, None, kept=False)
    with open(run / "calculator" / "scored.jsonl", "a") as f:
        f.write(json.dumps(failed) + "\n")
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(), command)
    args = parser.parse_args(["build", "--run", run.name, "--runs-dir", str(run.parent), "--heldout", "0",
                              "--min-usefulness=-inf"])
    figures = args.func(args)
    assert figures["out"] == str(run / "augmented-unfiltered") and figures["settings"]["min_usefulness"] == "-inf"
    rows = {json.loads(line)["id"]: json.loads(line) for line in open(run / "augmented-unfiltered" / "train.jsonl")}
    assert rows["a"]["text"].startswith("Of [Calculator(1400 * 1) → 1400] 1400 participants")
    assert "b" not in rows and figures["calls_Calculator"] == 4
    assert build_augmented(run, heldout=0.0)["calls_Calculator"] == 3  # the filter's own choice, unchanged


def test_read_kept_calls_with_a_usefulness_threshold(run):
    texts = {"a": DOC_A, "b": DOC_B, "c": DOC_C, "d": DOC_D}
    kept = list(read_kept_calls(run, texts))
    assert len(kept) == 6 and kept[0].where == f"{run / 'calculator' / 'scored.jsonl'}:1"
    assert kept[1].position == kept[2].position == P2013  # canonical: before the space
    # every scored call whose usefulness reaches 0.9, kept by the filter or not
    assert sorted(c.usefulness for c in read_kept_calls(run, texts, min_usefulness=0.9)) == [0.9, 1.2, 2.0, 5.0]


def read_back(folder: Path, syntax: str) -> dict[str, tuple[str, list[tuple]]]:
    """The written corpus through the reader of annotated data: id -> (text, [(position, tool, input, result)])."""
    docs = read_annotated(folder / "train.jsonl", syntax)
    return {d.id: (d.document.text, [(a.position, a.tool, a.input, a.result) for a in d.annotations]) for d in docs}


LITERAL_DOCS = [("l1", "Type [Calculator(2+2)] to add."), ("l2", "It prints [Calculator(2+2) → 4] here."),
                ("l3", "GSM8K writes <<3*4>>12 for a call."), ("l4", "Shift: x << 2, and a lone << too."),
                ("l5", "Already escaped: \\[Calculator(1+1)] and \\<<1+1>>2, arrows >> and [1]."),
                ("r", "Of 1400 participants, 400 passed: 0.29 of them, [Calculator(1+1)] and <<3*4>>12 too.")]
P_REAL = LITERAL_DOCS[-1][1].index(" 0.29")


@pytest.mark.parametrize("syntax", ["toolformer", "hw3"])
def test_literal_call_text_reads_back_as_text(tmp_path, syntax):
    # a document's own "[Calculator(2+2)]" or "<<3*4>>12" is text: written escaped, read back unescaped, no call
    run = write_run(tmp_path / "run", {"calculator": [scored("r", "calculator", P_REAL, "400 / 1400", "0.29", 1.0)]},
                    syntax=syntax, docs=LITERAL_DOCS)
    figures = build_augmented(run, heldout=0.0, keep_uncalled_rate=1.0)
    assert figures["calls_Calculator"] == 1 and figures["documents_without_calls"] == 5
    back = read_back(run / "augmented", syntax)
    assert back == {doc_id: (text, [(P_REAL, "Calculator", "400 / 1400", "0.29")] if doc_id == "r" else [])
                    for doc_id, text in LITERAL_DOCS}
    written = rows_of(run / "augmented")
    escaped = {"toolformer": ("Type \\[Calculator(2+2)] to add.", LITERAL_DOCS[2][1]),
               "hw3": (LITERAL_DOCS[0][1], "GSM8K writes \\<<3*4\\>>12 for a call.")}[syntax]
    assert (written["l1"]["text"], written["l3"]["text"]) == escaped
    # the real call is written as the paper and HW3 write it
    assert {"toolformer": " [Calculator(400 / 1400) → 0.29] 0.29 of", "hw3": " <<400 / 1400>>0.29 of"}[syntax] \
        in written["r"]["text"]
    # the control corpus is the same text, written the same way
    build_augmented(run, heldout=0.0, keep_uncalled_rate=1.0, no_calls=True)
    assert read_back(run / "augmented-no-calls", syntax) == {doc_id: (text, []) for doc_id, text in LITERAL_DOCS}


ROUND_TRIP_DOC = "Of 1400 participants, 400 passed: 0.29 of them; 5 - 8 is -3 and 7 / 4 = 1.75, or $12 / 4 = $3."
ROUND_TRIP_CALLS = [(ROUND_TRIP_DOC.index(" 0.29"), "400 / 1400", "0.29"), (ROUND_TRIP_DOC.index(" -3"), "5 - 8", "-3"),
                    (ROUND_TRIP_DOC.index(" 1.75"), "7 / 4", "1.75"), (ROUND_TRIP_DOC.index("3."), "12 / 4", "3")]


@pytest.mark.parametrize("syntax, written", [
    ("toolformer", "Of 1400 participants, 400 passed: [Calculator(400 / 1400) → 0.29] 0.29 of them; 5 - 8 is "
                   "[Calculator(5 - 8) → -3] -3 and 7 / 4 = [Calculator(7 / 4) → 1.75] 1.75, or $12 / 4 = $ "
                   "[Calculator(12 / 4) → 3]3."),
    ("hw3", "Of 1400 participants, 400 passed: <<400 / 1400>>0.29 of them; 5 - 8 is <<5 - 8>>-3 and 7 / 4 = "
            "<<7 / 4>>1.75, or $12 / 4 = $<<12 / 4>>3.")])
def test_written_calls_read_back_exactly(tmp_path, syntax, written):
    calls = [scored("r", "calculator", p, i, r, 1.0) for p, i, r in ROUND_TRIP_CALLS]
    run = write_run(tmp_path / "run", {"calculator": calls}, syntax=syntax, docs=[("r", ROUND_TRIP_DOC)])
    build_augmented(run, heldout=0.0)
    assert rows_of(run / "augmented")["r"]["text"] == written
    assert read_back(run / "augmented", syntax) == {
        "r": (ROUND_TRIP_DOC, [(p, "Calculator", i, r) for p, i, r in ROUND_TRIP_CALLS])}


# what random documents are made of: words, numbers, and every marker or piece of one, escaped or not
FRAGMENTS = ["word", " ", "  ", "\n", "[", "]", "(", ")", "→", "->", "<", ">", "<<", ">>", "<<<", "\\", "\\<<",
             "\\[", "[Calculator(2+2)]", "[Calculator(2+2) → 4]", "[ Calculator(3)", "[WikiSearch(Paris) → x]",
             "[f(x)]", "<<3*4>>12", "<<1+1>>", "3*4>>12", "[1]", "$", "=", "-", "7", ".", ",", "e"]
CALCULATOR = get_tool("calculator")


def _calculated(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(0, 99), rng.randint(1, 99)
    input = f"{a} {rng.choice('+-*/')} {b}"
    return input, run_call(CALCULATOR, CALCULATOR.make_executor(**CALCULATOR.options), input).result


def random_hw3_document(rng: random.Random) -> tuple[str, list[tuple], int]:
    """(text, its calls (position, tool, input, result), how many of them hw3 cannot write): a
    writable call sits before its result, which the text says; for the others the text says
    another number, or a backslash, "<" or a digit stands right before the result."""
    text, calls, writable = "", [], []
    for _ in range(rng.randint(0, 12)):
        text += "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 3)))
        if rng.random() < 0.5:
            input, result = _calculated(rng)
            ok = rng.random() < 0.8
            text += rng.choice([" ", "\n", "$", "=", "("] if ok else ["\\", "<", "7", " "])
            position = canonical_position(text, len(text))
            text += (result + "1" if not ok and text[-1] == " " else result) + " "
            calls.append((position, "Calculator", input, result))
            writable.append(ok)
    return text, calls, writable


def random_toolformer_document(rng: random.Random) -> tuple[str, list[tuple], list[bool]]:
    """(text, calls at distinct canonical positions anywhere, all writable): toolformer writes every one."""
    text = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 30)))
    positions = sorted({canonical_position(text, p) for p in range(len(text) + 1)})
    calls = []
    for p in sorted(rng.sample(positions, rng.randint(0, min(4, len(positions))))):
        if rng.random() < 0.5:
            calls.append((p, "Calculator", *_calculated(rng)))
        else:  # results with markers in them: inside a call they are its own
            result = " ".join(rng.choice(FRAGMENTS[4:]).replace("]", "") for _ in range(3))
            calls.append((p, "WikiSearch", "Paris", result))
    return text, calls, [True] * len(calls)


@pytest.mark.parametrize("syntax", ["toolformer", "hw3"])
def test_random_documents_and_calls_round_trip(tmp_path, syntax):
    # the writer (build) and the reader (read_annotated) are inverses on any text and any writable calls
    rng = random.Random(7)
    make = random_hw3_document if syntax == "hw3" else random_toolformer_document
    docs, by_tool, expected, refused = [], {}, {}, 0
    for n in range(300):
        text, calls, writable = make(rng)
        text += "" if text.strip() else "word"  # a blank document is no document (read_documents skips it)
        docs.append((f"d{n}", text))
        for p, tool, input, result in calls:
            key = get_tool(tool).key
            by_tool.setdefault(key, []).append(scored(f"d{n}", key, p, input, result, 1.0))
        # the results as build writes them: one line
        expected[f"d{n}"] = (text, [(p, tool, i, " ".join(r.split())) for (p, tool, i, r), ok in zip(calls, writable)
                                    if ok])
        refused += writable.count(False)
    run = write_run(tmp_path / "run", by_tool, syntax=syntax, docs=docs)
    figures = build_augmented(run, heldout=0.0, keep_uncalled_rate=1.0)
    assert read_back(run / "augmented", syntax) == expected
    assert figures["result_not_in_text_dropped"] == refused and (syntax == "hw3") == (refused > 50)
    assert figures["conflict_dropped"] == figures["unrenderable_dropped"] == 0
    assert sum(len(calls) for _, calls in expected.values()) > 300


def test_unscored_calls_at_one_position_favour_no_tool_by_name():
    # the unfiltered ablation (τ_f = -inf) keeps QA and WikiSearch unscored at the same places: sorting
    # by name would hand every such position to QA
    calls = [KeptCall(f"d{i}", 0, tool, "Paris", "France", None) for i in range(40) for tool in ("QA", "WikiSearch")]
    counts = Counter()
    chosen = select_calls(calls, max_per_tool=100, counts=counts)
    assert counts["conflict_dropped"] == 40 and len(chosen) == 40
    won = Counter(c.tool for c in chosen)
    assert won["QA"] >= 10 and won["WikiSearch"] >= 10
    assert chosen == select_calls(list(reversed(calls)), max_per_tool=100, counts=Counter())  # deterministic
    # a scored call still beats every unscored one, and the more useful of two scored ones wins
    scored = [KeptCall("d0", 0, "QA", "q", "a", 0.5), KeptCall("d0", 0, "WikiSearch", "q", "a", 1.5)]
    assert select_calls(calls[:2] + scored, 100, Counter())[0].usefulness == 1.5
