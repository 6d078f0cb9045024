"""``python -m benchmarks.sharing_probe``: do a preset's shared weights learn when each step trains another genotype?
The supernet's own step (`shared_training.shared_step`) trained ``--steps`` steps on genotypes drawn uniformly from a
fixed pool of ``pool`` random genotypes (pool 1: one fixed network), for each ``--pools`` entry at each ``--lrs`` and
``--vary`` entry (momentum and the rest the task's). ``--vary`` says what differs between the pool's genotypes: ``all``
(uniformly random genotypes), ``ops`` (the first one's wiring, inputs and combines, every op drawn anew), ``wiring``
(random wiring, every op ``sep_conv_3x3``), ``inputs`` (as ``wiring``, but every combine ``add`` and every block in the
cell's output: only the blocks' inputs differ, and every reader of a cell's output sees the same parts), ``outputs``
(uniformly random genotypes with every block in the cell's output) or ``outputs-add`` (those with every combine ``add``:
the readers see the same parts). ``--ops N`` (each entry a run; default 13): the ops of the ``all``, ``ops`` and
``outputs*`` pools are drawn from the first N of `PROBE_OPS` only (fewer edges per (block, input state), each trained
more often). Reported: the mean training loss of the first and last 50 steps and of each fifth of the run (ln 10 = 2.30
is chance for ten classes) and the mean validation accuracy of up to four pool genotypes on 768 validation images (BN
statistics per batch). ``--optimizers``: SGD with the task's momentum (default) or Adam, each entry a run. Runs on
``--workers`` processes of one thread; results to ``--out`` (``STEM.json`` and ``.md``,
``--stem`` default ``sharing-probe``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import shlex
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from nasnet_zoo.search.fidelity import machine
from nasnet_zoo.search.presets import PRESETS
from nasnet_zoo.search.shared_training import (
    OPTIMIZERS,
    SharingConfig,
    Stream,
    make_optimizer,
    score,
    shared_step,
    task_data,
)
from nasnet_zoo.search.space import random_genotype
from nasnet_zoo.search.supernet_state import build_supernet

from nasnet_zoo.genotype import NUM_INPUT_STATES, OPS, Cell, Genotype
from nasnet_zoo.table import format_table

VARY = ("all", "ops", "wiring", "inputs", "outputs", "outputs-add")
#: The ops in the order ``--ops N`` takes them: the parametric ones with BN first, sep_conv_3x3 leading.
PROBE_OPS = ("sep_conv_3x3", "conv_3x3", "dil_conv_3x3", "sep_conv_5x5", "conv_1x3_3x1", "conv_1x1", "sep_conv_7x7",
             "conv_1x7_7x1", "max_pool_3x3", "avg_pool_3x3", "identity", "max_pool_5x5", "max_pool_7x7")  # fmt: skip
assert sorted(PROBE_OPS) == sorted(OPS)


def rewired(
    genotype: Genotype, draw: Callable[[], str] | None = None, add: bool = False, every: bool = False
) -> Genotype:
    """The genotype with, in both cells, each op replaced by ``draw()`` (if given), every combine ``add`` (if
    ``add``) and every block in the cell's output (if ``every``)."""

    def cell(c: Cell) -> Cell:
        blocks = tuple(dataclasses.replace(b, ops=(draw(), draw())) if draw else b for b in c.blocks)
        blocks = tuple(dataclasses.replace(b, combine="add") if add else b for b in blocks)
        concat = tuple(range(NUM_INPUT_STATES, NUM_INPUT_STATES + len(blocks))) if every else c.concat
        return Cell(blocks, concat)

    return Genotype(cell(genotype.normal), cell(genotype.reduction))


def genotype_pool(vary: str, pool: int, seed: int, ops: int = len(OPS)) -> list[Genotype]:
    """``pool`` genotypes differing in what ``vary`` names, their ops drawn from the first ``ops`` of `PROBE_OPS`
    (see the module's docstring)."""
    drawn = [random_genotype(seed * 10_000 + i) for i in range(pool)]
    sep = lambda: "sep_conv_3x3"  # noqa: E731
    rngs = [random.Random(seed * 10_000 + i) for i in range(pool)]
    choices = OPS if ops == len(OPS) else PROBE_OPS[:ops]  # OPS: the pools of the results before --ops existed
    if vary == "ops":
        return [rewired(drawn[0], lambda r=r: r.choice(choices)) for r in rngs]
    if ops < len(OPS) and vary in ("all", "outputs", "outputs-add"):
        drawn = [rewired(g, lambda r=r: r.choice(choices)) for g, r in zip(drawn, rngs, strict=True)]
    changes = dict(wiring=dict(draw=sep), inputs=dict(draw=sep, add=True, every=True), outputs=dict(every=True))
    changes["outputs-add"] = dict(add=True, every=True)
    return [rewired(g, **changes[vary]) for g in drawn] if vary in changes else drawn


def probe(
    preset: str, pool: int, lr: float, steps: int, seed: int, vary: str = "all", ops: int = len(OPS),
    optimizer: str = "sgd",
) -> dict[str, Any]:  # fmt: skip
    """One supernet trained on a pool of genotypes; its losses and its validation accuracy."""
    torch.set_num_threads(1)
    task = PRESETS[preset].task
    torch.manual_seed(seed)
    supernet = build_supernet(task)
    train, val = task_data(task)
    opt = make_optimizer(SharingConfig(optimizer=optimizer, lr=lr), supernet, lr, task.momentum)
    batches = Stream(train, task.batch_size, seed, torch.device("cpu"))
    genotypes = genotype_pool(vary, pool, seed, ops)
    rng, losses = random.Random(seed), []
    for step in range(steps):
        x, y = batches.batch(step)
        losses.append(shared_step(supernet, opt, genotypes[rng.randrange(pool)], x, y, lr,
                                  task.weight_decay, 5.0))  # fmt: skip
    held_out = list(Stream(val, 256, seed + 1, torch.device("cpu")).all(256))[:3]
    accs = [score(supernet, g, held_out, bn="batch") for g in genotypes[:4]]
    fifths = [losses[k * steps // 5 : (k + 1) * steps // 5] for k in range(5)]
    return dict(vary=vary, ops=ops, optimizer=optimizer, pool=pool, lr=lr, steps=steps,
                first_loss=sum(losses[:50]) / 50,
                last_loss=sum(losses[-50:]) / 50, fifths=[sum(f) / len(f) for f in fifths if f],
                val_acc=sum(accs) / len(accs))  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="laptop")
    ap.add_argument("--pools", type=int, nargs="+", default=[1, 2, 20, 1000])
    ap.add_argument("--lrs", type=float, nargs="+", default=[0.1])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--vary", nargs="+", choices=VARY, default=["all"])
    ap.add_argument(
        "--ops",
        type=int,
        nargs="+",
        default=[len(OPS)],
        choices=range(1, len(OPS) + 1),
        metavar="N",
        help="draw the ops from the first N of PROBE_OPS (each entry a run)",
    )
    ap.add_argument("--optimizers", nargs="+", choices=OPTIMIZERS, default=["sgd"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stem", default="sharing-probe")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args(argv)
    with ProcessPoolExecutor(args.workers) as ex:
        futures = [ex.submit(probe, args.preset, p, lr, args.steps, args.seed, v, k, o)
                   for o in args.optimizers for v in args.vary for k in args.ops for lr in args.lrs
                   for p in args.pools]  # fmt: skip
        rows = [f.result() for f in futures]
    command = "python -m benchmarks.sharing_probe " + shlex.join(argv if argv is not None else sys.argv[1:])
    result = dict(command=command, machine=machine(), preset=args.preset, rows=rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    numbers = ("first_loss", "last_loss", "val_acc")
    cells = [[r["vary"], r["ops"], r["optimizer"], r["pool"], r["lr"], r["steps"], *(f"{r[k]:.3f}" for k in numbers),
              " / ".join(f"{v:.2f}" for v in r["fifths"])] for r in rows]  # fmt: skip
    head = ["vary", "ops", "optimizer", "genotypes", "lr", "steps", "loss, first 50", "loss, last 50", "val acc",
            "loss by fifth"]  # fmt: skip
    table = format_table(cells, head)
    text = "\n".join(["# Do shared weights learn across genotypes?", "",
                      f"`{command}`; " + ", ".join(f"{k} {v}" for k, v in result["machine"].items()), "",
                      table, ""])  # fmt: skip
    (args.out / f"{args.stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
