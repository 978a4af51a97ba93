"""Curation on a local Ray cluster of 2 CPU workers: the same files as one process, also when a
worker or the driver is killed with SIGKILL mid-run."""
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toolformer.config import RunSettings, SampleSettings
from toolformer.pipeline.curate import Pipeline, curate
from toolformer.tools import get_tool

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

DOCS = [f"Shop {i} sold {10 + i} pens and {20 + 2 * i} pencils, {30 + 3 * i} items in total; "
        f"each cost {i + 2} dollars, so they made {(30 + 3 * i) * (i + 2)} dollars." for i in range(12)]
CHUNK_DOCS = 2  # 6 chunks per stage for 2 workers
SMALL = SampleSettings(window=32, k=4, m=5, max_new_tokens=12)
SMALL_FLAGS = ["--window", "32", "--k", "4", "--m", "5", "--max-new-tokens", "12"]
STAGE_FILES = ("candidates.jsonl", "executed.jsonl", "scored.jsonl")


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module (2 CPUs: 2 workers of one thread); its address."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, favouring_model_dir):
    """The model folder, the corpus, and a reference run curated in one process (one thread, as
    each worker has)."""
    root = tmp_path_factory.mktemp("ray")
    model_dir = favouring_model_dir
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(DOCS)))
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        figures = curate(settings(root, model_dir, "single", corpus), "calculator", SMALL)["stages"]
    finally:
        torch.set_num_threads(threads)
    # the favouring model gives every stage work in every chunk: calls that run and calls that fail
    assert figures["sample/calculator"]["candidates"] > 12
    assert figures["execute/calculator"]["executed_ok"] > 0 and figures["execute/calculator"]["executed_failed"] > 0
    return root, model_dir, corpus


def settings(root: Path, model_dir: Path, run: str, corpus: Path | None = None, **kw) -> RunSettings:
    return RunSettings(run=run, runs_dir=str(root / "runs"), corpus=corpus and str(corpus), model=str(model_dir),
                       chunk_docs=CHUNK_DOCS, no_progress=True, **kw)


def tool_dir(root: Path, run: str) -> Path:
    return root / "runs" / run / "calculator"


def without_latency(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        r.pop("latency_ms", None)  # wall-clock time: the only field allowed to differ between two runs
    return rows


def assert_same_as_single(root: Path, run: str) -> None:
    for name in STAGE_FILES:
        assert without_latency(tool_dir(root, run) / name) == without_latency(tool_dir(root, "single") / name), name
    assert (tool_dir(root, run) / "candidates.jsonl").read_bytes() == \
        (tool_dir(root, "single") / "candidates.jsonl").read_bytes()


def test_ray_stages_write_the_bytes_of_one_process(setup, cluster):
    root, model_dir, corpus = setup
    # one pipeline for the three stages: its 2 workers load the model once for sample and filter
    pipe = Pipeline(settings(root, model_dir, "ray", corpus, ray=cluster, workers=2), SMALL)
    pipe.ingest()
    calculator = get_tool("calculator")
    pipe.sample(calculator)
    pipe.execute(calculator)
    single, sharded = tool_dir(root, "single"), tool_dir(root, "ray")
    assert (sharded / "candidates.jsonl").read_bytes() == (single / "candidates.jsonl").read_bytes()
    assert without_latency(sharded / "executed.jsonl") == without_latency(single / "executed.jsonl")
    # executed.jsonl holds wall-clock latencies, which scored.jsonl copies: filter the same file
    for name in ("executed.jsonl", "executed.jsonl.progress"):
        shutil.copy(single / name, sharded / name)
    figures = pipe.filter(calculator)
    assert (sharded / "scored.jsonl").read_bytes() == (single / "scored.jsonl").read_bytes()
    manifests = [json.loads((root / "runs" / run / "manifest.json").read_text()) for run in ("single", "ray")]
    for stage in ("sample/calculator", "filter/calculator"):
        assert manifests[0]["stages"][stage]["counts"] == manifests[1]["stages"][stage]["counts"]
    assert figures["scored"] == manifests[0]["stages"]["sample/calculator"]["counts"]["candidates"]


def cli_curate(root: Path, model_dir: Path, corpus: Path, run: str, address: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "toolformer.cli", "curate", "--corpus", str(corpus), "--run", run,
           "--runs-dir", str(root / "runs"), "--model", str(model_dir), "--tools", "calculator",
           "--chunk-docs", str(CHUNK_DOCS), *SMALL_FLAGS, "--ray", address, "--workers", "2", "--json"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def wait_for_lines(proc: subprocess.Popen, path: Path, lines: int, timeout: float = 300) -> None:
    t0 = time.time()
    while not (path.exists() and path.read_text().count("\n") >= lines):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() - t0 < timeout, f"{path} never reached {lines} lines"
        time.sleep(0.02)


def busy_workers() -> list[int]:
    """PIDs of the Ray workers that are processing a chunk now (Ray titles them so)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            title = (proc / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if proc.name.isdigit() and title.startswith(b"ray::ModelWorker.process"):
            pids.append(int(proc.name))
    return pids


def test_a_worker_killed_mid_chunk_loses_nothing(setup, cluster):
    root, model_dir, corpus = setup
    proc = cli_curate(root, model_dir, corpus, "worker-killed", cluster)
    progress = tool_dir(root, "worker-killed") / "candidates.jsonl.progress"
    wait_for_lines(proc, progress, 1)
    t0 = time.time()
    while not (busy := busy_workers()):
        assert time.time() - t0 < 60, "no worker was busy"
        time.sleep(0.01)
    os.kill(busy[0], signal.SIGKILL)
    assert proc.poll() is None  # the job was still running: the worker died in the middle of a chunk
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert_same_as_single(root, "worker-killed")
    figures = json.loads(out.strip().splitlines()[-1])["tools"]["calculator"]
    assert figures["scored"] == len(without_latency(tool_dir(root, "single") / "scored.jsonl"))


def test_a_killed_driver_resumes_with_the_same_command(setup, cluster):
    root, model_dir, corpus = setup
    for attempt in range(3):  # a loaded machine may let the driver finish before the poll sees a commit
        run = f"driver-killed-{attempt}"
        progress = tool_dir(root, run) / "candidates.jsonl.progress"
        proc = cli_curate(root, model_dir, corpus, run, cluster)
        wait_for_lines(proc, progress, 1)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = progress.read_text().split("\n")[:-1]  # the entries committed whole
        if len(before) < len(DOCS) // CHUNK_DOCS:
            break
    assert 1 <= len(before) < len(DOCS) // CHUNK_DOCS, "the driver finished the stage before every kill"
    again = cli_curate(root, model_dir, corpus, run, cluster)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert_same_as_single(root, run)
    # the chunks committed before the kill were kept, not redone: their entries are unchanged
    after = progress.read_text().splitlines()
    assert after[:len(before)] == before
    assert [json.loads(line)["chunk"] for line in after] == [str(i) for i in range(len(DOCS) // CHUNK_DOCS)] + \
        ["__complete__"]
