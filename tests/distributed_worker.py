"""The replicas' side of test_distributed_runs.py: ``torchrun -m tests.distributed_worker JOB OUT``.

Jobs: ``compare`` trains the tiny nets of `SCENARIOS`, evaluates a fixed net (the test repeats both in one
process) and does ``run`` into ``OUT/whole``; ``run`` trains `RUN_CONFIG` into ``OUT`` (``--kill-at K``:
replica 1 SIGKILLs itself at its K-th training forward), ``resume``
continues that run. Rank 0 saves what the test compares under ``OUT``.
"""

from __future__ import annotations

import argparse
import copy
import os
import signal
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from nasnet_zoo.data import digits
from nasnet_zoo.train import TrainConfig, distributed, evaluate, fit

CONFIG = TrainConfig(
    epochs=2, batch_size=32, optimizer="rmsprop", lr=0.02, schedule="exponential", lr_decay=0.9, lr_decay_epochs=0.5,
    warmup_epochs=0.5, weight_decay=1e-3, clip_grad_norm=2.0, ema_decay=0.9, label_smoothing=0.1, eval_batch_size=16,
)  # fmt: skip
#: name -> (how the net's BatchNorms train, TrainConfig changes)
SCENARIOS = {
    "frozen-bn": ("frozen", {}),
    "sync-bn": ("train", {"sync_bn": True}),
    "per-replica-bn": ("train", {}),
}
RUN_CONFIG = TrainConfig(**{**CONFIG.__dict__, "epochs": 3, "sync_bn": True})
STEPS_PER_EPOCH = 4  # 128 examples / 32


class TinyNet(nn.Module):
    """Two conv-BN-ReLU layers and a linear head; ``bn="frozen"`` keeps the BatchNorms in eval mode always;
    ``ghost=k`` normalises each batch in k chunks (one process standing in for k per-replica BatchNorms)."""

    def __init__(self, bn: str = "train", ghost: int = 1) -> None:
        super().__init__()
        self.bn, self.ghost = bn, ghost
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Linear(8, 10)
        if bn == "frozen":  # statistics that are not the identity, so frozen BN still matters
            g = torch.Generator().manual_seed(1)
            for m in self.body:
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.2, 0.2, generator=g)
                    m.running_var.uniform_(0.5, 1.5, generator=g)

    def train(self, mode: bool = True) -> TinyNet:
        super().train(mode)
        if self.bn == "frozen":
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.ghost > 1:
            return self.head(torch.cat([self.body(c) for c in x.chunk(self.ghost)]))
        return self.head(self.body(x))


def tiny_net(bn: str = "train", ghost: int = 1) -> TinyNet:
    torch.manual_seed(0)
    return TinyNet(bn, ghost)


class ListDataset(Dataset):
    """A map-style dataset (the DataLoader path) over tensors."""

    def __init__(self, data: TensorDataset) -> None:
        self.x, self.y = data.tensors

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def data() -> tuple[TensorDataset, TensorDataset]:
    (x, y), (xv, yv) = (t.tensors for t in digits())
    return TensorDataset(x[:128], y[:128]), TensorDataset(xv[:61], yv[:61])  # 61: a short last eval batch


def train_scenario(name: str) -> dict[str, dict[str, torch.Tensor]]:
    bn, changes = SCENARIOS[name]
    model = tiny_net(bn)
    result = fit(model, *data(), TrainConfig(**{**CONFIG.__dict__, **changes}), device="cpu")
    return dict(model=copy.deepcopy(model.state_dict()), ema=result.ema.state_dict(), history=result.history)


def evaluations() -> dict[str, dict[str, float]]:
    model = tiny_net()
    train, val = data()
    return {
        "tensors": evaluate(model, val, batch_size=16, device="cpu"),
        "dataset": evaluate(model, ListDataset(val), batch_size=7, device="cpu"),
        "train-set": evaluate(model, train, batch_size=50, device="cpu"),
    }


def compare(out: Path) -> None:
    results: dict[str, object] = {name: train_scenario(name) for name in SCENARIOS}
    results["evaluate"] = evaluations()
    ema = results["sync-bn"]["ema"]  # type: ignore[index]
    everyone = [None] * distributed.world_size()
    torch.distributed.all_gather_object(everyone, {k: v.clone() for k, v in ema.items()})
    results["ema_same_on_every_replica"] = all(
        all(torch.equal(a[k], b[k]) for k in a) for a in everyone for b in everyone
    )
    if distributed.is_main():
        torch.save(results, out / "compare.pt")
    run(out / "whole", resume=False, kill_at=None)


def run(out: Path, resume: bool, kill_at: int | None) -> None:
    model = tiny_net()
    if kill_at is not None and os.environ["RANK"] == "1":
        calls = []

        def count(module: nn.Module, args: object) -> None:
            if module.training:
                calls.append(1)
                if len(calls) == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)

        model.register_forward_pre_hook(count)
    result = fit(model, *data(), RUN_CONFIG, out / "run", resume=resume, device="cpu")
    if distributed.is_main():
        state = dict(model=model.state_dict(), ema=result.ema.state_dict(), history=result.history)
        torch.save(state, out / ("resume.pt" if resume else "run.pt"))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("job", choices=["compare", "run", "resume"])
    p.add_argument("out", type=Path)
    p.add_argument("--kill-at", type=int)
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.job == "compare":
        compare(args.out)
    else:
        run(args.out, args.job == "resume", args.kill_at)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
