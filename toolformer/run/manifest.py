"""A run directory: runs/<run>/{manifest.json, documents.jsonl, <tool>/...}.

The manifest records the run's config, software versions, and per stage its settings, counts and
timings. A stage that finds its own earlier output checks that the settings match before it
resumes: mixing records made with different settings would corrupt the run silently.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path

from toolformer.run.records import ReadStats, read_documents, read_jsonl, write_jsonl_atomic, Document

DOCUMENT = {"id": str, "text": str, "meta": dict}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def versions() -> dict:
    import numpy
    import torch
    import transformers
    from toolformer import __version__
    return {"toolformer": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": numpy.__version__}


class SettingsChanged(ValueError):
    pass


class Run:
    def __init__(self, name: str, runs_dir: str | Path = "runs"):
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"bad run name {name!r}: use a plain folder name")
        self.name = name
        self.path = Path(runs_dir) / name
        self.manifest_path = self.path / "manifest.json"
        self.documents_path = self.path / "documents.jsonl"

    # ---- manifest
    def manifest(self) -> dict:
        if self.manifest_path.exists():
            return json.loads(self.manifest_path.read_text())
        return {"run": self.name, "created": _now(), "config": {}, "versions": versions(), "stages": {}}

    def _save(self, manifest: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.manifest_path.with_name("manifest.json.tmp")
        tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        os.replace(tmp, self.manifest_path)

    def check_config(self, key: str, settings: dict, where: str) -> None:
        """Record `settings` under manifest[key], or insist they equal what is recorded there."""
        manifest = self.manifest()
        node = manifest
        for part in key.split("."):
            node = node.setdefault(part, {})
        recorded = {k: node[k] for k in settings if k in node}
        changed = {k: (recorded[k], settings[k]) for k in recorded if recorded[k] != settings[k]}
        if changed:
            detail = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise SettingsChanged(f"{where} was made with other settings ({detail}); resume with the same "
                                  f"settings, use a new --run, or delete {where} to start it over")
        node.update(settings)
        self._save(manifest)

    def record_stage(self, stage: str, **info) -> None:
        manifest = self.manifest()
        manifest["stages"].setdefault(stage, {}).update(info, finished=_now())
        manifest["versions"] = versions()
        self._save(manifest)

    # ---- documents
    def ingest(self, corpus: str | Path, limit: int | None, skip_bad: bool) -> dict:
        """Validate the corpus once into documents.jsonl; later stages read only that file."""
        from toolformer.assets import file_fingerprint
        corpus = Path(corpus)
        fingerprint = file_fingerprint(corpus) if corpus.is_file() else str(corpus.resolve())
        # the corpus is known by its content: the same file under another path resumes fine
        self.check_config("config", {"corpus_fingerprint": fingerprint, "limit": limit}, str(self.documents_path))
        manifest = self.manifest()
        if self.documents_path.exists() and "ingest" in manifest["stages"]:
            return manifest["stages"]["ingest"]["counts"]
        stats = ReadStats()
        docs = list(read_documents(corpus, skip_bad=skip_bad, stats=stats, limit=limit))
        self.path.mkdir(parents=True, exist_ok=True)
        write_jsonl_atomic(self.documents_path, (d.to_json() for d in docs))
        counts = {"documents": len(docs), **{k: v for k, v in stats.as_dict().items() if k != "read"}}
        self.record_stage("ingest", counts=counts, corpus=str(corpus))
        return counts

    def documents(self) -> list[Document]:
        if not self.documents_path.exists():
            raise FileNotFoundError(f"{self.documents_path} does not exist: run `toolformer sample --corpus FILE "
                                    f"--run {self.name}` (or curate) first")
        return [Document(r["id"], r["text"], r["meta"]) for _, r in read_jsonl(self.documents_path, DOCUMENT)]

    def tool_dir(self, tool_key: str) -> Path:
        path = self.path / tool_key
        path.mkdir(parents=True, exist_ok=True)
        return path
