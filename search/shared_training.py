"""The two steps of weight-sharing training, and the data they read: an optimizer step (SGD or Adam) of one
sub-network's weights on a training minibatch, and a reward (the sub-network's accuracy) that leaves the supernet
as it was.

`SharingConfig` holds the switches (`sharing` runs them); `Stream` gives the minibatch of any global step without
an iterator to checkpoint; `task_data` the splits of a search task.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset, default_collate

from nasnet_zoo.errors import ConfigError
from nasnet_zoo.genotype import Genotype
from nasnet_zoo.runtime import derive_seed

from .supernet import Supernet

BN_MODES = ("batch", "recalibrate", "running")
OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class SharingConfig:
    """How a preset's supernet is trained and its children rewarded (see the module docstring). The SGD settings
    (momentum, weight decay, batch) are the preset task's (`tasks.ChildTraining`), the peak lr too unless ``lr``
    says otherwise; lr warms up linearly over ``lr_warmup`` steps, then follows one cosine over the run's shared
    steps; gradients are clipped to a global norm of 5 after TF-style L2, as `train.fit`. ``optimizer="adam"``
    (Adam, its default betas) replaces SGD for the shared weights: each edge is trained by a fraction of the steps
    (1/13 of those that use its block and input), and Adam's per-weight step size does not shrink with that
    fraction (README, "Weight-sharing search"); ``lr`` must then be given.

    ``uniform_steps`` shared steps come before the first round, each on a uniformly drawn genotype (the
    algorithm neither proposes nor learns meanwhile): weights that every child can use before the controller
    trusts their rewards. ``filters`` (None: the task's) narrows the supernet below the task's children (a
    faster step; the children the search journals, retrains and scores stay the task's)."""

    shared_steps: int = 50  # per round
    children: int = 20  # rewarded per round
    reward_batches: int = 1
    reward_batch_size: int = 128
    bn: str = "batch"
    optimizer: str = "sgd"
    recalibrate_batches: int = 2
    final: int = 20
    clip_grad_norm: float = 5.0
    threads: int = 1  # torch threads on a CPU
    lr: float | None = None
    lr_warmup: int = 0
    uniform_steps: int = 0
    filters: int | None = None

    def __post_init__(self) -> None:
        if self.bn not in BN_MODES:
            raise ConfigError(f"unknown BN mode {self.bn!r}; use one of {BN_MODES}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; use one of {OPTIMIZERS}")
        if self.optimizer != "sgd" and self.lr is None:
            raise ConfigError(f"optimizer {self.optimizer!r} needs an lr (the task's is SGD's)")
        for name in ("shared_steps", "children", "reward_batches", "reward_batch_size", "final", "threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("lr_warmup", "uniform_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be at least 0, got {getattr(self, name)}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.filters is not None and (self.filters < 2 or self.filters % 2):
            raise ConfigError(f"filters must be an even number of at least 2, got {self.filters}")


# --- data ------------------------------------------------------------------------------------------------------
def task_data(task: Any) -> tuple[Dataset, Dataset]:
    """The training and validation splits a task's children train and are rewarded on (the held-out test split
    is never read)."""
    if not callable(getattr(task, "split", None)):
        raise ConfigError(f"weight sharing needs a task with training data; {type(task).__name__} has none")
    return task.split("train"), task.split("validation")


def _take(data: Dataset, index: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, TensorDataset):
        x, y = data.tensors[0][index], data.tensors[1][index]
    else:
        x, y = default_collate([data[int(i)] for i in index])
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


class Stream:
    """Minibatches of a dataset by global step: epoch ``e`` is a permutation seeded ``derive_seed(seed, e)``, so
    the batch of any step is known without replaying the ones before (a resume needs no iterator state)."""

    def __init__(self, data: Dataset, batch_size: int, seed: int, device: torch.device) -> None:
        self.data, self.batch_size, self.seed, self.device = data, min(batch_size, len(data)), seed, device
        self.per_epoch = len(data) // self.batch_size
        self._epoch: tuple[int, torch.Tensor] | None = None

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, i = divmod(step, self.per_epoch)
        if self._epoch is None or self._epoch[0] != epoch:
            g = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
            self._epoch = (epoch, torch.randperm(len(self.data), generator=g))
        return _take(self.data, self._epoch[1][i * self.batch_size : (i + 1) * self.batch_size], self.device)

    def sample(self, n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``n`` minibatches drawn without replacement with generator seed ``seed``."""
        index = torch.randperm(len(self.data), generator=torch.Generator().manual_seed(seed))
        k = self.batch_size
        return [_take(self.data, index[j * k : (j + 1) * k], self.device) for j in range(min(n, len(self.data) // k))]

    def all(self, batch_size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for j in range(0, len(self.data), batch_size):
            yield _take(self.data, torch.arange(j, min(j + batch_size, len(self.data))), self.device)


def make_optimizer(config: SharingConfig, supernet: Supernet, lr: float, momentum: float) -> torch.optim.Optimizer:
    """The optimizer of the shared weights: SGD with the task's momentum, or Adam (``config.optimizer``)."""
    if config.optimizer == "adam":
        return torch.optim.Adam(supernet.parameters(), lr=lr)
    return torch.optim.SGD(supernet.parameters(), lr=lr, momentum=momentum)


# --- the two steps ---------------------------------------------------------------------------------------------
def shared_step(
    supernet: Supernet, optimizer: torch.optim.Optimizer, genotype: Genotype, x: torch.Tensor, y: torch.Tensor,
    lr: float, weight_decay: float, clip: float,
) -> float:  # fmt: skip
    """One optimizer step of the weights ``genotype`` uses; returns the loss (a non-finite loss leaves them alone)."""
    if not supernet.training:
        supernet.train()
    loss = F.cross_entropy(supernet(x, genotype), y)
    optimizer.zero_grad(set_to_none=True)
    if not torch.isfinite(loss):
        return float(loss.detach())
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    with torch.no_grad():
        for p in params:
            if p.ndim > 1:
                p.grad.add_(p, alpha=weight_decay)  # TF-slim's l2_regularizer, before clipping (as train.fit)
    nn.utils.clip_grad_norm_(params, clip)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def score(
    supernet: Supernet, genotype: Genotype, batches: Any, bn: str = "batch", calibrate: Any = (),
) -> float:  # fmt: skip
    """The accuracy of ``genotype``'s sub-network on ``batches``; the supernet is left exactly as it was."""
    modules = [m for used in supernet.used(genotype) for m in used.modules()]
    norms = [m for m in modules if isinstance(m, nn.BatchNorm2d)]
    kept = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum) for m in norms]
    modes = [(m, m.training) for m in [supernet, *modules]]
    for m, _ in modes:  # eval mode for the modules the child runs (`Module.eval` would visit the whole space)
        m.training = False
    try:
        if bn == "recalibrate":
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # a plain average over the calibration batches
                m.train()
            for x, _ in calibrate:
                supernet(x, genotype)
            for m in norms:
                m.eval()
        elif bn == "batch":
            for m in norms:
                m.train()
        correct = total = 0
        for x, y in batches:
            correct += int((supernet(x, genotype).argmax(1) == y).sum())
            total += len(y)
        return correct / total
    finally:
        for m, (mean, var, count, momentum) in zip(norms, kept, strict=True):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)
            m.momentum = momentum
        for m, mode in modes:
            m.training = mode
