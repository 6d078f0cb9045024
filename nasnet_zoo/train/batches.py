"""What the loop iterates over and where: `Batches` turns any form of data `fit` takes into batches on the
device, epoch by epoch (a training order that depends on ``(seed, epoch)`` only); `resolve_device` and
`autocast_dtype` say where and in which precision the model runs."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, TensorDataset

from ..runtime import derive_seed


class Batches:
    """The batches of one dataset, on the device, epoch by epoch; training order depends on (seed, epoch) only."""

    def __init__(
        self, data: Any, batch_size: int, train: bool, seed: int, device: torch.device, num_workers: int = 0
    ) -> None:
        self.batch_size, self.train, self.seed, self.device = batch_size, train, seed, device
        self.tensors: tuple[torch.Tensor, torch.Tensor] | None = None
        self.generator = torch.Generator()
        if isinstance(data, tuple | list) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
            data = TensorDataset(*data)
        if isinstance(data, DataLoader):
            self.loader = data
        elif isinstance(data, TensorDataset) and len(data.tensors) == 2:
            self.tensors = (data.tensors[0].to(device), data.tensors[1].to(device))
        elif isinstance(data, Dataset) and hasattr(data, "__len__"):
            sampler = RandomSampler(data, generator=self.generator) if train else None
            self.loader = DataLoader(
                data,
                batch_size,
                sampler=sampler,
                drop_last=train and len(data) >= batch_size,
                num_workers=num_workers,
                pin_memory=device.type == "cuda",
                generator=self.generator,
            )
        else:
            raise TypeError(
                f"data must be a DataLoader, a TensorDataset, an (x, y) pair of tensors or a map-style Dataset, "
                f"got {type(data).__name__}"
            )

    def __len__(self) -> int:
        if self.tensors is None:
            return len(self.loader)
        n = len(self.tensors[0])
        return n // self.batch_size if self.train and n >= self.batch_size else math.ceil(n / self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.generator.manual_seed(derive_seed(self.seed, epoch))
        if self.tensors is None:
            for x, y in self.loader:
                yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            return
        x, y = self.tensors
        order = torch.randperm(len(x), generator=self.generator).to(self.device) if self.train else None
        for i in range(len(self)):
            s = slice(i * self.batch_size, (i + 1) * self.batch_size)
            yield (x[order[s]], y[order[s]]) if order is not None else (x[s], y[s])


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
