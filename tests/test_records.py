import gzip
import json

import pytest

from toolformer.run.records import (CANDIDATE, BadRecord, ReadStats, ResumableWriter, read_documents, read_jsonl)


def write(path, lines: list[bytes]):
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_documents_from_jsonl_keep_extra_fields_as_meta(tmp_path):
    p = write(tmp_path / "c.jsonl", [b'{"id": "a", "text": "x", "year": 1790}',
                                     b'{"text": "y", "meta": {"date": "2013-04-19"}}'])
    docs = list(read_documents(p))
    assert [(d.id, d.text, d.meta) for d in docs] == [("a", "x", {"year": 1790}),
                                                      ("c:2", "y", {"date": "2013-04-19"})]


@pytest.mark.parametrize("line, reason", [
    (b'{"id": "b", "text": ', "bad JSON"),
    (b'{"id": "b"}', "missing field 'text'"),
    (b'{"id": "b", "text": 5}', "field 'text' should be a string"),
    (b'{"id": "b", "text": "\xff\xfe"}', "invalid UTF-8"),
    (b'["text"]', "expected a JSON object"),
    (b'{"id": "b", "text": "t", "meta": {"date": "19/04/2013"}}', "not an ISO date"),
    (b'{"id": "a", "text": "again"}', "duplicate id 'a'"),
])
def test_bad_line_names_file_and_line(tmp_path, line, reason):
    p = write(tmp_path / "c.jsonl", [b'{"id": "a", "text": "fine"}', line, b'{"id": "c", "text": "ok"}'])
    with pytest.raises(BadRecord) as err:
        list(read_documents(p))
    assert str(err.value).startswith(f"{p}:2: ") and reason in str(err.value)
    stats = ReadStats()
    docs = list(read_documents(p, skip_bad=True, stats=stats))
    assert [d.id for d in docs] == ["a", "c"] and stats.skipped_bad == 1 and stats.read == 2
    assert stats.examples[0].startswith(f"{p}:2: ")


def test_empty_documents_are_counted_not_read(tmp_path):
    p = write(tmp_path / "c.jsonl", [b'{"text": "  \\n "}', b'{"text": "real"}', b'', b'{"text": ""}'])
    stats = ReadStats()
    assert [d.text for d in read_documents(p, stats=stats)] == ["real"]
    assert (stats.read, stats.skipped_empty, stats.skipped_bad) == (1, 2, 0)


def test_other_formats(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset
    rows = [{"id": "p1", "text": "one"}, {"id": "p2", "text": "two"}]
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as f:
        f.write("\n".join(json.dumps(r) for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet")
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    for name in ("c.jsonl.gz", "c.parquet", "ds"):
        assert [(d.id, d.text) for d in read_documents(tmp_path / name)] == [("p1", "one"), ("p2", "two")]
    (tmp_path / "c.txt").write_text("first doc\nstill first\n\n\n second\n\nthird\n")
    docs = list(read_documents(tmp_path / "c.txt"))
    assert [(d.id, d.text) for d in docs] == [("c:1", "first doc\nstill first"), ("c:5", " second"), ("c:7", "third")]
    (tmp_path / "bad.txt").write_bytes(b"ok\n\nbad \xff here\n")
    with pytest.raises(BadRecord, match=r"bad.txt:3: invalid UTF-8"):
        list(read_documents(tmp_path / "bad.txt"))


def test_a_folder_is_read_only_as_one_saved_dataset(tmp_path):
    from datasets import Dataset, DatasetDict
    from toolformer.errors import UserValueError
    with pytest.raises(UserValueError, match=rf"^{tmp_path}: not a saved `datasets` folder \(use \.jsonl, "
                                             r"\.jsonl\.gz, \.parquet, \.txt or a saved `datasets` folder\)$"):
        list(read_documents(tmp_path))
    DatasetDict({"train": Dataset.from_dict({"text": ["a b"]}),
                 "validation": Dataset.from_dict({"text": ["c"]})}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(UserValueError, match=r"dd holds the splits train, validation: pass one split's folder, "
                                             r"e\.g\. .*dd/train$"):
        list(read_documents(tmp_path / "dd"))
    assert [d.text for d in read_documents(tmp_path / "dd" / "train")] == ["a b"]


def test_stage_records_are_validated(tmp_path):
    good = {"id": "d/calculator/3/ab", "doc_id": "d", "tool": "calculator", "window": 0, "position": 10,
            "token_index": 3, "p_start": 0.2, "input": "1+2", "call": "[Calculator(1+2)]"}
    p = write(tmp_path / "cand.jsonl", [json.dumps(good).encode(), json.dumps({**good, "position": "10"}).encode(),
                                        json.dumps({**good, "window": True}).encode()])
    with pytest.raises(BadRecord, match=r"cand.jsonl:2: field 'position' should be int"):
        list(read_jsonl(p, CANDIDATE))
    stats = ReadStats()
    assert len(list(read_jsonl(p, CANDIDATE, skip_bad=True, stats=stats))) == 1
    assert stats.skipped_bad == 2


def test_resumable_writer_drops_uncommitted_tail(tmp_path):
    path = tmp_path / "out.jsonl"
    w = ResumableWriter(path)
    w.commit("0", [{"a": 1}, {"a": 2}])
    # a kill in the middle of the next chunk: records written, no progress line
    with open(path, "a") as f:
        f.write('{"a": 3}\n{"a": ')
    with open(w.progress_path, "a") as f:
        f.write('{"chunk": "1", "by')
    w2 = ResumableWriter(path)
    assert set(w2.done) == {"0"}
    assert [r for _, r in read_jsonl(path)] == [{"a": 1}, {"a": 2}]
    w2.commit("1", [{"a": 3}])
    w2.mark_complete()
    assert ResumableWriter(path).complete
    assert [r["a"] for _, r in read_jsonl(path)] == [1, 2, 3]


def test_stage_time_sums_chunks_across_resumed_runs(tmp_path):
    import time
    path = tmp_path / "out.jsonl"
    w = ResumableWriter(path)
    time.sleep(0.05)
    w.commit("0", [{"a": 1}])
    time.sleep(1.0)  # killed, and restarted a second later: that second is nobody's work
    w2 = ResumableWriter(path)
    time.sleep(0.1)
    w2.commit("1", [{"a": 2}])
    first, second = (e["seconds"] for e in w2.chunk_info())
    assert first >= 0.05 and 0.1 <= second < 1.0
    assert w2.seconds == round(first + second, 2)
    with open(w2.progress_path, "a") as f:  # a chunk committed by a version that kept no time
        f.write('{"chunk": "2", "bytes": %d, "records": 0}\n' % path.stat().st_size)
    assert ResumableWriter(path).seconds is None
