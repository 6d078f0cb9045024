"""train/run_folder.py: a training output folder (fit, a recipe, fine-tuning) has one owner for the run's life,
an earlier run's outputs are never silently replaced, a failed start leaves no folder behind, and `fit` says
how each epoch went unless told to be quiet. Tiny models on 8x8 digits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nasnet_zoo.cli import main
from nasnet_zoo.errors import ConfigError, RunError
from nasnet_zoo.files import RunLock
from nasnet_zoo.finetune import finetune
from nasnet_zoo.train import TrainConfig, fit
from nasnet_zoo.weights import read_state_dict
from tests.train_testing import small_net

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--num-cells", "3", "--filters", "8", "--in-chans", "1", "--img-size", "8", "--workers", "0"]
FINETUNE = ["finetune", "nasnet_cifar", "digits", *TINY, "--no-pretrained", "--epochs", "1", "--quiet"]
FINETUNE_TINY = dict(num_cells=3, filters=8, in_chans=1, img_size=8)
_HOLD = """
import sys, time
from nasnet_zoo.files import RunLock
with RunLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def data() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.randn(32, 4), torch.randint(0, 3, (32,))


CFG = TrainConfig(epochs=2, batch_size=8, lr=0.1)


def test_fit_holds_its_folder_for_the_runs_life(tmp_path: Path) -> None:
    seen = []

    def try_to_take_it(record: dict) -> None:
        with pytest.raises(RunError, match=f"in use by pid {os.getpid()}"):
            RunLock(tmp_path).__enter__()  # another open of the lock file: refused while fit runs
        seen.append(record["epoch"])

    fit(small_net(), data(), data(), CFG, tmp_path, device="cpu", quiet=True, on_epoch=try_to_take_it)
    assert seen == [1, 2]
    with RunLock(tmp_path):  # and released when it returns
        pass


def test_a_second_process_on_a_training_folder_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunError, match=f"in use by pid {holder.pid}"):
            fit(small_net(), data(), None, CFG, out, device="cpu")
        assert main([*FINETUNE, "--out", str(out)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {out} is in use by pid {holder.pid}")
        with pytest.raises(RunError, match=f"in use by pid {holder.pid}"):
            finetune("nasnet_cifar", "digits", out, pretrained=False, quiet=True, **FINETUNE_TINY)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing written by the refused runs


def test_outputs_without_a_checkpoint_are_not_overwritten_silently(tmp_path: Path) -> None:
    first = fit(small_net(), data(), data(), CFG, tmp_path, device="cpu", quiet=True)
    (tmp_path / "last.pt").unlink()
    best = read_state_dict(tmp_path / "best.safetensors")
    outputs = r"earlier run's outputs \(best.safetensors, metrics.jsonl, curves.png\)"
    with pytest.raises(RunError, match=outputs + ".*overwrite"):
        fit(small_net(), data(), data(), CFG, tmp_path, device="cpu", quiet=True)
    assert all(torch.equal(best[k], v) for k, v in read_state_dict(tmp_path / "best.safetensors").items())
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        fit(small_net(), data(), data(), CFG, tmp_path, resume=True, device="cpu")
    with pytest.raises(ConfigError, match="exclude each other"):
        fit(small_net(), data(), data(), CFG, tmp_path, resume=True, overwrite=True, device="cpu")
    again = fit(small_net(), data(), data(), CFG, tmp_path, overwrite=True, device="cpu", quiet=True)
    assert again.history[-1]["train_loss"] == first.history[-1]["train_loss"]  # a fresh run, not a continuation
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2 and (tmp_path / "last.pt").is_file()
    with pytest.raises(RunError, match="resume=True"):
        fit(small_net(), data(), data(), CFG, tmp_path, device="cpu")
    fit(small_net(), data(), data(), CFG, tmp_path, overwrite=True, device="cpu", quiet=True)  # a whole run, too


def test_finetune_refuses_an_export_without_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "ft"
    (out / "model").mkdir(parents=True)
    (out / "model" / "model.safetensors").write_bytes(b"an earlier export")
    assert main([*FINETUNE, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "earlier run's outputs (model)" in err and "--overwrite" in err and "Traceback" not in err
    assert (out / "model" / "model.safetensors").read_bytes() == b"an earlier export"
    assert main([*FINETUNE, "--out", str(out), "--overwrite"]) == 0
    assert (out / "last.pt").is_file() and read_state_dict(out / "model" / "model.safetensors")
    assert main([*FINETUNE, "--out", str(out), "--overwrite", "--resume"]) == 2  # one or the other


def test_a_run_that_fails_to_start_leaves_no_folder(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "new"
    with pytest.raises(TypeError, match="DataLoader"):
        fit(small_net(), [1, 2, 3], None, CFG, out)
    assert not (tmp_path / "runs").exists()
    assert main(["train", "cifar10", "--data-dir", str(tmp_path / "nowhere"), "--out", str(out)]) == 1
    assert not (tmp_path / "runs").exists()


def test_fit_prints_a_line_per_epoch_unless_quiet(capsys: pytest.CaptureFixture) -> None:
    fit(small_net(), data(), data(), CFG, device="cpu")
    lines = capsys.readouterr().err.splitlines()
    assert [s.split()[:2] for s in lines] == [["epoch", "1/2"], ["epoch", "2/2"]] and "val_acc=" in lines[-1]
    fit(small_net(), data(), data(), CFG, device="cpu", quiet=True)
    assert capsys.readouterr().err == ""
