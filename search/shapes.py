"""Procedurally drawn shapes: the laptop proxy's data, as many images as asked, the same for the same seed.

Ten classes of outline shapes (disc, ring, square, frame, triangle up, triangle down, plus, diamond, two
horizontal bars, two vertical bars), each drawn at a random position, size (from a few pixels across to most
of the image), rotation (up to ``max_rotation`` radians, small enough that a square stays a square and a plus
stays apart from an x), contrast and polarity on a random grey background, with Gaussian pixel noise and, in
half the images, a small distracting blob. Drawn at twice the resolution and averaged down (anti-aliased edges).

Small shapes under noise need several layers of context to classify and large ones need a wide receptive field,
so the task separates cells more than an 8x8 digit does, and a validation or test split can be as large as the
statistics need (one image of 4,000 is 0.025 %). Splits are independent draws from disjoint seeds
(`shapes_split`), so the held-out test split shares no image with the training or validation data.
"""

from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from nasnet_zoo.errors import ConfigError
from nasnet_zoo.runtime import derive_seed

CLASSES = ("disc", "ring", "square", "frame", "triangle-up", "triangle-down", "plus", "diamond", "hbars", "vbars")
SPLITS = ("train", "validation", "test")


def _masks(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Every class's shape at local coordinates ``(u, v)`` (the shape spans about [-1, 1]): (classes, ...)."""
    rho = torch.sqrt(u * u + v * v)
    box = torch.maximum(u.abs(), v.abs())
    bar = lambda a, b: (a.abs() < 0.9) & (((b - 0.5).abs() < 0.2) | ((b + 0.5).abs() < 0.2))  # noqa: E731
    return torch.stack([
        rho < 0.9,
        (rho > 0.5) & (rho < 0.95),
        box < 0.75,
        (box > 0.45) & (box < 0.85),
        (v < 0.7) & (u.abs() < (v + 0.9) * 0.6),
        (v > -0.7) & (u.abs() < (0.9 - v) * 0.6),
        ((u.abs() < 0.25) & (v.abs() < 0.9)) | ((v.abs() < 0.25) & (u.abs() < 0.9)),
        u.abs() + v.abs() < 0.95,
        bar(u, v),
        bar(v, u),
    ]).float()  # fmt: skip


def draw_shapes(
    n: int, seed: int, size: int = 16, noise: float = 0.12, max_rotation: float = 0.35, min_scale: float = 0.35
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images ``(n, 1, size, size)`` in [-1, 1] and their labels, a pure function of the arguments."""
    g = torch.Generator().manual_seed(seed)
    uni = lambda lo, hi: lo + (hi - lo) * torch.rand(n, 1, 1, generator=g)  # noqa: E731
    labels = torch.randint(len(CLASSES), (n,), generator=g)
    fine = 2 * size
    axis = (torch.arange(fine) + 0.5) / fine * 2 - 1
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    x, y = x.expand(n, fine, fine), y.expand(n, fine, fine)
    scale, theta = uni(min_scale, 0.75), uni(-max_rotation, max_rotation)
    cx, cy = uni(-1, 1) * (1 - scale), uni(-1, 1) * (1 - scale)  # the shape stays inside the image
    c, s = torch.cos(theta), torch.sin(theta)
    u, v = (c * (x - cx) + s * (y - cy)) / scale, (-s * (x - cx) + c * (y - cy)) / scale
    shape = _masks(u, v).gather(0, labels.view(1, n, 1, 1).expand(1, n, fine, fine))[0]
    bx, by, br = uni(-0.9, 0.9), uni(-0.9, 0.9), uni(0.08, 0.18)
    blob = (((x - bx) ** 2 + (y - by) ** 2) < br * br).float() * (torch.rand(n, 1, 1, generator=g) < 0.5)
    shape = F.avg_pool2d(shape.unsqueeze(1), 2)[:, 0]
    blob = F.avg_pool2d(blob.unsqueeze(1), 2)[:, 0]
    background = uni(-0.6, 0.6)
    sign = torch.where(torch.rand(n, 1, 1, generator=g) < 0.5, -1.0, 1.0)
    contrast = uni(0.5, 1.0) * sign
    img = background + contrast * shape + 0.7 * contrast * blob * (1 - shape)
    img = img + noise * torch.randn(n, size, size, generator=g)
    return img.clamp(-1, 1).unsqueeze(1), labels


@cache
def shapes_split(split: str, n: int, seed: int = 0, size: int = 16, noise: float = 0.12) -> TensorDataset:
    """One split of the task: ``split`` (train, validation or test) drawn from its own seed stream."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    x, y = draw_shapes(n, derive_seed(seed, SPLITS.index(split)), size, noise)
    return TensorDataset(x, y)
