"""train/checkpoint.py: a last.pt that cannot be this run's checkpoint (torn, corrupt, malicious, another
model's) is refused in one line that never advises an unsafe load, from `fit` and from the CLI."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from nasnet_zoo.cli import main
from nasnet_zoo.errors import ConfigError, RunError
from nasnet_zoo.train import TrainConfig, fit
from tests.train_testing import small_net

pytestmark = pytest.mark.usefixtures("one_thread")

CFG = TrainConfig(epochs=1, batch_size=8, lr=0.1)
TINY = ["--num-cells", "3", "--filters", "8", "--in-chans", "1", "--img-size", "8", "--workers", "0"]


class RunsCode:
    """Unpickling this runs a shell command (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def data() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.randn(16, 4), torch.randint(0, 3, (16,))


def test_a_damaged_checkpoint_is_refused_without_unsafe_advice(tmp_path: Path) -> None:
    fit(small_net(), data(), None, CFG, tmp_path, device="cpu", quiet=True)
    ckpt = tmp_path / "last.pt"
    good = ckpt.read_bytes()
    marker = tmp_path / "pwned"
    for content in (good[: len(good) // 2], b"not a checkpoint" * 8, None, {"format": "x"}):
        if content is None:
            torch.save({"model": RunsCode(marker)}, ckpt)
        elif isinstance(content, dict):
            torch.save(content, ckpt)
        else:
            ckpt.write_bytes(content)
        with pytest.raises(RunError, match=r"last.pt is not a .*checkpoint.*--overwrite") as e:
            fit(small_net(), data(), None, CFG, tmp_path, resume=True, device="cpu")
        assert "weights_only" not in str(e.value) and "\n" not in str(e.value)
    assert not marker.exists()


def test_another_models_checkpoint_is_a_config_error(tmp_path: Path) -> None:
    fit(small_net(), data(), None, CFG, tmp_path, device="cpu", quiet=True)
    wider = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    with pytest.raises(ConfigError, match="another model's checkpoint"):
        fit(wider, data(), None, CFG, tmp_path, resume=True, device="cpu")
    checked_often = dataclasses.replace(CFG, check_loss_every=1)  # a setting that changes no result: allowed
    again = fit(small_net(), data(), None, checked_often, tmp_path, resume=True, device="cpu")
    assert len(again.history) == 1


def test_cli_resume_from_a_corrupt_checkpoint_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["finetune", "nasnet_cifar", "digits", *TINY, "--no-pretrained", "--epochs", "1", "--quiet"]
    argv += ["--out", str(tmp_path)]
    assert main(argv) == 0
    (tmp_path / "last.pt").write_bytes(b"\x80\x02corrupt")
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a readable training checkpoint" in err[0] and "weights_only" not in err[0]
