"""Diverged training, caught before it is written: `LossWatch` checks the training loss every few steps (one
device sync per check), `check_weights` checks a model's parameters and buffers before they are saved. Both
raise `TrainingError` with one line that says where training diverged and what to do."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import TrainingError


def advice(lr: float) -> str:
    """What to do about a diverged run."""
    return f"lower the learning rate (--lr, now {lr:g}) or clip gradients (clip_grad_norm)"


class LossWatch:
    """The losses of the last ``every`` steps, kept on the device and checked together: the first non-finite one
    raises `TrainingError` naming its step (1-based)."""

    def __init__(self, every: int, lr: float) -> None:
        self.every, self.lr = every, lr
        self.losses: list[torch.Tensor] = []
        self.first_step = 0

    def add(self, loss: torch.Tensor, step: int) -> None:
        """Record the loss of 0-based global step ``step``; check when ``every`` have gathered."""
        if not self.losses:
            self.first_step = step
        self.losses.append(loss)
        if len(self.losses) >= self.every:
            self.check()

    def check(self) -> None:
        """Check the losses gathered so far (the loop calls it at the end of every epoch too)."""
        if not self.losses:
            return
        losses = torch.stack(self.losses)
        self.losses = []
        finite = torch.isfinite(losses)
        if bool(finite.all()):
            return
        i = int((~finite).nonzero()[0, 0])
        value = float(losses[i])
        raise TrainingError(f"training diverged at step {self.first_step + i + 1} (loss {value}): {advice(self.lr)}")


def first_non_finite(module: nn.Module) -> str | None:
    """The name of the first parameter or float buffer of ``module`` that holds a NaN or an infinity, or None."""
    named = [(k, t) for k, t in module.state_dict().items() if t.is_floating_point() and t.numel()]
    if not named:
        return None
    finite = torch.stack([torch.isfinite(t).all() for _, t in named])
    if bool(finite.all()):
        return None
    return named[int((~finite).nonzero()[0, 0])][0]


def check_weights(module: nn.Module, what: str, lr: float | None = None) -> None:
    """Raise `TrainingError` when ``module`` (described as ``what``, e.g. "the weights after epoch 3") holds a
    non-finite value; nothing is written from a model that fails this."""
    name = first_non_finite(module)
    if name is not None:
        todo = advice(lr) if lr is not None else "train it again with a lower learning rate"
        raise TrainingError(f"training diverged: {what} are not finite ({name}); {todo}")
