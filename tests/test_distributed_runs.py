"""`fit` on two gloo replicas under torchrun (tests/distributed_worker.py) against the same run in one process:
the same weights, the same evaluation figures, a killed replica that ends the job, and an exact resume."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nasnet_zoo.errors import RunError
from nasnet_zoo.train import distributed, fit
from nasnet_zoo.train import launch as launching
from tests import distributed_worker as worker

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-5
pytestmark = pytest.mark.usefixtures("one_thread")


def launch(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Two replicas of the worker; a hang fails the test at ``timeout`` (a dead replica must end the job)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", distributed.TIMEOUT_ENV: "60"}
    cmd = launching.torchrun_command(["-m", "tests.distributed_worker", *args], 2)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("compare")
    done = launch("compare", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(torch.load(out / "compare.pt", weights_only=False), whole=out / "whole")


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], names=None) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in names or a)


@pytest.mark.parametrize("scenario", ["frozen-bn", "sync-bn"])
def test_two_half_batches_train_as_one_whole_batch(compared, scenario):
    """2 replicas x 16 and 1 process x 32: the same weights and EMA after 8 steps of RMSProp, warm-up, L2,
    clipping, label smoothing, when BN is frozen or global (SyncBatchNorm)."""
    one = worker.train_scenario(scenario)
    two = compared[scenario]
    assert max_difference(one["model"], two["model"]) < TOL
    assert max_difference(one["ema"], two["ema"]) < TOL
    assert [h["step"] for h in two["history"]] == [4, 8]
    for a, b in zip(one["history"], two["history"], strict=True):
        assert a["lr"] == b["lr"]  # the schedule follows the global step
        assert abs(a["train_loss"] - b["train_loss"]) < TOL and a["train_acc"] == b["train_acc"]


def test_per_replica_batchnorm_normalises_each_half(compared):
    """Per-replica BN (the default) is one process whose BatchNorms see the batch in two halves ("ghost"
    batches): the same trained parameters; the whole-batch run differs by far more than the tolerance."""
    two = compared["per-replica-bn"]
    params = [n for n, _ in worker.tiny_net().named_parameters()]
    model = worker.tiny_net(ghost=2)
    fit(model, *worker.data(), worker.CONFIG, device="cpu")
    assert max_difference(model.state_dict(), two["model"], params) < TOL
    whole = worker.train_scenario("per-replica-bn")
    assert max_difference(whole["model"], two["model"], params) > 100 * TOL


def test_the_ema_is_the_same_on_every_replica(compared):
    assert compared["ema_same_on_every_replica"] is True


def test_sharded_evaluation_equals_one_process_exactly(compared):
    """Tensors, a Dataset through a DataLoader, uneven shares (61 examples in batches of 16 and 7; 3 batches
    of 50 over 2 replicas): every figure equal bit for bit, every example counted once."""
    assert compared["evaluate"] == worker.evaluations()
    assert compared["evaluate"]["tensors"]["n"] == 61 and compared["evaluate"]["train-set"]["n"] == 128


def test_a_killed_replica_ends_the_job_and_resume_reproduces_the_run(compared, tmp_path):
    whole = compared["whole"]  # the run, uninterrupted
    killed = tmp_path / "killed"
    done = launch("run", str(killed), "--kill-at", str(worker.STEPS_PER_EPOCH + 2))  # in epoch 2
    assert done.returncode != 0
    assert "SIGKILL" in done.stderr or "Signal 9" in done.stderr, done.stderr[-3000:]
    state = torch.load(killed / "run" / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and len(state["replica_rng"]) == 1  # the last checkpoint is whole
    assert not (killed / "run.pt").exists()

    shutil.copytree(killed, tmp_path / "on-one")
    done = launch("resume", str(killed))
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = torch.load(whole / "run.pt", weights_only=False), torch.load(killed / "resume.pt", weights_only=False)
    for key in ("model", "ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    timeless = [{k: v for k, v in h.items() if k not in ("seconds", "images_per_s")} for h in a["history"]]
    assert [{k: v for k, v in h.items() if k not in ("seconds", "images_per_s")} for h in b["history"]] == timeless

    # the same checkpoint resumed in one process: the global batch is kept, so the run goes on as it would
    model = worker.tiny_net()
    result = fit(model, *worker.data(), worker.RUN_CONFIG, tmp_path / "on-one" / "run", resume=True, device="cpu")
    assert max_difference(model.state_dict(), a["model"]) < TOL
    assert max_difference(result.ema.state_dict(), a["ema"]) < TOL


def test_launch_names_the_failure(tmp_path, capfd):
    script = tmp_path / "fail.py"
    script.write_text("import os, sys\nsys.exit(3 if os.environ['RANK'] == '1' else 0)\n")
    with pytest.raises(RunError, match=r"2 replicas failed.*--resume"):
        launching.launch([str(script)], 2)
    assert "exitcode" in capfd.readouterr().err


def test_cli_nproc_relaunches_itself_under_torchrun(monkeypatch, tmp_path):
    from nasnet_zoo.cli import main

    seen = []
    monkeypatch.setattr(launching, "launch", lambda target, nproc: seen.append((list(target), nproc)))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    argv = ["finetune", "nasnet_cifar", "digits", "--no-pretrained", "--nproc", "2", "--epochs", "1"]
    assert main(argv) in (0, None)
    target, nproc = seen[0]
    assert nproc == 2 and target[:2] == ["-m", "nasnet_zoo.cli"]
    assert target[2:] == ["finetune", "nasnet_cifar", "digits", "--no-pretrained", "--epochs", "1"]
    assert sys.executable  # the relaunch uses this interpreter (torchrun_command)
