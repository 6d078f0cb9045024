"""The Ray backend for real, on a local ``ray.init`` (search/evaluators.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from nasnet_zoo.search.loop import SearchConfig, run_search

ray = pytest.importorskip("ray")  # the search extra; CI installs it

from tests.test_search_loop import Flaky  # noqa: E402  (a task that fails on purpose, importable by Ray workers)


def test_search_on_local_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not ray.is_initialized()
    root = str(Path(__file__).parent.parent)  # Ray's workers inherit the environment, not pytest's sys.path
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    config = SearchConfig(preset="synthetic", algo="ppo", budget=24, workers=2, backend="ray", out=tmp_path,
                          task=Flaky(((3, "raise"), (5, "nan"))))  # fmt: skip
    records = run_search(config).records
    assert not ray.is_initialized()  # the evaluator shut down the Ray it started
    assert sorted(r["child"] for r in records) == list(range(24))
    assert {r["child"] for r in records if r["error"]} == {3, 5}
    assert next(r for r in records if r["child"] == 3)["error"].startswith("RuntimeError: a bug in the child")
    trained = [r for r in records if r["reward"] is not None]
    assert len(trained) == 22 and all(r["worker"].startswith("ray-") for r in trained)
    assert {r["policy_version"] for r in records} == {0, 1}  # one PPO update after 20 children
