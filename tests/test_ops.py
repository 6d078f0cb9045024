"""Ops: TF "SAME" padding checked against JAX/XLA (the same padding rules as TensorFlow), the op vocabulary,
factorized reduction against a direct transcription of TF-slim's, and drop path."""

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasnet_zoo.genotype import OPS
from nasnet_zoo.ops import FactorizedReduce, SameConv2d, SamePool2d, drop_path, make_op, same_padding
from tests.helpers import randomize_bn

os.environ.setdefault("JAX_PLATFORMS", "cpu")
jax = pytest.importorskip("jax")  # the peers extra; installed in CI
jax.config.update("jax_enable_x64", True)
lax = jax.lax


def test_same_padding_puts_the_odd_pixel_after():
    assert same_padding(224, 3, 2) == (0, 1)  # even size, stride 2: asymmetric
    assert same_padding(165, 3, 2) == (1, 1)  # odd size: symmetric
    assert same_padding(42, 7, 2) == (2, 3)
    assert same_padding(42, 1, 2) == (0, 0)
    assert same_padding(10, 3, 1, dilation=2) == (2, 2)


SIZES = [(7, 7), (8, 8), (9, 12), (14, 11), (2, 3)]


@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize(
    "kernel, stride, dilation, depthwise",
    [(3, 2, 1, True), (5, 2, 1, True), (7, 2, 1, True), (3, 1, 1, False), (1, 2, 1, False), (3, 2, 2, False),
     ((1, 7), (1, 2), 1, False), ((7, 1), (2, 1), 1, False), (5, 1, 1, True)],
)  # fmt: skip
def test_same_conv_matches_xla(hw, kernel, stride, dilation, depthwise, rng):
    c = 4
    conv = SameConv2d(c, c if depthwise else 6, kernel, stride, dilation, groups=c if depthwise else 1).double()
    x = torch.randn(2, c, *hw, generator=rng, dtype=torch.float64)
    ours = conv(x).detach().numpy()
    ref = lax.conv_general_dilated(
        x.numpy(), conv.weight.detach().numpy(), conv.stride, "SAME", rhs_dilation=conv.dilation,
        dimension_numbers=("NCHW", "OIHW", "NCHW"), feature_group_count=conv.groups,
    )  # fmt: skip
    np.testing.assert_allclose(ours, np.asarray(ref), rtol=0, atol=1e-12)


@pytest.mark.parametrize("hw", [*SIZES, (1, 1), (4, 5)])
@pytest.mark.parametrize("kind, kernel, stride", [("avg", 3, 2), ("max", 3, 2), ("avg", 3, 1), ("max", 5, 2),
                                                  ("max", 7, 2), ("max", 7, 1), ("avg", 5, 2)])  # fmt: skip
def test_same_pool_matches_xla(hw, kind, kernel, stride, rng):
    x = torch.randn(2, 3, *hw, generator=rng, dtype=torch.float64)
    ours = SamePool2d(kind, kernel, stride)(x).numpy()
    window, strides = (1, 1, kernel, kernel), (1, 1, stride, stride)
    xn = x.numpy()
    if kind == "max":
        ref = lax.reduce_window(xn, -np.inf, lax.max, window, strides, "SAME")
    else:  # TF divides by the number of real pixels in the window
        total = lax.reduce_window(xn, 0.0, lax.add, window, strides, "SAME")
        count = lax.reduce_window(np.ones_like(xn), 0.0, lax.add, window, strides, "SAME")
        ref = total / count
    np.testing.assert_allclose(ours, np.asarray(ref), rtol=0, atol=1e-12)


def tf_factorized_reduction(x: torch.Tensor, conv1: nn.Conv2d, conv2: nn.Conv2d, bn: nn.Module) -> torch.Tensor:
    """TF-slim's factorized_reduction, transcribed step by step (NCHW)."""
    path1 = F.avg_pool2d(x, 1, 2)  # 1x1 VALID avg pool with stride 2
    path1 = F.conv2d(path1, conv1.weight)
    path2 = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]  # pad bottom/right, drop top/left
    path2 = F.conv2d(F.avg_pool2d(path2, 1, 2), conv2.weight)
    return bn(torch.cat([path1, path2], 1))


@pytest.mark.parametrize("hw", [(8, 8), (7, 7), (6, 9), (1, 2)])
def test_factorized_reduction_is_tf_slims(hw, rng):
    fr = FactorizedReduce(5, 8, nn.BatchNorm2d).eval()
    randomize_bn(fr)
    x = torch.randn(2, 5, *hw, generator=rng)
    torch.testing.assert_close(fr(x), tf_factorized_reduction(x, fr.conv1, fr.conv2, fr.bn), rtol=0, atol=1e-6)
    assert fr(x).shape[-2:] == tuple(-(-n // 2) for n in hw)


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("c_in, stride, hw", [(8, 1, (9, 9)), (8, 2, (10, 7)), (12, 2, (9, 10)), (12, 1, (4, 4))])
def test_every_op_maps_width_and_resolution(name, c_in, stride, hw):
    op = make_op(name, c_in, 8, stride, nn.BatchNorm2d)
    y = op(torch.randn(2, c_in, *hw))
    assert y.shape == (2, 8, *(-(-n // stride) for n in hw))
    # A pool on an input of the cell's width needs no projection; identity is a no-op only then.
    if name.endswith("pool_3x3") or name.startswith("max_pool"):
        assert isinstance(op, SamePool2d) == (c_in == 8)
    if name == "identity":
        assert isinstance(op, nn.Identity) == (c_in == 8 and stride == 1)


def test_drop_path_drops_whole_examples_and_rescales(rng):
    torch.manual_seed(0)
    x = torch.ones(20000, 2, 3, 3)
    y = drop_path(x, 0.7)
    per_example = y.flatten(1)
    kept = per_example[:, 0] > 0
    assert torch.all(per_example == per_example[:, :1])  # all or nothing per example
    assert abs(kept.float().mean().item() - 0.7) < 0.01
    torch.testing.assert_close(per_example[kept], torch.full_like(per_example[kept], 1 / 0.7))
    assert torch.equal(drop_path(x[:5], 1.0), x[:5])
