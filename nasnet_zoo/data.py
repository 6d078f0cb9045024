"""Datasets and transforms. The bundled real proxy task: scikit-learn's 1,797 handwritten 8x8 digits.

`digits` needs scikit-learn (the ``search`` extra); nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset


def digits(
    val_fraction: float = 0.25, seed: int = 0, size: int = 8, channels: int = 1
) -> tuple[TensorDataset, TensorDataset]:
    """scikit-learn's digits as ``(train, val)`` tensor datasets, split per class with a fixed seed.

    Pixels are scaled to [-1, 1] (the zoo's mean = std = 0.5 convention); ``size`` resizes bilinearly and
    ``channels = 3`` repeats the grey channel for models built for RGB.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0  # values are 0..16
    y = torch.tensor(data.target, dtype=torch.long)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    if channels != 1:
        x = x.repeat(1, channels, 1, 1)
    rng = np.random.default_rng(seed)
    val_idx = []
    for c in range(10):
        idx = np.flatnonzero(data.target == c)
        val_idx += list(rng.choice(idx, size=round(len(idx) * val_fraction), replace=False))
    is_val = np.zeros(len(y), dtype=bool)
    is_val[val_idx] = True
    train, val = torch.from_numpy(~is_val), torch.from_numpy(is_val)
    return TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val])
