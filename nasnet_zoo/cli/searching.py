"""``nasnet-zoo search | retrain | fidelity | demo | bench``: the cell search, its retrain step, the proxy's fidelity,
the demo, the benchmarks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .options import Command, UsageError, count, nonnegative, positive


def _cluster(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where children train")
    g.add_argument("--workers", type=count, help="children in flight (default: the preset's)")
    g.add_argument("--backend", choices=["serial", "process", "ray"], help="default: the preset's")
    g.add_argument("--data-dir", help="cifar10: a folder holding torchvision's cifar-10-batches-py")
    g.add_argument("--ray-address", help="join this Ray cluster (e.g. auto) instead of starting a local Ray")
    g.add_argument("--gpus-per-child", type=nonnegative, default=0.0, help="ray: GPUs each child requests")


PRESET_HELP = (
    "laptop (default): real children on drawn 16x16 shapes (agreement with stand-alone training measured by "
    "`nasnet-zoo fidelity`: Kendall tau 0.47-0.68, noise 0.55-0.77 times the spread between cells); nasnet: the "
    "paper's protocol on CIFAR-10 for a GPU cluster; cpu-digits: a smoke test on 8x8 digits (fast, barely tells "
    "cells apart); synthetic: a known-optimum reward; *-ws: weight sharing (one supernet trained while the "
    "controller learns, as ENAS does)"
)


def _preset_argument(p: argparse.ArgumentParser) -> None:
    from ..search.loop import DEFAULT_PRESET, PRESETS

    p.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESETS), help=PRESET_HELP)


def _search_arguments(p: argparse.ArgumentParser) -> None:
    from ..search.loop import ALGORITHMS

    _preset_argument(p)
    p.add_argument("--algo", default="ppo", choices=list(ALGORITHMS))
    p.add_argument("--budget", type=count, help="children to train, each a distinct cell (default: the preset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="folder of the search; one subfolder per algo and seed")
    p.add_argument("--resume", action="store_true", help="continue the run in --out after a stop or a crash")
    p.add_argument("--max-minutes", type=positive, help="wall-time budget (children in flight resume later)")
    _cluster(p)


def search(args: argparse.Namespace) -> None:
    from ..search.loop import SearchConfig, run_search
    from ..search.report import SUMMARY_HEADERS, load_runs, summary_rows
    from ..table import format_table

    config = SearchConfig(
        preset=args.preset, algo=args.algo, seed=args.seed, budget=args.budget, workers=args.workers,
        backend=args.backend, out=args.out, resume=args.resume, max_minutes=args.max_minutes,
        data_dir=args.data_dir, ray_address=args.ray_address, gpus_per_child=args.gpus_per_child,
    )  # fmt: skip
    from ..search.sharing import SHARING, run_sharing

    result = (run_sharing if args.preset in SHARING else run_search)(config, progress=True)  # weight sharing: -ws
    print(format_table(summary_rows(load_runs(args.out)), SUMMARY_HEADERS))
    for note in result.notes:
        print(f"note: {note}")
    best = result.best
    if best is not None:
        print(f"\nbest child {best['hash']} (search reward {best['reward']:.4f}) -> {args.out / 'best.json'}")
    print(f"journal: {result.run_dir / 'journal.jsonl'}; plot: {args.out / 'search.png'}")


def _retrain_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", type=Path, help="the --out folder of a search")
    p.add_argument("--top-k", type=count, help="children to retrain (default: the preset's; the paper: 250)")
    p.add_argument("--epochs", type=count, help="default: the preset's")
    _cluster(p)


def retrain(args: argparse.Namespace) -> None:
    from ..search.retrain import retrain as train_longer
    from ..table import format_table

    rows = train_longer(
        args.out, args.top_k, args.epochs, args.workers, args.backend, progress=True, data_dir=args.data_dir,
        ray_address=args.ray_address, gpus_per_child=args.gpus_per_child,
    )  # fmt: skip
    table = [
        (i + 1, r["hash"], r["run"], f"{r['search_reward']:.4f}", "-" if r["reward"] is None else f"{r['reward']:.4f}")
        for i, r in enumerate(rows)
    ]
    headers = ["rank", "child", "run", "search reward", f"validation after {rows[0]['epochs']} epochs"]
    print(format_table(table, headers))
    test = "-" if rows[0]["test"] is None else f"{rows[0]['test']:.4f}"
    print(f"\nfinal cell (chosen on validation) -> {args.out / 'final.json'}; its held-out test score: {test}")


def _fidelity_arguments(p: argparse.ArgumentParser, out_required: bool = True) -> None:
    _preset_argument(p)
    p.add_argument("--cells", type=count, default=30, help="uniformly random cells besides NASNet-A (default 30)")
    p.add_argument("--seeds", type=count, default=2, help="proxy runs per cell, each its own seed (default 2)")
    p.add_argument("--seed", type=int, default=0, help="draws the cells; use one you did not tune the proxy on")
    p.add_argument("--epochs", type=count, help="stand-alone training epochs (default: the preset's retrain)")
    p.add_argument(
        "--standalone-seeds",
        type=count,
        default=1,
        help="stand-alone runs per cell, each its own seed; their mean scores the cell (default 1)",
    )
    p.add_argument("--out", type=Path, required=out_required, help="folder of the measurement; rerun to resume it")
    g = p.add_argument_group("where children train")
    g.add_argument("--workers", type=count, help="evaluations in flight (default: the preset's)")
    g.add_argument("--backend", choices=["serial", "process", "ray"], help="default: the preset's")
    g.add_argument("--ray-address", help="join this Ray cluster (e.g. auto) instead of starting a local Ray")


def fidelity(args: argparse.Namespace) -> None:
    """The measurement, shared with ``python -m benchmarks.fidelity`` (which sets ``results`` and ``command``)."""
    from ..search.fidelity import FidelityConfig, measure

    if args.seeds < 2 or args.cells < 2:
        raise UsageError("--cells and --seeds must be at least 2 (the noise needs repeats)")
    config = FidelityConfig(
        preset=args.preset, cells=args.cells, seeds=args.seeds, seed=args.seed, out=args.out, workers=args.workers,
        backend=args.backend, standalone_epochs=args.epochs, ray_address=args.ray_address,
        standalone_seeds=args.standalone_seeds,
    )  # fmt: skip
    measure(config, getattr(args, "results", None), getattr(args, "command", None))


def demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    return run_demo()


def bench(args: argparse.Namespace) -> int:
    root = Path(__file__).resolve().parents[2]
    if not (root / "benchmarks" / "run.py").is_file():
        raise UsageError("benchmarks/ is part of the source checkout; clone the repository to run it")
    sys.path.insert(0, str(root))
    from benchmarks.run import main as run_benchmarks

    return run_benchmarks(args.extra)


COMMANDS = [
    Command("search", "the paper's RL cell search (or a baseline), resumable, from a laptop to Ray", search,
            _search_arguments),
    Command("retrain", "train a search's top-k children longer and pick the final cell", retrain, _retrain_arguments),
    Command("fidelity", "does the preset's proxy rank cells as stand-alone training on held-out data does?",
            fidelity, _fidelity_arguments),
    Command("demo", "the end-to-end story on bundled data (make demo)", demo),
    Command("bench", "speed beside timm and Cadene (python -m benchmarks.run; --help for its options)", bench),
]  # fmt: skip
