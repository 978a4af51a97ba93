"""A run directory (file names: toolformer/run/layout.py) and its manifest.json:

    {"run": "demo", "created": "2025-01-01T00:00:00+00:00",
     "config": {"corpus_fingerprint": "…", "limit": null, "syntax": "toolformer"},
     "versions": {"toolformer": "…", "python": "…", "torch": "…", "transformers": "…", "numpy": "…"},
     "stages": {
       "ingest":            {"counts": {"documents": 40, …}, "corpus": "docs.jsonl", "finished": "…"},
       "sample/calculator": {"config": {<settings>}, "counts": {…}, "seconds": 12.5, "finished": "…"},
       "execute/calculator": …, "filter/calculator": …}}

A stage's "config" holds the settings it was made with, written when it starts; "counts",
"seconds" and "finished" when it ends. A stage that finds its own earlier output checks that its
settings match before it resumes: mixing records made with different settings would corrupt the
run silently. Other modules read the manifest through Run's accessors (config, syntax, stage,
stages), never by its keys; manifests written by earlier versions read the same.

Every update is a read-modify-write under an exclusive lock (manifest.json.lock), so processes
curating different tools of one run never lose each other's records.
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import platform
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from toolformer.errors import UserError, UserFileNotFound, UserValueError
from toolformer.run import layout
from toolformer.run.records import ReadStats, read_documents, read_jsonl, write_jsonl_atomic, writing, Document

DOCUMENT = {"id": str, "text": str, "meta": dict}
INGEST = "ingest"
DEFAULT_SYNTAX = "toolformer"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def versions() -> dict:
    from importlib.metadata import version  # the installed distribution's: run/ sits below the top package
    import numpy
    import torch
    import transformers
    return {"toolformer": version("toolformer"), "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": numpy.__version__}


def missing(path: Path, command: str) -> UserFileNotFound:
    """The one message for an input that is not there yet."""
    return UserFileNotFound(f"{path} does not exist: run `{command}` first")


class SettingsChanged(UserValueError):
    pass


@dataclass(frozen=True)
class RunConfig:
    """What holds for the whole run: the corpus it read and the call syntax its records use."""
    corpus_fingerprint: str | None
    limit: int | None
    syntax: str | None  # set by the first curation stage; None before one ran
    source: dict | None = None  # what else ingest read the corpus as, e.g. {"annotations": "gsm8k", ...}


@dataclass(frozen=True)
class StageRecord:
    """One stage's entry: "sample/calculator" (kind/tool) or "ingest"."""
    name: str
    settings: dict          # JSON key "config"
    counts: dict
    seconds: float | None
    finished: str | None    # ISO time of the last completion; None while it never finished

    @property
    def kind(self) -> str:
        return self.name.split("/")[0]

    @property
    def tool(self) -> str | None:
        return self.name.partition("/")[2] or None

    @classmethod
    def from_json(cls, name: str, node: dict) -> "StageRecord":
        return cls(name, node.get("config", {}), node.get("counts", {}), node.get("seconds"), node.get("finished"))


def stage_name(kind: str, tool: str | None = None) -> str:
    return f"{kind}/{tool}" if tool else kind


def _shape_problem(manifest) -> str | None:
    """Why a parsed manifest does not have the shape this module writes, or None."""
    if not isinstance(manifest, dict):
        return "is not a JSON object"
    for key in ("config", "versions", "stages"):
        if not isinstance(manifest.get(key, {}), dict):
            return f"has a {key!r} that is not an object"
    for name, node in manifest.get("stages", {}).items():
        if not isinstance(node, dict):
            return f"has a stage {name!r} that is not an object"
        for key in ("config", "counts"):
            if not isinstance(node.get(key, {}), dict):
                return f"has a {key!r} of stage {name!r} that is not an object"
    return None


class Run:
    def __init__(self, name: str, runs_dir: str | Path = "runs"):
        if not name or "/" in name or name.startswith("."):
            raise UserValueError(f"bad run name {name!r}: use a plain folder name")
        self.name = name
        self.path = Path(runs_dir) / name
        self.manifest_path = self.path / layout.MANIFEST
        self.documents_path = self.path / layout.DOCUMENTS

    # ---- reading the manifest
    def manifest(self) -> dict:
        """The manifest as stored (a fresh one when there is none), checked for its shape."""
        try:
            text = self.manifest_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"run": self.name, "created": _now(), "config": {}, "versions": versions(), "stages": {}}
        except UnicodeDecodeError:
            raise self._broken("is not UTF-8 text") from None
        try:
            manifest = json.loads(text)
        except json.JSONDecodeError as err:
            raise self._broken(f"is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
        problem = _shape_problem(manifest)
        if problem:
            raise self._broken(problem)
        manifest.setdefault("config", {})
        manifest.setdefault("stages", {})
        return manifest

    def _broken(self, problem: str) -> UserError:
        return UserError(f"{self.manifest_path} {problem}: fix it by hand, or delete it to record the run's "
                         f"settings afresh (the stage files stay and resume)")

    def config(self) -> RunConfig:
        config = self.manifest()["config"]
        return RunConfig(config.get("corpus_fingerprint"), config.get("limit"), self.syntax(), config.get("source"))

    def syntax(self) -> str | None:
        """The run's call syntax; for runs curated before it was recorded in "config", the one
        its curation stages were made with."""
        manifest = self.manifest()
        if manifest["config"].get("syntax"):
            return manifest["config"]["syntax"]
        recorded = (node.get("config", {}).get("syntax") for node in manifest["stages"].values())
        return next((s for s in recorded if s), None)

    def stage(self, kind: str, tool: str | None = None) -> StageRecord | None:
        """The record of stage `kind` ("ingest", "sample", "execute", "filter") for `tool`, if any."""
        name = stage_name(kind, tool)
        node = self.manifest()["stages"].get(name)
        return None if node is None else StageRecord.from_json(name, node)

    def stages(self) -> list[StageRecord]:
        return [StageRecord.from_json(name, node) for name, node in self.manifest()["stages"].items()]

    # ---- updating the manifest
    @contextmanager
    def _editing(self):
        """The manifest to change in place; saved atomically, under the lock, when the block ends."""
        lock_path = self.manifest_path.with_name(layout.MANIFEST + layout.LOCK_SUFFIX)
        with writing(lock_path):
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            manifest = self.manifest()
            yield manifest
            tmp = self.manifest_path.with_name(layout.MANIFEST + ".tmp")
            with writing(self.manifest_path):
                tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
                os.replace(tmp, self.manifest_path)
        finally:
            os.close(fd)  # releases the lock

    def _check_and_record(self, node_path: tuple[str, ...], settings: dict, where: str) -> None:
        """Record `settings` at node_path, or insist they equal what is recorded there (settings
        recorded on one side only are not compared: a newer version may record more)."""
        with self._editing() as manifest:
            node = manifest
            for part in node_path:
                node = node.setdefault(part, {})
            changed = {k: (node[k], v) for k, v in settings.items() if k in node and node[k] != v}
            if changed:
                detail = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
                raise SettingsChanged(f"{where} was made with other settings ({detail}); resume with the same "
                                      f"settings, use a new --run, or delete {where} to start it over")
            node.update(settings)

    def check_stage_settings(self, kind: str, tool: str | None, settings: dict, output: Path) -> None:
        """Record a stage's settings as it starts, or refuse to resume `output` with others."""
        self._check_and_record(("stages", stage_name(kind, tool), "config"), settings, str(output))

    def settle_syntax(self, syntax: str | None) -> str:
        """The run's call syntax, recorded in "config" by the first curation stage: the recorded
        one, else `syntax`, else toolformer. A `syntax` other than the recorded one is refused."""
        recorded = self.syntax()
        if syntax is not None and recorded is not None and recorded != syntax:
            raise SettingsChanged(f"run {self.name} is curated in {recorded} syntax, not {syntax}: leave out "
                                  f"--syntax, or use a new --run")
        chosen = syntax or recorded or DEFAULT_SYNTAX
        if self.manifest()["config"].get("syntax") != chosen:
            self._check_and_record(("config",), {"syntax": chosen}, str(self.manifest_path))
        return chosen

    def record_stage(self, kind: str, tool: str | None = None, **info) -> None:
        """Store a finished stage's figures (counts, seconds, ...) and the versions that made them."""
        with self._editing() as manifest:
            manifest["stages"].setdefault(stage_name(kind, tool), {}).update(info, finished=_now())
            manifest["versions"] = versions()

    # ---- documents
    def ingest(self, corpus: str | Path, limit: int | None, skip_bad: bool,
               read: Callable[[Path, int | None, bool], tuple[list[Document], dict]] | None = None,
               source: dict | None = None) -> dict:
        """Validate the corpus once into documents.jsonl; later stages read only that file.
        `read(corpus, limit, skip_bad) -> (documents, counts)` reads a corpus of another kind (e.g.
        annotated data); `source` says how, and is recorded with the corpus (config "source")."""
        from toolformer.assets import file_fingerprint
        corpus = Path(corpus)
        fingerprint = file_fingerprint(corpus) if corpus.is_file() else str(corpus.resolve())
        # the corpus is known by its content: the same file under another path resumes fine
        config = {"corpus_fingerprint": fingerprint, "limit": limit, **({"source": source} if source else {})}
        recorded = self.stage(INGEST)
        if self.documents_path.exists() and recorded is not None:
            self._check_and_record(("config",), config, str(self.documents_path))
            return recorded.counts
        if read is not None:
            with writing(self.path):  # `read` may write beside the documents (annotations.jsonl)
                self.path.mkdir(parents=True, exist_ok=True)
            docs, counts = read(corpus, limit, skip_bad)
        else:
            stats = ReadStats()
            docs = list(read_documents(corpus, skip_bad=skip_bad, stats=stats, limit=limit))
            counts = {"documents": len(docs), **{k: v for k, v in stats.as_dict().items() if k != "read"}}
        if not docs:  # nothing to curate: said plainly, not shown as a table of zeros
            skipped = counts.get("skipped_bad")
            raise UserValueError(f"no documents in {corpus}" + (f" ({skipped} bad records skipped)" if skipped else ""))
        # recorded once the corpus has read well: a corpus that failed, then was fixed, is not refused
        self._check_and_record(("config",), config, str(self.documents_path))
        write_jsonl_atomic(self.documents_path, (d.to_json() for d in docs))
        self.record_stage(INGEST, counts=counts, corpus=str(corpus))
        return counts

    def documents(self) -> list[Document]:
        if not self.documents_path.exists():
            raise missing(self.documents_path, f"toolformer sample --corpus FILE --run {self.name}")
        return [Document(r["id"], r["text"], r["meta"]) for _, r in read_jsonl(self.documents_path, DOCUMENT)]

    def tool_dir(self, tool_key: str) -> Path:
        path = self.path / tool_key
        with writing(path):
            path.mkdir(parents=True, exist_ok=True)
        return path

    def stage_output(self, kind: str, tool_key: str) -> Path:
        return self.tool_dir(tool_key) / layout.STAGE_OUTPUT[kind]
