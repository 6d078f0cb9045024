"""The training loop's settings: `TrainConfig`, one frozen value that every run of `fit` is described by."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import ConfigError

OPTIMIZERS = ("sgd", "rmsprop")
SCHEDULES = ("cosine", "exponential", "constant")
PRECISIONS = ("auto", "fp32", "bf16")
UNSCORED = ("check_loss_every",)  # settings that change no result: a run may resume with other values


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of the training loop. Defaults: a plain SGD + cosine run, no regularisation."""

    epochs: int = 10
    batch_size: int = 32  # the global batch: each of W replicas takes batch_size / W examples of it
    optimizer: str = "sgd"  # "sgd" (momentum, TF's MomentumOptimizer) or "rmsprop" (`RMSpropTF`)
    lr: float = 0.025  # peak learning rate, at `batch_size`
    momentum: float = 0.9
    rmsprop_decay: float = 0.9
    rmsprop_eps: float = 1.0
    weight_decay: float = 0.0  # L2 on conv/FC weights, TF-slim style (see the package docstring)
    schedule: str = "cosine"  # "cosine", "exponential" or "constant"
    lr_decay: float = 0.97  # exponential: factor per `lr_decay_epochs`
    lr_decay_epochs: float = 2.4
    warmup_epochs: float = 0.0  # linear warm-up from lr / warmup_steps
    label_smoothing: float = 0.0
    aux_weight: float = 0.4  # weight of the aux head's loss, when the model returns aux logits
    clip_grad_norm: float | None = None  # global norm of all gradients
    ema_decay: float | None = None  # parameter EMA, TF semantics
    precision: str = "auto"  # "auto": bf16 autocast on a CUDA device that supports it, fp32 otherwise
    channels_last: bool = False
    sync_bn: bool = False  # several replicas: BatchNorm over the global batch (default: each replica's own)
    eval_batch_size: int | None = None  # per replica; default 2 x batch_size / W
    seed: int = 0
    check_loss_every: int = 10  # steps between checks that the loss is finite (one device sync each)

    def __post_init__(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ConfigError(f"TrainConfig: {what}")

        need(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        need(self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        need(self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        need(self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        need(self.lr >= 0 and self.weight_decay >= 0, "lr and weight_decay must be >= 0")
        need(0 <= self.momentum < 1 and 0 < self.rmsprop_decay < 1, "momentum and rmsprop_decay must be in [0, 1)")
        need(self.rmsprop_eps > 0 and self.lr_decay_epochs > 0 and 0 < self.lr_decay <= 1, "bad lr decay or eps")
        need(0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        need(self.warmup_epochs >= 0 and self.aux_weight >= 0, "warmup_epochs and aux_weight must be >= 0")
        need(self.clip_grad_norm is None or self.clip_grad_norm > 0, "clip_grad_norm must be > 0 or None")
        need(self.ema_decay is None or 0 < self.ema_decay < 1, "ema_decay must be in (0, 1) or None")
        need(self.check_loss_every >= 1, f"check_loss_every must be >= 1 step, got {self.check_loss_every}")
        need(0 <= self.seed < 2**32, f"seed must be in [0, 2**32), numpy's range, got {self.seed}")

    def scaled(self, batch_size: int) -> TrainConfig:
        """The same run at another batch size: lr scaled linearly (as TF-slim's notes scale it with the number
        of replicas) and the EMA decay raised to ``batch_size / self.batch_size``, which keeps its horizon in
        examples. Epoch-based settings (schedule, warm-up) need no change."""
        k = batch_size / self.batch_size
        ema = None if self.ema_decay is None else self.ema_decay**k
        return dataclasses.replace(self, batch_size=batch_size, lr=self.lr * k, ema_decay=ema)
