"""Keras Applications' NASNetMobile / NASNetLarge (JAX backend) against their conversions: logits, features and
every tensor, for files with and without the top.

Keras runs in a subprocess with ``KERAS_BACKEND=jax`` set before it is imported (the torch backend refuses
NASNet; a subprocess keeps JAX and its memory out of this one). It builds both models with random weights,
randomises every BatchNorm (gamma, beta, moving mean and variance: a swapped pair would show), saves them in the
legacy ``.h5`` layout of the released files (with top, and a genuine no-top model cut before the pooling),
dumps every variable straight from the Keras model, and runs one batch.

Keras zero-pads the stride-2 pools of its reduction cells (zeros enter the max and the average's divisor)
where TF pads with -inf and averages over real pixels only. So the converted model matches Keras
only once those 12 pools are swapped for Keras's (done here, the library stays exact); the exact model's
distance from Keras is measured and printed, and it is all due to those pools.

Sizes: mobile at its native 224 (maps 111, 56, 28, 14, 7: all of Keras's even-size padding). Large at 127 rather
than 331: building NASNetLarge and compiling its forward in JAX on a CPU is the slow part, and 331 would add a
minute for no new case; 127 gives maps 63, 32, 16, 8, 4, so both the odd and the even padding cases. Keras accepts
any input of at least 32 pixels when it is not loading its own weights.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nasnet_zoo
from nasnet_zoo.cell import Branch
from nasnet_zoo.cli import main
from nasnet_zoo.ops import SamePool2d
from nasnet_zoo.weights import read_state_dict
from nasnet_zoo.weights.convert_keras import keras_names, keras_to_zoo, read_keras_h5

if importlib.util.find_spec("keras") is None or importlib.util.find_spec("jax") is None:  # not imported here
    pytest.skip("needs the peers extra (keras, jax)", allow_module_level=True)

CASES = [("mobile", "nasnet_a_mobile", 224), ("large", "nasnet_a_large", 127)]

KERAS_SIDE = r"""
import os, sys
assert os.environ["KERAS_BACKEND"] == "jax"
import h5py, jax.numpy as jnp, keras, numpy as np
from keras.src.backend import random as backend_random
from keras.src.legacy.saving import legacy_h5_format

out, rng = sys.argv[1], np.random.default_rng(0)

# Keras's initializers draw through JAX, which compiles a kernel for every new shape: that is most of the time
# building NASNet takes (35 s of 40 for mobile). Draw the very same distributions with numpy instead.
def _np(draw):
    def sample(shape, *args, dtype=None, seed=None, **kwargs):
        return jnp.asarray(draw(shape, *args, **kwargs).astype(dtype or "float32"))
    return sample

backend_random.normal = _np(lambda shape, mean=0.0, stddev=1.0: rng.normal(mean, stddev, shape))
backend_random.uniform = _np(lambda shape, minval=0.0, maxval=1.0: rng.uniform(minval, maxval, shape))
backend_random.truncated_normal = _np(
    lambda shape, mean=0.0, stddev=1.0: mean + stddev * np.clip(rng.normal(0.0, 1.0, shape), -2.0, 2.0)
)
builders = {"mobile": keras.applications.NASNetMobile, "large": keras.applications.NASNetLarge}
for name, size in [("mobile", 224), ("large", 127)]:
    model = builders[name](input_shape=(size, size, 3), weights=None, classifier_activation=None)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.2, c).astype("float32"))
            layer.moving_mean.assign(rng.normal(0, 0.2, c).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, c).astype("float32"))
    head = model.get_layer("predictions")  # a smaller head keeps the logits near 10, whatever the draw
    head.kernel.assign(head.kernel * 0.2)
    head.bias.assign(rng.normal(0, 0.1, head.bias.shape[0]).astype("float32"))
    features = model.layers[-3].output  # the final ReLU, before global pooling and the classifier
    assert isinstance(model.layers[-2], keras.layers.GlobalAveragePooling2D)
    x = rng.uniform(-1, 1, (2, size, size, 3)).astype("float32")
    f, y = keras.Model(model.input, [features, model.output]).predict(x, verbose=0)
    with h5py.File(f"{out}/{name}.h5", "w") as h:
        legacy_h5_format.save_weights_to_hdf5_group(h, model)
    with h5py.File(f"{out}/{name}-no-top.h5", "w") as h:
        legacy_h5_format.save_weights_to_hdf5_group(h, keras.Model(model.input, features))
    variables = {f"{l.name}/{v.name}": np.asarray(v.numpy()) for l in model.layers for v in l.weights}
    np.savez(f"{out}/{name}.npz", x=x, logits=y, features=f)
    np.savez(f"{out}/{name}-variables.npz", **variables)
"""


@pytest.fixture(scope="module")
def keras_ref(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("keras")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    run = subprocess.run([sys.executable, "-c", KERAS_SIDE, str(out)], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    return out


class KerasPool(nn.Module):
    """Keras's stride-2 reduction-cell pool: ``ZeroPadding2D(correct_pad(x, 3))`` then a VALID 3x3 pool."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (w % 2, 1, h % 2, 1))  # correct_pad: (1, 1) for odd sizes, (0, 1) for even ones
        return F.max_pool2d(x, 3, 2) if self.kind == "max" else F.avg_pool2d(x, 3, 2)


def use_keras_pools(model: nn.Module) -> int:
    swapped = 0
    for branch in model.modules():
        if isinstance(branch, Branch) and isinstance(branch.op, SamePool2d) and branch.op.stride == 2:
            branch.op = KerasPool(branch.op.kind)
            swapped += 1
    return swapped


def converted(keras_ref: Path, name: str, model_name: str) -> nn.Module:
    model = nasnet_zoo.create_model(model_name).eval()
    model.load_state_dict(keras_to_zoo(read_keras_h5(keras_ref / f"{name}.h5"), model))
    return model


@pytest.mark.parametrize(("name", "model_name", "size"), CASES)
def test_converted_model_matches_keras(keras_ref, name, model_name, size, measurements):
    ref = np.load(keras_ref / f"{name}.npz")
    assert ref["x"].shape == (2, size, size, 3)
    x = torch.from_numpy(ref["x"]).permute(0, 3, 1, 2)
    model = converted(keras_ref, name, model_name)
    with torch.no_grad():
        exact_features = model.forward_features(x)
        exact = model.forward_head(exact_features).numpy()
        exact_features = exact_features.permute(0, 2, 3, 1).numpy()
        assert use_keras_pools(model) == 12  # 3 stride-2 pools in each of the 4 reduction cells
        features = model.forward_features(x)
        logits = model.forward_head(features).numpy()
        features = features.permute(0, 2, 3, 1).numpy()
    scale, feature_scale = np.abs(ref["logits"]).max(), np.abs(ref["features"]).max()
    keras_gap = np.abs(logits - ref["logits"]).max()
    exact_gap = np.abs(exact - ref["logits"]).max()
    feature_gap = np.abs(features - ref["features"]).max() / feature_scale
    print(
        f"\n{model_name} at {size}: logits up to {scale:.1f}; with Keras's pools max |diff| {keras_gap:.2e} "
        f"(features {feature_gap:.1e} relative); the exact model differs from Keras by {exact_gap:.3f}"
    )
    assert 1 < scale < 100  # random weights, but logits of a sane size, so 1e-4 means something
    assert keras_gap <= 1e-4
    assert feature_gap <= 1e-5
    # The exact model differs from Keras, and only through those pools.
    assert exact_gap > 1000 * keras_gap
    keras = f"Keras Applications `NASNet{name.capitalize()}` (JAX backend)"
    measurements.peer(
        model_name, f"{keras}, its pools swapped into ours", size,
        logits=(keras_gap, scale), features=(feature_gap * feature_scale, feature_scale),
        agrees=True, note="ours with Keras's 12 stride-2 reduction-cell pools, which pad with zeros",
    )  # fmt: skip
    measurements.peer(
        model_name, f"{keras} as released", size,
        logits=(exact_gap, scale), features=(np.abs(exact_features - ref["features"]).max(), feature_scale),
        agrees=False, note="Keras zero-pads those 12 pools (zeros in the max and in the average's divisor)",
    )  # fmt: skip


@pytest.mark.parametrize(("name", "model_name", "size"), CASES)
def test_every_tensor_is_the_keras_variable_it_came_from(keras_ref, name, model_name, size):
    variables = np.load(keras_ref / f"{name}-variables.npz")
    with torch.device("meta"):
        template = nasnet_zoo.create_model(model_name)
    sd = keras_to_zoo(read_keras_h5(keras_ref / f"{name}.h5"), template)
    names = keras_names(template)
    assert sorted("/".join(src) for src in names.values()) == sorted(variables.files)  # one-to-one
    for key, (layer, weight) in names.items():
        v = torch.from_numpy(variables[f"{layer}/{weight}"])
        if weight == "depthwise_kernel":
            v = v.permute(2, 3, 0, 1)
        elif v.ndim == 4:
            v = v.permute(3, 2, 0, 1)
        elif v.ndim == 2:
            v = v.t()
        assert torch.equal(sd[key], v), key


def test_no_top_files_and_the_cli(keras_ref, tmp_path, capsys):
    top = tmp_path / "mobile.safetensors"
    no_top = tmp_path / "mobile-no-top.safetensors"
    assert main(["convert", "keras", str(keras_ref / "mobile.h5"), "--model", "nasnet_a_mobile", "-o", str(top)]) == 0
    src = str(keras_ref / "mobile-no-top.h5")
    assert main(["convert", "keras", src, "--model", "nasnet_a_mobile", "-o", str(no_top)]) == 0
    full, headless = read_state_dict(top), read_state_dict(no_top)
    assert sorted(headless) == sorted(k for k in full if not k.startswith("classifier."))
    assert all(torch.equal(headless[k], full[k]) for k in headless)
    ref = np.load(keras_ref / "mobile.npz")
    model = nasnet_zoo.create_model(
        "nasnet_a_mobile", pretrained=True, pretrained_cfg_overlay=dict(file=str(no_top), num_classes=0)
    ).eval()
    assert model.num_classes == 0 and use_keras_pools(model) == 12
    with torch.no_grad():
        features = model.forward_features(torch.from_numpy(ref["x"]).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    assert np.abs(features.numpy() - ref["features"]).max() <= 1e-4
