"""The lock a process holds on an output while it writes it: a second writer is refused at once,
with the PID of the holder, instead of both appending to one file."""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from toolformer.errors import UserError
from toolformer.run import layout
from toolformer.run.manifest import Run
from toolformer.run.records import writing


def holder(fd: int) -> str:
    """The PID of the process holding the flock on `fd`'s file. It writes its PID just after taking
    the lock, so a holder stopped in between (Ctrl-Z, a debugger) has written nothing yet: Linux's
    /proc/locks names it all the same."""
    written = os.pread(fd, 32, 0).decode(errors="replace").strip()
    if written:
        return written
    st = os.fstat(fd)
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return ""
    for line in lines:  # "1: FLOCK  ADVISORY  WRITE 3913 08:01:1234 0 EOF"
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device:
            return fields[4]
    return ""


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
            raise UserError(f"run {run.name}: {stage} is already running in process {holder(fd) or '?'} "
                            f"(it holds {lock_path}); wait for it to end or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
