"""The equal-wall-time comparison of weight sharing with the stand-alone search (benchmarks/compare_ws.py), at a
smoke size: every arm runs, the stand-alone searches get the WS runs' wall time, every chosen cell is tested,
a rerun resumes and reports the same times."""

from __future__ import annotations

import json
import re

import pytest
from nasnet_zoo.search import sharing
from nasnet_zoo.search.report import read_journal
from nasnet_zoo.search.shared_training import SharingConfig
from nasnet_zoo.search.tasks import DigitsTask

from benchmarks import compare_ws
from nasnet_zoo.errors import ConfigError

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

    prior = tmp_path / "seed0.json"  # another session's seeds join the table and the tests
    (tmp_path / "results" / "compare-ws-cpu-digits.json").rename(prior)
    seed1 = list(parser_args)
    seed1[seed1.index("--seeds") + 1] = "1"
    merged = compare_ws.run(compare_ws.parse([*seed1, "--prior", str(prior)]), ws_task=WS_TASK, alone_task=ALONE_TASK)
    assert merged["seeds"] == [0, 1] and merged["earlier"][0]["seeds"] == [0]
    for arm, s in merged["arms"].items():
        assert s["by_seed"][0] == result["arms"][arm]["by_seed"][0] and s["n"] == 2, arm
    assert {(r["arm"], r["seed"]) for r in merged["runs"]} == {(a, s) for a in compare_ws.ARMS for s in (0, 1)}
    assert merged["ppo_ws_vs"]["random"]["welch_p"] is not None  # the tests see both seeds


def test_a_prior_result_that_cannot_join_is_refused_before_anything_runs(tmp_path):
    out = tmp_path / "out"
    base = ["--preset", "cpu-digits", "--ws-preset", "digits-ws", "--seeds", "0", "--out", str(out)]
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"preset": "laptop", "ws_preset": "laptop-ws", "seeds": [1]}))
    same = tmp_path / "same.json"
    same.write_text(json.dumps({"preset": "cpu-digits", "ws_preset": "digits-ws", "seeds": [0]}))
    for path, message in [
        (bad, "not a compare_ws result"),
        (other, "compared presets"),
        (same, "already has seeds [0]"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            compare_ws.run(compare_ws.parse([*base, "--prior", str(path)]))
    assert not out.exists()
