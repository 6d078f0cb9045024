"""The equal-wall-time comparison of weight sharing with the stand-alone search (benchmarks/compare_ws.py), at a
smoke size: every arm runs, the stand-alone searches get the WS runs' wall time, every chosen cell is tested,
a rerun resumes and reports the same times."""

from __future__ import annotations

import json

from nasnet_zoo.search import sharing
from nasnet_zoo.search.report import read_journal
from nasnet_zoo.search.shared_training import SharingConfig
from nasnet_zoo.search.tasks import DigitsTask

from benchmarks import compare_ws

WS_TASK = DigitsTask(filters=4, batch_size=32)
ALONE_TASK = DigitsTask(filters=4, epochs=1, batch_size=128)


def test_every_arm_runs_at_the_ws_runs_wall_time_and_its_cell_is_tested(tmp_path, monkeypatch, one_thread):
    monkeypatch.setitem(sharing.SHARING, "digits-ws", SharingConfig(shared_steps=2, children=2, reward_batch_size=40,
                                                                    final=2))  # fmt: skip
    parser_args = ["--preset", "cpu-digits", "--ws-preset", "digits-ws", "--ws-budget", "2", "--seeds", "0",
                   "--epochs", "1", "--backend", "serial", "--out", str(tmp_path / "out")]  # fmt: skip
    ns = compare_ws.parse(parser_args)
    result = compare_ws.run(ns, ws_task=WS_TASK, alone_task=ALONE_TASK)
    assert set(result["arms"]) == {"ppo-ws", "random-ws", "ppo", "random", "NASNet-A"}
    for arm, s in result["arms"].items():
        assert list(s["by_seed"]) == [0] and 0 <= s["by_seed"][0] <= 1, arm  # every arm's cell scored on test
    runs = {r["arm"]: r for r in result["runs"]}
    ws_wall = max(runs["ppo-ws"]["wall_seconds"], runs["random-ws"]["wall_seconds"])
    assert runs["ppo"]["budget_seconds"] == runs["random"]["budget_seconds"] == ws_wall
    alone = read_journal(tmp_path / "out" / "alone" / "ppo-seed0" / "journal.jsonl")
    assert alone and max(r["elapsed"] for r in alone) <= ws_wall + 30  # stopped at the WS wall time (one child over)
    lines = (tmp_path / "out" / "standalone.jsonl").read_text().splitlines()
    assert {json.loads(x)["label"] for x in lines} >= {"NASNet-A"}
    again = {r["arm"]: r for r in compare_ws.run(ns, ws_task=WS_TASK, alone_task=ALONE_TASK)["runs"]}
    for arm in ("ppo", "random"):  # a rerun finds them finished and reports the wall time they took, not its own
        assert again[arm]["wall_seconds"] >= runs[arm]["wall_seconds"] > 0, arm
    compare_ws.write(result, tmp_path / "results")
    assert "ppo-ws vs random" in (tmp_path / "results" / "compare-ws-cpu-digits.md").read_text()
