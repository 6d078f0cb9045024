"""How a fresh NASNet's weights start: `init_conv` for every conv, `init_head` for every new classifier, and
`make_head`, the one function that makes a head (the build, a new head on pretrained weights, ``reset_classifier``).

Released weights overwrite all of this; it decides what a model trained from scratch, a fresh model's eval-mode
outputs and a fine-tuning run's first steps look like. The choices are measured by ``python -m benchmarks.heads``
(benchmarks/results/heads.md).
"""

from __future__ import annotations

from timm.layers import create_classifier
from torch import nn


def init_conv(conv: nn.Conv2d) -> None:
    """A fresh conv's weights: normal with std ``1 / sqrt(fan_in)`` (fan_in = input channels per group x kernel area).

    Every conv is followed by a BatchNorm, so in training mode the scale of a conv's weights changes nothing in
    the forward pass; in eval mode a fresh model's BNs are the identity (running mean 0, variance 1) and the
    scale compounds over the depth. At ``1 / sqrt(fan_in)`` each conv keeps the second moment of its input, the
    ReLU before it halves it and the two-input sums of a cell double it, so a fresh model's eval-mode activations
    stay O(1) through every cell: pooled features of RMS 0.1-0.2 on the CIFAR row at 32 px and the mobile row at
    96 px. TF-slim's ``variance_scaling_initializer(mode="FAN_OUT")`` (std ``sqrt(2 / fan_out)``, as PyTorch's
    ``kaiming_normal_(mode="fan_out")``) grows them 1.5-2x per cell, to 1e4 there, and timm's default (PyTorch's
    ``kaiming_uniform_(a=sqrt(5))``, std ``1 / sqrt(3 fan_in)``) shrinks them to 1e-4. Trained from scratch for an
    epoch on the digits, this init is not worse than either (benchmarks/results/heads.md). Released weights
    overwrite all of this.
    """
    nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="linear")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def init_head(fc: nn.Linear) -> None:
    """A new classifier's weights, however the head is made (the build, a new head for other classes on pretrained
    weights, `NASNet.reset_classifier`, the aux head): timm's convention, PyTorch's ``nn.Linear`` default, weights
    and bias uniform in ``±1 / sqrt(features)`` (std ``1 / sqrt(3 features)``, whatever the number of classes).

    TF-slim initialised its logits layer as every other layer, ``variance_scaling_initializer(mode="FAN_OUT")``:
    std ``sqrt(2 / classes)``, 0.045 for its 1001 classes, but 1.0 for 2, so that a few-class head starts with
    logits of 10-60 and a cross-entropy of 5-7 (benchmarks/results/heads.md). Measured on the digits (from scratch,
    and a new head on a pretrained backbone for 5 and for 2 classes), timm's init, zeros and a normal of std 1e-3
    all start within 0.1 of ``log(classes)`` and reach the same accuracy after one epoch within the seeds' spread,
    1 to 5.5 points above the fan-out init. Of those, timm's is what a timm user gets from ``reset_classifier`` on
    any model, and with it a fresh model's outputs still depend on its input (a zero head makes every output the
    same, and a check of a fresh model against an export or another layout then compares nothing).
    """
    fc.reset_parameters()


def make_head(
    num_features: int, num_classes: int, pool_type: str = "avg", drop_rate: float = 0.0
) -> tuple[nn.Module, nn.Module, nn.Module]:
    """``(global_pool, dropout, classifier)`` as timm's ``create_classifier`` makes them, the classifier
    initialised by `init_head` (an ``nn.Identity`` when ``num_classes`` is 0)."""
    pool, drop, fc = create_classifier(num_features, num_classes, pool_type=pool_type, drop_rate=drop_rate)
    if isinstance(fc, nn.Linear):
        init_head(fc)
    return pool, drop, fc
