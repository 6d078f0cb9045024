"""train/recipes.py: the paper's recipes hold its values, each runs a few steps end to end, and the CLI's
``train`` command. Tiny models on fake CIFAR-10 and image folders."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from nasnet_zoo.cli import main
from nasnet_zoo.train import RECIPES, learning_rate, run_recipe
from nasnet_zoo.zoo import MODELS
from tests.helpers import fake_cifar_release, write_image_folder

pytestmark = pytest.mark.usefixtures("one_thread")


def test_recipes_hold_the_papers_values() -> None:
    """The paper's training details and TF-slim's notes and arg scopes."""
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
