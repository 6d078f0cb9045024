"""Parameter and mult-add counts, measured on a built model (never typed in).

Mult-adds are counted the way the paper's numbers are: one per multiply-accumulate of every convolution
and fully connected layer (``out_elements x in_channels / groups x kh x kw`` per conv, ``in x out`` per
linear layer), on a single image in eval mode (no aux head). BatchNorm, ReLU, pooling and additions are
not counted.
"""

from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module, with_bn_stats: bool = False) -> int:
    """Trainable parameters; with ``with_bn_stats`` also BN running mean/var (how Keras and the paper count)."""
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if with_bn_stats:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                n += m.running_mean.numel() + m.running_var.numel()
    return n


@torch.no_grad()
def count_mult_adds(model: nn.Module, input_size: int | tuple[int, int], in_chans: int = 3) -> int:
    """Multiply-accumulates of one forward pass on a single ``input_size`` image (eval mode)."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    total = 0

    def conv_hook(m: nn.Conv2d, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += out[0].numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += m.in_features * m.out_features

    handles = [
        m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    was_training = model.training
    try:
        model.eval()
        model(torch.zeros(1, in_chans, h, w, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total
