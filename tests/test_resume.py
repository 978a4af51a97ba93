"""kill -9 at several points, run again: the final files equal those of an uninterrupted run."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import sigkill_when


DOCS = [f"Shop {i} sold {10 + i} pens and {20 + 2 * i} pencils, {30 + 3 * i} items in total; "
        f"each cost {i + 2} dollars, so they made {(30 + 3 * i) * (i + 2)} dollars." for i in range(10)]
STAGE_FILES = ("candidates.jsonl", "executed.jsonl", "scored.jsonl")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, favouring_model_dir):
    root = tmp_path_factory.mktemp("resume")
    model_dir = favouring_model_dir
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(DOCS)))
    return root, model_dir, corpus


def curate(root, model_dir, corpus, run):
    cmd = [sys.executable, "-m", "toolformer.cli", "curate", "--corpus", str(corpus), "--run", run,
           "--runs-dir", str(root / "runs"), "--model", str(model_dir), "--tools", "calculator",
           "--k", "4", "--m", "5", "--max-new-tokens", "12", "--chunk-docs", "2", "--no-progress", "--json"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def stage_records(run_dir: Path) -> dict[str, list[dict]]:
    out = {}
    for name in STAGE_FILES:
        path = run_dir / "calculator" / name
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        for r in rows:
            r.pop("latency_ms", None)  # wall-clock time: the only field allowed to differ
        out[name] = rows
    return out


def kill_when(proc, path: Path, min_lines: int) -> bool:
    """SIGKILL `proc` once `path` has at least `min_lines` lines; False if it finished first."""
    return sigkill_when(proc, lambda: path.exists() and path.read_text().count("\n") >= min_lines)


def test_kill_and_resume_gives_identical_files(setup):
    root, model_dir, corpus = setup
    ref = curate(root, model_dir, corpus, "reference")
    out, err = ref.communicate(timeout=600)
    assert ref.returncode == 0, err
    figures = json.loads(out.strip().splitlines()[-1])["tools"]["calculator"]
    reference = stage_records(root / "runs" / "reference")
    # the favouring model makes every stage do real work, successes and failures alike
    assert figures["candidates"] > 8 and figures["executed_ok"] > 0 and figures["executed_failed"] > 0
    assert len(reference["scored.jsonl"]) == figures["candidates"] == figures["scored"]

    tool_dir = root / "runs" / "killed" / "calculator"
    kills = 0
    for path, lines in [(tool_dir / "candidates.jsonl.progress", 1), (tool_dir / "candidates.jsonl.progress", 3),
                        (tool_dir / "executed.jsonl", 1), (tool_dir / "scored.jsonl.progress", 1),
                        (tool_dir / "scored.jsonl", 5)]:
        kills += kill_when(curate(root, model_dir, corpus, "killed"), path, lines)
    assert kills >= 4
    last = curate(root, model_dir, corpus, "killed")
    _, err = last.communicate(timeout=600)
    assert last.returncode == 0, err
    assert stage_records(root / "runs" / "killed") == reference
    manifest = json.loads((root / "runs" / "killed" / "manifest.json").read_text())
    assert manifest["stages"]["filter/calculator"]["counts"]["scored"] == len(reference["scored.jsonl"])


def test_resume_with_other_settings_is_refused(setup):
    root, model_dir, corpus = setup
    proc = curate(root, model_dir, corpus, "reference")
    proc.args[proc.args.index("--k") + 1] = "5"
    changed = subprocess.run(proc.args, capture_output=True, text=True)
    proc.kill()
    assert changed.returncode == 2 and "other settings (k: 4 -> 5)" in changed.stderr
