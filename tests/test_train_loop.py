"""train/loop.py: what one step of `fit` does (aux loss, TF-slim L2, clipping, drop-path progress), exact
resume, the run folder's outputs, the data forms, bad inputs and precision. Tiny models on 8x8 digits."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

from nasnet_zoo.data import digits
from nasnet_zoo.errors import ConfigError, RunError, TrainingError
from nasnet_zoo.train import TrainConfig, evaluate, fit, run_recipe
from nasnet_zoo.weights import read_state_dict
from tests.helpers import DEVICES
from tests.train_testing import TwoHeads, data_gradients, one_sgd_step, small_net, tiny_nasnet, without_time

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits_data() -> tuple[TensorDataset, TensorDataset]:
    return digits()


@pytest.fixture(scope="module")
def small_digits(digits_data) -> tuple[TensorDataset, TensorDataset]:
    (x, y), (xv, yv) = digits_data[0].tensors, digits_data[1].tensors
    return TensorDataset(x[:192], y[:192]), TensorDataset(xv[:96], yv[:96])


# --- one step, against hand computations ----------------------------------------------------------------------
def test_aux_loss_weight_and_label_smoothing() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(12, 4), torch.randint(0, 3, (12,))
    for weight in (0.4, 0.0):
        model = TwoHeads()
        before = one_sgd_step(model, x, y, aux_weight=weight, label_smoothing=0.1)
        out = before.train()(x)
        aux_loss = F.cross_entropy(out.aux_logits, y, label_smoothing=0.1)
        (grad,) = torch.autograd.grad(weight * aux_loss, before.aux.weight, allow_unused=True, materialize_grads=True)
        torch.testing.assert_close(model.aux.weight, before.aux.weight - grad)
        (grad,) = torch.autograd.grad(F.cross_entropy(out.logits, y, label_smoothing=0.1), before.main.weight)
        torch.testing.assert_close(model.main.weight, before.main.weight - grad)
    assert torch.equal(model.aux.weight, before.aux.weight)  # weight 0: the aux head does not learn


def test_history_loss_is_main_plus_weighted_aux() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(12, 4), torch.randint(0, 3, (12,))
    model = TwoHeads()
    out = copy.deepcopy(model).train()(x)
    cfg = TrainConfig(epochs=1, batch_size=12, lr=0.0, aux_weight=0.4, label_smoothing=0.1)
    (h,) = fit(model, (x, y), None, cfg, device="cpu").history
    expected = F.cross_entropy(out.logits, y, label_smoothing=0.1) + 0.4 * F.cross_entropy(
        out.aux_logits, y, label_smoothing=0.1
    )
    assert h["train_loss"] == pytest.approx(expected.item(), rel=1e-6)


def test_weight_decay_is_tf_l2_on_weights_only() -> None:
    torch.manual_seed(1)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    model = small_net()
    before = one_sgd_step(model, x, y, weight_decay=0.1)
    grads = data_gradients(before, x, y)
    for (name, p0), p1, g in zip(before.named_parameters(), model.parameters(), grads, strict=True):
        decay = 0.1 * p0 if p0.ndim > 1 else 0  # conv/FC weights only: not biases, not BN
        torch.testing.assert_close(p1, p0 - (g + decay), msg=name)


def test_global_norm_clipping_after_l2() -> None:
    torch.manual_seed(1)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    model = small_net()
    before = one_sgd_step(model, x, y, weight_decay=0.1, clip_grad_norm=1e-3)
    grads = [
        g + (0.1 * p if p.ndim > 1 else 0)
        for g, p in zip(data_gradients(before, x, y), before.parameters(), strict=True)
    ]
    norm = torch.sqrt(sum((g**2).sum() for g in grads))
    assert norm > 1e-2  # so the clip is active
    for p0, p1, g in zip(before.parameters(), model.parameters(), grads, strict=True):
        torch.testing.assert_close(p1, p0 - g * (1e-3 / norm), atol=1e-9, rtol=1e-4)


def test_drop_path_progress_reaches_the_model(small_digits) -> None:
    train, _ = small_digits
    model = tiny_nasnet(drop_path_rate=0.4)
    seen, original = [], model.set_drop_path_progress
    model.set_drop_path_progress = lambda p: (seen.append(p), original(p))
    fit(model, TensorDataset(*[t[:64] for t in train.tensors]), None, TrainConfig(epochs=2, batch_size=32))
    assert seen == [0.0, 0.25, 0.5, 0.75]  # step / total_steps before every step
    assert model.drop_path_progress.item() == 0.75


# --- whole runs ---------------------------------------------------------------------------------------------------
class NoisyDigits(Dataset):
    """A map-style dataset whose transform draws from torch's global RNG (as augmentations do)."""

    def __init__(self, data: TensorDataset) -> None:
        self.x, self.y = data.tensors

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i] + 0.1 * torch.randn_like(self.x[i]), self.y[i]


@pytest.mark.parametrize("kind", ["tensors", "dataset"])
def test_resume_is_exact(kind: str, small_digits, tmp_path: Path) -> None:
    train, val = small_digits
    if kind == "dataset":
        train = NoisyDigits(train)
    cfg = TrainConfig(
        epochs=3, batch_size=32, lr=0.05, weight_decay=5e-4, clip_grad_norm=5.0, ema_decay=0.99, label_smoothing=0.1,
        warmup_epochs=0.5, seed=3,
    )  # fmt: skip
    full = fit(tiny_nasnet(drop_path_rate=0.4), train, val, cfg, tmp_path / "a")

    model = tiny_nasnet(drop_path_rate=0.4)
    stopped = fit(model, train, val, cfg, tmp_path / "b", on_epoch=lambda h: h["epoch"] == 2)
    assert len(stopped.history) == 2
    torch.rand(7)  # the new process's RNG is elsewhere; the checkpoint restores it
    fresh = tiny_nasnet(seed=99, drop_path_rate=0.4)  # other initial weights: all come from the checkpoint
    resumed = fit(fresh, train, val, cfg, tmp_path / "b", resume=True)

    reference = tiny_nasnet(drop_path_rate=0.4)  # state dict order
    for name in reference.state_dict():
        a, b = dict(full.ema.state_dict())[name], dict(resumed.ema.state_dict())[name]
        assert torch.equal(a, b), name
    full_sd = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    for name, value in fresh.state_dict().items():
        assert torch.equal(value, full_sd[name]), name
    assert without_time(resumed.history) == without_time(full.history)
    assert (resumed.best_val_acc, resumed.best_epoch, resumed.steps) == (full.best_val_acc, full.best_epoch, full.steps)
    lines = [json.loads(s) for s in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert without_time(lines) == without_time(full.history)


def test_digits_learn_and_run_outputs(digits_data, tmp_path: Path) -> None:
    """A tiny NASNet learns digits in 3 short epochs; the run folder holds what the docs promise."""
    train, val = digits_data
    model = tiny_nasnet()
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05, weight_decay=5e-4, clip_grad_norm=5.0)
    result = fit(model, train, val, cfg, tmp_path)
    assert result.final_val_acc > 0.85  # chance is 0.10; measured 0.969
    assert result.best_val_acc == max(h["val_acc"] for h in result.history)
    assert result.steps == 3 * (len(train) // 32)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(s)["epoch"] for s in lines] == [1, 2, 3]
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = tiny_nasnet(seed=5)
    best.load_state_dict(read_state_dict(tmp_path / "best.safetensors"))
    assert evaluate(best, val, device="cpu")["acc1"] == result.best_val_acc

    with pytest.raises(RunError, match="resume=True"):
        fit(tiny_nasnet(), train, val, cfg, tmp_path)
    with pytest.raises(ValueError, match=r"lr: 0\.05 -> 0\.1"):
        fit(tiny_nasnet(), train, val, dataclasses.replace(cfg, lr=0.1), tmp_path, resume=True)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        fit(tiny_nasnet(), train, val, cfg, tmp_path / "new", resume=True)


def test_data_forms_agree() -> None:
    """(x, y) tensors, a TensorDataset and a DataLoader are all accepted; tensors and TensorDataset are one path."""
    torch.manual_seed(0)
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    cfg = TrainConfig(epochs=2, batch_size=8, lr=0.1)
    a = fit(small_net(), (x, y), (x, y), cfg, device="cpu").history
    b = fit(small_net(), TensorDataset(x, y), TensorDataset(x, y), cfg, device="cpu").history
    assert without_time(a) == without_time(b)
    c = fit(small_net(), DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True), (x, y), cfg, device="cpu")
    assert c.steps == 10 and c.final_val_acc is not None
    with pytest.raises(TypeError, match="DataLoader"):
        fit(small_net(), [1, 2, 3], None, cfg)


def test_bad_input_errors() -> None:
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(optimizer="adam")
    for seed in (-1, 2**32):  # numpy's range: refused here, not as numpy's error at the first epoch
        with pytest.raises(ConfigError, match=r"seed must be in \[0, 2\*\*32\)"):
            TrainConfig(seed=seed)
    with pytest.raises(ValueError, match="unknown recipe"):
        run_recipe("imagenet-tiny", "/nowhere")
    model = small_net()
    with torch.no_grad():
        model[3].weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match=r"training diverged at step 1 \(loss nan\)"):
        fit(model, (torch.randn(8, 4), torch.zeros(8, dtype=torch.long)), None, TrainConfig(epochs=1, batch_size=4))


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_autocast_and_channels_last(small_digits, device) -> None:
    train, val = small_digits
    model = tiny_nasnet()
    cfg = TrainConfig(epochs=1, batch_size=32, precision="bf16", channels_last=True)
    result = fit(model, train, val, cfg, device=device)
    assert np.isfinite(result.history[0]["train_loss"]) and result.final_val_acc is not None
    assert model.stem.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert model.stem.conv.weight.dtype == torch.float32  # autocast, not a bf16 copy of the weights
