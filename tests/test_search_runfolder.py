"""A search's run folder (search/runfolder.py): one process at a time, a resume that trusts nothing unchecked,
a journal that readers never write, a lost or corrupt checkpoint."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from nasnet_zoo.search.loop import SearchConfig, run_search
from nasnet_zoo.search.report import read_journal

import nasnet_zoo
from nasnet_zoo.errors import RunError

_SCRIPT = """
import sys
from pathlib import Path
from nasnet_zoo.search.loop import SearchConfig, run_search
from nasnet_zoo.search.tasks import SyntheticTask
run_search(SearchConfig(preset="synthetic", budget=int(sys.argv[2]), out=Path(sys.argv[1]), resume=True,
                        task=SyntheticTask(seconds=0.3)))
"""


def test_a_second_process_on_a_run_folder_is_refused_naming_the_first(tmp_path: Path) -> None:
    from nasnet_zoo.search.tasks import SyntheticTask

    config = dict(preset="synthetic", out=tmp_path, task=SyntheticTask(seconds=0.3))
    run_search(SearchConfig(**config, budget=2))
    script = tmp_path / "resume.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(nasnet_zoo.__file__).parent.parent)}
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), "14"], env=env)
    journal = tmp_path / "ppo-seed0" / "journal.jsonl"
    try:
        deadline = time.monotonic() + 120
        while journal.read_bytes().count(b"\n") < 3:  # the other process is training children
            assert proc.poll() is None and time.monotonic() < deadline, "the other search made no progress"
            time.sleep(0.02)
        for resume in (True, False):  # a second resume, or a fresh search started beside it
            with pytest.raises(RunError, match=f"ppo-seed0 is in use by pid {proc.pid} .*or use another output"):
                run_search(SearchConfig(**config, budget=14, resume=resume))
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    children = [r["child"] for r in read_journal(journal)]
    assert children == list(range(14))  # every child trained once, by the one process that held the folder
    assert len(run_search(SearchConfig(**config, budget=14, resume=True)).records) == 14  # released at its end


def _run(tmp_path: Path, **kwargs: Any) -> tuple[dict[str, Any], Path]:
    config = {"preset": "synthetic", "budget": 10, "out": tmp_path} | kwargs
    run_search(SearchConfig(**config))
    return config, tmp_path / f"{config.get('algo', 'ppo')}-seed0"


def test_a_torn_line_the_checkpoint_counted_is_refused_then_rebuilt(tmp_path: Path) -> None:
    config, run = _run(tmp_path)
    journal = run / "journal.jsonl"
    raw = journal.read_bytes()
    journal.write_bytes(raw[:-30])  # the last finished child's line, torn
    with pytest.raises(RunError, match=r"holds 9 complete lines but state\.pt counted 10: .* move state\.pt away"):
        run_search(SearchConfig(**config, resume=True))
    assert journal.read_bytes() == raw[:-30]  # refused before writing anything
    (run / "state.pt").rename(tmp_path / "state.pt.old")  # what the message says to do
    result = run_search(SearchConfig(**config, resume=True))
    assert "had no state.pt: rebuilt from its journal's 9 children" in result.notes[0]
    lines = journal.read_text().splitlines()
    assert lines[:9] == raw.decode().splitlines()[:9] and len(lines) == 10  # the torn line cut, a child in its place
    assert len({json.loads(line)["hash"] for line in lines}) == 10


def test_an_edited_or_foreign_line_is_refused(tmp_path: Path) -> None:
    config, run = _run(tmp_path)
    journal = run / "journal.jsonl"
    raw = journal.read_bytes()
    lines = raw.decode().splitlines(keepends=True)
    edited = json.loads(lines[3]) | {"reward": 0.99}
    journal.write_text("".join([*lines[:3], json.dumps(edited) + "\n", *lines[4:]]))
    with pytest.raises(RunError, match=r"the first 10 lines of .* are not those state\.pt counted"):
        run_search(SearchConfig(**config, resume=True))
    journal.write_bytes(raw + lines[3].replace('"child": 3,', '"child": 10,').encode())  # a line of no child in flight
    with pytest.raises(RunError, match="the line of child 10 matches no child in flight"):
        run_search(SearchConfig(**config, resume=True))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


@pytest.mark.parametrize("algo", ["ppo", "evolution", "random"])
def test_a_lost_state_is_rebuilt_by_replaying_the_journal(tmp_path: Path, algo: str) -> None:
    config, run = _run(tmp_path, algo=algo, budget=45)  # PPO: two updates, five children towards the third
    state = run / "state.pt"
    before = torch.load(state, weights_only=True)
    state.unlink()
    result = run_search(SearchConfig(**config, resume=True))
    assert len(result.records) == 45 and "rebuilt from its journal's 45 children" in result.notes[0]
    after = torch.load(state, weights_only=True)
    random_streams = {"generator", "rng", "drawn"}  # reseeded on a rebuild
    assert _same(*({k: v for k, v in s["algorithm"].items() if k not in random_streams} for s in (before, after)))
    config["budget"] = 60
    records = run_search(SearchConfig(**config, resume=True)).records
    assert [r["child"] for r in records] == list(range(60)) and len({r["hash"] for r in records}) == 60
    assert records[:45] == result.records


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "malicious"])
def test_a_corrupt_or_malicious_state_is_refused_without_unsafe_advice(tmp_path: Path, damage: str) -> None:
    config, run = _run(tmp_path)
    state, marker = run / "state.pt", tmp_path / "pwned"
    if damage == "truncated":
        state.write_bytes(state.read_bytes()[:300])
    elif damage == "garbage":
        state.write_bytes(b"\x00not a checkpoint" * 10)
    else:
        state.write_bytes(pickle.dumps(_Exploit(marker), protocol=2))
    with pytest.raises(RunError, match=r"is not a readable search checkpoint .* move it away and resume") as e:
        run_search(SearchConfig(**config, resume=True))
    assert "weights_only" not in str(e.value) and e.value.__cause__ is None and e.value.__suppress_context__
    assert not marker.exists()
    state.unlink()  # what the message says to do (moving it away)
    assert len(run_search(SearchConfig(**config, resume=True)).records) == 10


def test_reading_a_journal_never_writes_it(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    journal.write_bytes(b'{"child": 0}\n{"child": 1}\n{"chi')  # a run mid-write
    assert read_journal(journal) == [{"child": 0}, {"child": 1}]
    assert journal.read_bytes() == b'{"child": 0}\n{"child": 1}\n{"chi'
    journal.write_bytes(b'{"child": 0}\nnot json\n')
    with pytest.raises(RunError, match=r"journal.jsonl:2 is not a JSON line .*restore it from a backup"):
        read_journal(journal)
