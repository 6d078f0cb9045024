"""A search run's folder on disk, and the checks that let a resume trust it.

``OUT/<algo>-seed<S>/`` holds:

* ``run.json``: what was asked (preset, algo, seed, task); a resume refuses a different one.
* ``journal.jsonl``: append-only, one JSON line per finished child, flushed and fsynced before anything else
  happens. It is the record of the run: everything else can be rebuilt from it.
* ``state.pt``: the checkpoint: the algorithm, the children in flight, the next child's id, and how much of
  the journal it has seen (lines, bytes and their sha256). Written atomically (`nasnet_zoo.files.atomic_write`).
* ``.lock``: held by the one process that runs the search (`nasnet_zoo.files.RunLock`); a second one is refused
  with a message naming the first.

`RunFolder.resume` checks the journal against the checkpoint before anything runs: the lines the checkpoint
counted must all be there, byte for byte, and each line after them must be a child the checkpoint had in
flight. A line torn by a crash mid-write belongs to a child still in flight: it is cut off and the child
re-queued. Anything else (a counted line torn or removed, an edited line, a line of no child in flight) is
refused with what to do, never dropped. Without ``state.pt`` (lost, or moved away on purpose) the run is rebuilt
from the journal alone (the loop replays it into a fresh algorithm).
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch

from nasnet_zoo.errors import RunError
from nasnet_zoo.files import RunLock, atomic_write

from .report import JOURNAL, parse_journal

RUN, STATE = "run.json", "state.pt"
STATE_KEYS = {"algorithm", "pending", "next_child", "journal_lines", "journal_bytes", "journal_sha256", "elapsed"}


class Journal:
    """The append-only journal, and a running sha256 of what it holds (the checkpoint records it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines, self.bytes, self._sha = 0, 0, hashlib.sha256()

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record) + "\n").encode()
        with self.path.open("ab") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self._count(line)

    def _count(self, data: bytes) -> None:
        self.lines += data.count(b"\n")
        self.bytes += len(data)
        self._sha.update(data)

    @property
    def sha256(self) -> str:
        return self._sha.copy().hexdigest()

    def read(self) -> tuple[list[dict[str, Any]], bytes, int]:
        """Its complete lines (records and bytes) and its size; a torn last line is not a finished child."""
        raw = self.path.read_bytes() if self.path.exists() else b""
        complete = raw[: raw.rfind(b"\n") + 1]
        return parse_journal(complete, self.path), complete, len(raw)

    def continue_after(self, complete: bytes, size: int) -> None:
        """Append after ``complete`` from now on: cut off a torn last line (we hold the lock) and count the rest."""
        if size != len(complete):
            with self.path.open("r+b") as f:
                f.truncate(len(complete))
        self._count(complete)


class RunFolder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.journal = Journal(path / JOURNAL)

    def lock(self) -> AbstractContextManager[Any]:
        return RunLock(self.path)

    def create(self, meta: dict[str, Any]) -> None:
        if (self.path / JOURNAL).exists() or (self.path / STATE).exists() or (self.path / RUN).exists():
            raise RunError(f"{self.path} already holds a search; pass --resume to continue it or choose another --out")
        atomic_write(self.path / RUN, json.dumps(meta, indent=1) + "\n", durable=True)

    def check(self, meta: dict[str, Any]) -> None:
        """Refuse to resume a folder that holds no search, or another one than ``meta`` describes."""
        run_file = self.path / RUN
        if not run_file.exists():
            raise RunError(f"nothing to resume: {self.path} holds no {RUN}; run without --resume first")
        try:
            old = json.loads(run_file.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise RunError(f"{run_file} is not JSON ({e}); restore it, or start the search in another folder") from None
        if comparable(old) != comparable(meta):
            diff = {k: (old.get(k), meta[k]) for k in meta if comparable(old).get(k) != comparable(meta)[k]}
            raise RunError(f"{self.path} holds another search (was, now): {diff}; use the same settings")

    def save(self, state: dict[str, Any]) -> None:
        state = {**state, "journal_lines": self.journal.lines, "journal_bytes": self.journal.bytes,
                 "journal_sha256": self.journal.sha256}  # fmt: skip
        atomic_write(self.path / STATE, lambda tmp: torch.save(state, tmp), durable=True)

    def load_state(self) -> dict[str, Any] | None:
        """The checkpoint, None when there is none, or `RunError` when it cannot be one (never unpickles code)."""
        path = self.path / STATE
        if not path.exists():
            return None
        try:
            state = torch.load(path, weights_only=True)
        except Exception as e:  # torn, corrupt, or holding objects that need code to load: never retried unsafely
            raise RunError(
                f"{path} is not a readable search checkpoint ({type(e).__name__}); move it away and resume again: "
                f"the run is then rebuilt from {JOURNAL}"
            ) from None
        if not isinstance(state, dict) or not set(state) >= STATE_KEYS:
            raise RunError(f"{path} is not a search checkpoint of this version; move it away and resume again: the "
                           f"run is then rebuilt from {JOURNAL}")  # fmt: skip
        return state

    def resume(self, state: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        """The journal's records and how many the checkpoint ``state`` had seen, after checking the two agree
        (nothing is written before they do)."""
        records, complete, size = self.journal.read()
        counted = state["journal_lines"]
        move_away = f"or move {STATE} away and resume again to rebuild the run from the journal as it is"
        if len(records) < counted:
            raise RunError(
                f"{self.journal.path} holds {len(records)} complete lines but {STATE} counted {counted}: finished "
                f"children were torn off or removed. Restore the journal from a backup, {move_away} (children whose "
                "line is lost are not retrained; new children take their place)"
            )
        if hashlib.sha256(complete[: state["journal_bytes"]]).hexdigest() != state["journal_sha256"]:
            raise RunError(f"the first {counted} lines of {self.journal.path} are not those {STATE} counted (a line "
                           f"torn, removed or edited); restore the journal, {move_away}")  # fmt: skip
        self.journal.continue_after(complete, size)
        return records, counted

    def rebuild(self) -> list[dict[str, Any]]:
        """The journal's records, checked to be one run's (each child and each cell once), for a replay."""
        records, complete, size = self.journal.read()
        for key in ("child", "hash"):
            values = [r[key] for r in records]
            if len(set(values)) != len(values):
                raise RunError(
                    f"{self.journal.path} holds a {key} twice (two processes wrote it?); it cannot be replayed. "
                    "Keep the first line of each and resume again"
                )
        self.journal.continue_after(complete, size)
        return records


def comparable(meta: dict[str, Any]) -> dict[str, Any]:
    """What must not change across resumes: everything but where the data lives."""
    return {**meta, "task": {k: v for k, v in meta["task"].items() if k != "data_dir"}}


def locked(folder: RunFolder | None) -> AbstractContextManager[Any]:
    return nullcontext() if folder is None else folder.lock()
