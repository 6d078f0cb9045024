"""Shared pieces of the training tests: tiny models (the NASNet CIFAR layout with 3 cells of 8 filters on 8x8
digits, and a 4-feature MLP), one plain SGD step through `fit`, and histories without their timings."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from nasnet_zoo.network import NASNetOutput
from nasnet_zoo.train import TrainConfig, fit
from nasnet_zoo.zoo import create_model

TIME_KEYS = {"seconds", "images_per_s"}


def tiny_nasnet(seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("nasnet_cifar", num_cells=3, filters=8, in_chans=1, num_classes=10, img_size=8, **kwargs)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def without_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in TIME_KEYS} for h in history]


class TwoHeads(nn.Module):
    """A linear classifier with an aux head, returning `NASNetOutput` in training mode like NASNet."""

    def __init__(self) -> None:
        super().__init__()
        self.main, self.aux = nn.Linear(4, 3), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor | NASNetOutput:
        return NASNetOutput(self.main(x), self.aux(x)) if self.training else self.main(x)


def one_sgd_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **config) -> nn.Module:
    """One full-batch plain SGD step (lr 1, no momentum) through `fit`; returns the model before it."""
    before = copy.deepcopy(model)
    cfg = TrainConfig(epochs=1, batch_size=len(x), lr=1.0, momentum=0.0, schedule="constant", **config)
    fit(model, (x, y), None, cfg, device="cpu")
    return before


def data_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    model = copy.deepcopy(model).train()
    return list(torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters())))
