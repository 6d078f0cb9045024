"""``python -m benchmarks.distributed``: data-parallel scaling of `fit` on this machine (1 vs 2 gloo replicas,
one torch thread each), and the ImageNet loader alone beside the training step.

Scaling: a small NASNet (CIFAR layout, N = 1, F = 16, 16x16 digits) trains ``--epochs`` epochs through `fit` at
a global batch of 64 under torchrun (`launch.torchrun_command`); the figure is the last epoch's images/s (the
first one warms up), summed over the replicas; efficiency = images/s on W replicas / (W x images/s on one).

Loader: a folder of 256x256 JPEGs read through `fit`'s own batches (`SeededExamples`, the ImageNet training
augmentation at 224) with 0 and 1 DataLoader workers, against one NASNet-A mobile training step at 224 on one
thread (batch 8), in images/s: how many workers a replica needs so that loading keeps up with its step.

Results go to ``benchmarks/results/distributed.json`` and ``distributed.md`` with the CPU and the load average
(on a shared machine the absolute numbers move with it; the ratios within one run are the result).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.measure import load_note
from nasnet_zoo.table import format_table
from nasnet_zoo.train import TrainConfig, distributed, fit
from nasnet_zoo.train.batches import Batches
from nasnet_zoo.train.launch import torchrun_command

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
CONFIG = TrainConfig(epochs=2, batch_size=64, lr=0.05, weight_decay=5e-4, clip_grad_norm=5.0)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def worker(out: Path, epochs: int) -> None:
    """One replica of the scaling run (under torchrun); rank 0 writes the epochs' records to ``out``."""
    from nasnet_zoo.data import digits
    from nasnet_zoo.zoo import create_model

    torch.set_num_threads(1)
    train, _ = digits(size=16)
    torch.manual_seed(0)
    model = create_model("nasnet_cifar", num_cells=3, filters=16, in_chans=1, num_classes=10, img_size=16)
    result = fit(model, train, None, TrainConfig(**{**CONFIG.__dict__, "epochs": epochs}), device="cpu")
    if distributed.is_main():
        out.write_text(json.dumps(dict(world_size=distributed.world_size(), history=result.history)))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def scaling(nproc: int, epochs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = torchrun_command(["-m", "benchmarks.distributed", "--worker", str(out), "--epochs", str(epochs)], nproc)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        subprocess.run(cmd, check=True, cwd=ROOT, env=env)
        record = json.loads(out.read_text())["history"][-1]
    return dict(replicas=nproc, images_per_s=record["images_per_s"], epoch_seconds=record["seconds"])


def _jpeg_folder(root: Path, n: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"c{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)


def loader_alone(images: int, workers: int) -> float:
    """Images/s of `fit`'s training batches over a JPEG folder (decode + ImageNet augmentation at 224)."""
    from nasnet_zoo import data

    with tempfile.TemporaryDirectory() as tmp:
        _jpeg_folder(Path(tmp), images)
        dataset = data.image_folder(tmp, data.imagenet_train_transform(224))
        batches = Batches(dataset, 16, True, 0, distributed.Replicas(), workers)
        next(iter(batches.epoch(0)))  # start the workers
        t0, seen = time.perf_counter(), 0
        for epoch in (1, 2):
            for x, _ in batches.epoch(epoch):
                seen += len(x)
        return seen / (time.perf_counter() - t0)


def training_step(steps: int = 3, batch: int = 8) -> float:
    """Images/s of NASNet-A mobile training steps at 224 on one thread (forward, backward, SGD)."""
    from nasnet_zoo.zoo import create_model

    torch.manual_seed(0)
    model = create_model("nasnet_a_mobile", num_classes=1000).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 3, 224, 224), torch.randint(0, 1000, (batch,))
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return batch / (sum(times[1:]) / steps)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.distributed", description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=2, help="epochs of the scaling run (the last one is timed)")
    p.add_argument("--images", type=int, default=96, help="JPEGs in the loader's folder")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for distributed.json and distributed.md")
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is not None:
        worker(args.worker, args.epochs)
        return 0
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    runs = [scaling(n, args.epochs) for n in (1, 2)]
    one = runs[0]["images_per_s"]
    for r in runs:
        r["efficiency"] = r["images_per_s"] / (r["replicas"] * one)
    loader = {w: loader_alone(args.images, w) for w in (0, 1)}
    step = training_step()
    machine = dict(
        cpu=cpu_name(), cpus=os.cpu_count(), torch=torch.__version__, platform=platform.platform(),
        load_average_before=load_before, load_average_after=os.getloadavg(),
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )  # fmt: skip
    command = "python -m benchmarks.distributed " + " ".join(sys.argv[1:] if argv is None else argv)
    scale = format_table(
        [(r["replicas"], f"{r['images_per_s']:.0f}", f"{r['epoch_seconds']:.2f}", f"{100 * r['efficiency']:.0f} %")
         for r in runs],
        ["replicas x 1 thread", "images/s", "epoch s", "efficiency"],
    )  # fmt: skip
    feed = format_table(
        [("loader alone, 0 workers (in the training process)", f"{loader[0]:.0f}"),
         ("loader alone, 1 worker", f"{loader[1]:.0f}"),
         ("NASNet-A mobile training step at 224, batch 8, 1 thread", f"{step:.1f}")],
        ["per replica", "images/s"],
    )  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    results = dict(command=command.strip(), machine=machine, scaling=runs, loader_images_per_s=loader, step=step)
    (args.out / "distributed.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "distributed.md").write_text(
        f"# Data-parallel scaling and the loader\n\n`{command.strip()}`, {machine['date']}, {machine['cpu']}, "
        f"{machine['cpus']} CPUs, {load_note(load_before[0], machine['load_average_after'][0])}.\n\n"
        f"`fit` on gloo replicas under torchrun: NASNet CIFAR layout N = 1, F = 16 on 16x16 digits, global batch "
        f"{CONFIG.batch_size}, the last of {args.epochs} epochs timed.\n\n{scale}\n\n"
        f"The ImageNet loader ({args.images} 256x256 JPEGs, decode + training augmentation at 224, batches of 16) "
        f"beside a training step on the same CPU:\n\n{feed}\n"
    )
    print(scale + "\n\n" + feed)
    print(f"\nwrote {args.out / 'distributed.json'} and {args.out / 'distributed.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
