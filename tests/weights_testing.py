"""Helpers for the weights tests: Keras-layout ``.h5`` files written from a zoo model's own tensors, and a local
Hub cache laid out as huggingface_hub writes it.

The layout is the released files' (Keras 2 ``save_weights``: ``layer_names`` on the root, ``weight_names`` per
layer, datasets named ``layer/weight:0``, channels-last kernels). Which Keras name each tensor gets comes from
the converter (`keras_names`); that those names are Keras's own is shown against real Keras in
``tests/peers/test_keras.py``.
"""

from __future__ import annotations

import hashlib
import os
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


def write_hub_cache(cache: Path, repo_id: str, revision: str, files: dict[str, Path]) -> Path:
    """Lay files out as huggingface_hub's cache does; returns the snapshot folder."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)  # no trailing newline: huggingface_hub reads it verbatim
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for name, src in files.items():
        h = hashlib.sha256()
        with open(src, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                h.update(chunk)
        blob = repo / "blobs" / h.hexdigest()
        os.replace(src, blob)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    return snapshot
