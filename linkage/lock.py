"""One run at a time per project: an exclusive advisory lock on a file in the index folder."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from linkage.errors import RunLockedError


@contextmanager
def run_lock(index_dir: Path) -> Iterator[None]:
    """Hold the project's run lock, or raise RunLockedError at once if another run holds it.

    The lock is released by the kernel if the process dies, so a crash never leaves it stuck.
    """
    index_dir.mkdir(parents=True, exist_ok=True)
    path = index_dir / ".run.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text().strip() or "unknown"
            raise RunLockedError(
                f"another run (pid {holder}) holds {path}; wait for it to finish "
                "(a scheduler can retry later: exit code 75 means try again)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)
