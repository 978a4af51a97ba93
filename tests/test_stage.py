"""The stage engine and the run manifest: windows and tokenizers taken from sampling, locks,
concurrent manifest writers, corrupt files and write failures."""
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import lock_held_elsewhere
from synthetic_run import write_synthetic_run
from toolformer.config import FilterSettings, RunSettings, SampleSettings
from toolformer.errors import UserError
from toolformer.pipeline.curate import curate
from toolformer.run import layout
from toolformer.run.manifest import Run, SettingsChanged
from toolformer.run.records import BadRecord, ResumableWriter, dumps

DOCS = [f"Shop {i} sold {10 + i} pens and {20 + 2 * i} pencils, {30 + 3 * i} items in total; "
        f"each cost {i + 2} dollars, so they made {(30 + 3 * i) * (i + 2)} dollars." for i in range(4)]


@pytest.fixture(scope="module")
def model_dir(favouring_model_dir):
    return favouring_model_dir


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(DOCS)))
    return path


def settings(tmp_path, model_dir, corpus=None, **kw):
    return RunSettings(run="r", runs_dir=str(tmp_path / "runs"), corpus=corpus and str(corpus),
                       model=str(model_dir), chunk_docs=2, no_progress=True, **kw)


SMALL = SampleSettings(window=24, k=4, m=5, max_new_tokens=12)


def test_filter_with_another_window_than_sampling_is_refused(tmp_path, model_dir, corpus):
    run_settings = settings(tmp_path, model_dir, corpus)
    curate(run_settings, "calculator", SMALL, stages=("sample", "execute"))
    with pytest.raises(UserError, match=r"sampled with --window 24, and --window 32 would misalign"):
        curate(run_settings, "calculator", filter=FilterSettings(window=32), stages=("filter",))
    figures = curate(run_settings, "calculator", stages=("filter",))["stages"]["filter/calculator"]
    run = Run("r", tmp_path / "runs")
    assert run.stage("filter", "calculator").settings["window"] == 24
    assert figures["scored"] == run.stage("sample", "calculator").counts["candidates"] > 0
    # a model with another tokenizer is refused; the same tokenizer (another model) is allowed
    manifest = json.loads(run.manifest_path.read_text())
    manifest["stages"]["sample/calculator"]["config"]["tokenizer"] = "0123456789abcdef"
    run.manifest_path.write_text(json.dumps(manifest))
    (run.path / "calculator" / layout.SCORED).unlink()
    with pytest.raises(UserError, match="another tokenizer than the model that sampled run r"):
        curate(run_settings, "calculator", stages=("filter",))


def test_syntax_is_the_runs_own(tmp_path, model_dir, corpus):
    curate(settings(tmp_path, model_dir, corpus, syntax="hw3"), "calculator", SMALL, stages=("sample",))
    run = Run("r", tmp_path / "runs")
    assert run.syntax() == "hw3" and run.config().syntax == "hw3"
    curate(settings(tmp_path, model_dir), "calculator", stages=("execute",))  # no --syntax: the run's
    with pytest.raises(SettingsChanged, match="curated in hw3 syntax, not toolformer"):
        curate(settings(tmp_path, model_dir, syntax="toolformer"), "calculator", stages=("filter",))


def test_manifest_of_the_previous_version_reads(tmp_path):
    write_synthetic_run(tmp_path / "old", n_calls=50, n_docs=10)
    run = Run("old", tmp_path)
    assert run.syntax() == "toolformer" and run.config().syntax == "toolformer"
    record = run.stage("filter", "calculator")
    assert (record.kind, record.tool, record.settings["tau_f"], record.counts["scored"]) == ("filter", "calculator",
                                                                                            0.5, 30)
    assert run.stage("sample", "qa") is None and len(run.stages()) == 9


def write_candidates(run: Run, doc_ids: list[str]) -> Path:
    run.path.mkdir(parents=True)
    (run.path / layout.DOCUMENTS).write_text("".join(dumps({"id": d, "text": "x", "meta": {}}) + "\n"
                                                     for d in ("d0", "d1")))
    path = run.tool_dir("calculator") / layout.CANDIDATES
    path.write_text("".join(dumps({"id": f"c{n}", "doc_id": d, "tool": "calculator", "window": 0, "position": 0,
                                   "token_index": 0, "p_start": 0.5, "input": f"{n} + 1", "call": ""}) + "\n"
                            for n, d in enumerate(doc_ids)))
    return path


def execute(tmp_path, **kw):
    return curate(RunSettings(run="r", runs_dir=str(tmp_path), no_progress=True, **kw), "calculator",
                  stages=("execute",))["stages"]["execute/calculator"]


def test_records_are_grouped_by_document_and_unknown_documents_are_refused(tmp_path):
    run = Run("r", tmp_path)
    path = write_candidates(run, ["d1", "d0", "d1"])
    assert execute(tmp_path)["executed_ok"] == 3
    rows = [json.loads(line) for line in (run.path / "calculator" / layout.EXECUTED).read_text().splitlines()]
    assert [r["id"] for r in rows] == ["c1", "c0", "c2"]  # documents.jsonl order
    with open(path, "a") as f:
        f.write(dumps({**rows[0], "doc_id": "elsewhere"}) + "\n")
    with pytest.raises(BadRecord, match=rf"{path}:4: doc_id 'elsewhere' is not in"):
        execute(tmp_path, syntax=None)


def test_missing_or_unfinished_input_names_the_command_to_run(tmp_path):
    run = Run("r", tmp_path)
    run.path.mkdir()
    (run.path / layout.DOCUMENTS).write_text(dumps({"id": "d0", "text": "x", "meta": {}}) + "\n")
    with pytest.raises(FileNotFoundError, match=r"candidates.jsonl does not exist: run `toolformer sample "
                                                r"--tool calculator --run r` first"):
        execute(tmp_path)
    path = write_candidates(Run("s", tmp_path), ["d0"])
    # one chunk committed, the stage not complete: killed, or still running in another process
    path.with_name(path.name + layout.PROGRESS_SUFFIX).write_text('{"chunk":"0","bytes":0,"records":0}\n')
    with pytest.raises(UserError, match="is not finished: run `toolformer sample"):
        curate(RunSettings(run="s", runs_dir=str(tmp_path), no_progress=True), "calculator", stages=("execute",))


def test_a_corpus_without_documents_is_refused_and_the_fixed_one_then_reads(tmp_path, capsys):
    from toolformer.cli import main
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("")
    curate_it = ["curate", "--run", "r", "--runs-dir", str(tmp_path / "runs"), "--corpus", str(corpus),
                 "--tools", "calculator", "--no-progress"]
    assert main(curate_it) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: no documents in {corpus}"]
    corpus.write_text("not json\n")
    with pytest.raises(UserError, match=rf"^no documents in {corpus} \(1 bad records skipped\)$"):
        Run("r", tmp_path / "runs").ingest(corpus, None, skip_bad=True)
    # the failed reads recorded nothing: the corrected corpus is not refused as other settings
    corpus.write_text(dumps({"id": "d0", "text": "2 + 3 is 5."}) + "\n")
    assert Run("r", tmp_path / "runs").ingest(corpus, None, skip_bad=False)["documents"] == 1


def test_a_second_process_on_the_same_stage_is_refused(tmp_path):
    run = Run("r", tmp_path)
    write_candidates(run, ["d0"])
    output = run.path / "calculator" / layout.EXECUTED
    with lock_held_elsewhere(output, "r", "x") as pid:
        with pytest.raises(UserError, match=rf"run r: execute/calculator is already running in process {pid} "):
            execute(tmp_path)
    assert execute(tmp_path)["executed_ok"] == 1  # the lock goes with its process


def test_a_holder_stopped_before_it_wrote_its_pid_is_named(tmp_path):
    """A holder takes the flock, then writes its PID: one stopped in between (CI once caught a
    SIGSTOPped curate there) is still named, from /proc/locks, not as '?'."""
    run = Run("r", tmp_path)
    write_candidates(run, ["d0"])
    lock = run.path / "calculator" / (layout.EXECUTED + layout.LOCK_SUFFIX)
    lock.write_text("")
    code = (f"import fcntl, os, time\nfd = os.open({str(lock)!r}, os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert lock.read_text() == ""
        with pytest.raises(UserError, match=rf"execute/calculator is already running in process {holder.pid} "):
            execute(tmp_path)
    finally:
        holder.kill()
        holder.wait()


def _record_many(runs_dir: str, tool: str) -> None:
    run = Run("r", runs_dir)
    for i in range(15):
        run.record_stage("execute", f"{tool}{i}", counts={"n": i}, seconds=0.0)


def test_concurrent_manifest_writers_lose_no_stage(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_record_many, args=(str(tmp_path), f"tool{p}-")) for p in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert all(p.exitcode == 0 for p in procs)
    names = {s.name for s in Run("r", tmp_path).stages()}
    assert names == {f"execute/tool{p}-{i}" for p in range(4) for i in range(15)}


@pytest.mark.parametrize("text, problem", [("{\"run\": \"r\", \"stag", "is not valid JSON"),
                                           ('{"stages": []}', "has a 'stages' that is not an object"),
                                           ('{"stages": {"sample/x": {"config": 3}}}', "has a 'config' of stage")])
def test_a_broken_manifest_is_one_clear_error(tmp_path, text, problem):
    run = Run("r", tmp_path)
    run.path.mkdir()
    run.manifest_path.write_text(text)
    with pytest.raises(UserError, match=rf"{run.manifest_path} {problem}.*fix it by hand, or delete it"):
        run.stage("sample", "x")


def test_a_corrupt_progress_file_is_one_clear_error(tmp_path):
    path = tmp_path / "out.jsonl"
    w = ResumableWriter(path)
    w.commit("0", [{"a": 1}])
    w.commit("1", [{"a": 2}])
    lines = w.progress_path.read_text().splitlines()
    w.progress_path.write_text(lines[0] + "\nnot json\n" + lines[1] + "\n")
    with pytest.raises(UserError, match=rf"{w.progress_path}:2 is not a progress entry: delete {path} and"):
        ResumableWriter(path)
    w.progress_path.write_text("\n".join(lines) + "\n")
    path.write_text("")  # the output cut short behind the writer's back
    with pytest.raises(UserError, match="holds 0 bytes but"):
        ResumableWriter(path)


def test_disk_full_is_one_clear_error_and_a_rerun_loses_nothing(tmp_path, model_dir, corpus):
    run_settings = settings(tmp_path, model_dir, corpus)
    curate(run_settings, "calculator", SMALL, stages=("sample", "execute"))
    shutil.copytree(tmp_path / "runs" / "r", tmp_path / "runs" / "ref")
    curate(replace(run_settings, run="ref"), "calculator", stages=("filter",))
    output = tmp_path / "runs" / "r" / "calculator" / layout.SCORED
    output.symlink_to("/dev/full")  # every write there fails with ENOSPC, as on a full disk
    with pytest.raises(UserError, match=rf"cannot write {output}: the disk is full: free some space, then run "
                                        r"the same command again"):
        curate(run_settings, "calculator", stages=("filter",))
    output.unlink()  # space freed
    curate(run_settings, "calculator", stages=("filter",))
    assert output.read_bytes() == (tmp_path / "runs" / "ref" / "calculator" / layout.SCORED).read_bytes()


def test_a_read_only_run_folder_is_one_clear_error(tmp_path):
    if os.geteuid() == 0:  # root writes anywhere but in sysfs
        (tmp_path / "c.jsonl").write_text('{"text": "x"}\n')
        with pytest.raises(UserError, match=r"cannot write /sys/toolformer-test: "
                                            r"permission denied: make the run folder writable"):
            execute(Path("/sys/toolformer-test"), corpus=str(tmp_path / "c.jsonl"))
        return
    run = Run("r", tmp_path)
    write_candidates(run, ["d0"])
    (run.path / "calculator").chmod(0o555)
    try:
        with pytest.raises(UserError, match="permission denied: make the run folder writable"):
            execute(tmp_path)
    finally:
        (run.path / "calculator").chmod(0o755)
    assert execute(tmp_path)["executed_ok"] == 1


def annotated_corpus(tmp_path) -> Path:
    """Documents whose calls execute: candidates from annotations (gsm8k format)."""
    path = tmp_path / "annotated.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": f"Shop {i} sold {10 + i} pens and {20 + i} pencils, "
                                        f"<<{10 + i}+{20 + i}={30 + 2 * i}>>{30 + 2 * i} items, at {i + 2} dollars "
                                        f"each: <<{30 + 2 * i}*{i + 2}={(30 + 2 * i) * (i + 2)}>>"
                                        f"{(30 + 2 * i) * (i + 2)} dollars."}) + "\n" for i in range(4)))
    return path


def test_a_lazy_filter_keeps_the_same_calls_and_the_report_says_what_it_skipped(tmp_path, model_dir):
    from toolformer.report.summary import summarize_run
    full = settings(tmp_path, model_dir, annotated_corpus(tmp_path))
    curate(full, "calculator", replace(SMALL, from_annotations="gsm8k"), stages=("sample", "execute"))
    shutil.copytree(tmp_path / "runs" / "r", tmp_path / "runs" / "lazy")
    lazy = replace(full, run="lazy")
    curate(full, "calculator", stages=("filter",))
    curate(lazy, "calculator", filter=FilterSettings(lazy=True), stages=("filter",))

    def records(run):
        return {r["id"]: r for r in map(json.loads, open(tmp_path / "runs" / run / "calculator" / layout.SCORED))}
    want, got = records("r"), records("lazy")
    assert want.keys() == got.keys() and len(want) == 8
    assert {i for i, r in want.items() if r["kept"]} == {i for i, r in got.items() if r["kept"]}
    skipped = [i for i, r in got.items() if r["error"] is None and r["usefulness"] is None]
    assert skipped and all(not want[i]["kept"] for i in skipped)
    assert Run("lazy", tmp_path / "runs").stage("filter", "calculator").settings["lazy"] is True
    (calculator,) = summarize_run(tmp_path / "runs" / "lazy").tools
    assert any(f"{len(skipped):,} filtered calls were decided without all their losses" in w
               for w in calculator.warnings)


def test_tau_f_minus_inf_keeps_every_call_that_executed_without_scoring_one(tmp_path, model_dir, monkeypatch):
    """iterate --seed-filter all: no loss could change a decision, so none is computed."""
    from toolformer.corpus.build import build_augmented
    from toolformer.pipeline.filter import Scorer
    run_settings = settings(tmp_path, model_dir, annotated_corpus(tmp_path))
    curate(run_settings, "calculator", replace(SMALL, from_annotations="gsm8k"), stages=("sample", "execute"))
    monkeypatch.setattr(Scorer, "score", lambda *a, **k: pytest.fail("a call was scored"))
    figures = curate(run_settings, "calculator", filter=FilterSettings(tau_f=float("-inf")),
                     stages=("filter",))["stages"]["filter/calculator"]
    assert figures["kept"] == figures["scored"] == 8
    records = [json.loads(line) for line in open(tmp_path / "runs" / "r" / "calculator" / layout.SCORED)]
    assert all(r["kept"] and r["usefulness"] is None and r["reason"] is None for r in records)
    built = build_augmented(tmp_path / "runs" / "r")
    texts = [json.loads(line)["text"] for part in ("train", "validation")
             for line in open(Path(built["out"]) / f"{part}.jsonl")]
    assert sum(text.count("[Calculator(") for text in texts) == 8
