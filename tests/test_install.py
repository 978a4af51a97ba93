"""A normal (non-editable) install works: the wheel ships every module and data file, and an
installed copy runs a tool and loads its prompts from any directory.

The wheel is built from a copy of the package without build isolation (offline: the build backend
comes from the `test` extra), installed with `pip install --target`, and run with that target on
PYTHONPATH from a directory where the checkout is not importable.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]
JUNK = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")

# run inside the installed copy with the package-data patterns as arguments: prints where it was
# imported from, loads every tool's sampler prompt, then reads every package-data file
CHECK = """
import sys
from fnmatch import fnmatch
from importlib.resources import files
import toolformer
from toolformer.tools import all_tools, load_prompt
print(toolformer.__file__)
for tool in all_tools():
    assert load_prompt(tool).endswith("Output:"), tool.key
for pattern in sys.argv[1:]:
    folder, _, name = pattern.rpartition("/")
    for entry in files("toolformer").joinpath(folder).iterdir():
        if fnmatch(entry.name, name):
            assert entry.read_bytes(), entry
            print(f"{folder}/{entry.name}")
"""


def _files(package: Path) -> set[str]:
    return {str(p.relative_to(package)) for p in package.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done


def test_wheel_installs_and_runs_from_another_directory(tmp_path):
    src, dist, site, elsewhere = (tmp_path / name for name in ("src", "dist", "site", "elsewhere"))
    # a copy, so the build's own files (build/, *.egg-info) never land in the checkout
    src.mkdir()
    shutil.copy(REPO / "pyproject.toml", src)
    shutil.copy(REPO / "README.md", src)
    shutil.copytree(REPO / "toolformer", src / "toolformer", ignore=JUNK)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run(pip + ["wheel", "-q", "--no-deps", "--no-index", "--no-build-isolation", str(src), "-w", str(dist)])
    wheel, = dist.glob("toolformer-*.whl")
    _run(pip + ["install", "-q", "--no-deps", "--no-index", "--target", str(site), str(wheel)])

    # one top-level package, and every file of the package (modules and package data) shipped
    assert {p.name for p in site.iterdir() if p.name != "bin" and not p.name.endswith(".dist-info")} \
        == {"toolformer"}
    assert _files(site / "toolformer") == _files(src / "toolformer")

    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["toolformer"]
    checked = _run([sys.executable, "-c", CHECK, *patterns], cwd=elsewhere, env=env)
    imported_from, *data_files = checked.stdout.splitlines()
    assert Path(imported_from).is_relative_to(site)
    assert sorted(data_files) == sorted(str(p.relative_to(src / "toolformer"))
                                        for pattern in patterns for p in (src / "toolformer").glob(pattern))
    assert "tools/prompts/calculator.txt" in data_files
    for cli in ([sys.executable, "-m", "toolformer.cli"], [str(site / "bin" / "toolformer")]):
        ran = _run(cli + ["tool", "calculator", "2+2"], cwd=elsewhere, env=env)
        assert ran.stdout == "4\n"
