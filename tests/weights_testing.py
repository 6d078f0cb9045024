"""Helpers for the weights tests: Keras-layout ``.h5`` files written from a zoo model's own tensors.

The layout is the released files' (Keras 2 ``save_weights``: ``layer_names`` on the root, ``weight_names`` per
layer, datasets named ``layer/weight:0``, channels-last kernels). Which Keras name each tensor gets comes from
the converter (`keras_names`); that those names are Keras's own is shown against real Keras in
``tests/peers/test_keras.py``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import h5py
import numpy as np
import torch

from nasnet_zoo.weights.convert_keras import keras_names


def to_keras(t: torch.Tensor, weight: str) -> np.ndarray:
    """PyTorch layout -> Keras's channels-last layout (the inverse of the converter's)."""
    if weight == "depthwise_kernel":
        t = t.permute(2, 3, 0, 1)
    elif weight in ("kernel", "pointwise_kernel") and t.ndim == 4:
        t = t.permute(2, 3, 1, 0)
    elif weight == "kernel" and t.ndim == 2:
        t = t.t()
    return t.detach().contiguous().numpy()


def write_keras_h5(path: Path, model: torch.nn.Module, extra: dict[tuple[str, str], np.ndarray] | None = None) -> Path:
    """Write ``model``'s tensors (a classifier makes a with-top file) as a Keras NASNet weight file."""
    sd = model.state_dict()
    layers: dict[str, list[tuple[str, np.ndarray]]] = defaultdict(list)
    for key, (layer, weight) in keras_names(model).items():
        layers[layer].append((weight, to_keras(sd[key], weight)))
    for (layer, weight), array in (extra or {}).items():
        layers[layer].append((weight, array))
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"input_1", *(name.encode() for name in layers)]
        f.create_group("input_1").attrs["weight_names"] = np.array([], dtype="S1")
        for layer, weights in layers.items():
            g = f.create_group(layer)
            g.attrs["weight_names"] = [f"{layer}/{w}:0".encode() for w, _ in weights]
            for w, array in weights:
                g.create_dataset(f"{layer}/{w}:0", data=array)
    return path
