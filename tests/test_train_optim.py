"""train/optim.py: TensorFlow's RMSProp, the schedules and TF's EMA, against hand computations."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from nasnet_zoo.train import ModelEma, RMSpropTF, TrainConfig, learning_rate


def test_rmsprop_tf_semantics() -> None:
    """ms starts at 1, eps inside the sqrt, lr inside the momentum buffer (a lr change acts through it)."""
    w0 = np.array([0.5, -1.0, 2.0])
    grads = [np.array([0.1, -0.2, 0.3]), np.array([1.0, 0.5, -2.0]), np.array([-0.3, 0.0, 4.0])]
    lrs = [0.1, 0.1, 0.05]
    p = nn.Parameter(torch.tensor(w0))
    opt = RMSpropTF([p], lr=0.1, decay=0.9, momentum=0.9, eps=1.0)
    w, ms, mom = w0.copy(), np.ones(3), np.zeros(3)
    for g, lr in zip(grads, lrs, strict=True):
        opt.param_groups[0]["lr"] = lr
        p.grad = torch.tensor(g)
        opt.step()
        ms = ms + (1 - 0.9) * (g * g - ms)
        mom = 0.9 * mom + lr * g / np.sqrt(ms + 1.0)
        w = w - mom
        np.testing.assert_allclose(p.detach().numpy(), w, rtol=1e-14, atol=1e-15)
    # PyTorch's RMSprop with the same numbers is another optimiser
    q = nn.Parameter(torch.tensor(w0))
    torch_opt = torch.optim.RMSprop([q], lr=0.1, alpha=0.9, eps=1.0, momentum=0.9)
    for g, lr in zip(grads, lrs, strict=True):
        torch_opt.param_groups[0]["lr"] = lr
        q.grad = torch.tensor(g)
        torch_opt.step()
    assert np.abs(q.detach().numpy() - w).max() > 0.05


def test_schedules() -> None:
    spe = 10
    cos = TrainConfig(epochs=10, lr=1.0, schedule="cosine")
    assert learning_rate(cos, 0, spe) == 1.0 and learning_rate(cos, 50, spe) == pytest.approx(0.5)
    assert learning_rate(cos, 99, spe) == pytest.approx(0.5 * (1 + np.cos(np.pi * 99 / 100)))
    warm = dataclasses.replace(cos, warmup_epochs=1)
    assert [learning_rate(warm, s, spe) for s in range(10)] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert learning_rate(warm, 10, spe) == 1.0 and learning_rate(warm, 55, spe) == pytest.approx(0.5)
    exp = TrainConfig(epochs=10, lr=1.0, schedule="exponential", lr_decay=0.97, lr_decay_epochs=2.4)
    got = [learning_rate(exp, s, spe) for s in (0, 23, 24, 47, 48, 95, 96)]  # decay_steps = int(10 x 2.4) = 24
    assert got == pytest.approx([1, 1, 0.97, 0.97, 0.97**2, 0.97**3, 0.97**4])
    assert learning_rate(dataclasses.replace(exp, schedule="constant"), 77, spe) == 1.0


def test_model_ema_tf_semantics() -> None:
    model = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    ema = ModelEma(model, decay=0.5)
    shadow = model[0].weight.detach().clone()
    for n in range(4):
        with torch.no_grad():
            model[0].weight.add_(1.0)
            model[1].running_mean.add_(2.0)
            model[1].num_batches_tracked.add_(1)
        ema.update(model, n)
        d = min(0.5, (1 + n) / (10 + n))  # 0.1, 0.18, 0.25, 0.31 (< 0.5: TF's warm-up)
        shadow = d * shadow + (1 - d) * model[0].weight.detach()
        torch.testing.assert_close(ema.module[0].weight, shadow)
    assert ema.module[1].num_batches_tracked == 4 and 0 < ema.module[1].running_mean < model[1].running_mean
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())
