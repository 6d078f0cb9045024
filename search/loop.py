"""The search loop: the paper's global work queue, budgets, honest bookkeeping of duplicates and failures.

`run_search` keeps ``workers`` children in flight. Whenever one finishes it is journaled, the algorithm
observes its reward (PPO updates once per 20), and a new child takes its place. A run lives in
``OUT/<algo>-seed<S>/``:

* ``run.json``: what was asked (preset, algo, seed, task); ``--resume`` refuses a different one.
* ``journal.jsonl``: append-only, one line per finished child (genotype, hash, reward, seconds, worker,
  policy version, error), flushed and fsynced before anything else happens.
* ``state.pt``: the algorithm (controller, optimiser, baseline, RNG), the children in flight and how many
  journal lines it has seen. Written atomically before any new child is submitted.

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

After ``kill -9`` at any moment, `run_search(resume=True)` loads ``state.pt``, replays the journal lines it
had not seen yet into the algorithm, and re-queues the children still in flight: no finished child is lost
and none is trained twice. Every child ever submitted is in the journal or in the state's in-flight list.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from nasnet_zoo.errors import ConfigError
from nasnet_zoo.files import atomic_write
from nasnet_zoo.genotype import Genotype
from nasnet_zoo.runtime import derive_seed

from . import report
from .baselines import RandomSearch, RegularizedEvolution
from .evaluators import BACKENDS, Evaluator, Job, Outcome, Task, make_evaluator, run_all
from .ppo import PolicyConfig, PolicyGradient
from .space import NUM_BLOCKS, Proposal, canonical_hash, decode
from .tasks import Cifar10Task, DigitsTask, SyntheticTask

ALGORITHMS = ("ppo", "reinforce", "random", "evolution")
MAX_DRAWS = 1000  # proposals in a row of cells trained already, after which an algorithm counts as converged
STATE, RUN = "state.pt", "run.json"


@dataclass(frozen=True)
class Preset:
    """A task with the budget, parallelism and algorithm settings that go with it."""

    name: str
    task: Task  # a frozen dataclass from .tasks
    budget: int  # children trained (distinct cells; see run_search)
    workers: int
    backend: str
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    population: int = 100  # regularized evolution (AmoebaNet's P and S at 20,000 children)
    tournament: int = 25
    top_k: int = 10  # children to retrain
    retrain_epochs: int = 20


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        # The paper's protocol: 20,000 CIFAR-10 children (N = 2, 20 epochs) fed to 450 GPU workers; the top 250
        # retrained (600 epochs, the CIFAR recipe's length, standing in for "to convergence").
        Preset("nasnet", Cifar10Task(), budget=20_000, workers=450, backend="ray", top_k=250, retrain_epochs=600),
        # Real children on the bundled 8x8 digits: a meaningful search in minutes on 2 CPU cores.
        Preset("cpu-digits", DigitsTask(), budget=100, workers=2, backend="process", population=20, tournament=5,
               top_k=5, retrain_epochs=15),
        # A seeded reward with a known optimum, for testing the algorithms in seconds.
        Preset("synthetic", SyntheticTask(), budget=2000, workers=1, backend="serial", population=50, tournament=10),
    ]
}  # fmt: skip
TASKS = {cls.__name__: cls for cls in (SyntheticTask, DigitsTask, Cifar10Task)}


class Algorithm(Protocol):
    version: int

    def propose(self) -> Proposal: ...

    def observe(self, proposal: Proposal, reward: float | None) -> None:
        """A finished child's reward; None when it could not be trained."""
        ...

    def reseed(self, seed: int) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def make_algorithm(algo: str, seed: int, preset: Preset, num_blocks: int = NUM_BLOCKS) -> Algorithm:
    if algo in ("ppo", "reinforce"):
        return PolicyGradient(dataclasses.replace(preset.policy, method=algo), seed, num_blocks)
    if algo == "random":
        return RandomSearch(seed, num_blocks)
    if algo == "evolution":
        return RegularizedEvolution(seed, preset.population, preset.tournament, num_blocks)
    raise ConfigError(f"unknown algorithm {algo!r}; use one of {ALGORITHMS}")


@dataclass
class SearchConfig:
    """One run. ``None`` takes the preset's value; ``task`` replaces the preset's task (tests, experiments)."""

    preset: str = "cpu-digits"
    algo: str = "ppo"
    seed: int = 0
    budget: int | None = None  # children trained
    workers: int | None = None
    backend: str | None = None
    out: Path | None = None  # None: keep everything in memory (no journal, no resume)
    resume: bool = False
    max_minutes: float | None = None  # wall-time budget of this run, summed over resumes
    data_dir: str | None = None  # cifar10
    ray_address: str | None = None
    gpus_per_child: float = 0.0
    task: Task | None = None

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; use one of {sorted(PRESETS)}")
        if self.algo not in ALGORITHMS:
            raise ConfigError(f"unknown algorithm {self.algo!r}; use one of {ALGORITHMS}")
        if self.backend is not None and self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}; use one of {BACKENDS}")
        for name in ("budget", "workers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        if self.resume and self.out is None:
            raise ConfigError("resume needs the --out folder of the run to continue")

    @property
    def run_name(self) -> str:
        return f"{self.algo}-seed{self.seed}"

    def resolved(self) -> tuple[Preset, Task, int, int, str]:
        """The preset, task, budget, workers and backend this run uses."""
        p = PRESETS[self.preset]
        task = self.task or p.task
        if isinstance(task, Cifar10Task):
            task = dataclasses.replace(task, data_dir=self.data_dir or task.data_dir)
            task.check_data()
        return p, task, self.budget or p.budget, self.workers or p.workers, self.backend or p.backend


@dataclass
class SearchResult:
    records: list[dict[str, Any]]  # the journal: one line per distinct cell trained
    wall_seconds: float  # this call, from the first submission to the end
    controller_seconds: float  # this call, spent proposing and observing (policy updates included)
    run_dir: Path | None
    notes: list[str] = field(default_factory=list)  # what the user should know: an early stop

    @property
    def best(self) -> dict[str, Any] | None:
        done = [r for r in self.records if r["reward"] is not None]
        return max(done, key=lambda r: r["reward"]) if done else None


# --- durable files --------------------------------------------------------------------------------------------
class _Journal:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _comparable(meta: dict[str, Any]) -> dict[str, Any]:
    """What must not change across resumes: everything but where the data lives."""
    return {**meta, "task": {k: v for k, v in meta["task"].items() if k != "data_dir"}}


def task_dict(task: Task) -> dict[str, Any]:
    return {"class": type(task).__name__, **dataclasses.asdict(task)}


def task_from_dict(d: dict[str, Any]) -> Any:
    d = dict(d)
    return TASKS[d.pop("class")](**d)


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
        self.dir = None if config.out is None else Path(config.out) / config.run_name
        self.journal = None if self.dir is None else _Journal(self.dir / report.JOURNAL)

    # -- disk --
    def open(self) -> None:
        if self.dir is None:
            return
        meta = {"preset": self.config.preset, "algo": self.config.algo, "seed": self.config.seed,
                "num_blocks": self.num_blocks, "task": task_dict(self.task)}  # fmt: skip
        run_file = self.dir / RUN
        if self.config.resume:
            if not run_file.exists():
                raise FileNotFoundError(f"nothing to resume: {self.dir} holds no {RUN}; run without --resume first")
            old = json.loads(run_file.read_text())
            if _comparable(old) != _comparable(meta):
                diff = {k: (old.get(k), meta[k]) for k in meta if _comparable(old).get(k) != _comparable(meta)[k]}
                raise ValueError(f"{self.dir} holds another search (was, now): {diff}; use the same settings")
            self._load()
            self.seen = {r["hash"] for r in self.records} | {c.hash for c in self.pending.values()}
        else:
            if (self.dir / report.JOURNAL).exists() or (self.dir / STATE).exists():
                raise FileExistsError(
                    f"{self.dir} already holds a search; pass --resume to continue it or choose another --out"
                )
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write(run_file, json.dumps(meta, indent=1) + "\n", durable=True)

    def _load(self) -> None:
        assert self.dir is not None
        self.records = report.read_journal(self.dir / report.JOURNAL)
        state_file = self.dir / STATE
        if not state_file.exists():  # killed before the first checkpoint: nothing was submitted yet
            if self.records:
                raise ValueError(f"{self.dir} has a journal but no {STATE}; it cannot be resumed")
            return
        state = torch.load(state_file, weights_only=True)
        self.algorithm.load_state_dict(state["algorithm"])
        self.pending = {int(i): _Child.of(Proposal(tuple(a), lp, v), n, self.num_blocks)
                        for i, a, lp, v, n in state["pending"]}  # fmt: skip
        self.next_child, self.elapsed = state["next_child"], state["elapsed"]
        for r in self.records[state["journal_lines"] :]:  # finished after the last checkpoint: replay
            if r["child"] not in self.pending:
                raise ValueError(f"journal line for child {r['child']} matches no child in flight; damaged run")
            self._observe(self.pending.pop(r["child"]).proposal, r)

    def checkpoint(self, elapsed: float) -> None:
        if self.dir is None:
            return
        state = {
            "algorithm": self.algorithm.state_dict(),
            "pending": [[i, list(c.proposal.actions), c.proposal.log_prob, c.proposal.policy_version, c.resampled]
                        for i, c in self.pending.items()],
            "next_child": self.next_child,
            "journal_lines": len(self.records),
            "elapsed": elapsed,
        }  # fmt: skip
        atomic_write(self.dir / STATE, lambda tmp: torch.save(state, tmp), durable=True)

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
        if self.journal is not None:
            self.journal.append(record)
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
    replaces the configured backend."""
    preset, task, budget, workers, backend = config.resolved()
    run = _Run(config, preset, task, num_blocks)
    run.open()
    owned = evaluator is None
    if evaluator is None:
        evaluator = make_run_evaluator(backend, task, workers, config.ray_address, config.gpus_per_child)
    result = _loop(run, budget, evaluator, owned, progress)
    if run.dir is not None:
        report.write_outputs(run.dir.parent, preset.top_k)
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
    try:
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
        run.checkpoint(elapsed())
    finally:
        if owned:
            evaluator.close()
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - start
    return SearchResult(run.records, wall, run.controller_seconds - controller_before, run.dir, run.notes)


# --- retrain --------------------------------------------------------------------------------------------------
RETRAIN, FINAL = "retrain.jsonl", "final.json"
SPLITS = {"validation": "reward", "test": "test_accuracy"}  # split -> the task's method that scores it


def retrain(
    out: Path,
    top_k: int | None = None,
    epochs: int | None = None,
    workers: int | None = None,
    backend: str | None = None,
    seed: int = 0,
    progress: bool = False,
    data_dir: str | None = None,
    ray_address: str | None = None,
    gpus_per_child: float = 0.0,
) -> list[dict[str, Any]]:
    """Train the top-k cells under ``out`` longer, choose the final one on validation, then test it.

    The ``top_k`` best distinct cells of every run are trained for ``epochs`` (the preset's retrain setting) and
    scored on the validation split the search rewarded; the best there, and only it, is then scored on the
    task's held-out test split (``task.test_accuracy``), which nothing before has read: the test number
    estimates the chosen cell's accuracy and is not one more thing to choose on. ``out/retrain.jsonl`` gets one
    line per score (``split`` ``validation`` or ``test``); a cell scored there with the same epochs is not
    trained again. The winner goes to ``out/final.json``.

    Returns one row per candidate, best on validation first: ``hash``, ``run``, ``search_reward``, ``epochs``,
    ``reward`` (validation, None if it failed), ``test`` (the final cell's, None for the others), ``error``,
    ``genotype``. ``data_dir`` points a cifar10 search at its data on this machine; the evaluator is chosen
    as in `run_search`.
    """
    out = Path(out)
    metas = [json.loads(p.read_text()) for p in sorted(out.glob(f"*/{RUN}"))]
    if not metas:
        raise FileNotFoundError(f"no search runs under {out}; run `nasnet-zoo search --out {out}` first")
    if len({json.dumps(_comparable(m)["task"], sort_keys=True) for m in metas}) != 1:
        raise ValueError(f"the runs under {out} trained children on different tasks; retrain one task at a time")
    preset = PRESETS[metas[0]["preset"]]
    epochs = epochs or preset.retrain_epochs
    task = task_from_dict(metas[0]["task"]).longer(epochs)
    if data_dir is not None:
        task = dataclasses.replace(task, data_dir=data_dir)
    if not callable(getattr(task, "test_accuracy", None)):
        raise ConfigError(f"the {type(task).__name__} task has no held-out test split (test_accuracy); retrain "
                          "would have nothing to report the final cell on")  # fmt: skip
    journal = _Journal(out / RETRAIN)
    done = {(r["hash"], r["epochs"], r["split"]): r for r in report.read_journal(journal.path)}
    candidates = report.top_k(report.load_runs(out), top_k or preset.top_k)

    def score(cells: list[dict[str, Any]], split: str) -> None:
        todo = [c for c in cells if (c["hash"], epochs, split) not in done]
        if not todo:
            return
        evaluator = make_run_evaluator(backend or preset.backend, task, workers or preset.workers, ray_address,
                                       gpus_per_child)  # fmt: skip
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc=f"retrain {epochs} epochs, {split}", unit="child")

        def finished(o: Outcome) -> None:
            c = todo[o.id]
            row = {"hash": c["hash"], "run": c["run"], "search_reward": c["reward"], "epochs": epochs,
                   "split": split, "reward": o.reward, "error": o.error, "seconds": round(o.seconds, 3),
                   "genotype": c["genotype"]}  # fmt: skip
            journal.append(row)
            done[c["hash"], epochs, split] = row
            if bar is not None:
                bar.update(1)

        jobs = [Job(i, Genotype.from_dict(c["genotype"]), seed, SPLITS[split]) for i, c in enumerate(todo)]
        try:
            run_all(evaluator, jobs, finished)
        finally:
            evaluator.close()
            if bar is not None:
                bar.close()

    score(candidates, "validation")
    rows = [_row(done[c["hash"], epochs, "validation"]) for c in candidates]
    rows.sort(key=lambda r: float("inf") if r["reward"] is None else -r["reward"])
    if rows and rows[0]["reward"] is not None:  # chosen on validation; only now is the test split read
        score([c for c in candidates if c["hash"] == rows[0]["hash"]], "test")
        rows[0]["test"] = done[rows[0]["hash"], epochs, "test"]["reward"]
        Genotype.from_dict(rows[0]["genotype"]).save(out / FINAL)
    return rows


def _row(line: dict[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in line.items() if k not in ("split", "seconds")}, "test": None}
