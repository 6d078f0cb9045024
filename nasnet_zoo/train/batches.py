"""What the loop iterates over and where: `Batches` turns any form of data `fit` takes into batches on the
device, epoch by epoch, for this replica (a training order that depends on ``(seed, epoch)`` only, shared out
by `distributed`); `resolve_device` and `autocast_dtype` say where and in which precision the model runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..errors import ConfigError
from .distributed import EvalShards, Replicas, SeededExamples, TrainShards


class Batches:
    """The batches of one dataset on the device, epoch by epoch, for this replica (`distributed`): training
    batches are its slice of every global batch of one order that depends on (seed, epoch) only, evaluation
    batches are dealt out whole. A given DataLoader is used as it is (by every replica, for evaluation only)."""

    def __init__(
        self, data: Any, batch_size: int, train: bool, seed: int, replicas: Replicas, num_workers: int = 0
    ) -> None:
        self.device = device = replicas.device
        self.tensors: tuple[torch.Tensor, torch.Tensor] | None = None
        self.shards: TrainShards | EvalShards | None = None
        if isinstance(data, tuple | list) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
            data = TensorDataset(*data)
        if isinstance(data, DataLoader):
            if train and replicas.active:
                raise ConfigError("with several replicas, fit needs the training data as a Dataset or tensors, "
                                  "not a DataLoader: each replica loads its own shard")  # fmt: skip
            self.loader = data
            return
        if not (isinstance(data, Dataset) and hasattr(data, "__len__")):
            raise TypeError(
                f"data must be a DataLoader, a TensorDataset, an (x, y) pair of tensors or a map-style Dataset, "
                f"got {type(data).__name__}"
            )
        n, r, w = len(data), replicas.rank, replicas.world_size
        tensors = isinstance(data, TensorDataset) and len(data.tensors) == 2
        keyed = not tensors  # a Dataset is read through SeededExamples
        self.shards = TrainShards(n, batch_size, seed, r, w, keyed) if train else EvalShards(n, batch_size, r, w)
        if tensors:
            self.tensors = (data.tensors[0].to(device), data.tensors[1].to(device))
            return
        self.loader = DataLoader(
            SeededExamples(data, seed) if train else data,
            batch_sampler=self.shards,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0,
            generator=torch.Generator().manual_seed(seed),  # worker seeds; draws nothing from the global RNG
        )

    def __len__(self) -> int:
        return len(self.shards) if self.shards is not None else len(self.loader)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if isinstance(self.shards, TrainShards):
            self.shards.set_epoch(epoch)
        if self.tensors is None:
            for x, y in self.loader:
                yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            return
        x, y = self.tensors
        for batch in self.shards:
            index = torch.tensor(batch, device=self.device)
            yield x[index], y[index]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device named, or CUDA when there is one, else the CPU."""
    return torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a `TrainConfig.precision` on ``device``, or None for fp32."""
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None
