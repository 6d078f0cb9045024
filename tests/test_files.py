"""Atomic writes and run-folder locks (nasnet_zoo/files.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nasnet_zoo.errors import NasnetZooError, RunError
from nasnet_zoo.files import RunLock, atomic_write, temporary_name


def test_atomic_write_replaces_whole_files_and_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "a" / "state.json"
    atomic_write(target, "old")
    assert target.read_text() == "old"

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken, durable=True)
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.json"]
    atomic_write(target, b"new", durable=True)
    assert target.read_bytes() == b"new"


def test_temporary_names_are_unique_and_keep_the_suffix(tmp_path: Path) -> None:
    names = {temporary_name(tmp_path / "curves.png") for _ in range(100)}
    assert len(names) == 100 and all(n.suffix == ".png" and n.parent == tmp_path for n in names)


_HOLD = """
import sys, time
from nasnet_zoo.files import RunLock
with RunLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_run_folder_has_one_owner_until_it_dies(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunError, match=rf"in use by pid {holder.pid} .*another output folder") as e:
            RunLock(tmp_path).__enter__()
        assert isinstance(e.value, NasnetZooError)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with RunLock(tmp_path):  # the kernel released it with the killed process
        assert f"pid {os.getpid()}" in (tmp_path / ".lock").read_text()
