"""`toolformer report --run NAME` on a `toolformer iterate` folder: the rounds side by side, every
figure checked against the files the rounds wrote (scored records, finetune.json, evaluation
records and summaries), an unfinished round, and the links to each round's own report."""
import json
import re
import shutil

import numpy as np
import pytest

from test_iterate import PLAIN, SEED
from toolformer.cli import main
from toolformer.run.records import read_jsonl
from toolformer.stats import mcnemar_exact, newcombe_paired, wilson

SVAMP = [{"Body": f"Tom has {a} apples and buys {b} more.", "Question": "How many apples does he have?",
          "Answer": a + b} for a, b in ((12, 1), (21, 2), (1, 1), (11, 12))]


@pytest.fixture(scope="module")
def iterated(tmp_path_factory, favouring_model_dir):
    """A real iterate folder: the seed round and one sampled round, each evaluated on a small SVAMP."""
    root = tmp_path_factory.mktemp("rounds")
    seed, plain, data = root / "seed.jsonl", root / "plain.jsonl", root / "data"
    seed.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in SEED))
    plain.write_text("".join(json.dumps({"id": f"p{i}", "text": t}) + "\n" for i, t in enumerate(PLAIN)))
    (data / "math").mkdir(parents=True)
    (data / "math" / "svamp.jsonl").write_text("".join(json.dumps(r) + "\n" for r in SVAMP))
    assert main(["iterate", "--run", "it", "--runs-dir", str(root / "runs"), "--model", str(favouring_model_dir),
                 "--seed-corpus", str(seed), "--seed-format", "gsm8k", "--corpus", str(plain), "--rounds", "1",
                 "--tau-s", "0", "--k", "3", "--m", "8", "--max-new-tokens", "8", "--tau-f", "-10",
                 "--max-steps", "2", "--batch-size", "2", "--eval", "svamp", "--data-dir", str(data),
                 "--no-progress"]) == 0
    return root / "runs", favouring_model_dir


def report(runs, name="it"):
    assert main(["report", "--run", name, "--runs-dir", str(runs)]) == 0
    return (runs / name / "report.md").read_text(encoding="utf-8")


def md_section(md: str, title: str) -> tuple[list[list[str]], list[str]]:
    """(table rows as cells, the notes listed under it) of one "## title" section of report.md."""
    body = md.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in body.splitlines()
            if line.startswith("| ")][1:]
    return rows, [line[2:] for line in body.splitlines() if line.startswith("- ")]


def scored(round_dir):
    return [rec for _, rec in read_jsonl(round_dir / "calculator" / "scored.jsonl")]


def percent_ci(k: int, n: int) -> str:
    low, high = wilson(k, n)
    return f"{100 * round(k / n, 4):.1f} ({100 * round(low, 4):.1f}–{100 * round(high, 4):.1f})"


def outcomes(round_dir, mode: str) -> dict:
    return {rec["id"]: rec["correct"] for _, rec in read_jsonl(round_dir / "eval" / f"svamp.tools-{mode}.jsonl")}


def expected_comparison(before: dict, now: dict) -> list[str]:
    """round-vs-previous cells computed here from the two rounds' tools-on outcomes."""
    ids = sorted(before)
    assert sorted(now) == ids
    pairs = [(before[i], now[i]) for i in ids]
    both, only_before = pairs.count((True, True)), pairs.count((True, False))
    only_now, n = pairs.count((False, True)), len(pairs)
    low, high = newcombe_paired(both, only_now, only_before, n - both - only_before - only_now)
    difference = round((only_now - only_before) / n, 4)
    p = mcnemar_exact(only_before, only_now)
    return [str(n), percent_ci(both + only_before, n), percent_ci(both + only_now, n),
            f"{100 * difference:+.1f} ({100 * round(low, 4):+.1f} to {100 * round(high, 4):+.1f})",
            "<0.001" if p < 0.001 else f"{p:.3f}", f"{only_now:,} / {only_before:,}"]


def test_calls_per_round_are_those_of_the_scored_files(iterated):
    runs, _ = iterated
    md = report(runs)
    state = json.loads((runs / "it" / "iterate.json").read_text())
    rows, _ = md_section(md, "Calls per round")
    assert [r[0] for r in rows] == ["round-0", "round-1"]
    for row, record in zip(rows, state["rounds"]):
        records = scored(runs / "it" / record["run"])
        failed = sum(r["error"] is not None for r in records)
        useful = [r for r in records if r["usefulness"] is not None]
        kept = sum(r["kept"] for r in records)
        assert kept == sum(r["usefulness"] >= -10 for r in useful)  # τ_f = -10 keeps every scored call
        assert row == [record["run"], "Calculator", "-10", f"{len(records):,}", f"{len(records) - failed:,}",
                       f"{failed:,}", f"{len(useful):,}", f"{kept:,}", f"{100 * kept / len(useful):.1f} %"]
        assert (len(records), kept) == (record["candidates"], record["kept_calls"])
    assert rows[0][3:8] == ["4", "4", "0", "4", "4"]  # the seed's four annotations, each kept

    rows, _ = md_section(md, "Usefulness of the scored calls")
    for row, r in zip(rows, (0, 1)):
        u = np.array([rec["usefulness"] for rec in scored(runs / "it" / f"round-{r}")
                      if rec["usefulness"] is not None])
        assert row == [f"round-{r}", "Calculator", str(u.size),
                       *(f"{np.percentile(u, q):+.2f}" for q in (0, 10, 50, 90, 100)), f"{u.mean():+.2f}"]


def test_rounds_training_and_evaluation_side_by_side(iterated):
    runs, model = iterated
    md = report(runs)
    assert md.startswith("# Toolformer iterate run `it`\n\n2 rounds, 2 done.")
    rows, _ = md_section(md, "Rounds")
    links = [f"[report.md](round-{r}/report.md) · [report.html](round-{r}/report.html)" for r in (0, 1)]
    assert rows == [["round-0", "done", "gsm8k annotations", "–", "4", links[0]],
                    ["round-1", "done", f"{model} + adapter round-0/model/adapter", "none", "3", links[1]]]
    settings, _ = md_section(md, "Settings")
    assert ["iterate.seed_format", "gsm8k"] in settings and ["filter.tau_f", "-10"] in settings

    rows, notes = md_section(md, "Training")
    assert notes == []
    for row, r in zip(rows, (0, 1)):
        f = json.loads((runs / "it" / f"round-{r}" / "model" / "finetune.json").read_text())
        assert row == [f"round-{r}", f"round-{r}/{'augmented' if r == 0 else 'training'}", str(f["train_documents"]),
                       str(f["validation_documents"]), "2", f"{f['train_seconds']:,.1f}", f"{f['train_tokens']:,}",
                       f"{f['tokens_per_second']:,.1f}", "–" if f["best_eval_loss"] is None
                       else f"{f['best_eval_loss']:.4f}"]
    # round 1 trains on the seed's and its own documents
    built = [json.loads((runs / "it" / f"round-{r}" / "augmented" / "build.json").read_text()) for r in (0, 1)]
    assert rows[1][2] == str(built[0]["train"] + built[1]["train"])

    rows, _ = md_section(md, "Evaluation")
    for row, r in zip(rows, (0, 1)):
        off, on = (outcomes(runs / "it" / f"round-{r}", mode) for mode in ("off", "on"))
        with_calls = sum(bool(rec["calls"]) for _, rec in
                         read_jsonl(runs / "it" / f"round-{r}" / "eval" / "svamp.tools-on.jsonl"))
        pair = expected_comparison(off, on)
        assert row == [f"round-{r}", "svamp", "all", "4", percent_ci(sum(off.values()), 4),
                       percent_ci(sum(on.values()), 4), f"{100 * with_calls / 4:.1f} %", pair[3], pair[4]]

    rows, notes = md_section(md, "Each round against the one before (tools on)")
    assert notes == []
    before, now = (outcomes(runs / "it" / f"round-{r}", "on") for r in (0, 1))
    assert rows == [["round-1", "round-0", "svamp", *expected_comparison(before, now)]]


def test_each_round_has_its_own_report_linked_from_the_page(iterated):
    runs, _ = iterated
    report(runs)
    html = (runs / "it" / "report.html").read_text(encoding="utf-8")
    for r in (0, 1):
        own = runs / "it" / f"round-{r}"
        assert (own / "report.md").read_text().startswith(f"# Toolformer run `round-{r}`")
        assert (own / "report.html").stat().st_size > 0
        assert f'<a href="round-{r}/report.html">report.html</a>' in html
    assert "page.css" not in html and ":root { --fg:" in html  # the run report's inline style
    assert not (runs / "it" / "manifest.json").exists()  # the iterate folder itself is no run


def test_the_comparison_is_this_round_minus_the_one_before(iterated, tmp_path):
    """Outcomes set by hand on a copy (real models agree on everything here): the direction and
    counts of the paired difference are those of the records."""
    runs, _ = iterated
    shutil.copytree(runs / "it", tmp_path / "it")
    for r, pattern in ((0, (True, False, False, True)), (1, (True, True, True, False))):
        path = tmp_path / "it" / f"round-{r}" / "eval" / "svamp.tools-on.jsonl"
        records = [rec for _, rec in read_jsonl(path)]
        path.write_text("".join(json.dumps({**rec, "correct": c}) + "\n" for rec, c in zip(records, pattern)))
    rows, _ = md_section(report(tmp_path), "Each round against the one before (tools on)")
    n, before, now, difference, p, discordant = rows[0][3:]
    assert (n, before[:4], now[:4], difference[:5], p, discordant) == ("4", "50.0", "75.0", "+25.0", "1.000", "2 / 1")


def test_an_unfinished_round_is_shown_as_such(iterated, tmp_path):
    runs, _ = iterated
    folder = tmp_path / "it"
    shutil.copytree(runs / "it", folder)
    # what a kill during round 1's finetune leaves, and round 2 just started (not yet in iterate.json)
    state = json.loads((folder / "iterate.json").read_text())
    state["rounds"][1] = {k: v for k, v in state["rounds"][1].items()
                          if k in ("round", "run", "sampler", "candidates", "kept_calls")} | {"status": "curated"}
    (folder / "iterate.json").write_text(json.dumps(state))
    (folder / "round-1" / "model" / "finetune.json").unlink()
    shutil.rmtree(folder / "round-1" / "eval")
    (folder / "round-2").mkdir()
    md = report(tmp_path)
    assert md.startswith("# Toolformer iterate run `it`\n\n3 rounds, 1 done.")
    rows, _ = md_section(md, "Rounds")
    assert [r[:2] for r in rows] == [["round-0", "done"], ["round-1", "curated, finetuning not finished"],
                                     ["round-2", "curating, not yet in iterate.json"]]
    assert rows[2][2:] == ["–", "–", "–", "–"]  # nothing sampled, no report
    calls, _ = md_section(md, "Calls per round")
    assert calls[1][3] == str(len(scored(folder / "round-1"))) and calls[2] == ["round-2"] + ["–"] * 8
    training, notes = md_section(md, "Training")
    assert [r[0] for r in training] == ["round-0"]
    assert notes == ["round-1: not trained yet (curated, finetuning not finished)",
                     "round-2: not trained yet (curating, not yet in iterate.json)"]
    evaluation, notes = md_section(md, "Evaluation")
    assert [r[0] for r in evaluation] == ["round-0"] and len(notes) == 2
    assert md_section(md, "Each round against the one before (tools on)")[0] == []
    assert (folder / "round-1" / "report.html").exists() and not (folder / "round-2" / "report.html").exists()


def test_flags_that_make_no_sense_on_rounds_are_refused(iterated, capsys):
    runs, _ = iterated
    assert main(["report", "--run", "it", "--runs-dir", str(runs), "--compare", "other"]) == 2
    assert re.search(r"--compare: .*it is an iterate folder.*--run round-R --runs-dir", capsys.readouterr().err)
