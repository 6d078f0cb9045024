"""THE training loop. The paper's recipes, the search's child networks and fine-tuning all train through `fit`.

Public API::

    TrainConfig(...)                    every setting of the loop; frozen; ``.scaled(batch_size)`` for another batch
    fit(model, train_data, val_data=None, config=TrainConfig(), out_dir=None, *, resume=False, device=None,
        num_workers=0, progress=False, on_epoch=None, param_groups=None) -> FitResult
    FitResult                           history (one dict per epoch), final/best validation accuracy, EMA model
    evaluate(model, data, *, batch_size=256, device=None, precision="auto", num_workers=0, progress=False) -> dict
    learning_rate(config, step, steps_per_epoch) -> float   the schedule: a pure function of the global step
    RMSpropTF, ModelEma                 TensorFlow's RMSProp and ExponentialMovingAverage
    Recipe, RECIPES, run_recipe(name, data_dir, ...)         the paper's named runs ("cifar10", "imagenet-*")

For example, a searched cell as a small child network on the bundled digits (about 4 s an epoch on one core)::

    train, val = nasnet_zoo.data.digits()
    model = create_model("nasnet_cifar", genotype=g, num_cells=3, filters=8, in_chans=1, num_classes=10, img_size=8)
    result = fit(model, train, val, TrainConfig(epochs=5, lr=0.05, weight_decay=5e-4, clip_grad_norm=5.0))
    result.final_val_acc, result.history[-1]   # keys: epoch step lr train_loss train_acc val_loss val_acc
                                               # val_acc5 [ema_val_loss ema_val_acc ema_val_acc5] seconds images_per_s

``fit`` takes any ``nn.Module`` classifier. A NASNet built with ``aux_head=True`` returns
`NASNetOutput(logits, aux_logits)` in training mode and gets ``aux_weight`` x the aux loss; a model with
``set_drop_path_progress`` is told ``step / total_steps`` before every step (ScheduledDropPath). Data may be a
``DataLoader`` (used as it is), a ``TensorDataset`` or an ``(x, y)`` pair of tensors (a fast path without a
DataLoader, the data moved to the device once), or any map-style ``Dataset`` (a DataLoader is built for it).
By default every parameter that requires a gradient trains at the scheduled learning rate; ``param_groups``
(timm's convention: dicts with ``params`` and an optional ``lr_scale``) give parts of the model a fraction of
it, as fine-tuning does for a backbone.

Semantics, chosen to match the authors' TensorFlow training:

* Weight decay is TF-slim's ``l2_regularizer``: ``weight_decay * w`` is added to the gradient of every conv
  and FC weight (the tensors with more than one dimension; never BN parameters or biases) *before* global-norm
  clipping, as a loss term would be. The optimizer itself has no decay.
* RMSProp is TF's (`RMSpropTF`): eps inside the square root, mean square starting at 1, lr inside momentum.
* The exponential schedule is TF's staircase ``exponential_decay``: ``lr * decay ** floor(t / decay_steps)``
  with ``decay_steps = int(steps_per_epoch * lr_decay_epochs)``; cosine is TF's single-period ``cosine_decay``.
  Warm-up (linear) comes first; the decay then runs over the remaining steps. Steps, not epochs, drive both.
* EMA is TF's ``ExponentialMovingAverage(decay, num_updates=step)`` over parameters and BN statistics. When it
  is on, the EMA weights are the ones scored for ``best``/``final`` (as TF evaluates the averaged model).
* Label smoothing applies to the main and the aux loss alike (TF-slim's ``softmax_cross_entropy``).

Reproducibility: ``fit`` seeds torch, numpy and random with ``config.seed`` (seed before building the model for a
fully reproducible run); each epoch's shuffle is drawn from a generator seeded by ``(seed, epoch)``. With
``out_dir``, a checkpoint ``last.pt`` is written after every epoch (model, optimizer, EMA, RNG states, epoch,
step, history; the schedule is a function of the step) and ``resume=True`` continues from it: on CPU the result
is bit-identical to an uninterrupted run. ``out_dir`` also gets ``metrics.jsonl`` (one line per epoch),
``curves.png`` and ``best.safetensors`` (the scored weights of the best validation epoch).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import random
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from . import distributed
from .distributed import EvalShards, Replicas, SeededExamples, TrainShards, reduce_eval
from .errors import ConfigError
from .files import atomic_write
from .weights import save_safetensors

OPTIMIZERS = ("sgd", "rmsprop")
SCHEDULES = ("cosine", "exponential", "constant")
PRECISIONS = ("auto", "fp32", "bf16")
CHECKPOINT = "last.pt"


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
    weight_decay: float = 0.0  # L2 on conv/FC weights, TF-slim style (see the module docstring)
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
    sync_bn: bool = False  # with several replicas: BatchNorm over the global batch (default: per replica)
    eval_batch_size: int | None = None  # default 2 x batch_size
    seed: int = 0

    def __post_init__(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(f"TrainConfig: {what}")

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

    def scaled(self, batch_size: int) -> TrainConfig:
        """The same run at another batch size: lr scaled linearly (as TF-slim's notes scale it with the number
        of replicas) and the EMA decay raised to ``batch_size / self.batch_size``, which keeps its horizon in
        examples. Epoch-based settings (schedule, warm-up) need no change."""
        k = batch_size / self.batch_size
        ema = None if self.ema_decay is None else self.ema_decay**k
        return dataclasses.replace(self, batch_size=batch_size, lr=self.lr * k, ema_decay=ema)


@dataclass
class FitResult:
    """What `fit` returns. Accuracies are fractions; they score the EMA weights when EMA is on."""

    history: list[dict[str, float]]  # one record per epoch, as in metrics.jsonl
    final_val_acc: float | None
    best_val_acc: float | None
    best_epoch: int | None  # 1-based
    steps: int
    seconds: float  # training and evaluation time, summed over resumed runs
    ema: nn.Module | None = field(default=None, repr=False)  # the averaged model, when config.ema_decay is set


# --- pieces of the loop -------------------------------------------------------------------------------------------
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
            raise ValueError(f"RMSpropTF: bad lr={lr}, decay={decay}, momentum={momentum} or eps={eps}")
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


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def _split_output(out: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(logits, aux_logits)`` from a model output: a tensor, or a `NASNetOutput` / pair."""
    if isinstance(out, tuple | list):
        return out[0], (out[1] if len(out) > 1 else None)
    return out, None


def _loss(out: Any, y: torch.Tensor, config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    logits, aux = _split_output(out)
    loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
    if aux is not None and config.aux_weight:
        loss = loss + config.aux_weight * F.cross_entropy(aux.float(), y, label_smoothing=config.label_smoothing)
    return loss, logits


class _Batches:
    """The batches of one dataset on the device, epoch by epoch, for this replica (`distributed`): training
    batches are its slice of every global batch of one order that depends on (seed, epoch) only, evaluation
    batches are dealt out whole. A given DataLoader is used as it is (by every replica, for evaluation only)."""

    def __init__(
        self, data: Any, batch_size: int, train: bool, seed: int, replicas: Replicas, num_workers: int = 0
    ) -> None:
        self.device = device = replicas.device
        self.tensors: tuple[torch.Tensor, torch.Tensor] | None = None
        self.shards: TrainShards | EvalShards | None = None
        if isinstance(data, tuple | list) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
            data = TensorDataset(*data)
        if isinstance(data, DataLoader):
            if train and replicas.active:
                raise ConfigError("with several replicas, fit needs the training data as a Dataset or tensors, "
                                  "not a DataLoader: each replica loads its own shard")  # fmt: skip
            self.loader = data
            return
        if not (isinstance(data, Dataset) and hasattr(data, "__len__")):
            raise TypeError(
                f"data must be a DataLoader, a TensorDataset, an (x, y) pair of tensors or a map-style Dataset, "
                f"got {type(data).__name__}"
            )
        n, r, w = len(data), replicas.rank, replicas.world_size
        tensors = isinstance(data, TensorDataset) and len(data.tensors) == 2
        keyed = not tensors  # a Dataset is read through SeededExamples
        self.shards = TrainShards(n, batch_size, seed, r, w, keyed) if train else EvalShards(n, batch_size, r, w)
        if tensors:
            self.tensors = (data.tensors[0].to(device), data.tensors[1].to(device))
            return
        self.loader = DataLoader(
            SeededExamples(data, seed) if train else data,
            batch_sampler=self.shards,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0,
            generator=torch.Generator().manual_seed(seed),  # worker seeds; draws nothing from the global RNG
        )

    def __len__(self) -> int:
        return len(self.shards) if self.shards is not None else len(self.loader)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if isinstance(self.shards, TrainShards):
            self.shards.set_epoch(epoch)
        if self.tensors is None:
            for x, y in self.loader:
                yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            return
        x, y = self.tensors
        for batch in self.shards:
            index = torch.tensor(batch, device=self.device)
            yield x[index], y[index]


@torch.no_grad()
def _evaluate(
    model: nn.Module, batches: _Batches, autocast: torch.dtype | None, channels_last: bool, progress: bool = False
) -> dict[str, float]:
    """Loss, top-1, top-5 over every example of ``batches``, summed per batch and reduced exactly over the
    replicas (`distributed.reduce_eval`): the same figures on any number of replicas."""
    was_training = model.training
    model.eval()
    rows = []
    data = batches.epoch(0)
    if progress:
        from tqdm import tqdm

        data = tqdm(data, total=len(batches), unit="batch", dynamic_ncols=True)
    for x, y in data:
        if channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(batches.device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            logits, _ = _split_output(model(x))
        logits = logits.float()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        row = [F.cross_entropy(logits, y, reduction="sum"), (top[:, 0] == y).sum(), (top == y[:, None]).any(1).sum()]
        rows.append(torch.stack([v.to(torch.float64) for v in row] + [torch.tensor(len(y), dtype=torch.float64)]))
    model.train(was_training)
    if isinstance(batches.shards, EvalShards):
        loss, top1, top5, n = reduce_eval(rows, batches.shards, 4)
    else:  # a given DataLoader: every replica ran all of it
        loss, top1, top5, n = (math.fsum(c) for c in torch.stack(rows).T.tolist()) if rows else (0, 0, 0, 0)
    if n == 0:
        raise ValueError("the evaluation data has no examples")
    return dict(loss=loss / n, acc1=top1 / n, acc5=top5 / n, n=int(n))


def evaluate(
    model: nn.Module,
    data: Any,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    precision: str = "auto",
    num_workers: int = 0,
    progress: bool = False,
) -> dict[str, float]:
    """Mean cross-entropy, top-1 and top-5 accuracy (fractions) and the count ``n`` of ``data`` (any form
    `fit` takes) in eval mode. The model is moved to ``device`` (default: CUDA when available); ``progress``
    shows a bar. Under torchrun the replicas share the batches and all return the totals."""
    replicas = distributed.setup(device)
    model.to(replicas.device)
    batches = _Batches(data, batch_size, False, 0, replicas, num_workers)
    return _evaluate(model, batches, _autocast_dtype(precision, replicas.device), False, progress)


# --- checkpoints, metrics, plots --------------------------------------------------------------------------------
def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return dict(
        torch=torch.get_rng_state(),
        cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        numpy=dict(kind=kind, keys=torch.from_numpy(keys.astype(np.int64)), pos=pos, has_gauss=has_gauss, gauss=gauss),
        python=random.getstate(),
    )


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    s = state["numpy"]
    np.random.set_state((s["kind"], s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["gauss"]))
    random.setstate(state["python"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp), durable=True)


def _load_checkpoint(path: Path, config: TrainConfig, steps_per_epoch: int) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved = state["config"]
    diff = {k: (saved.get(k), v) for k, v in dataclasses.asdict(config).items() if saved.get(k) != v}
    if diff:
        changes = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"{path} was written with another TrainConfig ({changes}); resume with the same settings")
    if state["steps_per_epoch"] != steps_per_epoch:
        raise ValueError(
            f"{path} was written with {state['steps_per_epoch']} steps per epoch, the data now gives "
            f"{steps_per_epoch}: resume with the same training data and batch size"
        )
    return state


_TIME_KEYS = ("seconds", "images_per_s")  # the only metrics that differ between identical runs


def _plot(history: list[dict[str, float]], path: Path) -> None:
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - matplotlib comes with the search extra
        warnings.warn("matplotlib is not installed, so no curves.png: pip install matplotlib", stacklevel=3)
        return
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    panels = (
        ("loss", ("train_loss", "val_loss", "ema_val_loss")),
        ("accuracy", ("train_acc", "val_acc", "ema_val_acc")),
    )
    for ax, (title, keys) in zip(fig.subplots(1, 3)[:2], panels, strict=False):
        for key in keys:
            if key in history[-1]:
                ax.plot(epochs, [h[key] for h in history], marker="." if len(epochs) < 30 else None, label=key)
        ax.set(title=title, xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    ax = fig.axes[2]
    ax.plot(epochs, [h["lr"] for h in history])
    ax.set(title="learning rate (last step of epoch)", xlabel="epoch")
    ax.grid(alpha=0.3)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100))


# --- the loop -----------------------------------------------------------------------------------------------------
def fit(
    model: nn.Module,
    train_data: Any,
    val_data: Any = None,
    config: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    progress: bool = False,
    on_epoch: Callable[[dict[str, float]], bool | None] | None = None,
    param_groups: list[dict[str, Any]] | None = None,
) -> FitResult:
    """Train ``model`` in place on ``train_data`` and score it on ``val_data`` after every epoch.

    Args:
        model: a classifier; it is moved to ``device`` and trained in place.
        train_data, val_data: a DataLoader, TensorDataset, ``(x, y)`` tensors or a map-style Dataset.
        config: the `TrainConfig` (default: ``TrainConfig()``).
        out_dir: where checkpoints, metrics.jsonl, curves.png and best.safetensors go; None writes nothing.
        resume: continue the run in ``out_dir`` from its last checkpoint (same config and data required).
        device: default CUDA when available, else CPU; under torchrun, ``cuda:LOCAL_RANK`` on CUDA.
        num_workers: DataLoader workers for a Dataset, per replica (ignored for tensors and given DataLoaders).
        progress: show a tqdm bar and a line per epoch.
        on_epoch: called with each epoch's record after its checkpoint is written; returning True stops.
        param_groups: optimizer groups, each ``dict(params=[...], lr_scale=s)`` (lr = s x the schedule's);
            default: one group of every parameter with ``requires_grad``.

    Raises FloatingPointError when the training loss is not finite at the end of an epoch.
    """
    config = config or TrainConfig()
    replicas = distributed.setup(device)
    device = replicas.device
    out = Path(out_dir) if out_dir is not None else None
    ckpt = out / CHECKPOINT if out is not None else None
    if replicas.main and resume and (ckpt is None or not ckpt.is_file()):
        raise FileNotFoundError(f"nothing to resume: no checkpoint at {ckpt}; run without resume to start afresh")
    if replicas.main and not resume and ckpt is not None and ckpt.exists():
        raise FileExistsError(f"{out} already holds a run ({ckpt}): pass resume=True to continue it, or a new out_dir")

    _seed_everything(distributed.replica_seed(config.seed, replicas.rank))
    model.to(device)
    if config.sync_bn and replicas.active:
        model = distributed.convert_sync_batchnorm(model, device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    net = distributed.data_parallel(model, replicas)  # DDP; the model itself on one replica
    batch = distributed.per_replica_batch(config.batch_size, replicas)
    train = _Batches(train_data, config.batch_size, True, config.seed, replicas, num_workers)
    val = None
    if val_data is not None:
        val = _Batches(val_data, config.eval_batch_size or 2 * batch, False, 0, replicas, num_workers)
    steps_per_epoch = len(train)
    if steps_per_epoch == 0:
        raise ValueError("the training data has no examples")
    total_steps = config.epochs * steps_per_epoch

    groups = param_groups or [dict(params=[p for p in model.parameters() if p.requires_grad])]
    params = [p for g in groups for p in g["params"]]
    decayed = [p for p in params if p.ndim > 1] if config.weight_decay else []
    if config.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    else:
        opt = RMSpropTF(groups, config.lr, config.rmsprop_decay, config.momentum, config.rmsprop_eps)
    ema = ModelEma(model, config.ema_decay) if config.ema_decay else None
    autocast = _autocast_dtype(config.precision, device)
    set_progress = getattr(model, "set_drop_path_progress", None)

    epoch, step, history = 0, 0, []
    best_acc: float | None = None
    best_epoch: int | None = None
    if resume:
        state = distributed.from_main(lambda: _load_checkpoint(ckpt, config, steps_per_epoch))
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.module.load_state_dict(state["ema"])
        rng = distributed.replica_rng(state, replicas.rank)
        if rng is not None:  # None: a replica the checkpoint's run did not have keeps its fresh seed
            _set_rng_state(rng)
        epoch, step, history = state["epoch"], state["step"], state["history"]
        best_acc, best_epoch = state["best_acc"], state["best_epoch"]
    if out is not None and replicas.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))

    bar = None
    if progress and replicas.main:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=step, unit="step", dynamic_ncols=True)
    lr = learning_rate(config, step, steps_per_epoch)
    while epoch < config.epochs:
        t0 = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        seen = 0
        for x, y in train.epoch(epoch):
            if config.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            lr = learning_rate(config, step, steps_per_epoch)
            for group in opt.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            if set_progress is not None:
                set_progress(step / total_steps)
            with torch.autocast(device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
                loss, logits = _loss(net(x), y, config)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if decayed:
                with_grad = [p for p in decayed if p.grad is not None]
                torch._foreach_add_([p.grad for p in with_grad], with_grad, alpha=config.weight_decay)
            if config.clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(params, config.clip_grad_norm)
            opt.step()
            distributed.average_bn_statistics(model)
            if ema is not None:
                ema.update(model, step)
            step += 1
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            if bar is not None:
                bar.update()
                if step % 50 == 0:
                    bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.3g}", refresh=False)
        epoch += 1
        loss_sum, correct, seen = distributed.all_sum(loss_sum, correct, torch.tensor(seen))
        record: dict[str, float] = dict(
            epoch=epoch, step=step, lr=lr, train_loss=loss_sum.item() / seen.item(), train_acc=(correct / seen).item()
        )
        if not math.isfinite(record["train_loss"]):
            raise FloatingPointError(
                f"training loss is {record['train_loss']} in epoch {epoch}: lower the learning rate or clip gradients"
            )
        if val is not None:
            m = _evaluate(model, val, autocast, config.channels_last)
            record.update(val_loss=m["loss"], val_acc=m["acc1"], val_acc5=m["acc5"])
            if ema is not None:
                m = _evaluate(ema.module, val, autocast, config.channels_last)
                record.update(ema_val_loss=m["loss"], ema_val_acc=m["acc1"], ema_val_acc5=m["acc5"])
        record.update(seconds=time.perf_counter() - t0, images_per_s=seen.item() / (time.perf_counter() - t0))
        history.append(record)
        score = record.get("ema_val_acc", record.get("val_acc"))
        scored = ema.module if ema is not None else model
        if score is not None and (best_acc is None or score > best_acc):
            best_acc, best_epoch = score, epoch
            if out is not None and replicas.main:
                save_safetensors(scored.state_dict(), out / "best.safetensors", {"epoch": str(epoch)})
        rng = distributed.gather_rng(_rng_state()) if out is not None else None
        if out is not None and replicas.main:
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            _save_checkpoint(
                ckpt,
                dict(
                    format="nasnet-zoo-train-1",
                    config=dataclasses.asdict(config),
                    steps_per_epoch=steps_per_epoch,
                    epoch=epoch,
                    step=step,
                    history=history,
                    best_acc=best_acc,
                    best_epoch=best_epoch,
                    model=model.state_dict(),
                    optimizer=opt.state_dict(),
                    ema=ema.module.state_dict() if ema is not None else None,
                    rng=rng[0],
                    replica_rng=rng[1:],
                ),
            )
            _plot(history, out / "curves.png")
        if bar is not None:
            shown = {k: f"{v:.4g}" for k, v in record.items() if k not in ("epoch", "step", *_TIME_KEYS)}
            line = f"epoch {epoch}/{config.epochs} " + " ".join(f"{k}={v}" for k, v in shown.items())
            bar.write(line, file=sys.stderr)
        if on_epoch is not None and distributed.from_main(functools.partial(on_epoch, record)):
            break
    if bar is not None:
        bar.close()
    distributed.barrier()  # every replica returns once the main one has written
    final = history[-1] if history else {}
    return FitResult(
        history=history,
        final_val_acc=final.get("ema_val_acc", final.get("val_acc")),
        best_val_acc=best_acc,
        best_epoch=best_epoch,
        steps=step,
        seconds=sum(h["seconds"] for h in history),
        ema=ema.module if ema is not None else None,
    )


# --- the paper's recipes --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """One of the paper's training runs: the model, its data, its training-time model settings and the loop's
    `TrainConfig`. Every recipe trains with the aux head on (TF-slim's ``use_aux_head=1``)."""

    name: str
    model: str  # the zoo model it trains by default
    dataset: str  # "cifar10" (torchvision's folder) or "imagenet" (an ImageFolder with train/ and val/)
    config: TrainConfig
    drop_path_keep: float  # ScheduledDropPath keep probability reached at the end of training
    dropout_keep: float  # before the classifier
    cutout: int = 0  # CIFAR: side of the Cutout square
    notes: str = ""


_IMAGENET = TrainConfig(
    optimizer="rmsprop", momentum=0.9, rmsprop_decay=0.9, rmsprop_eps=1.0, schedule="exponential", lr_decay=0.97,
    lr_decay_epochs=2.4, label_smoothing=0.1, aux_weight=0.4, clip_grad_norm=10.0, ema_decay=0.9999,
    batch_size=1600, epochs=312,
)  # fmt: skip
_IMAGENET_NOTES = (
    "TF-slim's notes train with sync SGD over {r} replicas of batch {b} at 'learning rate {lr} * {r}': one "
    "update averages {r} x {b} = 1600 examples at lr {total}. Use .scaled(B) (CLI --batch-size) for one device: "
    "lr scales linearly ({lr} at batch {b}). 312 epochs = TF-slim's total_training_steps 250,000 x 1600 / "
    "1,281,167 (for CIFAR that field is exactly 600 epochs x 50,000 / 32, the training length)."
)

#: The paper's recipes (REFERENCE §4; TF-slim nasnet.py training notes and arg scopes).
RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe(
            "cifar10", "nasnet_a_cifar", "cifar10",
            TrainConfig(epochs=600, batch_size=32, optimizer="sgd", lr=0.025, momentum=0.9, weight_decay=5e-4,
                        schedule="cosine", aux_weight=0.4, clip_grad_norm=5.0),
            drop_path_keep=0.6, dropout_keep=1.0, cutout=16,
            notes="Crop 32 from 40 (zero padding 4), flip, Cutout 16: the paper's '+ cutout' rows.",
        ),
        Recipe(
            "imagenet-mobile", "nasnet_a_mobile", "imagenet",
            dataclasses.replace(_IMAGENET, lr=0.04 * 50, weight_decay=4e-5),
            drop_path_keep=1.0, dropout_keep=0.5,
            notes=_IMAGENET_NOTES.format(r=50, b=32, lr=0.04, total=2.0),
        ),
        Recipe(
            "imagenet-large", "nasnet_a_large", "imagenet",
            dataclasses.replace(_IMAGENET, lr=0.015 * 100, weight_decay=5e-5),
            drop_path_keep=0.7, dropout_keep=0.5,
            notes=_IMAGENET_NOTES.format(r=100, b=16, lr=0.015, total=1.5),
        ),
    ]
}  # fmt: skip


def _recipe_data(
    recipe: Recipe, data_dir: str | Path, model_cfg: dict[str, Any], download: bool = False
) -> tuple[Dataset, Dataset, int]:
    """``(train, val, num_classes)`` for a recipe: CIFAR-10's train/test split from torchvision's folder, or an
    ImageFolder's ``train/`` and ``val/`` with the training augmentation and the TF release's eval transform."""
    from . import data

    size, mean, std = int(model_cfg["input_size"][-1]), model_cfg["mean"], model_cfg["std"]
    if recipe.dataset == "cifar10":
        augment = data.cifar_train_transform(recipe.cutout, size, mean=mean, std=std)
        train = data.cifar10(data_dir, True, augment, download)
        val = data.cifar10(data_dir, False, data.eval_transform(model_cfg, "tf"))
        return train, val, len(train.classes)
    root = Path(data_dir)
    train = data.image_folder(root / "train", data.imagenet_train_transform(size, mean, std))
    val = data.image_folder(root / "val", data.eval_transform(model_cfg, "tf"))
    if val.classes != train.classes:
        raise ValueError(f"{root}/val has other classes than {root}/train; both need the same class folders")
    return train, val, len(train.classes)


def run_recipe(
    name: str,
    data_dir: str | Path,
    *,
    model: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    download: bool = False,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    progress: bool = False,
    **model_kwargs: Any,
) -> FitResult:
    """Run a named recipe end to end: build the model (aux head, the recipe's dropout and drop path), load the
    data, `fit`. ``batch_size`` rescales the recipe with `TrainConfig.scaled`; ``model_kwargs`` go to
    `create_model` (e.g. ``genotype=``, ``num_cells=``, ``filters=``, ``img_size=``)."""
    from timm.models import get_pretrained_cfg

    from .zoo import create_model

    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    config = recipe.config if batch_size is None else recipe.config.scaled(batch_size)
    config = config if epochs is None else dataclasses.replace(config, epochs=epochs)
    model = model or recipe.model
    pretrained_cfg = get_pretrained_cfg(model)
    if pretrained_cfg is None:
        raise ValueError(f"unknown model {model!r}; see `nasnet-zoo list`")
    cfg = pretrained_cfg.to_dict()
    if "img_size" in model_kwargs:
        cfg["input_size"] = (3, model_kwargs["img_size"], model_kwargs["img_size"])
    train, val, num_classes = _recipe_data(recipe, data_dir, cfg, download)
    torch.manual_seed(config.seed)  # the initial weights, too, follow the seed
    net = create_model(
        model,
        aux_head=True,
        drop_path_rate=1 - recipe.drop_path_keep,
        drop_rate=1 - recipe.dropout_keep,
        **{"num_classes": num_classes, **model_kwargs},
    )
    return fit(
        net, train, val, config, out_dir, resume=resume, device=device, num_workers=num_workers, progress=progress
    )
