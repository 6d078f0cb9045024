"""What one search is: the presets (a task with its budget, parallelism and algorithm settings), the algorithms
by name, and `SearchConfig`, the settings of one run, with the run's task as it is recorded in run.json.

`loop.run_search` runs a `SearchConfig`; `sharing.run_sharing` runs the weight-sharing presets (`sharing.SHARING`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from nasnet_zoo.errors import ConfigError

from .baselines import RandomSearch, RegularizedEvolution
from .evaluators import BACKENDS, Task
from .ppo import PolicyConfig, PolicyGradient
from .space import NUM_BLOCKS, Proposal
from .tasks import Cifar10Task, DigitsTask, ShapesTask, SyntheticTask

__all__ = [
    "ALGORITHMS",
    "DEFAULT_PRESET",
    "PRESETS",
    "TASKS",
    "Algorithm",
    "Preset",
    "SearchConfig",
    "make_algorithm",
    "task_dict",
    "task_from_dict",
]

ALGORITHMS = ("ppo", "reinforce", "random", "evolution")


@dataclass(frozen=True)
class Preset:
    """A task with the budget, parallelism and algorithm settings that go with it."""

    name: str
    task: Task  # a frozen dataclass from .tasks
    budget: int  # children trained (distinct cells; see `loop.run_search`)
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
        # The laptop proxy (the default): real children on drawn 16x16 shapes (`tasks.ShapesTask`), two epochs of
        # 2,000 images, rewarded on 1,500 more; retrained 4 epochs and tested on 1,500 the search never sees. Its
        # fidelity (`nasnet-zoo fidelity`, benchmarks/results/fidelity-*.md) is what it can claim: see README.
        # The controller learns 10x faster than the paper's and updates every 10 children, so that a budget of
        # 100 children moves the policy at all (the paper's settings move it by a thousandth of its entropy).
        Preset("laptop", ShapesTask(), budget=100, workers=2, backend="process",
               policy=PolicyConfig(lr=0.0035, batch_size=10), population=20, tournament=5, top_k=5,
               retrain_epochs=4),
        # A smoke preset, not a search: real children on the bundled 8x8 digits, fast, so it shows the machinery
        # runs end to end; its 3-epoch reward barely tells cells apart (noise about half the spread between cells;
        # Kendall tau with 15-epoch accuracy -0.05 on 16 random cells + NASNet-A, measured on an earlier split of
        # the digits), so nothing it finds is a finding.
        Preset("cpu-digits", DigitsTask(), budget=100, workers=2, backend="process", population=20, tournament=5,
               top_k=5, retrain_epochs=15),
        # Weight sharing (search/sharing.py): one supernet of the digits children trained while the controller
        # learns; rewards are sub-networks on validation minibatches (its switches: sharing.SHARING).
        Preset("digits-ws", DigitsTask(), budget=400, workers=1, backend="serial", top_k=5, retrain_epochs=15),
        # Weight sharing on the laptop proxy: one supernet of the laptop children (same task, data and split)
        # trained while the controller learns, within 20 minutes on 2 cores (its switches: sharing.SHARING).
        Preset("laptop-ws", ShapesTask(), budget=1000, workers=1, backend="serial",
               policy=PolicyConfig(lr=0.0035, batch_size=10), top_k=5, retrain_epochs=4),
        # ENAS's search on one GPU: a supernet of 6 + 2 cells of F = 20 trained 150 epochs (batch 160, lr 0.05,
        # L2 1e-4) while 300 children per epoch are rewarded; the top cells retrained as the nasnet preset's.
        Preset("cifar10-ws", Cifar10Task(filters=20, epochs=150, lr=0.05, batch_size=160, weight_decay=1e-4),
               budget=150 * 300, workers=1, backend="serial", top_k=10, retrain_epochs=600),
        # A seeded reward with a known optimum, for testing the algorithms in seconds.
        Preset("synthetic", SyntheticTask(), budget=2000, workers=1, backend="serial", population=50, tournament=10),
    ]
}  # fmt: skip
DEFAULT_PRESET = "laptop"
TASKS = {cls.__name__: cls for cls in (SyntheticTask, ShapesTask, DigitsTask, Cifar10Task)}


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

    preset: str = DEFAULT_PRESET
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
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ConfigError(f"max_minutes must be more than 0 or None, got {self.max_minutes}")
        if not self.gpus_per_child >= 0:
            raise ConfigError(f"gpus_per_child must be at least 0, got {self.gpus_per_child}")
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


def task_dict(task: Task) -> dict[str, Any]:
    return {"class": type(task).__name__, **dataclasses.asdict(task)}


def task_from_dict(d: dict[str, Any]) -> Any:
    d = dict(d)
    return TASKS[d.pop("class")](**d)
