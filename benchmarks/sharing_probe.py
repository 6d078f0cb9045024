"""``python -m benchmarks.sharing_probe``: do a preset's shared weights learn when each step trains another
genotype? The supernet's own step (`shared_training.shared_step`) trained ``--steps`` steps on genotypes drawn
uniformly from a fixed pool of ``pool`` random genotypes (pool 1: one fixed network), for each ``--pools``
entry at each ``--lrs`` entry (momentum and the rest the task's); reported: the mean training loss of the first
and last 50 steps (ln 10 = 2.30 is chance for ten classes) and the mean validation accuracy of up to four pool
genotypes on 768 validation images (BN statistics per batch). Runs on ``--workers`` processes of one thread;
results to ``--out`` (``sharing-probe.json`` and ``.md``).
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from nasnet_zoo.search.fidelity import machine
from nasnet_zoo.search.presets import PRESETS
from nasnet_zoo.search.shared_training import Stream, score, shared_step, task_data
from nasnet_zoo.search.space import random_genotype
from nasnet_zoo.search.supernet_state import build_supernet

from nasnet_zoo.table import format_table


def probe(preset: str, pool: int, lr: float, steps: int, seed: int) -> dict[str, Any]:
    """One supernet trained on a pool of genotypes; its losses and its validation accuracy."""
    torch.set_num_threads(1)
    task = PRESETS[preset].task
    torch.manual_seed(seed)
    supernet = build_supernet(task)
    train, val = task_data(task)
    optimizer = torch.optim.SGD(supernet.parameters(), lr=lr, momentum=task.momentum)
    batches = Stream(train, task.batch_size, seed, torch.device("cpu"))
    genotypes = [random_genotype(seed * 10_000 + i) for i in range(pool)]
    rng, losses = random.Random(seed), []
    for step in range(steps):
        x, y = batches.batch(step)
        losses.append(shared_step(supernet, optimizer, genotypes[rng.randrange(pool)], x, y, lr,
                                  task.weight_decay, 5.0))  # fmt: skip
    held_out = list(Stream(val, 256, seed + 1, torch.device("cpu")).all(256))[:3]
    accs = [score(supernet, g, held_out, bn="batch") for g in genotypes[:4]]
    return dict(pool=pool, lr=lr, steps=steps, first_loss=sum(losses[:50]) / 50, last_loss=sum(losses[-50:]) / 50,
                val_acc=sum(accs) / len(accs))  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="laptop")
    ap.add_argument("--pools", type=int, nargs="+", default=[1, 2, 20, 1000])
    ap.add_argument("--lrs", type=float, nargs="+", default=[0.1])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args(argv)
    with ProcessPoolExecutor(args.workers) as ex:
        futures = [ex.submit(probe, args.preset, p, lr, args.steps, args.seed) for lr in args.lrs for p in args.pools]
        rows = [f.result() for f in futures]
    command = "python -m benchmarks.sharing_probe " + shlex.join(argv if argv is not None else sys.argv[1:])
    result = dict(command=command, machine=machine(), preset=args.preset, rows=rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sharing-probe.json").write_text(json.dumps(result, indent=1) + "\n")
    table = format_table([[r["pool"], r["lr"], r["steps"], f"{r['first_loss']:.3f}", f"{r['last_loss']:.3f}",
                           f"{r['val_acc']:.3f}"] for r in rows],
                         ["genotypes", "lr", "steps", "loss, first 50", "loss, last 50", "val acc"])  # fmt: skip
    text = "\n".join(["# Do shared weights learn across genotypes?", "",
                      f"`{command}`; " + ", ".join(f"{k} {v}" for k, v in result["machine"].items()), "",
                      table, ""])  # fmt: skip
    (args.out / "sharing-probe.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
