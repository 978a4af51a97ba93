"""Size of report.html and its load time in headless Chromium; prints one JSON line.

    python bench/report_page.py                      # a synthetic run of 100,000 scored calls
    python bench/report_page.py --calls 20000        # another size
    python bench/report_page.py --run NAME [--runs-dir runs]   # a real run (its report is rewritten)

load_s: from navigation until the loaded page has painted (load event + one frame), the median of
--loads page opens in one browser; the first open (cold) is reported apart.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from toolformer.report.browser import Chromium  # noqa: E402
from toolformer.report import write_report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="measure this run instead of a synthetic one")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--calls", type=int, default=100_000, help="scored calls of the synthetic run")
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = {}
        if args.run:
            run_dir = Path(args.runs_dir) / args.run
        else:
            from synthetic_run import write_synthetic_run
            run_dir = Path(tmp) / "synthetic"
            t0 = time.perf_counter()
            write_synthetic_run(run_dir, args.calls, n_docs=max(200, args.calls // 10))
            figures["synthetic_write_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        report = write_report(run_dir)
        figures.update(run=str(run_dir) if args.run else f"synthetic {args.calls:,} calls",
                       records=report["records"], examples_embedded=report["examples_embedded"],
                       report_s=round(time.perf_counter() - t0, 2), html_bytes=report["html_bytes"],
                       html_mb=round(report["html_bytes"] / 1e6, 2))
        with Chromium() as browser:
            cold = browser.open(report["html"])
            loads = [browser.open(report["html"]) for _ in range(args.loads)]
            figures.update(load_cold_s=round(cold, 3), load_s=round(statistics.median(loads), 3),
                           load_max_s=round(max(loads), 3), console_errors=browser.console_errors)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
