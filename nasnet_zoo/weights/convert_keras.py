"""Keras Applications NASNet ``.h5`` weights -> the zoo's layout (h5py only; no TensorFlow, no Keras).

Keras names layers after the cell and the branch (``separable_conv_1_normal_left1_0``, ``adjust_bn_stem_2``,
``reduction_conv_1_reduce_4``); its cell ids are ``stem_1, stem_2``, then ``0..N-1``, ``reduce_N``,
``N+1..2N``, ``reduce_2N``, ``2N+1..3N``. `keras_names` maps every tensor of a zoo model to the Keras weight
it comes from; `keras_to_zoo` takes each one exactly once (channels-last kernels transposed) and fails on
any Keras weight left over or any zoo tensor missing. The model is a template (e.g. built on the meta device):
only its names, shapes and cells are read. Files with the top (``NASNet-mobile.h5``) give a classifier;
``-no-top`` files give a headless state dict (``num_classes=0``).

Reads the layout that ``Model.save_weights`` wrote in Keras 2 (the released files) and that Keras 3 writes
for legacy ``.h5``: ``layer_names`` on the root (or ``model_weights``) group, ``weight_names`` per layer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from os import PathLike
from pathlib import Path

import numpy as np
import torch

from .common import WeightsError, architecture, check_state_dict, expected_tensors, save_safetensors, tensors_digest

#: (Keras layer, Keras weight name) -> array.
KerasWeights = dict[tuple[str, str], np.ndarray]

_BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


def read_keras_h5(path: str | PathLike[str]) -> KerasWeights:
    """Every weight in a Keras ``.h5`` weight file, keyed by (layer, weight name without scope or ``:0``)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no Keras weight file at {path}")
    try:
        with h5py.File(path, "r") as f:
            group = f.get("model_weights", f)
            if "layer_names" not in group.attrs:
                raise WeightsError(
                    f"{path} has no 'layer_names' attribute: it is not a Keras .h5 weight file in the released "
                    "(Keras 2 / legacy) layout. Save Keras 3 models with "
                    "keras.src.legacy.saving.legacy_h5_format.save_weights_to_hdf5_group, or use the released files."
                )
            out: KerasWeights = {}
            for layer in (_str(n) for n in group.attrs["layer_names"]):
                for name in (_str(n) for n in group[layer].attrs.get("weight_names", [])):
                    key = (layer, name.rsplit("/", 1)[-1].split(":", 1)[0])
                    if key in out:
                        raise WeightsError(f"{path}: layer {layer} has two weights named {key[1]}")
                    out[key] = np.asarray(group[layer][name][()])
    except WeightsError:
        raise
    except (OSError, KeyError, ValueError) as e:
        raise WeightsError(
            f"{path} is not a readable Keras .h5 file ({type(e).__name__}: {e}); it may be truncated or corrupt: "
            "download it again"
        ) from e
    return out


def _str(name: bytes | str) -> str:
    return name.decode("utf8") if isinstance(name, bytes) else str(name)


def keras_cell_ids(model: torch.nn.Module) -> dict[str, str]:
    """The zoo's cell names -> Keras's cell ids (Keras numbers a reduction cell after the normal cells before
    it and shifts the normal cells after the first reduction by one)."""
    first_reduction = model.config.reduction_indices[0]
    ids = {}
    for name in model.layer_names:
        kind, _, index = name.rpartition("_")
        n = int(index)
        if kind == "cell_stem":
            ids[name] = f"stem_{n + 1}"
        elif kind == "reduction_cell":
            ids[name] = f"reduce_{model.config.reduction_indices[n]}"
        else:
            ids[name] = str(n + (n >= first_reduction))
    return ids


def keras_names(model: torch.nn.Module, keys: Iterable[str] | None = None) -> dict[str, tuple[str, str]]:
    """Every tensor of ``model`` (or of ``keys``, its names in a file) that Keras stores (all but BN counters) ->
    its (Keras layer, weight)."""
    ids = keras_cell_ids(model)
    names: dict[str, tuple[str, str]] = {}
    for key in model.state_dict() if keys is None else keys:
        if key.endswith("num_batches_tracked"):
            continue
        module, _, tensor = key.rpartition(".")
        names[key] = _keras_name(module, tensor, ids, key)
    if len(set(names.values())) != len(names):  # a mapping bug, not a bad file
        raise AssertionError("two zoo tensors map to one Keras weight")
    return names


def _keras_name(module: str, tensor: str, ids: dict[str, str], key: str) -> tuple[str, str]:
    weight = _BN[tensor] if module.rpartition(".")[2].startswith("bn") else "kernel"
    if module in ("stem.conv", "stem.bn"):
        return ("stem_conv1" if module == "stem.conv" else "stem_bn1"), weight
    if module == "classifier":
        return "predictions", "kernel" if tensor == "weight" else "bias"
    cell, _, rest = module.partition(".")
    kind = "reduction" if cell.startswith(("cell_stem", "reduction_cell")) else "normal"
    c = ids.get(cell)
    m = re.fullmatch(r"blocks\.(\d)\.(left|right)\.op\.(dw|pw|bn)([12])", rest)
    if c is not None and m:
        block, side, part, j = int(m[1]), m[2], m[3], m[4]
        # Keras names the separable conv of reduction block 5 "left4" (its avg pool is also "left4").
        n = 4 if (kind, block, side) == ("reduction", 4, "left") else block + 1
        branch = f"{kind}_{side}{n}_{c}"
        if part == "bn":
            return f"separable_conv_{j}_bn_{branch}", weight
        return f"separable_conv_{j}_{branch}", "depthwise_kernel" if part == "dw" else "pointwise_kernel"
    layers = {
        "pre0.conv": f"{kind}_conv_1_{c}",
        "pre0.bn": f"{kind}_bn_1_{c}",
        "pre1.conv": f"adjust_conv_projection_{c}",
        "pre1.bn": f"adjust_bn_{c}",
        "pre1.reduce.conv1": f"adjust_conv_1_{c}",
        "pre1.reduce.conv2": f"adjust_conv_2_{c}",
        "pre1.reduce.bn": f"adjust_bn_{c}",
    }
    if c is not None and rest in layers:
        return layers[rest], weight
    raise WeightsError(f"{key} has no counterpart in Keras's NASNet (Keras builds NASNet-A ImageNet models only)")


def _to_torch(array: np.ndarray, weight: str) -> torch.Tensor:
    """Keras channels-last layouts -> PyTorch's."""
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if weight == "depthwise_kernel":  # (kh, kw, c, 1) -> (c, 1, kh, kw)
        t = t.permute(2, 3, 0, 1)
    elif weight in ("kernel", "pointwise_kernel") and t.ndim == 4:  # (kh, kw, in, out) -> (out, in, kh, kw)
        t = t.permute(3, 2, 0, 1)
    elif weight == "kernel" and t.ndim == 2:  # dense (in, out) -> (out, in)
        t = t.t()
    return t.contiguous()


def keras_to_zoo(weights: KerasWeights, model: torch.nn.Module, what: str = "Keras file") -> dict[str, torch.Tensor]:
    """Map Keras NASNet weights onto ``model``'s layout, using each Keras weight exactly once; check the result."""
    head = weights.get(("predictions", "kernel"))
    expected = expected_tensors(model, 0 if head is None else head.shape[-1])
    names = keras_names(model, expected)
    name = architecture(model)
    missing = [f"{key} (Keras {'/'.join(src)})" for key, src in names.items() if src not in weights]
    leftover = sorted("/".join(k) for k in set(weights) - set(names.values()))
    if missing or leftover:
        parts = [f"{len(items)} {label}: {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}"
                 for label, items in (("missing", missing), ("left over", leftover)) if items]  # fmt: skip
        raise WeightsError(
            f"{what}: the Keras weights do not map one-to-one onto {name}: {'; '.join(parts)}. Is this the Keras "
            f"NASNet file for {name} (NASNet-mobile.h5 for nasnet_a_mobile, NASNet-large.h5 for nasnet_a_large)?"
        )
    out = {key: _to_torch(weights[src], src[1]) for key, src in names.items()}
    return check_state_dict(out, expected, f"{what} (as {name})")


def convert_keras_file(
    src: str | PathLike[str], model: torch.nn.Module, out: str | PathLike[str], metadata: dict[str, str] | None = None
) -> Path:
    """Convert a Keras NASNet ``.h5`` (with or without top) for ``model`` to a zoo ``.safetensors`` file, whose
    metadata records the source and the tensors' sha256 (`tensors_digest`)."""
    src = Path(src)
    if Path(out).suffix != ".safetensors":
        raise WeightsError(f"write converted weights as .safetensors, got {out}")
    sd = keras_to_zoo(read_keras_h5(src), model, what=str(src))
    meta = {"source": src.name, "format": "pt", "model": architecture(model), **(metadata or {})}
    return save_safetensors(sd, out, metadata={**meta, "tensors_sha256": tensors_digest(sd)})
