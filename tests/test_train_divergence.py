"""train/divergence.py: diverged training fails with one line naming the step, and nothing non-finite is
written as best, last or exported weights (fit, fine-tuning, the CLI). Tiny models on 8x8 digits."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from nasnet_zoo.cli import main
from nasnet_zoo.errors import TrainingError
from nasnet_zoo.finetune import FINETUNE_CONFIG, finetune, save_finetuned
from nasnet_zoo.train import TrainConfig, fit
from nasnet_zoo.train.divergence import LossWatch, first_non_finite
from nasnet_zoo.weights import read_state_dict
from nasnet_zoo.zoo import create_model
from tests.train_testing import small_net, tiny_nasnet

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(num_cells=3, filters=8, in_chans=1, img_size=8)
TINY_ARGS = ["--num-cells", "3", "--filters", "8", "--in-chans", "1", "--img-size", "8", "--workers", "0"]


def finite_files(out: Path) -> list[str]:
    """The weight files under ``out``, each checked to hold finite values only."""
    found = []
    for path in [*out.glob("*.safetensors"), *out.glob("model/*.safetensors")]:
        assert all(torch.isfinite(t).all() for t in read_state_dict(path).values() if t.is_floating_point()), path
        found.append(str(path.relative_to(out)))
    if (out / "last.pt").is_file():
        state = torch.load(out / "last.pt", weights_only=True)
        assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
        found.append("last.pt")
    return sorted(found)


def test_loss_watch_names_the_first_bad_step() -> None:
    watch = LossWatch(every=4, lr=0.1)
    for step, loss in enumerate([1.0, 0.5, 0.25, 0.1, 0.2, float("inf"), float("nan")]):
        if step < 6:
            watch.add(torch.tensor(loss), step)
    with pytest.raises(TrainingError, match=r"^training diverged at step 6 \(loss inf\): lower the learning rate"):
        watch.check()  # the end of an epoch checks what has gathered since the last check
    with pytest.raises(ValueError, match="check_loss_every"):
        TrainConfig(check_loss_every=0)


@pytest.mark.parametrize("lr", [1e6, 1e30])
def test_fit_at_a_huge_lr_fails_and_writes_nothing_non_finite(lr: float, tmp_path: Path) -> None:
    from nasnet_zoo.data import digits

    train, val = digits()
    cfg = dataclasses.replace(FINETUNE_CONFIG, epochs=2, lr=lr)
    with pytest.raises(TrainingError, match=r"^training diverged.*lower the learning rate \(--lr, now 1e\+"):
        fit(tiny_nasnet(), train, val, cfg, tmp_path, quiet=True)
    finite_files(tmp_path)  # whatever was written (an earlier epoch's) holds finite values


class Overflowing(torch.nn.Module):
    """A layer whose running statistic overflows in training while its output (and so the loss) stays finite."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("stat", torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.stat.mul_(1e30)
        return x


def test_non_finite_weights_with_a_finite_loss_are_caught_before_best(tmp_path: Path) -> None:
    model = torch.nn.Sequential(small_net(), Overflowing())
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    with pytest.raises(TrainingError, match=r"the weights after epoch 1 are not finite \(1.stat\)"):
        fit(model, (x, y), (x, y), TrainConfig(epochs=1, batch_size=8), tmp_path, device="cpu", quiet=True)
    assert finite_files(tmp_path) == []


def test_finetune_at_lr_1e6_fails_and_exports_nothing(tmp_path: Path) -> None:
    cfg = dataclasses.replace(FINETUNE_CONFIG, epochs=1, lr=1e6)
    with pytest.raises(TrainingError, match="training diverged"):
        finetune("nasnet_cifar", "digits", tmp_path, config=cfg, pretrained=False, quiet=True, **TINY)
    assert not (tmp_path / "model").exists() and finite_files(tmp_path) == []
    model = create_model("nasnet_cifar", num_classes=10, **TINY)
    with torch.no_grad():
        model.stem.conv.weight[0, 0, 0, 0] = float("nan")
    assert first_non_finite(model) == "stem.conv.weight"
    with pytest.raises(TrainingError, match=r"the weights to export are not finite \(stem.conv.weight\)"):
        save_finetuned(model, tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_cli_finetune_at_lr_1e6_exits_1_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["finetune", "nasnet_cifar", "digits", *TINY_ARGS, "--no-pretrained", "--epochs", "1", "--lr", "1e6"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: training diverged") and "--lr, now 1e+06" in err[-1]
    assert not any("Traceback" in line for line in err) and not (tmp_path / "run" / "model").exists()
    assert main([*argv, "--lr", "0.05", "--out", str(tmp_path / "run"), "--quiet"]) == 0  # nothing to clear first
