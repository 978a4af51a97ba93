"""The one engine behind every curation stage: a stage reads the run's documents (and the records
the previous stage wrote for them) and writes one JSONL file of records per tool.

A Stage says only what one chunk of documents becomes (`process`), which figures it counts, and
which settings its output depends on. run_stage does the rest, the same way for every stage:

  - the input must exist, else one message naming the command to run first;
  - the settings must equal those recorded for the output (else SettingsChanged);
  - one process at a time writes the output: a second is refused at once, naming the holder;
  - documents go in documents.jsonl order, chunk_docs at a time, each chunk committed whole by
    a ResumableWriter, so a killed stage resumes where it stopped and ends byte-identical;
  - totals are the sums of the committed chunks' counts, time the sum of their work time.

A stage with a model (model_spec() not None) may run its chunks on Ray workers instead
(pipeline/distributed.py): they return each chunk's records, and the driver commits them here, in
the same order, so the files are the same as one process writes.

A new source of records (e.g. candidates from annotations) is a Stage subclass with its own
`kind` and an entry in layout.STAGE_OUTPUT.
"""
from __future__ import annotations

import time
from pathlib import Path

from tqdm import tqdm

from toolformer.errors import UserError
from toolformer.run import layout
from toolformer.run.lock import exclusive
from toolformer.run.manifest import Run, missing
from toolformer.run.records import BadRecord, Document, ResumableWriter, read_jsonl, unfinished
from toolformer.tools import Tool

CHUNK_DOCS = 8


class Stage:
    """One step for one tool. Subclasses set kind, counts and input_schema, and implement process."""
    kind: str                           # "sample", "execute", "filter": the manifest's stage is kind/tool
    counts: tuple[str, ...] = ()        # the figures each chunk reports
    input_schema: dict | None = None    # of the records read from layout.STAGE_INPUT[kind], if any

    def __init__(self, run: Run, tool: Tool):
        self.run, self.tool = run, tool

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.tool.key}"

    def settings(self) -> dict:
        """What the output depends on; recorded in the manifest, and compared when resuming."""
        return {}

    backend_options: dict = {}  # get_backend's backend/dtype keywords (set by the pipeline)

    def model_spec(self) -> dict | None:
        """get_backend's arguments for the model the stage reads as `self.lm`; None: it has none.
        A Ray worker loads the model from them, once for all the stages with the same spec."""
        model = getattr(self, "model", None)
        return None if model is None else {"model_ref": model, **self.backend_options}

    def __getstate__(self) -> dict:
        # what a Ray worker receives: the stage without the driver's model and its loader
        return {k: v for k, v in self.__dict__.items() if k not in ("lm", "load_lm")}

    def start(self, output: Path | None, docs: list[Document]) -> None:
        """Called once `output` holds exactly the committed chunks, before the first new one. On a
        Ray worker, with no output and no documents: a stage whose start reads them has no model."""

    def process(self, docs: list[Document], inputs: dict[str, list[dict]]) -> tuple[list[dict], dict]:
        """The records of a chunk of documents and the chunk's counts. `inputs`: the previous
        stage's records of each document (in file order), for stages that read some."""
        raise NotImplementedError


def producer(file_name: str) -> str:
    return next(kind for kind, name in layout.STAGE_OUTPUT.items() if name == file_name)


def read_inputs(stage: Stage, docs: list[Document]) -> dict[str, list[dict]]:
    """The previous stage's records grouped by document; a record of an unknown document is an error."""
    if stage.kind not in layout.STAGE_INPUT:
        return {}
    name = layout.STAGE_INPUT[stage.kind]
    path = stage.run.tool_dir(stage.tool.key) / name
    command = f"toolformer {producer(name)} --tool {stage.tool.key} --run {stage.run.name}"
    if not path.exists():
        raise missing(path, command)
    if unfinished(path):
        raise UserError(f"{path} is not finished: run `{command}` to the end first")
    by_doc: dict[str, list[dict]] = {d.id: [] for d in docs}
    for number, rec in read_jsonl(path, stage.input_schema):
        if rec["doc_id"] not in by_doc:
            raise BadRecord(path, number, f"doc_id {rec['doc_id']!r} is not in {stage.run.documents_path}")
        by_doc[rec["doc_id"]].append(rec)
    return by_doc


def run_stage(stage: Stage, chunk_docs: int = CHUNK_DOCS, progress: bool = True, cluster=None) -> dict:
    """Run (or resume, or just total) one stage; its counts and seconds, also recorded in the manifest.
    With a distributed.Cluster, a stage with a model runs its chunks on the cluster's workers."""
    t0 = time.perf_counter()
    run = stage.run
    docs = run.documents()
    inputs = read_inputs(stage, docs)
    output = run.stage_output(stage.kind, stage.tool.key)
    # settings first: a process with other settings is told so, whether or not another one is running
    run.check_stage_settings(stage.kind, stage.tool.key, stage.settings() | {"chunk_docs": chunk_docs}, output)
    with exclusive(output, run, stage.name):
        writer = ResumableWriter(output)
        recorded = run.stage(stage.kind, stage.tool.key)
        if writer.complete and recorded is not None and recorded.finished:
            return {**recorded.counts, "seconds": recorded.seconds}
        chunks = [docs[a:a + chunk_docs] for a in range(0, len(docs), chunk_docs)]
        for number, chunk in enumerate(chunks):
            if str(number) in writer.done and writer.done[str(number)].get("first") != chunk[0].id:
                raise UserError(f"{writer.progress_path} was committed in other chunks (by an older "
                                f"version): delete {output} and {writer.progress_path} to redo this stage")
        todo = [(number, chunk, {d.id: inputs[d.id] for d in chunk if d.id in inputs})
                for number, chunk in enumerate(chunks) if str(number) not in writer.done]
        bar = tqdm(total=len(docs), initial=len(docs) - sum(len(c) for _, c, _ in todo),
                   desc=stage.name.replace("/", " "), unit="doc", disable=not progress)
        if cluster is not None and stage.model_spec() is not None:
            results = cluster.process(stage, todo)
        else:
            stage.start(output, docs)
            results = ((number, *stage.process(chunk, chunk_inputs)) for number, chunk, chunk_inputs in todo)
        for (number, chunk, _), (done, records, counts) in zip(todo, results):
            assert done == number  # results come in chunk order
            writer.commit(str(number), records, first=chunk[0].id, counts=counts)
            bar.update(len(chunk))
        bar.close()
        if not writer.complete:
            writer.mark_complete()
        totals = dict.fromkeys(stage.counts, 0)
        for entry in writer.chunk_info():
            for k in stage.counts:
                totals[k] += entry["counts"][k]
        # a stage's time sums its chunks over every resumed run; without that account, this run's time
        seconds = writer.seconds if writer.seconds is not None else round(time.perf_counter() - t0, 2)
        run.record_stage(stage.kind, stage.tool.key, counts=totals, seconds=seconds)
    return {**totals, "seconds": seconds}
