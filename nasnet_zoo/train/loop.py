"""THE training loop, `fit`: the paper's recipes, the search's child networks and fine-tuning all train through it.

`fit` reads top to bottom: check the output folder, build the optimiser (`_Trainer`), restore a checkpoint
(`_resume`), then per epoch train (`_train_epoch`), score (`_validate`), keep the best weights (`_keep_best`) and
write the checkpoint (`_save`). The semantics of each piece are in the package docstring. On several replicas
(torchrun) the same steps run on each; `distributed` holds what differs: the DDP wrapper, the sums over the
replicas, and which replica writes.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, DataError
from ..weights import save_safetensors
from . import distributed, outputs
from .batches import Batches, autocast_dtype
from .checkpoint import CHECKPOINT, load_checkpoint, rng_state, save_checkpoint, seed_everything, set_rng_state
from .config import TrainConfig
from .divergence import LossWatch, check_weights
from .evaluate import evaluate_batches, scored_accuracy, split_output
from .optim import ModelEma, RMSpropTF, learning_rate
from .run_folder import claim


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


@dataclass
class _Progress:
    """Where a run stands: what its checkpoint saves and a resume restores (with the weights and RNG states)."""

    epoch: int = 0
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_acc: float | None = None
    best_epoch: int | None = None


class _Trainer:
    """One run's fixed parts: the model on its device, the optimiser over its parameter groups, the EMA, and
    how one step is taken (schedule, drop-path progress, loss, TF-slim L2, clipping, update, EMA)."""

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        device: torch.device,
        steps_per_epoch: int,
        param_groups: list[dict[str, Any]] | None,
        replicas: distributed.Replicas,
    ) -> None:
        self.model, self.config, self.device = model, config, device
        self.net = distributed.data_parallel(model, replicas)  # what the step runs: DDP, or the model itself
        self.steps_per_epoch, self.total_steps = steps_per_epoch, config.epochs * steps_per_epoch
        groups = param_groups or [dict(params=[p for p in model.parameters() if p.requires_grad])]
        self.params = [p for g in groups for p in g["params"]]
        self.decayed = [p for p in self.params if p.ndim > 1] if config.weight_decay else []
        if config.optimizer == "sgd":
            self.opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
        else:
            self.opt = RMSpropTF(groups, config.lr, config.rmsprop_decay, config.momentum, config.rmsprop_eps)
        self.ema = ModelEma(model, config.ema_decay) if config.ema_decay else None
        self.autocast = autocast_dtype(config.precision, device)
        self.set_progress = getattr(model, "set_drop_path_progress", None)

    @property
    def scored(self) -> nn.Module:
        """The model whose accuracy counts (`scored_accuracy`): the EMA's when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def lr(self, step: int) -> float:
        return learning_rate(self.config, step, self.steps_per_epoch)

    def step(self, x: torch.Tensor, y: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step at global step ``step``; returns the (detached) loss and logits."""
        config = self.config
        if config.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        lr = self.lr(step)
        for group in self.opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        if self.set_progress is not None:
            self.set_progress(step / self.total_steps)
        with torch.autocast(self.device.type, dtype=self.autocast or torch.bfloat16, enabled=bool(self.autocast)):
            loss, logits = _loss(self.net(x), y, config)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.decayed:
            with_grad = [p for p in self.decayed if p.grad is not None]
            torch._foreach_add_([p.grad for p in with_grad], with_grad, alpha=config.weight_decay)
        if config.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.params, config.clip_grad_norm)
        self.opt.step()
        distributed.average_bn_statistics(self.model)  # per-replica BN: the same statistics on every replica
        if self.ema is not None:
            self.ema.update(self.model, step)
        return loss.detach(), logits.detach()


def _loss(out: Any, y: torch.Tensor, config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    logits, aux = split_output(out)
    loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
    if aux is not None and config.aux_weight:
        loss = loss + config.aux_weight * F.cross_entropy(aux.float(), y, label_smoothing=config.label_smoothing)
    return loss, logits


# --- the steps of a run -------------------------------------------------------------------------------------------
def _resume(trainer: _Trainer, ckpt: Path) -> _Progress:
    """Restore weights, optimiser, EMA and RNG states from ``ckpt``; return where the run stood."""
    state = distributed.from_main(lambda: load_checkpoint(ckpt, trainer.config, trainer.steps_per_epoch))
    try:
        trainer.model.load_state_dict(state["model"])
        trainer.opt.load_state_dict(state["optimizer"])
        if trainer.ema is not None:
            trainer.ema.module.load_state_dict(state["ema"])
    except (RuntimeError, ValueError, KeyError) as e:
        why = str(e).strip().splitlines()[0]
        raise ConfigError(f"{ckpt} is another model's checkpoint ({why}); resume with the same model") from None
    rng = distributed.replica_rng(state, distributed.rank())
    if rng is not None:  # None: a replica that the checkpoint's run did not have keeps its fresh seed
        set_rng_state(rng)
    return _Progress(state["epoch"], state["step"], state["history"], state["best_acc"], state["best_epoch"])


def _train_epoch(trainer: _Trainer, train: Batches, progress: _Progress, bar: Any) -> tuple[dict[str, float], int]:
    """One pass over the training data: the epoch's record (epoch, step, last lr, mean loss and accuracy) and
    the number of examples seen."""
    trainer.model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=trainer.device)
    correct = torch.zeros((), dtype=torch.long, device=trainer.device)
    seen = 0
    watch = LossWatch(trainer.config.check_loss_every, trainer.config.lr)
    for x, y in train.epoch(progress.epoch):
        loss, logits = trainer.step(x, y, progress.step)
        watch.add(loss, progress.step)
        progress.step += 1
        loss_sum += loss * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        if bar is not None:
            bar.update()
            if progress.step % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{trainer.lr(progress.step - 1):.3g}", refresh=False)
    watch.check()
    progress.epoch += 1
    for model, whose in ((trainer.model, "the weights"), (trainer.ema and trainer.ema.module, "the EMA weights")):
        if model is not None:
            check_weights(model, f"{whose} after epoch {progress.epoch}", trainer.config.lr)
    loss_sum, correct, total = distributed.all_sum(loss_sum, correct, torch.tensor(seen))  # over the replicas
    seen = int(total.item())
    record: dict[str, float] = dict(
        epoch=progress.epoch, step=progress.step, lr=trainer.lr(progress.step - 1),
        train_loss=loss_sum.item() / seen, train_acc=correct.item() / seen,
    )  # fmt: skip
    return record, seen


def _validate(trainer: _Trainer, val: Batches) -> dict[str, float]:
    """Validation loss and top-1/top-5 of the model, and of its EMA when there is one."""
    m = evaluate_batches(trainer.model, val, trainer.autocast, trainer.config.channels_last)
    record = dict(val_loss=m["loss"], val_acc=m["acc1"], val_acc5=m["acc5"])
    if trainer.ema is not None:
        m = evaluate_batches(trainer.ema.module, val, trainer.autocast, trainer.config.channels_last)
        record.update(ema_val_loss=m["loss"], ema_val_acc=m["acc1"], ema_val_acc5=m["acc5"])
    return record


def _keep_best(trainer: _Trainer, progress: _Progress, record: dict[str, float], out: Path | None) -> None:
    """Remember the epoch when its scored accuracy beats the best so far, and write its weights."""
    score = scored_accuracy(record)
    if score is None or (progress.best_acc is not None and score <= progress.best_acc):
        return
    progress.best_acc, progress.best_epoch = score, progress.epoch
    if out is not None:
        save_safetensors(trainer.scored.state_dict(), out / outputs.BEST, {"epoch": str(progress.epoch)})


def _save(trainer: _Trainer, progress: _Progress, out: Path) -> None:
    """The epoch's metrics line, the checkpoint and the curves, by the main replica (with every replica's RNG)."""
    rng = distributed.gather_rng(rng_state())
    if not distributed.is_main():
        return
    outputs.append_metrics(out, progress.history[-1])
    state = dict(
        config=dataclasses.asdict(trainer.config), steps_per_epoch=trainer.steps_per_epoch,
        epoch=progress.epoch, step=progress.step, history=progress.history,
        best_acc=progress.best_acc, best_epoch=progress.best_epoch,
        model=trainer.model.state_dict(), optimizer=trainer.opt.state_dict(),
        ema=trainer.ema.module.state_dict() if trainer.ema is not None else None, rng=rng[0], replica_rng=rng[1:],
    )  # fmt: skip
    save_checkpoint(out / CHECKPOINT, state)
    outputs.plot_curves(progress.history, out / outputs.CURVES)


def _bar(progress: bool, total: int, initial: int) -> Any:
    """A tqdm bar over the steps, when asked for and tqdm is installed."""
    if not progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with the search extra; the epoch lines remain
        return None
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


def _report(bar: Any, record: dict[str, float], epochs: int) -> None:
    """The epoch's line on stderr (through the bar, when there is one, so the two do not tangle)."""
    line = outputs.epoch_line(record, epochs)
    if bar is not None:
        bar.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr, flush=True)


def _batches(
    model: nn.Module,
    train_data: Any,
    val_data: Any,
    config: TrainConfig,
    replicas: distributed.Replicas,
    num_workers: int,
) -> tuple[Batches, Batches | None]:
    """Put the model on its device (global BatchNorms, channels-last when asked) and this replica's share of the
    data into batches there."""
    per_replica = distributed.per_replica_batch(config.batch_size, replicas)  # a batch that does not split: error
    model.to(replicas.device)
    if config.sync_bn and replicas.active:
        distributed.convert_sync_batchnorm(model, replicas.device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    train = Batches(train_data, config.batch_size, True, config.seed, replicas, num_workers)
    if len(train) == 0:
        raise DataError("the training data has no examples")
    if val_data is None:
        return train, None
    return train, Batches(val_data, config.eval_batch_size or 2 * per_replica, False, 0, replicas, num_workers)


# --- the loop -----------------------------------------------------------------------------------------------------
def fit(
    model: nn.Module,
    train_data: Any,
    val_data: Any = None,
    config: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    progress: bool = False,
    quiet: bool = False,
    on_epoch: Callable[[dict[str, float]], bool | None] | None = None,
    param_groups: list[dict[str, Any]] | None = None,
) -> FitResult:
    """Train ``model`` in place on ``train_data`` and score it on ``val_data`` after every epoch.

    Args:
        model: a classifier; it is moved to ``device`` and trained in place.
        train_data, val_data: a DataLoader, TensorDataset, ``(x, y)`` tensors or a map-style Dataset.
        config: the `TrainConfig` (default: ``TrainConfig()``).
        out_dir: where checkpoints, metrics.jsonl, curves.png and best.safetensors go; None writes nothing.
            This process holds the folder for the run's life (a second one gets `RunError` naming it).
        resume: continue the run in ``out_dir`` from its last checkpoint (same config and data required).
        overwrite: start afresh in an ``out_dir`` that holds an earlier run, removing its outputs; without it
            such a folder is refused.
        device: default CUDA when available, else CPU; under torchrun ``cuda:LOCAL_RANK`` on CUDA.
        num_workers: DataLoader workers for a Dataset, per replica (ignored for tensors and given DataLoaders).
        progress: show a tqdm bar over the steps.
        quiet: print nothing (by default one line per epoch goes to stderr).
        on_epoch: called with each epoch's record after its checkpoint is written; returning True stops (on
            several replicas it runs on the main one, and its answer stops them all).
        param_groups: optimizer groups, each ``dict(params=[...], lr_scale=s)`` (lr = s x the schedule's);
            default: one group of every parameter with ``requires_grad``.

    Raises `TrainingError` when the loss (checked every ``config.check_loss_every`` steps) or the weights (checked
    every epoch, before anything is written) are not finite.
    """
    config = config or TrainConfig()
    replicas = distributed.setup(device)  # one, or this process's place among torchrun's replicas
    device = replicas.device
    out = Path(out_dir) if out_dir is not None else None
    with claim(out, resume=resume, overwrite=overwrite):  # by the main replica only
        seed_everything(distributed.replica_seed(config.seed, replicas.rank))
        train, val = _batches(model, train_data, val_data, config, replicas, num_workers)
        trainer = _Trainer(model, config, device, len(train), param_groups, replicas)
        state = _resume(trainer, out / CHECKPOINT) if resume and out is not None else _Progress()
        if out is not None and resume and replicas.main:
            outputs.write_metrics(out, state.history)  # drop the lines of epochs after the checkpoint

        bar = _bar(progress and not quiet and replicas.main, trainer.total_steps, state.step)
        try:
            while state.epoch < config.epochs:
                t0 = time.perf_counter()
                record, seen = _train_epoch(trainer, train, state, bar)
                if val is not None:
                    record.update(_validate(trainer, val))
                seconds = time.perf_counter() - t0
                record.update(seconds=seconds, images_per_s=seen / seconds)
                state.history.append(record)
                _keep_best(trainer, state, record, out if replicas.main else None)
                if out is not None:
                    _save(trainer, state, out)
                if not quiet and replicas.main:
                    _report(bar, record, config.epochs)
                if on_epoch is not None and distributed.from_main(functools.partial(on_epoch, record)):
                    break
        finally:
            if bar is not None:
                bar.close()  # before any error's message
        distributed.barrier()  # every replica returns once the main one has written
    final = state.history[-1] if state.history else {}
    return FitResult(
        history=state.history, final_val_acc=scored_accuracy(final), best_val_acc=state.best_acc,
        best_epoch=state.best_epoch, steps=state.step, seconds=sum(h["seconds"] for h in state.history),
        ema=trainer.ema.module if trainer.ema is not None else None,
    )  # fmt: skip
