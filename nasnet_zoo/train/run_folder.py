"""The output folder of a training run (fit, a recipe, fine-tuning): one process at a time (`hold`), and what a
new run may find there (`prepare`): a checkpoint to resume from, nothing of an earlier run, or an earlier run's
outputs only when asked to replace them; `claim` does both."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError, NotFoundError, RunError
from ..files import RunLock
from . import distributed
from .checkpoint import CHECKPOINT
from .outputs import BEST, CURVES, METRICS

OUTPUTS = (CHECKPOINT, BEST, METRICS, CURVES)  # what `fit` writes into a run folder

_held: dict[Path, int] = {}  # folders this process holds, by the thread that holds them
_guard = threading.Lock()


@contextmanager
def hold(folder: Path) -> Iterator[None]:
    """Hold ``folder`` with a `RunLock` for the block's life; another process (or thread) gets `RunError` naming
    the holder. Re-entrant in the holding thread, so fine-tuning holds its folder around `fit`, which holds it
    too. A folder this call created is removed again when the block fails before writing anything into it."""
    key, me = folder.resolve(), threading.get_ident()
    with _guard:
        mine = _held.get(key) == me
    if mine:
        yield
        return
    created = [d for d in (folder, *folder.parents) if not d.exists()]  # this folder and new parents
    with RunLock(folder) as lock:
        with _guard:
            _held[key] = me
        try:
            yield
        except BaseException:
            if created and [p.name for p in folder.iterdir()] == [RunLock.NAME]:
                lock.path.unlink()
                for d in created:  # innermost first; each is empty once its child is gone
                    try:
                        d.rmdir()
                    except OSError:  # something else appeared in it meanwhile: leave it
                        break
            raise
        finally:
            with _guard:
                del _held[key]


@contextmanager
def claim(folder: Path | None, *, resume: bool, overwrite: bool, outputs: Sequence[str] = OUTPUTS) -> Iterator[None]:
    """`hold` ``folder`` and `prepare` it, for the block's life; None (a run that writes nothing) does nothing,
    and so does every data-parallel replica but the main one, which alone writes."""
    if folder is None or not distributed.is_main():
        yield
        return
    with hold(folder):
        prepare(folder, resume=resume, overwrite=overwrite, outputs=outputs)
        yield


def prepare(folder: Path, *, resume: bool, overwrite: bool, outputs: Sequence[str] = OUTPUTS) -> None:
    """Check ``folder`` for a run: ``resume`` needs its checkpoint; a fresh run needs none of ``outputs`` there,
    or ``overwrite``, which removes them first. Raises `RunError` / `NotFoundError` saying what to pass."""
    ckpt = folder / CHECKPOINT
    if resume and overwrite:
        raise ConfigError("resume and overwrite exclude each other: resume continues the run, overwrite replaces it")
    if resume:
        if not ckpt.is_file():
            raise NotFoundError(f"nothing to resume: no checkpoint at {ckpt}; run without resume to start afresh")
        return
    found = [name for name in outputs if (folder / name).exists()]
    if found and overwrite:
        for name in found:
            path = folder / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    elif CHECKPOINT in found:
        raise RunError(
            f"{folder} already holds a run ({ckpt}): pass resume=True (--resume) to continue it, overwrite=True "
            "(--overwrite) to start afresh, or use another output folder"
        )
    elif found:
        raise RunError(
            f"{folder} holds an earlier run's outputs ({', '.join(found)}) but no {CHECKPOINT} to resume from: "
            "pass overwrite=True (--overwrite) to replace them, or use another output folder"
        )
