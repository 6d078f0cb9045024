"""Files that are never seen half-written: one atomic write for every file the project produces.

`atomic_write` writes into a temporary file of the writer's own (a unique name beside the target, so
concurrent writers never share one), optionally flushes it to disk, and renames it into place; readers see the
old file or the new one, never a torn one, and a failed write leaves the old file and no temporary behind.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from os import PathLike
from pathlib import Path


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
