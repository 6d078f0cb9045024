"""``python -m benchmarks.heads``: how a new classifier head and a fresh model's convs should start, measured.

A small CIFAR-layout NASNet-A (3 normal cells, 8 filters, 8x8 grey input) on the bundled digits, trained by the
one loop (`train.fit`) with the fine-tuning defaults (`finetune.FINETUNE_CONFIG`) for one epoch:

* heads, from scratch: a random backbone (the package's conv init) and a 10-class head started each way;
* heads, transfer: a backbone trained for a few epochs on digits 0-4 (saved, then loaded through
  ``create_model(..., pretrained=True, pretrained_cfg_overlay=dict(file=...), num_classes=K)``), with a new head
  started each way for digits 5-9 as 5 classes, and as 2 (even / odd);
* convs, from scratch: the package's head init and the convs started each way, with the eval-mode pooled features
  of the fresh model (BN running statistics at their init, as ``--check-forward``-style tests see them), and the
  same on full zoo rows (`ROWS`), where depth compounds the scale.

For each: the cross-entropy at step 0 (train mode, no label smoothing, over the first `STEP0` training examples,
before any update), the largest |logit| then, and the validation accuracy after the epoch; means over ``--seeds``
seeds (the seed draws the head, the convs and the batch order). Results go to
``benchmarks/results/heads.{md,json}``; about 3 minutes of one core with the default 2 seeds.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import TensorDataset

import nasnet_zoo
from nasnet_zoo import data
from nasnet_zoo.files import atomic_write
from nasnet_zoo.finetune import FINETUNE_CONFIG
from nasnet_zoo.init import init_conv, init_head
from nasnet_zoo.train import fit

RESULTS = Path(__file__).parent / "results"
MODEL = dict(num_cells=3, filters=8, in_chans=1, img_size=8)
STEP0 = 256


def _normal(std: float) -> Callable[[nn.Module], None]:
    def init(m: nn.Module) -> None:
        nn.init.normal_(m.weight, std=std)
        if m.bias is not None:
            nn.init.zeros_(m.bias)

    return init


def _kaiming_fan_out(m: nn.Module) -> None:
    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    if m.bias is not None:
        nn.init.zeros_(m.bias)


def _zeros(m: nn.Module) -> None:
    nn.init.zeros_(m.weight)
    if m.bias is not None:
        nn.init.zeros_(m.bias)


#: New-head candidates. TF-slim's logits layer is its arg scope's variance_scaling_initializer(FAN_OUT): the
#: first row (std sqrt(2 / classes)); timm's is PyTorch's nn.Linear default (std 1 / sqrt(3 features)).
HEADS: dict[str, Callable[[nn.Module], None]] = {
    "kaiming fan_out = TF-slim's FAN_OUT (old default)": _kaiming_fan_out,
    "timm (nn.Linear default) = the package's init_head": init_head,
    "zeros": _zeros,
    "normal std 1e-3": _normal(1e-3),
}
#: Conv candidates (the head: the package's).
CONVS: dict[str, Callable[[nn.Module], None]] = {
    "kaiming fan_out = TF-slim's FAN_OUT (old default)": _kaiming_fan_out,
    "timm (nn.Conv2d default)": lambda m: m.reset_parameters(),
    "1 / sqrt(fan_in) = the package's init_conv": init_conv,
}
#: Full zoo rows for the fresh-model eval scale, at small inputs: (row, input size).
ROWS = (("nasnet_a_cifar", 32), ("nasnet_a_mobile", 96))


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _classes(ds: TensorDataset, keep: list[int], label: Callable[[torch.Tensor], torch.Tensor]) -> TensorDataset:
    x, y = ds.tensors
    mask = torch.isin(y, torch.tensor(keep))
    return TensorDataset(x[mask], label(y[mask]))


def _step0(model: nn.Module, train: TensorDataset) -> dict[str, float]:
    """Before any update, on the first ``STEP0`` training examples in batches of 32 (on a copy, so the BN
    statistics stay as they were): the train-mode cross-entropy and max |logit|, and the fresh model's eval-mode
    pooled features (what the head reads; BN running statistics at their init): RMS and max |.|."""
    m = copy.deepcopy(model)
    x, y = (t[:STEP0] for t in train.tensors)
    with torch.no_grad():
        m.train()
        logits = torch.cat([m(xb) for xb in x.split(32)])
        m.eval()
        feats = torch.cat([m.forward_head(m.forward_features(xb), pre_logits=True) for xb in x.split(32)])
    return dict(
        loss0=F.cross_entropy(logits, y).item(),
        max_logit0=logits.abs().max().item(),
        eval_feature_rms0=feats.pow(2).mean().sqrt().item(),
        eval_feature_max0=feats.abs().max().item(),
    )


def _one_epoch(model: nn.Module, train: TensorDataset, val: TensorDataset, seed: int) -> dict[str, float]:
    before = _step0(model, train)
    config = dataclasses.replace(FINETUNE_CONFIG, epochs=1, seed=seed)
    record = fit(model, train, val, config, quiet=True).history[-1]
    return dict(before, train_loss=record["train_loss"], val_acc=100 * record["val_acc"])


def _mean(runs: list[dict[str, float]]) -> dict[str, float]:
    out = {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}
    accs = [r["val_acc"] for r in runs]
    out["val_acc_sd"] = math.sqrt(sum((a - out["val_acc"]) ** 2 for a in accs) / max(len(accs) - 1, 1))
    return out


def _build(num_classes: int, seed: int, **kwargs: Any) -> nn.Module:
    torch.manual_seed(seed)
    return nasnet_zoo.create_model("nasnet_a_cifar", num_classes=num_classes, **MODEL, **kwargs)


def _reinit(model: nn.Module, kind: type, init: Callable[[nn.Module], None], seed: int) -> nn.Module:
    torch.manual_seed(seed + 1000)
    for m in model.modules():
        if isinstance(m, kind):
            init(m)
    return model


def scratch_heads(train: TensorDataset, val: TensorDataset, seeds: int) -> dict[str, dict[str, float]]:
    return {
        name: _mean([_one_epoch(_reinit(_build(10, s), nn.Linear, init, s), train, val, s) for s in range(seeds)])
        for name, init in HEADS.items()
    }


def scratch_convs(train: TensorDataset, val: TensorDataset, seeds: int) -> dict[str, dict[str, float]]:
    return {
        name: _mean([_one_epoch(_reinit(_build(10, s), nn.Conv2d, init, s), train, val, s) for s in range(seeds)])
        for name, init in CONVS.items()
    }


def fresh_rows() -> dict[str, dict[str, float]]:
    """Each conv init on full zoo rows (the package's head): eval-mode pooled-feature RMS and max |logit| of a
    fresh model on two random images."""
    out = {}
    for name, init in CONVS.items():
        row = {}
        for model, size in ROWS:
            torch.manual_seed(0)
            m = _reinit(nasnet_zoo.create_model(model), nn.Conv2d, init, 0).eval()
            with torch.no_grad():
                feats = m.forward_head(m.forward_features(torch.randn(2, 3, size, size)), pre_logits=True)
            row[f"{model}@{size} feature RMS"] = feats.pow(2).mean().sqrt().item()
            row[f"{model}@{size} max |logit|"] = m.get_classifier()(feats).abs().max().item()
        out[name] = row
    return out


def pretrain(train: TensorDataset, val: TensorDataset, epochs: int, folder: Path) -> tuple[Path, float]:
    """A backbone trained on digits 0-4 (5 classes), saved as a weight file; and its validation accuracy."""
    model = _build(5, 0)
    config = dataclasses.replace(FINETUNE_CONFIG, epochs=epochs, seed=0)
    result = fit(model, _classes(train, [0, 1, 2, 3, 4], lambda y: y), _classes(val, [0, 1, 2, 3, 4], lambda y: y),
                 config, quiet=True)  # fmt: skip
    path = folder / "digits04.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path, 100 * result.final_val_acc


def transfer_heads(
    train: TensorDataset, val: TensorDataset, weights: Path, classes: int, seeds: int
) -> dict[str, dict[str, float]]:
    label = (lambda y: y - 5) if classes == 5 else (lambda y: y % 2)
    task_train, task_val = _classes(train, [5, 6, 7, 8, 9], label), _classes(val, [5, 6, 7, 8, 9], label)
    results = {}
    for name, init in HEADS.items():
        runs = []
        for s in range(seeds):
            torch.manual_seed(s)
            model = nasnet_zoo.create_model(
                "nasnet_a_cifar", pretrained=True, num_classes=classes,
                pretrained_cfg_overlay=dict(file=str(weights), num_classes=5, input_size=(1, 8, 8)), **MODEL,
            )  # fmt: skip
            torch.manual_seed(s + 1000)
            init(model.get_classifier())
            runs.append(_one_epoch(model, task_train, task_val, s))
        results[name] = _mean(runs)
    return results


def _table(title: str, rows: dict[str, dict[str, float]], convs: bool = False) -> list[str]:
    columns = ["init"]
    if convs:
        columns += ["fresh eval-mode pooled features: RMS", "max \\|.\\|"]
    else:
        columns += ["loss at step 0", "max \\|logit\\| at step 0"]
    columns += ["train loss, epoch 1", "val top-1 after 1 epoch (%)"]
    lines = [f"### {title}", "", "| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for name, r in rows.items():
        keys = ("eval_feature_rms0", "eval_feature_max0") if convs else ("loss0", "max_logit0")
        cells = [name, *(f"{r[k]:.3g}" for k in keys), f"{r['train_loss']:.3f}"]
        cells.append(f"{r['val_acc']:.1f} ± {r['val_acc_sd']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _rows_table(rows: dict[str, dict[str, float]]) -> list[str]:
    columns = [k.replace("|", "\\|") for k in next(iter(rows.values()))]
    lines = ["### convs, fresh full rows in eval mode (2 random images; the package's head)", ""]
    lines += ["| init | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.3g}" for v in r.values()) + " |")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=2, help="seeds per candidate (2: about 3 minutes on one thread)")
    p.add_argument("--pretrain-epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0, cpu0 = datetime.now(timezone.utc), time.process_time()
    train, val = data.digits()
    sections: dict[str, Any] = {}
    sections["heads, from scratch (10 classes)"] = scratch_heads(train, val, args.seeds)
    with tempfile.TemporaryDirectory() as tmp:
        weights, pre_acc = pretrain(train, val, args.pretrain_epochs, Path(tmp))
        for k in (5, 2):
            sections[f"heads, transfer from digits 0-4 to 5-9 ({k} classes)"] = transfer_heads(
                train, val, weights, k, args.seeds
            )
    sections["convs, from scratch (10 classes)"] = scratch_convs(train, val, args.seeds)
    rows = fresh_rows()
    seconds = (datetime.now(timezone.utc) - t0).total_seconds()
    cpu_seconds = time.process_time() - cpu0
    command = " ".join(["python -m benchmarks.heads", *(sys.argv[1:] if argv is None else argv)])
    when, cpu = t0.strftime("%Y-%m-%d %H:%M UTC"), _cpu_name()
    lines = [
        f"Measured {when} on {cpu} ({args.threads} thread(s), torch {torch.__version__}) with `{command}` in "
        f"{seconds:.0f} s ({cpu_seconds:.0f} s of CPU time). "
        f"Model: nasnet_a_cifar with {MODEL}; data: the bundled digits (8x8, fixed split); one "
        f"epoch of `FINETUNE_CONFIG` (SGD momentum 0.9, lr 0.05 cosine, batch 32, label smoothing 0.1); means of "
        f"{args.seeds} seeds (± the standard deviation of the accuracy). Transfer backbone: {args.pretrain_epochs} "
        f"epochs on digits 0-4, {pre_acc:.1f} % validation top-1 there.",
        "",
    ]
    for title, section in sections.items():
        lines += _table(title, section, convs=title.startswith("convs"))
    lines += _rows_table(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "heads.md", "\n".join(lines))
    record = dict(measured=when, cpu=cpu, threads=args.threads, torch=torch.__version__, command=command,
                  seconds=round(seconds, 1), cpu_seconds=round(cpu_seconds, 1), model=MODEL, seeds=args.seeds,
                  pretrain_val_acc=pre_acc, sections=sections, fresh_rows=rows)  # fmt: skip
    atomic_write(args.out / "heads.json", json.dumps(record, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
