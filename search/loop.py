"""The search loop: the paper's global work queue, budgets, honest bookkeeping of duplicates and failures.

`run_search` keeps ``workers`` children in flight. Whenever one finishes it is journaled, the algorithm
observes its reward (PPO updates once per 20), and a new child takes its place. A run lives in
``OUT/<algo>-seed<S>/`` (`runfolder`: run.json, journal.jsonl, state.pt, and a lock held for the run's life).

* **Budget = children trained**: distinct cells, each trained once (failed ones included: they took a worker).
  A proposal whose canonical hash (`space.canonical_hash`: the same network) was trained already, or is in
  flight, is not trained and not shown to the algorithm again: it draws another, and the journal line of the
  child finally trained says how many it drew in vain (``resampled``). So PPO never reinforces one sequence twice
  with one noisy reward, regularized evolution's population holds distinct cells, random search samples without
  replacement, and every algorithm gets the same number of distinct cells at equal budget. An algorithm that
  draws `MAX_DRAWS` trained cells in a row has converged: the run stops early and says so in its notes.
* **A failed child** (an exception, a NaN, out of memory, a dead worker) is journaled with its error and reward
  ``null``; the algorithm observes ``None`` (PPO: no baseline change, the advantage of the worst child so far;
  evolution: never joins the population; see `ppo` and `baselines`).

A checkpoint (``state.pt``) is written atomically before any new child is submitted. After ``kill -9`` or
Ctrl-C at any moment, `run_search(resume=True)` checks the journal against the checkpoint, replays the lines it
had not seen yet into the algorithm, and re-queues the children still in flight: no finished child is lost and
none is trained twice, and the run continues child for child as if never stopped. Without ``state.pt`` the run
is rebuilt by replaying the whole journal into a fresh algorithm (the same updates, so the same policy or
population; only the random stream of later proposals differs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasnet_zoo.errors import RunError
from nasnet_zoo.genotype import Genotype
from nasnet_zoo.runtime import derive_seed

from . import report
from .evaluators import Evaluator, Job, Outcome, Task, make_evaluator
from .presets import (
    ALGORITHMS,
    DEFAULT_PRESET,
    PRESETS,
    TASKS,
    Algorithm,
    Preset,
    SearchConfig,
    make_algorithm,
    task_dict,
    task_from_dict,
)
from .runfolder import RunFolder, locked
from .space import NUM_BLOCKS, Proposal, canonical_hash, decode

__all__ = [  # the presets and settings are `presets`'; importable from here as before
    "ALGORITHMS",
    "DEFAULT_PRESET",
    "MAX_DRAWS",
    "PRESETS",
    "TASKS",
    "Algorithm",
    "Preset",
    "SearchConfig",
    "SearchResult",
    "make_algorithm",
    "make_run_evaluator",
    "run_search",
    "task_dict",
    "task_from_dict",
]

MAX_DRAWS = 1000  # proposals in a row of cells trained already, after which an algorithm counts as converged


@dataclass
class SearchResult:
    records: list[dict[str, Any]]  # the journal: one line per distinct cell trained
    wall_seconds: float  # this call, from the first submission to the end
    controller_seconds: float  # this call, spent proposing and observing (policy updates included)
    run_dir: Path | None
    notes: list[str] = field(default_factory=list)  # what the user should know: a rebuild, an early stop
    elapsed_seconds: float = 0.0  # the whole run's wall time: every session of it, resumes included

    @property
    def best(self) -> dict[str, Any] | None:
        done = [r for r in self.records if r["reward"] is not None]
        return max(done, key=lambda r: r["reward"]) if done else None


# --- the loop -------------------------------------------------------------------------------------------------
@dataclass
class _Child:
    """A child in flight: its proposal, how many trained cells were drawn before it, its cell."""

    proposal: Proposal
    resampled: int
    genotype: Genotype
    hash: str

    @classmethod
    def of(cls, proposal: Proposal, resampled: int, num_blocks: int) -> _Child:
        genotype = decode(list(proposal.actions), num_blocks)
        return cls(proposal, resampled, genotype, canonical_hash(genotype))


class _Run:
    """The mutable state of one run and the rules that keep it consistent on disk."""

    def __init__(self, config: SearchConfig, preset: Preset, task: Task, num_blocks: int) -> None:
        self.config, self.task, self.preset, self.num_blocks = config, task, preset, num_blocks
        self.algorithm = make_algorithm(config.algo, config.seed, preset, num_blocks)
        self.pending: dict[int, _Child] = {}  # child id -> child in flight
        self.next_child = 0
        self.records: list[dict[str, Any]] = []
        self.seen: set[str] = set()  # canonical hashes trained or in flight
        self.elapsed = 0.0  # wall seconds of earlier sessions
        self.controller_seconds = 0.0  # spent in the algorithm (sampling, observing, policy updates)
        self.notes: list[str] = []
        self.folder = None if config.out is None else RunFolder(Path(config.out) / config.run_name)

    # -- disk --
    def open(self) -> None:
        if self.folder is None:
            return
        meta = {"preset": self.config.preset, "algo": self.config.algo, "seed": self.config.seed,
                "num_blocks": self.num_blocks, "task": task_dict(self.task)}  # fmt: skip
        if not self.config.resume:
            self.folder.create(meta)
            return
        self.folder.check(meta)
        state = self.folder.load_state()
        if state is None:
            self._rebuild()
        else:
            self._load(state)
        self.seen = {r["hash"] for r in self.records} | {c.hash for c in self.pending.values()}

    def _load(self, state: dict[str, Any]) -> None:
        assert self.folder is not None
        self.records, counted = self.folder.resume(state)
        self.algorithm.load_state_dict(state["algorithm"])
        self.pending = {int(i): _Child.of(Proposal(tuple(a), lp, v), n, self.num_blocks)
                        for i, a, lp, v, n in state["pending"]}  # fmt: skip
        self.next_child, self.elapsed = state["next_child"], state["elapsed"]
        for r in self.records[counted:]:  # finished after the last checkpoint: replay
            if r["child"] not in self.pending:
                raise RunError(
                    f"{self.folder.journal.path}: the line of child {r['child']} matches no child in flight; the "
                    f"journal holds lines of another run. Restore it, or move {self.folder.path / 'state.pt'} away "
                    "and resume again to rebuild the run from the journal"
                )
            self._observe(self.pending.pop(r["child"]).proposal, r)

    def _rebuild(self) -> None:
        """No checkpoint: replay every journal line into the fresh algorithm, then draw from a new stream."""
        assert self.folder is not None
        self.records = self.folder.rebuild()
        for r in self.records:
            self._observe(Proposal(tuple(r["actions"]), r["log_prob"], r["policy_version"]), r)
        self.next_child = max((r["child"] for r in self.records), default=-1) + 1
        self.elapsed = max((r["elapsed"] for r in self.records), default=0.0)
        if self.records:
            self.algorithm.reseed(derive_seed(self.config.seed, self.next_child) + (1 << 40))  # apart from children's
            self.notes.append(
                f"{self.folder.path} had no state.pt: rebuilt from its journal's {len(self.records)} children "
                "(children that were in flight are proposed anew; later proposals differ from an uninterrupted run's)"
            )

    def checkpoint(self, elapsed: float) -> None:
        if self.folder is None:
            return
        self.folder.save({
            "algorithm": self.algorithm.state_dict(),
            "pending": [[i, list(c.proposal.actions), c.proposal.log_prob, c.proposal.policy_version, c.resampled]
                        for i, c in self.pending.items()],
            "next_child": self.next_child,
            "elapsed": elapsed,
        })  # fmt: skip

    # -- children --
    @property
    def counted(self) -> int:
        """Children trained or training: what the budget counts."""
        return len(self.records) + len(self.pending)

    def propose(self) -> int | None:
        """A new child in flight (its id), or None when the algorithm drew only trained cells `MAX_DRAWS` times."""
        for resampled in range(MAX_DRAWS):
            t = time.perf_counter()
            proposal = self.algorithm.propose()
            self.controller_seconds += time.perf_counter() - t
            child = _Child.of(proposal, resampled, self.num_blocks)
            if child.hash not in self.seen:
                self.seen.add(child.hash)
                self.pending[self.next_child] = child
                self.next_child += 1
                return self.next_child - 1
        self.notes.append(
            f"the {self.config.algo} search drew {MAX_DRAWS} cells in a row that it had trained already: it has "
            f"converged; stopped at {self.counted} children"
        )
        return None

    def job(self, child: int) -> Job:
        return Job(child, self.pending[child].genotype, derive_seed(self.config.seed, child))

    def finish(self, outcome: Outcome, elapsed: float) -> dict[str, Any]:
        """Journal a finished child (durably, first), then let the algorithm observe it."""
        child = self.pending.pop(outcome.id)
        record = {
            "child": outcome.id,
            "hash": child.hash,
            "reward": outcome.reward,
            "error": outcome.error,
            "resampled": child.resampled,
            "seconds": round(outcome.seconds, 3),
            "worker": outcome.worker,
            "policy_version": child.proposal.policy_version,
            "log_prob": child.proposal.log_prob,
            "elapsed": round(elapsed, 3),
            "actions": list(child.proposal.actions),
            "genotype": child.genotype.to_dict(),
        }
        if self.folder is not None:
            self.folder.journal.append(record)
        self.records.append(record)
        self._observe(child.proposal, record)
        return record

    def _observe(self, proposal: Proposal, record: dict[str, Any]) -> None:
        t = time.perf_counter()
        self.algorithm.observe(proposal, record["reward"])
        self.controller_seconds += time.perf_counter() - t


def make_run_evaluator(backend: str, task: Task, workers: int, ray_address: str | None, gpus: float) -> Evaluator:
    options = {"address": ray_address, "gpus": gpus} if backend == "ray" else {}
    return make_evaluator(backend, task, workers, **options)


def run_search(
    config: SearchConfig, evaluator: Evaluator | None = None, progress: bool = False, num_blocks: int = NUM_BLOCKS
) -> SearchResult:
    """Run (or resume) one search of ``budget`` children trained; see the module docstring. ``evaluator``
    replaces the configured backend. A second process on the same run folder gets `RunError` naming this one."""
    preset, task, budget, workers, backend = config.resolved()
    run = _Run(config, preset, task, num_blocks)
    if config.resume and run.folder is not None and not run.folder.path.is_dir():
        raise RunError(f"nothing to resume: {run.folder.path} does not exist; run without --resume first")
    with locked(run.folder):
        run.open()
        owned = evaluator is None
        if evaluator is None:
            evaluator = make_run_evaluator(backend, task, workers, config.ray_address, config.gpus_per_child)
        result = _loop(run, budget, evaluator, owned, progress)
        if run.folder is not None:
            report.write_outputs(run.folder.path.parent, preset.top_k)
    return result


def _loop(run: _Run, budget: int, evaluator: Evaluator, owned: bool, progress: bool) -> SearchResult:
    deadline = None if run.config.max_minutes is None else run.config.max_minutes * 60
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=budget, initial=len(run.records), desc=f"{run.config.algo} on {run.config.preset}",
                   unit="child")  # fmt: skip
    best = max((r["reward"] for r in run.records if r["reward"] is not None), default=float("-inf"))

    def finished(record: dict[str, Any]) -> None:
        nonlocal best
        if bar is not None:
            bar.update(1)
            if record["reward"] is not None and record["reward"] > best:
                best = record["reward"]
                bar.set_postfix(best=f"{best:.4f}")

    start = time.perf_counter()
    controller_before = run.controller_seconds
    elapsed = lambda: run.elapsed + time.perf_counter() - start  # noqa: E731
    converged = False
    try:  # KeyboardInterrupt included: the checkpoint on disk holds every child in flight; --resume re-queues them
        for child in sorted(run.pending):  # in flight when the last session ended: re-queue
            evaluator.submit(run.job(child))
        while True:
            out_of_time = deadline is not None and elapsed() >= deadline
            new = []
            while not (converged or out_of_time) and len(run.pending) < evaluator.capacity and run.counted < budget:
                child = run.propose()
                if child is None:
                    converged = True
                else:
                    new.append(child)
            if new:
                run.checkpoint(elapsed())  # before submitting: every submitted child is on disk
            for child in new:
                evaluator.submit(run.job(child))
            if not run.pending:
                break
            if out_of_time:
                for child in run.pending:  # they stay in flight on disk; --resume re-queues them
                    evaluator.cancel(child)
                break
            timeout = None if deadline is None else max(0.0, deadline - elapsed())
            for outcome in evaluator.wait_any(timeout):
                finished(run.finish(outcome, elapsed()))
        total = elapsed()
        run.checkpoint(total)
    finally:
        if owned:
            evaluator.close()
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - start
    dir = None if run.folder is None else run.folder.path
    return SearchResult(run.records, wall, run.controller_seconds - controller_before, dir, run.notes, total)
