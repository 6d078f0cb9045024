"""The process evaluator's edges: a worker that dies while idle, cancelling a running child, Ctrl-C
(search/evaluators.py)."""

from __future__ import annotations

import os
import signal
import time

from nasnet_zoo.search.evaluators import Job, Outcome, ProcessEvaluator
from nasnet_zoo.search.space import random_genotype
from nasnet_zoo.search.tasks import SyntheticTask


def _wait(evaluator: ProcessEvaluator, timeout: float = 120) -> list[Outcome]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out := evaluator.wait_any(1.0):
            return out
    raise AssertionError("no outcome in time")


def test_idle_death_and_cancel() -> None:
    g = random_genotype(0)
    evaluator = ProcessEvaluator(SyntheticTask(seconds=0.2), workers=1)
    try:
        assert evaluator.capacity == 1
        evaluator.submit(Job(0, g, 0))
        [first] = _wait(evaluator)
        assert first.id == 0 and first.error is None and first.reward == SyntheticTask().reward(g, 0)
        pid = int(first.worker.split(":")[1])
        os.kill(pid, signal.SIGKILL)  # dies while it waits for work
        time.sleep(0.5)
        evaluator.submit(Job(1, g, 1))
        [lost] = _wait(evaluator)
        assert lost.id == 1 and lost.reward is None and lost.error.startswith("the worker process died")
        evaluator.submit(Job(2, SyntheticTask().optimum, 2))  # the slot has a fresh worker
        [again] = _wait(evaluator)
        assert again.id == 2 and again.error is None and int(again.worker.split(":")[1]) != pid
        evaluator.submit(Job(3, g, 3))
        evaluator.submit(Job(4, g, 4))  # queued behind 3 (one worker)
        evaluator.cancel(3)  # running: its worker is replaced; 4 goes to the new one
        [after] = _wait(evaluator)
        assert after.id == 4 and after.error is None
        assert evaluator.wait_any(0.5) == []  # nothing comes back for the cancelled child
        # Ctrl-C reaches the workers too (a terminal signals its whole process group): they leave it to the parent
        evaluator.submit(Job(5, g, 5))
        os.kill(int(after.worker.split(":")[1]), signal.SIGINT)
        [interrupted] = _wait(evaluator)
        assert interrupted.id == 5 and interrupted.error is None and interrupted.worker == after.worker
    finally:
        evaluator.close()
