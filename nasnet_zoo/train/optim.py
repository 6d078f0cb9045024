"""TensorFlow's optimiser pieces as NASNet was trained with them: `RMSpropTF` (``tf.train.RMSPropOptimizer``),
`ModelEma` (``tf.train.ExponentialMovingAverage``) and the learning-rate schedule `learning_rate`."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .config import TrainConfig


class RMSpropTF(torch.optim.Optimizer):
    """RMSProp as TensorFlow applies it (``tf.train.RMSPropOptimizer``, kernel ``ApplyRMSProp``)::

        ms  <- ms + (1 - decay) * (g^2 - ms)        ms starts at 1 (TF initialises the slot with ones)
        mom <- momentum * mom + lr * g / sqrt(ms + eps)
        w   <- w - mom

    ``torch.optim.RMSprop`` differs where it matters at NASNet's eps = 1.0: eps outside the square root, ms
    starting at 0, and lr applied after the momentum buffer rather than inside it.
    """

    def __init__(self, params: Any, lr: float, decay: float = 0.9, momentum: float = 0.9, eps: float = 1.0) -> None:
        if lr < 0 or not 0 < decay < 1 or not 0 <= momentum < 1 or eps <= 0:
            raise ConfigError(
                f"RMSpropTF: bad lr={lr}, decay={decay}, momentum={momentum} or eps={eps}: lr >= 0, decay in "
                "(0, 1), momentum in [0, 1) and eps > 0"
            )
        super().__init__(params, dict(lr=lr, decay=decay, momentum=momentum, eps=eps))

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if not self.state[p]:
                    self.state[p].update(ms=torch.ones_like(p), mom=torch.zeros_like(p))
            grads = [p.grad for p in params]
            ms = [self.state[p]["ms"] for p in params]
            mom = [self.state[p]["mom"] for p in params]
            delta = torch._foreach_mul(grads, grads)
            torch._foreach_sub_(delta, ms)
            torch._foreach_add_(ms, delta, alpha=1 - group["decay"])
            denom = torch._foreach_add(ms, group["eps"])
            torch._foreach_sqrt_(denom)
            torch._foreach_mul_(mom, group["momentum"])
            torch._foreach_addcdiv_(mom, grads, denom, value=group["lr"])
            torch._foreach_sub_(params, mom)
        return loss


class ModelEma:
    """TF's ``ExponentialMovingAverage(decay, num_updates)`` of a model's parameters and float buffers (BN
    statistics); integer buffers are copied. Update ``n`` (0-based) uses ``d = min(decay, (1 + n) / (10 + n))``
    and ``shadow -= (1 - d) * (shadow - value)``. ``module`` is the averaged copy, in eval mode."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, num_updates: int) -> None:
        d = min(self.decay, (1 + num_updates) / (10 + num_updates))
        shadow, values = [], []
        for s, v in zip(self.module.state_dict().values(), model.state_dict().values(), strict=True):
            if s.is_floating_point():
                shadow.append(s)
                values.append(v)
            else:
                s.copy_(v)
        torch._foreach_lerp_(shadow, values, 1 - d)


def learning_rate(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate at global step ``step`` (0-based): warm-up, then cosine / exponential / constant."""
    warmup = round(config.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    t, span = step - warmup, max(config.epochs * steps_per_epoch - warmup, 1)
    if config.schedule == "cosine":
        return 0.5 * config.lr * (1 + math.cos(math.pi * min(t, span) / span))
    if config.schedule == "exponential":
        decay_steps = max(int(steps_per_epoch * config.lr_decay_epochs), 1)
        return config.lr * config.lr_decay ** (t // decay_steps)
    return config.lr
