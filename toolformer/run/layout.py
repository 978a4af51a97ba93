"""Every file name of a run folder, in one place:

    runs/<run>/manifest.json            run config, versions, per-stage settings, counts, times
                                        (manifest.json.lock: held while one process updates it)
    runs/<run>/documents.jsonl          the validated documents the run read
    runs/<run>/annotations.jsonl        the calls they carried (a run ingested with --from-annotations)
    runs/<run>/<tool>/candidates.jsonl  sample     (each with .progress beside it, and .lock while a
                                                    process writes it)
    runs/<run>/<tool>/executed.jsonl    execute
    runs/<run>/<tool>/scored.jsonl      filter
    runs/<run>/augmented/               build (datasets folder + augmented.jsonl)
    runs/<run>/model/                   finetune
    runs/<run>/eval/                    evaluate
    runs/<run>/report.html, report.md   report
"""
from __future__ import annotations

MANIFEST = "manifest.json"
DOCUMENTS = "documents.jsonl"
ANNOTATIONS = "annotations.jsonl"
CANDIDATES = "candidates.jsonl"
EXECUTED = "executed.jsonl"
SCORED = "scored.jsonl"
AUGMENTED = "augmented"
MODEL = "model"
EVAL = "eval"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
REPORT_TOOL_FIGURE = "report-{tool}.png"
REPORT_COMPARE_FIGURE = "report-compare-{other}.png"
REPORT_SCREENSHOT = "report.png"

# beside a file: its committed chunks (records.ResumableWriter) and the lock of the process writing it
PROGRESS_SUFFIX = ".progress"
LOCK_SUFFIX = ".lock"

# the curation stages, each with the file it writes in the tool's folder and the one it reads
STAGE_OUTPUT = {"sample": CANDIDATES, "execute": EXECUTED, "filter": SCORED}
STAGE_INPUT = {"execute": CANDIDATES, "filter": EXECUTED}
