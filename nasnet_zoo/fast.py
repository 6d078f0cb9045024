"""The inference fast paths, behind one seam: `optimize_for_inference(model)`.

The reference modules (`ops`, `cell`, `network`) compute the network as TF-slim writes it, a BN after every conv.
For inference, a BN in eval mode is an affine map per channel, so it folds into the conv before it: the conv's
weight scaled by ``gamma / sqrt(var + eps)`` and a bias ``beta - mean * scale``. `optimize_for_inference` returns
an eval-only copy of a model with every such BN folded (each half of a factorized reduction's BN into its own
conv) and its convs' weights in the activations' memory format (channels_last, so oneDNN needs no per-call
reorder), like timm's ``reparameterize_model``. It is opt-in: it computes the same function up to float
rounding (tests/test_fast_paths.py bounds it), but the copy no longer trains (no BN layers) and its state dict
has conv biases instead of BN entries. Measured (benchmarks/results/seam.md), eager eval on CPU gains nothing
from it (0.97x the reference in its default layout, NASNet-A mobile), so nothing uses it by default; it is the
starting point for ``torch.compile`` (benchmarks/run.py) and for exported graphs without BN nodes. The fast
path that does pay, channels_last activations (1.8x eval, 1.5x a training step over NCHW), is the model's
default layout (``NASNet(channels_last=True)``).
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_conv_bn_weights

from .ops import FactorizedReduce

__all__ = ["optimize_for_inference"]


def optimize_for_inference(model: nn.Module, channels_last: bool = True, inplace: bool = False) -> nn.Module:
    """An eval-mode copy of ``model`` (the model itself with ``inplace``) with each BatchNorm folded into the
    conv before it and, with ``channels_last``, weights and activations in channels_last. Weights changed on
    ``model`` afterwards are not seen: optimise again after loading others."""
    fast = model if inplace else copy.deepcopy(model)
    fast.eval()
    with torch.no_grad():
        for module in list(fast.modules()):
            if isinstance(module, nn.Sequential):
                _fold_sequential(module)
            elif isinstance(module, FactorizedReduce) and isinstance(module.bn, nn.BatchNorm2d):
                _fold_halves(module)
    if channels_last:
        fast.to(memory_format=torch.channels_last)
        if hasattr(fast, "channels_last"):
            fast.channels_last = True
    return fast


def _fold_sequential(seq: nn.Sequential) -> None:
    """Fold every BatchNorm2d that directly follows a Conv2d in ``seq``; the BN's place takes an Identity."""
    names = list(seq._modules)
    for before, name in itertools.pairwise(names):
        conv, bn = seq._modules[before], seq._modules[name]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
            seq._modules[before] = fuse_conv_bn_eval(conv, bn)
            seq._modules[name] = nn.Identity()


def _fold_halves(reduce: FactorizedReduce) -> None:
    """A factorized reduction's one BN spans two convs' outputs: fold each half into its own conv."""
    bn, half = reduce.bn, reduce.conv1.out_channels
    for conv, part in ((reduce.conv1, slice(0, half)), (reduce.conv2, slice(half, None))):
        weight, bias = fuse_conv_bn_weights(
            conv.weight, conv.bias, bn.running_mean[part], bn.running_var[part], bn.eps, bn.weight[part], bn.bias[part]
        )
        conv.weight, conv.bias = weight, bias
    reduce.bn = nn.Identity()
