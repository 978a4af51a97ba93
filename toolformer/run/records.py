"""JSONL records for every stage: reading with validation, resumable append-only writing.

Record types (each stage's record is the previous one plus its own fields):
    document   id, text, meta
    candidate  id, doc_id, tool, window, position, token_index, p_start, input, call
    executed   candidate + result, error, latency_ms
    scored     executed + loss_plus, loss_no_call, loss_no_result, loss_minus, usefulness, kept, reason

A malformed line raises BadRecord naming file and line; with skip_bad=True it is counted in
ReadStats instead (and reported by the stage), never dropped silently. A UTF-8 BOM at the start
of a file is not part of its first record, and a CRLF .txt corpus reads as the same file with LF.
"""
from __future__ import annotations

import datetime as _dt
import gzip
import io
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from toolformer.errors import UserError, UserFileNotFound, UserValueError, fixable
from toolformer.run.layout import PROGRESS_SUFFIX

NoneType = type(None)
Number = (int, float)

CANDIDATE = {"id": str, "doc_id": str, "tool": str, "window": int, "position": int,
             "token_index": int, "p_start": Number, "input": str, "call": str}
EXECUTED = {**CANDIDATE, "result": (str, NoneType), "error": (str, NoneType), "latency_ms": Number}
SCORED = {**EXECUTED, "loss_plus": (*Number, NoneType), "loss_no_call": (*Number, NoneType),
          "loss_no_result": (*Number, NoneType), "loss_minus": (*Number, NoneType),
          "usefulness": (*Number, NoneType), "kept": bool, "reason": (str, NoneType)}


class BadRecord(UserValueError):
    def __init__(self, path: str | Path, line: int, reason: str):
        super().__init__(f"{path}:{line}: {reason}")
        self.path, self.line, self.reason = str(path), line, reason


@dataclass
class ReadStats:
    read: int = 0
    skipped_bad: int = 0
    skipped_empty: int = 0
    examples: list[str] = field(default_factory=list)  # first few "file:line: reason"

    def skip(self, err: BadRecord) -> None:
        self.skipped_bad += 1
        if len(self.examples) < 10:
            self.examples.append(str(err))

    def as_dict(self) -> dict:
        return {"read": self.read, "skipped_bad": self.skipped_bad,
                "skipped_empty": self.skipped_empty, "skipped_examples": self.examples}


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    meta: dict

    def to_json(self) -> dict:
        return {"id": self.id, "text": self.text, "meta": self.meta}


# ---------------------------------------------------------------------------- reading

BOM = "\ufeff"  # some editors start a UTF-8 file with it; it is no part of the first record


def _lines(path: Path) -> Iterator[tuple[int, str | BadRecord]]:
    """(line number, text) for each non-blank line; undecodable bytes yield a BadRecord."""
    if not path.is_file():
        raise UserFileNotFound(f"{path}: no such file")
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield number, BadRecord(path, number, f"invalid UTF-8 at byte {err.start}")
                continue
            if number == 1:
                text = text.removeprefix(BOM)
            if text.strip():
                yield number, text


def _type_name(t) -> str:
    ts = t if isinstance(t, tuple) else (t,)
    return " or ".join("null" if x is NoneType else x.__name__ for x in ts)


def check_fields(obj: Any, schema: dict) -> str | None:
    """Why `obj` does not match `schema` (field -> type or tuple of types), or None."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    for name, types in schema.items():
        if name not in obj:
            return f"missing field {name!r}"
        value = obj[name]
        # bool is an int subclass in Python; a JSON true is not a number here
        if (isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,))) \
                or not isinstance(value, types):
            return f"field {name!r} should be {_type_name(types)}, got {json.dumps(value)[:40]}"
    return None


def read_jsonl(path: str | Path, schema: dict | None = None, skip_bad: bool = False,
               stats: ReadStats | None = None) -> Iterator[tuple[int, dict]]:
    """(line number, record) for each valid line of a .jsonl or .jsonl.gz file."""
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    for number, text in _lines(path):
        err = text if isinstance(text, BadRecord) else None
        if err is None:
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                err = BadRecord(path, number, f"bad JSON: {e.msg} (column {e.colno})")
            else:
                why = check_fields(obj, schema) if schema else (
                    None if isinstance(obj, dict) else f"expected a JSON object, got {type(obj).__name__}")
                if why is None:
                    stats.read += 1
                    yield number, obj
                    continue
                err = BadRecord(path, number, why)
        if not skip_bad:
            raise err
        stats.skip(err)


def document_from_row(obj: dict, where: tuple[Path, int], default_id: str) -> Document:
    """One corpus row as a Document, by the rules every reader shares (top-level fields become meta)."""
    path, number = where
    text = obj.get("text")
    if "text" not in obj:
        raise BadRecord(path, number, "missing field 'text'")
    if not isinstance(text, str):
        raise BadRecord(path, number, f"field 'text' should be a string, got {type(text).__name__}")
    doc_id = obj.get("id", default_id)
    if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool):
        raise BadRecord(path, number, f"field 'id' should be a string, got {json.dumps(doc_id)[:40]}")
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise BadRecord(path, number, "field 'meta' should be an object")
    # other top-level fields (e.g. year, speaker) are kept as metadata, never dropped
    meta = {**{k: v for k, v in obj.items() if k not in ("id", "text", "meta")}, **meta}
    if "date" in meta:
        try:  # the same parse the Calendar tool uses: a date, or a date and time
            _dt.datetime.fromisoformat(str(meta["date"]))
        except ValueError:
            raise BadRecord(path, number, f"meta.date {meta['date']!r} is not an ISO date (YYYY-MM-DD)") from None
    return Document(str(doc_id), text, meta)


def parquet_rows(path: Path, columns: list[str] | None = None) -> Iterator[tuple[int, dict]]:
    """(row number from 1, row) of a parquet file, streamed a few thousand rows at a time (a
    corpus or a Wikipedia dump may not fit in memory); `columns`: only these."""
    import pyarrow.parquet as pq
    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096, columns=columns):
        for row in batch.to_pylist():
            number += 1
            yield number, row


CORPUS_FORMATS = "use .jsonl, .jsonl.gz, .parquet, .txt or a saved `datasets` folder"


def _raw_documents(path: Path) -> Iterator[tuple[int, dict | BadRecord]]:
    name = path.name
    if path.is_dir():  # a `datasets` dataset saved with save_to_disk
        from datasets import DatasetDict, load_from_disk
        try:
            dataset = load_from_disk(str(path))
        except FileNotFoundError:  # a folder that save_to_disk did not write
            raise UserValueError(f"{path}: not a saved `datasets` folder ({CORPUS_FORMATS})") from None
        if isinstance(dataset, DatasetDict):  # iterating it would yield its split names
            raise UserValueError(f"{path} holds the splits {', '.join(dataset)}: pass one split's folder, "
                                 f"e.g. {path / next(iter(dataset))}")
        for number, row in enumerate(dataset, 1):
            yield number, row
    elif name.endswith(".parquet"):
        yield from parquet_rows(path)
    elif name.endswith(".txt"):
        # one document per blank-line-separated block; the line number is the block's first line
        with open(path, "rb") as f:
            data = f.read()
        try:
            text = data.decode("utf-8").removeprefix(BOM)
        except UnicodeDecodeError as err:
            line = data[:err.start].count(b"\n") + 1
            yield line, BadRecord(path, line, f"invalid UTF-8 at byte {err.start}")
            return
        block, start = [], 0
        # newline=None: a CRLF (or CR) file reads exactly as the same file with LF line ends
        for number, line in enumerate(io.StringIO(text, newline=None), 1):
            if line.strip():
                start = start or number
                block.append(line)
            elif block:
                yield start, {"text": "".join(block).strip("\n")}
                block, start = [], 0
        if block:
            yield start, {"text": "".join(block).strip("\n")}
    elif name.endswith((".jsonl", ".jsonl.gz", ".json")):
        for number, text in _lines(path):
            if isinstance(text, BadRecord):
                yield number, text
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as e:
                yield number, BadRecord(path, number, f"bad JSON: {e.msg} (column {e.colno})")
    else:
        raise UserValueError(f"{path}: unsupported corpus format ({CORPUS_FORMATS})")


def read_documents(path: str | Path, skip_bad: bool = False, stats: ReadStats | None = None,
                   limit: int | None = None) -> Iterator[Document]:
    """Validated documents. Empty or whitespace-only texts are skipped and counted."""
    path = Path(path)
    if not path.exists():
        raise UserFileNotFound(f"corpus not found: {path}")
    stats = stats if stats is not None else ReadStats()
    seen: dict[str, int] = {}
    produced = 0
    for number, obj in _raw_documents(path):
        if limit is not None and produced >= limit:
            return
        try:
            if isinstance(obj, BadRecord):
                raise obj
            if not isinstance(obj, dict):
                raise BadRecord(path, number, f"expected a JSON object, got {type(obj).__name__}")
            doc = document_from_row(obj, (path, number), default_id=f"{path.stem}:{number}")
            if doc.id in seen:
                raise BadRecord(path, number, f"duplicate id {doc.id!r} (first on line {seen[doc.id]})")
        except BadRecord as err:
            if not skip_bad:
                raise
            stats.skip(err)
            continue
        seen[doc.id] = number
        if not doc.text.strip():
            stats.skipped_empty += 1
            continue
        stats.read += 1
        produced += 1
        yield doc


# ---------------------------------------------------------------------------- writing

# write failures the user can fix; what stays on disk is always a committed state, so the same
# command run again once the cause is fixed resumes with nothing lost
@contextmanager
def writing(path: str | Path):
    """Turn a disk-full or read-only failure while writing `path` into one clear UserError."""
    try:
        yield
    except OSError as err:
        user_error = fixable(err, path)
        if user_error is None:
            raise
        raise user_error from err


def dumps(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def write_jsonl_atomic(path: str | Path, records: Iterable[dict]) -> int:
    """Write a whole file at once (tmp + rename): readers never see half of it. The temporary
    file is this process's own, so two processes writing the same file (two stages of one run
    ingesting its corpus at once) cannot interleave their bytes: the last rename wins whole."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    n = 0
    with writing(path):
        with open(tmp, "w", encoding="utf-8") as f:
            for record in records:
                f.write(dumps(record) + "\n")
                n += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return n


def unfinished(path: Path) -> bool:
    """Whether a stage output was left part-written (by a kill, or a process still writing it)."""
    progress = path.with_name(path.name + PROGRESS_SUFFIX)
    return progress.exists() and b'"chunk":"__complete__"' not in progress.read_bytes()


class ResumableWriter:
    """Append-only JSONL output, committed one chunk of work at a time.

    Beside `out.jsonl` lives `out.jsonl.progress`: one line per committed chunk with the output's
    byte length after it. Opening truncates the output to the last committed length, so a chunk cut
    short by a kill is dropped and redone, and records are never duplicated or lost. A stage that
    processes its input in a fixed chunk order therefore produces byte-identical files whether it
    ran once or was killed and resumed.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.progress_path = self.path.with_name(self.path.name + PROGRESS_SUFFIX)
        self.done: dict[str, dict] = {}
        size = 0
        if self.progress_path.exists():
            for entry in self._read_progress():
                self.done[entry["chunk"]] = entry
                size = entry["bytes"]
        length = self.path.stat().st_size if self.path.exists() else 0
        if length < size:
            raise self._corrupt(f"{self.path} holds {length} bytes but {self.progress_path} says {size} were committed")
        with writing(self.path):
            if length != size:
                with open(self.path, "r+b") as f:
                    f.truncate(size)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
        self._rewrite_progress()  # drops a partial trailing line, if any
        self._since = time.perf_counter()

    def _read_progress(self) -> list[dict]:
        """The committed entries. Only the last line may be cut short (by a kill): it is dropped."""
        lines = self.progress_path.read_bytes().split(b"\n")
        entries = []
        for number, raw in enumerate(lines[:-1], 1):  # lines[-1]: after the last newline
            try:
                entry = json.loads(raw)
                valid = isinstance(entry, dict) and isinstance(entry.get("chunk"), str) \
                    and isinstance(entry.get("bytes"), int) and entry["bytes"] >= 0
            except (json.JSONDecodeError, UnicodeDecodeError):
                valid = False
            if not valid:
                raise self._corrupt(f"{self.progress_path}:{number} is not a progress entry")
            entries.append(entry)
        return entries

    def _corrupt(self, what: str) -> UserError:
        return UserError(f"{what}: delete {self.path} and {self.progress_path} to redo this stage")

    def _rewrite_progress(self) -> None:
        write_jsonl_atomic(self.progress_path, self.done.values())

    @property
    def complete(self) -> bool:
        return "__complete__" in self.done

    def commit(self, chunk: str, records: list[dict], **info) -> None:
        with writing(self.path), open(self.path, "ab") as f:
            f.write("".join(dumps(r) + "\n" for r in records).encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
        now = time.perf_counter()
        # each chunk's own work time: a stage's time is their sum, however often it was resumed
        entry = {"chunk": chunk, "bytes": size, "records": len(records), "seconds": round(now - self._since, 3), **info}
        self._since = now
        with writing(self.progress_path), open(self.progress_path, "ab") as f:
            f.write((dumps(entry) + "\n").encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        self.done[chunk] = entry

    def mark_complete(self) -> None:
        self.commit("__complete__", [])

    def chunk_info(self) -> list[dict]:
        return [e for k, e in self.done.items() if k != "__complete__"]

    @property
    def seconds(self) -> float | None:
        """Work time of every committed chunk, over all the runs that committed them (None when a
        chunk was committed without its time, by an older version)."""
        times = [e.get("seconds") for e in self.chunk_info()]
        return None if None in times else round(sum(times), 2)
