"""train/evaluate.py: top-1 / top-5 / loss against an independent count, and the one definition of the scored
accuracy (the EMA model's when a run keeps one), which `fit`'s best epoch and fine-tuning's early stop share."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasnet_zoo.finetune import _early_stop
from nasnet_zoo.train import TrainConfig, evaluate, fit, scored_accuracy
from tests.train_testing import small_net

pytestmark = pytest.mark.usefixtures("one_thread")


def test_evaluate_matches_an_independent_count() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(37, 4), torch.randint(0, 7, (37,))
    model = nn.Linear(4, 7)
    m = evaluate(model, (x, y), batch_size=8, device="cpu")
    with torch.no_grad():
        logits = model(x)
    ranks = (logits > logits.gather(1, y[:, None])).sum(1)  # how many classes score above the true one
    assert m["n"] == 37
    assert m["acc1"] == (ranks == 0).sum().item() / 37 and m["acc5"] == (ranks < 5).sum().item() / 37
    assert m["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)


def test_scored_accuracy_is_the_ema_models_when_kept() -> None:
    assert scored_accuracy(dict(val_acc=0.5)) == 0.5
    assert scored_accuracy(dict(val_acc=0.5, ema_val_acc=0.75)) == 0.75
    assert scored_accuracy(dict(train_acc=0.9)) is None  # no validation data
    stop = _early_stop(1, [dict(epoch=1, val_acc=0.9, ema_val_acc=0.2)])
    assert not stop(dict(epoch=2, val_acc=0.1, ema_val_acc=0.3))  # the EMA improved: no stop


def test_fit_scores_best_and_final_by_the_ema() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(48, 4), torch.randint(0, 3, (48,))
    result = fit(small_net(), (x, y), (x, y), TrainConfig(epochs=3, batch_size=8, lr=0.1, ema_decay=0.9), device="cpu")
    scores = [h["ema_val_acc"] for h in result.history]
    assert result.final_val_acc == scores[-1] and result.best_val_acc == max(scores)
    assert result.best_epoch == 1 + scores.index(max(scores))
