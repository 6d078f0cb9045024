"""``python -m benchmarks.search``: children per minute of the cell search on ``cpu-digits``, and the controller's
share of the wall time, for the process and Ray backends with 1 and 2 workers.

Each configuration runs a fresh PPO search of ``--budget`` real children (default 20: one policy update, so the
controller's time includes an update) from a fresh evaluator. Reported per configuration:

* per min: children / wall time of the search loop (worker start-up inside it; Ray's own start is not),
* steady per min: children after the first round / the time they took (start-up excluded),
* child s: mean seconds a child trains inside its worker (one torch thread per child),
* controller: seconds in the controller (sampling, PPO update) and their share of the loop's wall time,
* start s: from creating the evaluator to the loop's start (``ray.init`` for Ray).

Results go to ``benchmarks/results/search.json`` and ``search.md``. The machine's load average is recorded with
them: on a shared machine the absolute numbers move with it, the comparison within one run is the result.
`measure` is the hook `benchmarks.run` calls for its search section.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from nasnet_zoo.search.evaluators import make_evaluator
from nasnet_zoo.search.loop import PRESETS, SearchConfig, run_search

from benchmarks.measure import load_note
from nasnet_zoo.table import format_table

RESULTS = Path(__file__).resolve().parent / "results"


def run_one(backend: str, workers: int, budget: int, seed: int = 0) -> dict[str, Any]:
    """One cpu-digits PPO search; its throughput and the controller's share."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        evaluator = make_evaluator(backend, PRESETS["cpu-digits"].task, workers)
        startup = time.perf_counter() - t0
        config = SearchConfig(preset="cpu-digits", algo="ppo", seed=seed, budget=budget, workers=workers,
                              backend=backend, out=Path(tmp))  # fmt: skip
        try:
            result = run_search(config, evaluator)
        finally:
            evaluator.close()
    records = result.records
    finished = sorted(r["elapsed"] for r in records)
    first_round = finished[min(workers, len(finished)) - 1]
    steady = (len(finished) - workers) / (finished[-1] - first_round) * 60 if len(finished) > workers else None
    trained = [r for r in records if r["reward"] is not None]
    return dict(
        backend=backend,
        workers=workers,
        children=len(records),
        failed=len(records) - len(trained),
        policy_updates=budget // PRESETS["cpu-digits"].policy.batch_size,
        startup_seconds=startup,
        wall_seconds=result.wall_seconds,
        children_per_minute=len(records) / result.wall_seconds * 60,
        steady_children_per_minute=steady,
        child_seconds=sum(r["seconds"] for r in trained) / max(len(trained), 1),
        controller_seconds=result.controller_seconds,
        controller_share=result.controller_seconds / result.wall_seconds,
        best_reward=max((r["reward"] for r in trained), default=None),
    )


def _row(r: dict[str, Any]) -> tuple[Any, ...]:
    steady = r["steady_children_per_minute"]
    return (
        r["backend"],
        r["workers"],
        r["children"],
        f"{r['children_per_minute']:.1f}",
        "-" if steady is None else f"{steady:.1f}",
        f"{r['child_seconds']:.1f}",
        f"{r['controller_seconds']:.2f}",
        f"{100 * r['controller_share']:.2f} %",
        f"{r['startup_seconds']:.1f}",
        f"{r['best_reward']:.3f}" if r["best_reward"] is not None else "-",
    )


HEADERS = ["backend", "workers", "children", "per min", "steady per min", "child s", "controller s", "controller",
           "start s", "best reward"]  # fmt: skip


def measure(quick: bool = False, device: Any = None, threads: int = 1) -> dict[str, Any]:
    """The hook of `benchmarks.run`: children per minute of the default setup (process backend, 2 workers).

    Children always train on CPU with one torch thread each (``device`` and ``threads`` are the caller's
    settings for its other sections and do not apply here)."""
    budget = 4 if quick else 20
    r = run_one("process", 2, budget)
    return dict(
        r, setup=f"cpu-digits, PPO, process backend, 2 workers x 1 thread, {budget} children, wall incl. worker start"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.search", description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=int, default=20, help="children per configuration (20: one PPO update)")
    p.add_argument("--backends", nargs="+", default=["process", "ray"], choices=["process", "ray"])
    p.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for search.json and search.md")
    args = p.parse_args(argv)

    load_before = os.getloadavg()
    rows = []
    for backend in args.backends:
        for workers in args.workers:
            print(f"{backend}, {workers} worker(s), {args.budget} children ...", flush=True)
            rows.append(run_one(backend, workers, args.budget))
            print(format_table([_row(rows[-1])], HEADERS), flush=True)
    machine = dict(
        cpus=os.cpu_count(),
        platform=platform.platform(),
        torch=torch.__version__,
        load_average_before=load_before,
        load_average_after=os.getloadavg(),
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    table = format_table([_row(r) for r in rows], HEADERS)
    print("\n" + table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search.json").write_text(json.dumps(dict(machine=machine, rows=rows), indent=1) + "\n")
    task = PRESETS["cpu-digits"].task
    (args.out / "search.md").write_text(
        f"# Search throughput on cpu-digits\n\n`python -m benchmarks.search --budget {args.budget}`, "
        f"{machine['date']}, {machine['cpus']} CPUs, {load_note(load_before[0], machine['load_average_after'][0])}."
        "\n\n"
        f"Children: the CIFAR layout with N = {task.num_cells // 3}, F = {task.filters}, {task.epochs} epochs on "
        f"the bundled digits, one torch thread each; PPO with the paper's settings (one update per 20 children).\n\n"
        + table
        + "\n"
    )
    print(f"\nwrote {args.out / 'search.json'} and {args.out / 'search.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
