"""Helpers shared by tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nasnet_zoo.data import write_random_cifar10

#: Where device-parametrized tests run: the CPU always, and the CUDA device when this machine has one (CI has none;
#: a GPU machine runs them there too: README, "Tested on a GPU").
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm random affine parameters and running statistics (eval-mode equivalence tests)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
    return model


def fake_cifar_release(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny CIFAR-10 whose md5s the reader is told, so the recipe's md5 check runs against it."""
    from torchvision.datasets import CIFAR10

    write_random_cifar10(root, per_batch=4)
    md5 = lambda name: hashlib.md5((root / CIFAR10.base_folder / name).read_bytes()).hexdigest()  # noqa: E731
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5(f"data_batch_{i}")] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5("test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5("batches.meta")})


def write_image_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog", "fox"), per_class: int = 2) -> None:
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (30 + i, 40, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
