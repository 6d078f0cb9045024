"""What a search must not do, checked where the default backend runs children: in worker processes (a monkeypatch
in this process cannot see them), and what its summaries count."""

from __future__ import annotations

from dataclasses import dataclass

from nasnet_zoo.search.evaluators import Job, make_evaluator, run_all
from nasnet_zoo.search.loop import SearchConfig, run_search
from nasnet_zoo.search.report import summary_rows, top_k
from nasnet_zoo.search.tasks import ShapesTask
from torch.utils.data import Dataset

from nasnet_zoo.genotype import NASNET_A

SEALED = "the held-out test split was read"


@dataclass(frozen=True)
class Sealed(ShapesTask):
    """The laptop task, tiny, whose held-out test split cannot be read: any read fails the child that reads it."""

    train_size: int = 64
    val_size: int = 32
    test_size: int = 32

    def split(self, name: str) -> Dataset:
        if name == "test":
            raise RuntimeError(SEALED)
        return super().split(name)


def test_the_test_split_never_reaches_a_search_on_worker_processes() -> None:
    task = Sealed()
    evaluator = make_evaluator("process", task, 1)  # one worker: its start (importing torch) is most of the time
    try:
        outcomes: list = []  # the seal works where children train: a test read comes back as the child's error
        run_all(evaluator, [Job(0, NASNET_A, 0, "test_accuracy")], outcomes.append)
        assert outcomes[0].reward is None and SEALED in outcomes[0].error
        result = run_search(SearchConfig(preset="laptop", budget=3, task=task), evaluator)
        assert [r["error"] for r in result.records] == [None] * 3
        assert all(0.0 <= r["reward"] <= 1.0 for r in result.records)
    finally:
        evaluator.close()


def _record(h: str, reward: float | None) -> dict:
    return dict(hash=h, reward=reward, error=None if reward is not None else "x", resampled=0, elapsed=60.0,
                genotype=NASNET_A.to_dict())  # fmt: skip


def test_a_cell_found_by_two_runs_counts_once_with_its_best_reward() -> None:
    runs = {"ppo-seed0": [_record("a", 0.5), _record("b", 0.7), _record("c", None)],
            "random-seed0": [_record("a", 0.6), _record("d", 0.4)]}  # fmt: skip
    best = top_k(runs, 10)
    assert [(t["hash"], t["reward"], t["run"]) for t in best] == [("b", 0.7, "ppo-seed0"), ("a", 0.6, "random-seed0"),
                                                                  ("d", 0.4, "random-seed0")]  # fmt: skip
    rows = {r[0]: r for r in summary_rows(runs)}
    assert rows["ppo-seed0"][1:3] == (3, 1)  # a failed child counts as a child, never as a reward
    assert rows["ppo-seed0"][4] == "0.7000"
