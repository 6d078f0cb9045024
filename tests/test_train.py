"""train.py: the recipes, TF semantics of each piece (RMSProp, L2, clipping, EMA, schedules, aux loss, drop path),
exact resume, outputs, and the CLI. Tiny models (NASNet CIFAR layout, 3 cells, 8 filters) on 8x8 digits."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from nasnet_zoo.cli import main
from nasnet_zoo.data import digits
from nasnet_zoo.network import NASNetOutput
from nasnet_zoo.train import (
    RECIPES,
    ModelEma,
    RMSpropTF,
    TrainConfig,
    evaluate,
    fit,
    learning_rate,
    run_recipe,
)
from nasnet_zoo.weights import read_state_dict
from nasnet_zoo.zoo import MODELS, create_model
from tests.helpers import fake_cifar_release, write_image_folder

TIME_KEYS = {"seconds", "images_per_s"}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_nasnet(seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("nasnet_cifar", num_cells=3, filters=8, in_chans=1, num_classes=10, img_size=8, **kwargs)


@pytest.fixture(scope="module")
def digits_data() -> tuple[TensorDataset, TensorDataset]:
    return digits()


@pytest.fixture(scope="module")
def small_digits(digits_data) -> tuple[TensorDataset, TensorDataset]:
    (x, y), (xv, yv) = digits_data[0].tensors, digits_data[1].tensors
    return TensorDataset(x[:192], y[:192]), TensorDataset(xv[:96], yv[:96])


def without_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in TIME_KEYS} for h in history]


# --- recipes ------------------------------------------------------------------------------------------------------
def test_recipes_hold_the_papers_values() -> None:
    """REFERENCE §4 and TF-slim's notes and arg scopes."""
    r = RECIPES["cifar10"]
    c = r.config
    assert (c.optimizer, c.momentum, c.lr, c.batch_size, c.schedule, c.epochs) == ("sgd", 0.9, 0.025, 32, "cosine", 600)
    assert (c.weight_decay, c.aux_weight, c.clip_grad_norm, r.drop_path_keep, r.cutout) == (5e-4, 0.4, 5.0, 0.6, 16)
    assert (c.ema_decay, c.label_smoothing, c.warmup_epochs, r.dropout_keep) == (None, 0.0, 0.0, 1.0)
    assert r.model == "nasnet_a_cifar" and MODELS[r.model].config.drop_path_keep_prob == r.drop_path_keep

    for name, wd, lr_per_replica, replicas, per_replica in (
        ("imagenet-mobile", 4e-5, 0.04, 50, 32),
        ("imagenet-large", 5e-5, 0.015, 100, 16),
    ):
        r = RECIPES[name]
        c = r.config
        assert (c.optimizer, c.rmsprop_decay, c.rmsprop_eps, c.momentum) == ("rmsprop", 0.9, 1.0, 0.9)
        assert (c.ema_decay, c.label_smoothing, c.aux_weight, r.dropout_keep) == (0.9999, 0.1, 0.4, 0.5)
        assert (c.schedule, c.lr_decay, c.lr_decay_epochs, c.clip_grad_norm) == ("exponential", 0.97, 2.4, 10.0)
        assert c.weight_decay == wd and c.warmup_epochs == 0
        assert r.drop_path_keep == MODELS[r.model].config.drop_path_keep_prob  # mobile 1.0, large 0.7
        # sync SGD over the replicas: one update averages replicas x per-replica examples at lr x replicas
        assert c.batch_size == replicas * per_replica == 1600
        assert c.lr == pytest.approx(lr_per_replica * replicas)
        one = c.scaled(per_replica)  # one replica's share
        assert one.lr == pytest.approx(lr_per_replica) and one.batch_size == per_replica
        assert one.ema_decay == pytest.approx(0.9999 ** (1 / replicas))
        assert dataclasses.replace(one, lr=c.lr, batch_size=c.batch_size, ema_decay=c.ema_decay) == c


@pytest.mark.parametrize("name", list(RECIPES))
def test_each_recipe_runs_a_few_steps(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "data"
    if name == "cifar10":
        fake_cifar_release(data_dir, monkeypatch)  # 20 train, 4 test images
        model, kwargs, batch, n_train = "nasnet_cifar", {}, 8, 20
    else:
        write_image_folder(data_dir / "train", ("a", "b"), per_class=4)
        write_image_folder(data_dir / "val", ("a", "b"), per_class=2)
        model, kwargs, batch, n_train = "nasnet_imagenet", {"img_size": 96}, 4, 8
    result = run_recipe(
        name, data_dir, model=model, epochs=1, batch_size=batch, out_dir=tmp_path / "run", num_cells=3, filters=8,
        **kwargs,
    )  # fmt: skip
    (h,) = result.history
    assert result.steps == n_train // batch and np.isfinite(h["train_loss"]) and 0 <= h["val_acc"] <= 1
    config = dataclasses.replace(RECIPES[name].config.scaled(batch), epochs=1)
    assert h["lr"] == pytest.approx(learning_rate(config, result.steps - 1, result.steps))
    assert ("ema_val_acc" in h) == (name != "cifar10")
    for f in ("last.pt", "metrics.jsonl", "curves.png", "best.safetensors"):
        assert (tmp_path / "run" / f).is_file()


def test_cli_train(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    fake_cifar_release(tmp_path / "data", monkeypatch)
    args = ["train", "cifar10", "--data-dir", str(tmp_path / "data"), "--model", "nasnet_cifar", "--num-cells", "3"]
    args += ["--filters", "8", "--epochs", "1", "--batch-size", "10", "--out", str(tmp_path / "run"), "--workers", "0"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs"] == 1 and summary["steps"] == 2 and 0 <= summary["final_val_acc"] <= 1
    assert main(args) == 1  # the run exists: --resume or another --out
    assert "pass resume=True" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0  # finished already: resumes to the end at once
    assert main(["train", "cifar10", "--data-dir", str(tmp_path / "nowhere")]) == 1
    assert "download=True" in capsys.readouterr().err
    assert main(["train", "imagenet-tiny", "--data-dir", str(tmp_path)]) == 2
    assert "invalid choice: 'imagenet-tiny'" in capsys.readouterr().err


# --- the pieces, against hand computations ---------------------------------------------------------------------
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


class TwoHeads(nn.Module):
    """A linear classifier with an aux head, returning `NASNetOutput` in training mode like NASNet."""

    def __init__(self) -> None:
        super().__init__()
        self.main, self.aux = nn.Linear(4, 3), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor | NASNetOutput:
        return NASNetOutput(self.main(x), self.aux(x)) if self.training else self.main(x)


def one_sgd_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **config) -> nn.Module:
    """One full-batch plain SGD step (lr 1, no momentum) through `fit`; returns the model before it."""
    before = copy.deepcopy(model)
    cfg = TrainConfig(epochs=1, batch_size=len(x), lr=1.0, momentum=0.0, schedule="constant", **config)
    fit(model, (x, y), None, cfg, device="cpu")
    return before


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


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def data_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    model = copy.deepcopy(model).train()
    return list(torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters())))


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

    with pytest.raises(FileExistsError, match="resume=True"):
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
    with pytest.raises(ValueError, match="unknown recipe"):
        run_recipe("imagenet-tiny", "/nowhere")
    model = small_net()
    with torch.no_grad():
        model[3].weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="training loss is nan"):
        fit(model, (torch.randn(8, 4), torch.zeros(8, dtype=torch.long)), None, TrainConfig(epochs=1, batch_size=4))


def test_bf16_autocast_and_channels_last_on_cpu(small_digits) -> None:
    train, val = small_digits
    model = tiny_nasnet()
    cfg = TrainConfig(epochs=1, batch_size=32, precision="bf16", channels_last=True)
    result = fit(model, train, val, cfg, device="cpu")
    assert np.isfinite(result.history[0]["train_loss"]) and result.final_val_acc is not None
    assert model.stem.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert model.stem.conv.weight.dtype == torch.float32  # autocast, not a bf16 copy of the weights
