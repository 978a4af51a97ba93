"""Compute saved, and kept calls lost, by prompting each document with its top-K tools only.

    toolformer curate --corpus C --run all ...
    toolformer curate --corpus C --run topk ... --tool-retriever all-minilm-l6-v2 --tools-per-doc 2
    python bench/tools_per_doc.py --all runs/all --subset runs/topk      # one JSON line

Both runs must share corpus, model, seed and per-tool settings: the sampler's seeds depend on
(document, tool, position, draw) only, so a document prompted in both runs gets the same calls,
and every kept call of the subset run is one of the full run's. Work is counted in forward
passes (scoring passes = windows sampled; sampled calls; filter candidates) and stage seconds.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toolformer.run.layout import MANIFEST, SCORED  # noqa: E402

WORK = ("windows_heuristic", "samples", "scored")
SECONDS = ("sample", "execute", "filter")


def stages(run: Path) -> dict[str, dict]:
    """tool -> counts of every stage, and seconds per stage."""
    out: dict[str, dict] = {}
    for name, info in json.loads((run / MANIFEST).read_text())["stages"].items():
        if "/" in name:
            kind, tool = name.split("/")
            out.setdefault(tool, {}).update(info["counts"], **{f"{kind}_seconds": info["seconds"]})
    return out


def kept(run: Path, tool: str) -> set[tuple]:
    path = run / tool / SCORED
    rows = (json.loads(line) for line in open(path)) if path.exists() else ()
    return {(r["doc_id"], r["position"], r["input"]) for r in rows if r["kept"]}


def compare(full: Path, subset: Path) -> dict:
    a, b = stages(full), stages(subset)
    tools, totals = {}, {"full": dict.fromkeys(WORK + ("seconds",), 0.0), "subset": dict.fromkeys(WORK + ("seconds",), 0.0)}
    for tool in a:
        kept_full, kept_subset = kept(full, tool), kept(subset, tool)
        row = {"documents_prompted": [a[tool]["documents"] - a[tool].get("documents_not_retrieved", 0),
                                      b[tool]["documents"] - b[tool].get("documents_not_retrieved", 0)],
               **{k: [a[tool].get(k, 0), b[tool].get(k, 0)] for k in WORK},
               "seconds": [round(sum(s[tool].get(f"{k}_seconds", 0) for k in SECONDS), 1) for s in (a, b)],
               "kept": [len(kept_full), len(kept_subset)], "kept_lost": len(kept_full - kept_subset),
               "kept_not_in_full": len(kept_subset - kept_full)}
        tools[tool] = row
        for side, i in (("full", 0), ("subset", 1)):
            for k in WORK + ("seconds",):
                totals[side][k] += row[k][i]
    saved = {k: round(1 - totals["subset"][k] / totals["full"][k], 3) if totals["full"][k] else None
             for k in WORK + ("seconds",)}
    return {"bench": "tools_per_doc", "tools": tools, "totals": totals, "saved": saved,
            "kept_lost": sum(t["kept_lost"] for t in tools.values()),
            "kept_full": sum(t["kept"][0] for t in tools.values())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--all", required=True, help="run folder prompted with every tool")
    p.add_argument("--subset", required=True, help="run folder prompted with a retriever's top-K tools")
    a = p.parse_args()
    out = compare(Path(a.all), Path(a.subset))
    for tool, row in out["tools"].items():
        print(f"{tool:<12}" + "  ".join(f"{k} {v[0]}→{v[1]}" for k, v in row.items() if isinstance(v, list))
              + f"  kept lost {row['kept_lost']}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
