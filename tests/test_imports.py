"""The import graph of the package: every arrow points to the same floor or a lower one, and no two
rooms import each other, directly or round a circle.

A room is a top-level module (`config.py`) or a subpackage (`run/`) of toolformer/; `__init__.py`
is the top package, the Python API. Every import counts wherever it is written: at module level,
inside a function (a lazy import is still a dependency) and under `if TYPE_CHECKING:` (a type
named in a signature is knowledge of the room it lives in; a type that must come from above is a
fact on the wrong floor). LAYERS is the one declaration of the floors; the README's layer map
shows the same floors and is checked against it.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "toolformer"

# bottom to top; imports may point within a floor or down, never up
LAYERS = (
    ("errors.py", "registry.py", "assets.py", "stats.py", "config.py", "run/"),  # what every stage shares
    ("lm/", "tools/", "benchmarks.py"),                          # the model, the tools, the benchmark data
    ("corpus/", "retrieval/", "inference/", "pipeline/"),        # calls in text, chosen, decoded, curated
    ("evaluation/", "training/", "report/", "demo.py"),          # what is made of a curated run
    ("cli/", "__init__.py"),                                     # the command line and the Python API
)


def _room(package: Path, module: str) -> str:
    """The room of a dotted name under the package: `toolformer.run.manifest` -> `run/`; the top
    package itself, or a name defined in it (`toolformer.__version__`), -> `__init__.py`."""
    name = module.split(".")[1] if "." in module else ""
    if name and (package / name / "__init__.py").exists():
        return f"{name}/"
    if name and (package / f"{name}.py").exists():
        return f"{name}.py"
    return "__init__.py"


def arrows(package: Path = PACKAGE) -> list[tuple[str, int, str, str]]:
    """(file, line, from room, to room) of every import between two rooms of the package."""
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent)
        parts = rel.with_suffix("").parts
        here = list(parts[:-1])  # the package the module is in (an __init__.py: its own)
        module = ".".join(parts[:-1] if path.name == "__init__.py" else parts)
        source = _room(package, module)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package, `level - 1` steps up
                    base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
                # `from toolformer import errors` names a room, so does each name after the top package
                targets = [f"{base}.{a.name}" for a in node.names] if base == package.name else [base]
            else:
                continue
            for target in targets:
                if target.split(".")[0] == package.name and (room := _room(package, target)) != source:
                    found.append((str(rel), node.lineno, source, room))
    return found


def floors() -> dict[str, int]:
    return {room: i for i, layer in enumerate(LAYERS) for room in layer}


def back_arrows(found: list[tuple[str, int, str, str]]) -> list[str]:
    floor = floors()
    return [f"{file}:{line} {a} -> {b}" for file, line, a, b in found if floor[b] > floor[a]]


def circles(found: list[tuple[str, int, str, str]]) -> list[list[str]]:
    """The rooms of each circle (a strongly connected set of two or more rooms), by Tarjan."""
    graph: dict[str, set[str]] = {}
    for _, _, a, b in found:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while (w := stack.pop()) != v:
                on_stack.discard(w)
                group.append(w)
            on_stack.discard(v)
            if group:
                out.append(sorted([v, *group]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_room_has_one_floor():
    rooms = {p.name + "/" for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    rooms |= {p.name for p in PACKAGE.glob("*.py")}
    declared = [room for layer in LAYERS for room in layer]
    assert len(declared) == len(set(declared)), "a room is declared on two floors"
    assert set(declared) == rooms, (f"rooms without a floor: {sorted(rooms - set(declared))}; "
                                    f"declared but gone: {sorted(set(declared) - rooms)}")


def test_imports_point_down():
    found = arrows()
    assert len(found) > 100  # the parse sees the package's imports (there are well over a hundred)
    up = back_arrows(found)
    assert not up, f"{len(up)} import(s) run back up (file:line room -> room):\n" + "\n".join(up)


def shortest_circle(found: list[tuple[str, int, str, str]], group: list[str]) -> list[str]:
    """The rooms of a shortest circle through the group, first room repeated at the end."""
    step = {}
    for _, _, a, b in found:
        if a in group and b in group:
            step.setdefault(a, set()).add(b)
    best = None
    for start in group:
        paths, seen = [[start]], {start}
        while paths and not (best and len(paths[0]) >= len(best)):
            path = paths.pop(0)
            for nxt in sorted(step.get(path[-1], ())):
                if nxt == start:
                    best = path + [start] if best is None or len(path) + 1 < len(best) else best
                elif nxt not in seen:
                    seen.add(nxt)
                    paths.append(path + [nxt])
    return best


def test_no_circles():
    found = arrows()
    shown = []
    for group in circles(found):
        ring = shortest_circle(found, group)
        hops = set(zip(ring, ring[1:]))
        shown.append(f"{', '.join(group)}; e.g. {' -> '.join(ring)}:\n" + "\n".join(
            f"  {f}:{n} {a} -> {b}" for f, n, a, b in found if (a, b) in hops))
    assert not shown, "rooms that import each other:\n" + "\n".join(shown)


def test_the_checks_see_a_back_arrow_and_a_circle(tmp_path):
    """Every kind of import is seen: function-level, TYPE_CHECKING, relative, `from toolformer import x`."""
    pkg = tmp_path / "toolformer"
    for folder in ("run", "cli"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("__version__ = '0'\n")
    (pkg / "errors.py").write_text("")
    (pkg / "run" / "records.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from .. import errors\n"                   # 2: down, relative
        "if TYPE_CHECKING:\n"
        "    from toolformer.cli.flags import x\n"  # 4: up, type-only
        "def f():\n"
        "    from toolformer import __version__\n"  # 6: up, lazy, the top package
    )
    (pkg / "cli" / "flags.py").write_text("from . import main\nimport toolformer.run.records\n")
    found = arrows(pkg)
    assert sorted(found) == [("toolformer/cli/flags.py", 2, "cli/", "run/"),
                             ("toolformer/run/records.py", 2, "run/", "errors.py"),
                             ("toolformer/run/records.py", 4, "run/", "cli/"),
                             ("toolformer/run/records.py", 6, "run/", "__init__.py")]
    assert back_arrows(found) == ["toolformer/run/records.py:4 run/ -> cli/",
                                  "toolformer/run/records.py:6 run/ -> __init__.py"]
    assert circles(found) == [["cli/", "run/"]]
    assert shortest_circle(found, ["cli/", "run/"]) == ["cli/", "run/", "cli/"]


def test_the_readme_shows_these_floors():
    """The README's layer map: one line a floor, top floor first, each naming its rooms."""
    readme = (REPO / "README.md").read_text()
    block = re.search(r"```\n(5 .*?)```", readme, re.S)
    assert block, "README.md has no layer map (a code block of lines `5 ...` down to `1 ...`)"
    lines = block.group(1).splitlines()
    shown = [tuple(re.findall(r"[\w]+/|[\w]+\.py", line)) for line in reversed(lines)]
    assert [line.split()[0] for line in lines] == [str(i) for i in range(len(LAYERS), 0, -1)]
    assert shown == list(LAYERS)
