"""Real processes on one run: a second curate of the same tool is refused at once, two tools curate
side by side without losing a stage record, and a build killed with SIGKILL leaves the old output
whole or none, never half of one."""
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import lock_held_elsewhere, sigkill_when
from synthetic_run import write_synthetic_run
from toolformer.run import layout

DOCS = [f"Shop {i} sold {10 + i} pens and {20 + 2 * i} pencils, {30 + 3 * i} items in total; "
        f"each cost {i + 2} dollars." for i in range(8)]
STAGE_FILES = (layout.CANDIDATES, layout.EXECUTED, layout.SCORED)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, favouring_model_dir):
    root = tmp_path_factory.mktemp("concurrency")
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t, "date": "2013-04-19"}) + "\n"
                              for i, t in enumerate(DOCS)))
    return root, favouring_model_dir, corpus


def toolformer(*args: str) -> list[str]:
    return [sys.executable, "-m", "toolformer.cli", *args]


def curate_command(root: Path, model: Path, corpus: Path, tools: str) -> list[str]:
    return toolformer("curate", "--corpus", str(corpus), "--run", "r", "--runs-dir", str(root / "runs"),
                      "--model", str(model), "--tools", tools, "--k", "4", "--m", "5", "--tau-s", "calendar=0",
                      "--max-new-tokens", "12", "--chunk-docs", "2", "--no-progress", "--threads", "1")


def start(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def held(lock: Path) -> bool:
    """Whether some process holds the flock on `lock` (taking it for a moment to find out)."""
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def pause_inside_a_stage(proc: subprocess.Popen, tool_dir: Path, manifest_lock: Path, timeout: float = 300) -> Path:
    """SIGSTOP `proc` at a moment it holds a stage's lock but not the manifest's (a paused holder of
    that one would block every other process); the held stage lock."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        proc.send_signal(signal.SIGSTOP)
        while not stopped(proc.pid):
            time.sleep(0.001)
        holding = [lock for lock in sorted(tool_dir.glob(f"*{layout.LOCK_SUFFIX}")) if held(lock)]
        if holding and not held(manifest_lock):
            return holding[0]
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.005)
    raise AssertionError(f"process {proc.pid} never held a stage lock (exit code {proc.poll()})")


def line_counts(tool_dir: Path) -> dict[str, int]:
    return {name: len((tool_dir / name).read_text().splitlines()) for name in STAGE_FILES}


def test_a_second_curate_of_the_same_run_is_refused_at_once(setup):
    root, model, corpus = setup
    command = curate_command(root, model, corpus, "calculator")
    run_dir = root / "runs" / "r"
    first = start(command)
    try:
        lock = pause_inside_a_stage(first, run_dir / "calculator", run_dir / (layout.MANIFEST + layout.LOCK_SUFFIX))
        stage = {name + layout.LOCK_SUFFIX: kind for kind, name in layout.STAGE_OUTPUT.items()}[lock.name]
        # the first process stays paused: a second one that waited for it would time out here
        second = subprocess.run(command, capture_output=True, text=True, timeout=300,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 2 and "Traceback" not in second.stderr
    errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: run r: {stage}/calculator is already running in process {first.pid} (it holds "
                      f"{lock}); wait for it to end or stop it"]

    tool_dir = run_dir / "calculator"
    manifest = json.loads((run_dir / layout.MANIFEST).read_text())
    candidates = [json.loads(line) for line in (tool_dir / layout.CANDIDATES).read_text().splitlines()]
    n = manifest["stages"]["sample/calculator"]["counts"]["candidates"]
    assert n > 0 and len({c["id"] for c in candidates}) == len(candidates) == n  # nothing written twice
    assert line_counts(tool_dir) == dict.fromkeys(STAGE_FILES, n)
    assert len((run_dir / layout.DOCUMENTS).read_text().splitlines()) == len(DOCS)
    before = {name: (tool_dir / name).read_bytes() for name in STAGE_FILES}
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert {name: (tool_dir / name).read_bytes() for name in STAGE_FILES} == before


def test_two_tools_curated_at_once_both_keep_their_records(setup):
    root, model, corpus = setup
    shutil.rmtree(root / "runs", ignore_errors=True)
    procs = {tool: start(curate_command(root, model, corpus, tool)) for tool in ("calculator", "calendar")}
    for tool, proc in procs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    run_dir = root / "runs" / "r"
    stages = json.loads((run_dir / layout.MANIFEST).read_text())["stages"]
    assert set(stages) == {"ingest"} | {f"{kind}/{tool}" for kind in ("sample", "execute", "filter")
                                        for tool in procs}
    assert all(node.get("finished") for node in stages.values())
    for tool in procs:  # each tool's files hold what its records count
        n = stages[f"sample/{tool}"]["counts"]["candidates"]
        assert n > 0 and line_counts(run_dir / tool) == dict.fromkeys(STAGE_FILES, n)
        assert stages[f"filter/{tool}"]["counts"]["scored"] == n
    # both processes read the corpus in at once; the documents are whole, once
    assert [json.loads(line)["id"] for line in (run_dir / layout.DOCUMENTS).read_text().splitlines()] == \
        [f"d{i}" for i in range(len(DOCS))]
    assert not list(run_dir.glob("*.tmp*"))


# ---------------------------------------------------------------------------- build, killed

def build_outputs(out: Path) -> dict:
    from datasets import load_from_disk
    files = {name: (out / name).read_text() for name in ("train.jsonl", "validation.jsonl", "build.json")}
    saved = load_from_disk(str(out))
    for split in ("train", "validation"):  # the datasets folder holds the same rows as the JSONL
        assert saved[split].to_list() == [json.loads(line) for line in files[f"{split}.jsonl"].splitlines()]
    return files


def kill_when_writing(proc: subprocess.Popen, tmp: Path) -> bool:
    """SIGKILL `proc` while it writes its output aside in `tmp`; False if it finished first."""
    return sigkill_when(proc, tmp.exists, poll=0.002)


def test_a_killed_build_leaves_the_old_output_or_none_and_a_rerun_completes(tmp_path):
    write_synthetic_run(tmp_path / "r", n_calls=20000, n_docs=4000)
    command = toolformer("build", "--run", "r", "--runs-dir", str(tmp_path), "--keep-uncalled-rate", "1")
    out, tmp = tmp_path / "r" / layout.AUGMENTED, tmp_path / "r" / (layout.AUGMENTED + ".tmp")
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    reference = build_outputs(out)
    assert json.loads(reference["build.json"])["documents_without_calls"] > 0

    # killed while rebuilding with other settings: the previous output is still there, whole
    assert kill_when_writing(start(command + ["--heldout", "0.5"]), tmp)
    assert build_outputs(out) == reference
    # killed in a first build: no output at all
    shutil.rmtree(out)
    assert kill_when_writing(start(command), tmp)
    assert tmp.exists() and not out.exists()
    # the same command again completes, and clears what the killed builds left
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    assert build_outputs(out) == reference
    assert sorted(p.name for p in out.parent.glob(layout.AUGMENTED + "*")) == [layout.AUGMENTED,
                                                                            layout.AUGMENTED + layout.LOCK_SUFFIX]


def test_a_second_build_of_the_same_output_is_refused(tmp_path):
    from toolformer.corpus.build import build_augmented
    from toolformer.errors import UserError
    write_synthetic_run(tmp_path / "r", n_calls=200, n_docs=50)
    out = tmp_path / "r" / layout.AUGMENTED
    with lock_held_elsewhere(out, "r", "build") as pid:
        with pytest.raises(UserError, match=rf"run r: build of augmented is already running in process {pid} "):
            build_augmented(tmp_path / "r")
    assert not out.exists()
    assert build_augmented(tmp_path / "r")["documents"] == 50  # the lock goes with its process
