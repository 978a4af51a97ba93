"""The model stages on Ray: each worker is an actor holding one model, the chunks go to the
workers, and the driver commits the results in chunk order (pipeline/stage.py), so the files are
byte-identical to those of one process.

    toolformer curate --corpus docs.jsonl --run big --tools calculator --ray local --workers 2
    toolformer curate --run big --tools calculator --ray auto        # join this node's cluster

A chunk's records depend on the chunk alone (its documents, the settings and per-sample seeds),
never on which worker computed it or what it computed before. Ray restarts a worker that dies
and runs its chunk again (up to RESTARTS times); a killed driver leaves its committed chunks,
and the same command resumes from them. Every node needs the package and the model (a hub id
from its cache, or a folder on a shared file system).
"""
from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Iterator

import ray
from ray.util import ActorPool

from toolformer.errors import UserError

RESTARTS = 3  # a worker that dies is restarted, and its chunk retried, this often before the job fails


@ray.remote
class ModelWorker:
    """One model, and the stage it currently works for (sent once, kept across its chunks)."""

    def __init__(self, spec: dict, threads: int):
        import torch
        from toolformer.lm.backend import get_backend
        torch.set_num_threads(threads)
        self.lm = get_backend(**spec)
        self.stage_key, self.stage = None, None

    def describe(self) -> str:
        return f"pid {os.getpid()} on {ray.util.get_node_ip_address()} ({self.lm.device})"

    def process(self, stage_key: str, stage_ref: list, number: int, docs: list, inputs: dict):
        """(number, records, counts) of one chunk. `stage_ref` is a list so that Ray passes the
        reference itself: the stage is fetched only when this worker has not started it yet."""
        if stage_key != self.stage_key:
            self.stage = ray.get(stage_ref[0])
            self.stage.lm = self.lm
            self.stage.start(None, [])
            self.stage_key = stage_key
        return (number, *self.stage.process(docs, inputs))


def _check_reachable(address: str) -> None:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as err:
        raise ConnectionError(f"cannot connect to {address}: {err}") from None


class Cluster:
    """A connection to a Ray cluster and its workers, one set per model (made when first needed)."""

    def __init__(self, address: str, workers: int | None = None, progress: bool = True):
        if workers is not None and workers < 1:
            raise UserError(f"--workers must be at least 1, not {workers}")
        self.workers, self.progress = workers, progress
        if not ray.is_initialized():  # a process already connected (a notebook, the tests) stays so
            if address == "local":
                # enough CPUs for one worker each, however few cores this machine has
                ray.init(num_cpus=max(os.cpu_count() or 1, workers or 1), include_dashboard=False,
                         logging_level=logging.WARNING)
            else:
                try:
                    if address != "auto" and "://" not in address:
                        _check_reachable(address)  # else Ray retries for minutes before it gives up
                    ray.init(address=address, logging_level=logging.WARNING)
                except ConnectionError as err:
                    raise UserError(f"--ray {address}: no Ray cluster there ({err}); start one with "
                                    f"`ray start --head`, or use --ray local") from None
        self.pools: dict[tuple, ActorPool] = {}

    def pool(self, spec: dict) -> ActorPool:
        key = tuple(sorted(spec.items()))
        if key not in self.pools:
            resources = ray.cluster_resources()
            gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
            n = self.workers or gpus or max(1, cpus // 4)
            # one GPU per worker where there are GPUs, else a fair share of the CPUs
            threads = 1 if gpus else max(1, cpus // n)
            options = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": threads}
            actors = [ModelWorker.options(max_restarts=RESTARTS, max_task_retries=RESTARTS, **options)
                      .remote(spec, threads) for _ in range(n)]
            try:
                described = ray.get([a.describe.remote() for a in actors])
            except ray.exceptions.RayActorError as err:
                raise UserError(f"the Ray workers could not load the model {spec}: {err}") from None
            if self.progress:
                for i, where in enumerate(described):
                    print(f"ray worker {i}: {where}", file=sys.stderr)
            self.pools[key] = ActorPool(actors)
        return self.pools[key]

    def process(self, stage, chunks: list[tuple[int, list, dict]]) -> Iterator[tuple[int, list[dict], dict]]:
        """(number, records, counts) of each (number, docs, inputs), in the order given, as the
        workers finish them: a chunk that is done early waits for those before it."""
        pool = self.pool(stage.model_spec())
        stage_ref = ray.put(stage)
        key = stage_ref.hex()
        finished: dict[int, tuple] = {}
        results = pool.map_unordered(lambda actor, c: actor.process.remote(key, [stage_ref], *c), chunks)
        for number, _, _ in chunks:
            while number not in finished:
                try:
                    done = next(results)
                except ray.exceptions.RayTaskError as err:
                    if isinstance(err.cause, UserError):
                        raise err.cause from None
                    raise
                except ray.exceptions.RayActorError as err:
                    raise UserError(f"a Ray worker died {RESTARTS + 1} times ({err}); run the same command "
                                    f"again to resume") from None
                finished[done[0]] = done
            yield finished.pop(number)
