"""Scoring a classifier: `evaluate` (mean cross-entropy, top-1, top-5 over any data `fit` takes), and
`scored_accuracy`, the one definition of which accuracy of an epoch counts (the EMA model's when it is kept)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError
from . import distributed
from .batches import Batches, autocast_dtype
from .distributed import EvalShards, reduce_eval


def scored_accuracy(record: dict[str, float]) -> float | None:
    """The validation accuracy an epoch's record is scored by: the EMA weights' when the run keeps an EMA (as TF
    evaluates the averaged model), else the trained weights'; None without validation data. `fit` chooses its
    best epoch by it, fine-tuning's early stopping and the search's children are scored by it."""
    return record.get("ema_val_acc", record.get("val_acc"))


def split_output(out: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(logits, aux_logits)`` from a model output: a tensor, or a `NASNetOutput` / pair."""
    if isinstance(out, tuple | list):
        return out[0], (out[1] if len(out) > 1 else None)
    return out, None


@torch.no_grad()
def evaluate_batches(
    model: nn.Module, batches: Batches, autocast: torch.dtype | None, channels_last: bool, progress: bool = False
) -> dict[str, float]:
    """`evaluate` over prepared `Batches`, in the given autocast dtype; the model's train/eval mode is kept. Sums
    per batch, reduced exactly over the replicas (`distributed.reduce_eval`): the same figures on any number."""
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
            logits, _ = split_output(model(x))
        logits = logits.float()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        row = [F.cross_entropy(logits, y, reduction="sum"), (top[:, 0] == y).sum(), (top == y[:, None]).any(1).sum()]
        rows.append(torch.stack([v.to(torch.float64) for v in row] + [y.new_tensor(len(y), dtype=torch.float64)]))
    model.train(was_training)
    if isinstance(batches.shards, EvalShards):
        loss, top1, top5, n = reduce_eval(rows, batches.shards, 4)
    else:  # a given DataLoader: every replica ran all of it
        loss, top1, top5, n = (math.fsum(c) for c in torch.stack(rows).T.tolist()) if rows else (0, 0, 0, 0)
    if n == 0:
        raise DataError("the evaluation data has no examples")
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
    batches = Batches(data, batch_size, False, 0, replicas, num_workers)
    return evaluate_batches(model, batches, autocast_dtype(precision, replicas.device), False, progress)
