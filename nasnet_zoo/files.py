"""Files that are never seen half-written, and run folders that one process owns at a time.

`atomic_write` writes into a temporary file of the writer's own (a unique name beside the target, so
concurrent writers never share one), optionally flushes it to disk, and renames it into place; readers see the
old file or the new one, never a torn one, and a failed write leaves the old file and no temporary behind.
`RunLock` gives one process a run folder for the run's life.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from os import PathLike
from pathlib import Path

from .errors import RunError


def temporary_name(path: str | PathLike[str]) -> Path:
    """A unique hidden name beside ``path`` that keeps its suffix (writers that infer a format from it work)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial{path.suffix}")


def atomic_write(
    path: str | PathLike[str], content: bytes | str | Callable[[Path], object], *, durable: bool = False
) -> Path:
    """Write ``content`` to ``path`` atomically and return ``path``.

    ``content`` is bytes, text (UTF-8), or a function that writes the file at the path it is given (e.g.
    ``lambda p: torch.save(state, p)``). ``durable`` also fsyncs the file and its folder, so the new file
    survives a power cut once this returns (journals and checkpoints that a resume relies on).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        if isinstance(content, str):
            tmp.write_text(content)
        elif isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            content(tmp)
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
        _fsync(path.parent)
    return path


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RunLock:
    """An exclusive lock on a run folder (search, training, fine-tuning) for as long as the run lives.

    ``with RunLock(folder):`` takes ``folder/.lock`` with ``flock`` or raises `RunError` naming the process that
    holds it (its pid, host and command, which the holder writes into the file). The kernel drops the lock when
    the holder exits in any way, ``kill -9`` included, so a stale lock file never blocks a resume.
    """

    NAME = ".lock"

    def __init__(self, folder: str | PathLike[str]) -> None:
        self.path = Path(folder) / self.NAME
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise RunError(
                f"{self.path.parent} is in use by {holder}: wait for it to finish (or stop it), or use another "
                "output folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} ({' '.join(sys.argv)[:200]})\n".encode(), 0)
        self._fd = fd
        return self

    @staticmethod
    def _holder(fd: int) -> str:
        """Who holds the lock, as it wrote it; a holder that locked a moment ago may not have written yet."""
        for _ in range(20):
            text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
            if text:
                return text
            time.sleep(0.01)
        return "another process"

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock; the file stays (removing it would race a new holder)
            self._fd = None
