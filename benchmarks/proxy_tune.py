"""``python -m benchmarks.proxy_tune``: settings of the laptop proxy (`ShapesTask`), compared on a tuning draw of
cells that the committed fidelity measurements (cell seeds 1 and 2) do not use.

Each ``--try`` is ``name:key=value,...`` over `ShapesTask`'s fields, applied to the preset's task. Every try
scores the same cells (``--cells`` uniformly random ones from ``--seed``, plus NASNet-A) under ``--repeats``
training seeds; each cell is also trained stand-alone (the preset's task, ``--standalone-epochs``) under two
seeds and scored on the held-out test split, so the table shows how noisy the stand-alone score is itself (the
ceiling on any proxy's rank correlation). Per try: seconds per child on one thread, the proxy's noise over the
spread between cells (target <= 1/3), Kendall tau with the mean stand-alone score, NASNet-A's rank. Results go
to ``--out`` (``proxy-tune.json`` and ``.md``). Jobs run on ``--workers`` processes of one torch thread.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nasnet_zoo.search.fidelity import fidelity_cells, machine
from nasnet_zoo.search.fidelity_stats import fidelity_stats
from nasnet_zoo.search.presets import PRESETS
from nasnet_zoo.search.tasks import ShapesTask

from nasnet_zoo.genotype import Genotype
from nasnet_zoo.runtime import derive_seed
from nasnet_zoo.table import format_table

from .tries import parse_try


def _init() -> None:
    torch.set_num_threads(1)


def _score(task: ShapesTask, method: str, genotype: Genotype, seed: int) -> tuple[float, float]:
    start = time.perf_counter()
    value = getattr(task, method)(genotype, seed)
    return value, time.perf_counter() - start


def run(tries: list[tuple[str, ShapesTask]], standalone: ShapesTask, cells: list, repeats: int, seed: int,
        workers: int) -> dict[str, Any]:  # fmt: skip
    """Every try's proxy scores and the stand-alone scores, then per try `fidelity_stats` and the timings."""
    jobs = {}  # key -> (task, method, genotype, training seed)
    for c, (_, genotype) in enumerate(cells):
        for r in range(2):
            jobs[("standalone", c, r)] = (standalone, "test_accuracy", genotype, derive_seed(seed, 1000 + 100 * r + c))
        for name, task in tries:
            for r in range(repeats):
                jobs[(name, c, r)] = (task, "reward", genotype, derive_seed(seed, 100 * r + c))
    with ProcessPoolExecutor(workers, initializer=_init) as pool:
        futures = {key: pool.submit(_score, *job) for key, job in jobs.items()}
        done = {}
        for i, (key, future) in enumerate(futures.items()):
            done[key] = future.result()
            print(f"\r{i + 1}/{len(futures)} {key}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    n = len(cells)
    alone = np.array([[done[("standalone", c, r)][0] for r in range(2)] for c in range(n)])
    result: dict[str, Any] = {
        "cells": [label for label, _ in cells],
        "standalone": alone.tolist(),
        "standalone_seconds": float(np.mean([done[("standalone", c, r)][1] for c in range(n) for r in range(2)])),
        "standalone_noise_std": float(np.sqrt(np.mean(alone.var(axis=1, ddof=1)))),
        "standalone_between_std": float(alone.mean(1).std(ddof=1)),
        "tries": {},
    }
    for name, task in tries:
        proxy = np.array([[done[(name, c, r)][0] for r in range(repeats)] for c in range(n)])
        stats = fidelity_stats(proxy, alone.mean(1), reference=0)
        result["tries"][name] = {
            "task": dataclasses.asdict(task),
            "proxy": proxy.tolist(),
            "seconds": float(np.mean([done[(name, c, r)][1] for c in range(n) for r in range(repeats)])),
            "stats": stats,
        }
    return result


def markdown(result: dict[str, Any], command: str) -> str:
    rows = []
    for name, t in result["tries"].items():
        s = t["stats"]
        rows.append([name, f"{t['seconds']:.1f}", f"{s['proxy_mean']:.3f}", f"{s['noise_std']:.4f}",
                     f"{s['between_std']:.4f}", f"{s['noise_to_between']:.2f}",
                     f"{s['proxy_vs_standalone']['kendall_tau']:.2f}", f"{s['seed_vs_seed_kendall_tau']:.2f}",
                     f"{s['reference_rank']['proxy']}"])  # fmt: skip
    table = format_table(rows, ["try", "s/child", "mean", "noise std", "between std", "noise/between",
                                "tau vs alone", "tau seed/seed", "NASNet-A rank"])  # fmt: skip
    alone_rank = int(1 + np.sum(np.mean(result["standalone"], 1) > np.mean(result["standalone"][0])))
    return "\n".join([
        "# Laptop proxy settings on a tuning draw of cells", "",
        f"`{command}`; " + ", ".join(f"{k} {v}" for k, v in result["machine"].items()), "",
        f"{len(result['cells'])} cells (NASNet-A first). Stand-alone: {result['standalone_seconds']:.1f} s per "
        f"child, two seeds: noise std {result['standalone_noise_std']:.4f}, between-cell std "
        f"{result['standalone_between_std']:.4f}; NASNet-A {alone_rank} of {len(result['cells'])}.", "",
        table, "",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="laptop")
    ap.add_argument("--try", dest="tries", action="append", default=[], help="name:key=value,... (repeatable)")
    ap.add_argument("--cells", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0, help="draws the cells (not 1 or 2: those are the reported ones)")
    ap.add_argument("--standalone-epochs", type=int, default=8)
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args(argv)
    base = PRESETS[args.preset].task
    tries = [parse_try(t, base) for t in args.tries or ["preset:"]]
    cells = fidelity_cells(args.seed, args.cells)
    result = run(tries, base.longer(args.standalone_epochs), cells, args.repeats, args.seed, args.workers)
    command = "python -m benchmarks.proxy_tune " + shlex.join(argv if argv is not None else sys.argv[1:])
    result.update(command=command, machine=machine())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "proxy-tune.json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result, command)
    (args.out / "proxy-tune.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
