"""The lock a process holds on an output while it writes it: a second writer is refused at once,
with the PID of the holder, instead of both appending to one file."""
from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path

from toolformer.errors import UserError
from toolformer.run import layout
from toolformer.run.manifest import Run
from toolformer.run.records import writing


@contextmanager
def exclusive(path: Path, run: Run, stage: str):
    """Hold `path`.lock for as long as this process writes `path`; refuse at once if another does."""
    lock_path = path.with_name(path.name + layout.LOCK_SUFFIX)
    with writing(lock_path):
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            for _ in range(20):  # the holder writes its PID just after it takes the lock
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                if holder:
                    break
                time.sleep(0.05)
            raise UserError(f"run {run.name}: {stage} is already running in process {holder or '?'} "
                            f"(it holds {lock_path}); wait for it to end or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
