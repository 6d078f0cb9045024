"""The ``nasnet-zoo`` command: parses arguments, calls the layers below, prints. Nothing imports it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .table import format_table


# --- commands -------------------------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    from .zoo import MODELS

    rows = [
        (
            m.name,
            m.title,
            m.paper.row if m.paper else "-",
            m.input_size,
            m.dataset,
            ", ".join(m.pretrained) or "-",
        )
        for m in MODELS.values()
    ]
    print(format_table(rows, ["model", "architecture", "paper row", "size", "dataset", "pretrained tags"]))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .zoo import MODELS, measure

    if args.model not in MODELS:
        print(f"unknown model {args.model!r}; see `nasnet-zoo list`", file=sys.stderr)
        return 2
    m = MODELS[args.model]
    info = measure(args.model)
    info.update(genotype=m.genotype.to_dict(), config=vars(m.config) if hasattr(m.config, "__dict__") else None)
    info["pretrained"] = m.pretrained
    print(json.dumps(info, indent=2, default=str))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .weights import WeightsError

    try:
        if args.source == "timm":
            from .weights.convert_timm import convert_timm_file

            out = convert_timm_file(args.src, args.model, args.out)
        else:  # pragma: no cover - argparse restricts the choices
            raise ValueError(args.source)
    except WeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo()


def cmd_search(args: argparse.Namespace) -> int:
    from .search.loop import SearchConfig, run_search
    from .search.report import SUMMARY_HEADERS, load_runs, summary_rows

    try:
        config = SearchConfig(
            preset=args.preset, algo=args.algo, seed=args.seed, budget=args.budget, workers=args.workers,
            backend=args.backend, out=args.out, resume=args.resume, max_minutes=args.max_minutes,
            data_dir=args.data_dir, ray_address=args.ray_address, gpus_per_child=args.gpus_per_child,
        )  # fmt: skip
        result = run_search(config, progress=True)
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(summary_rows(load_runs(args.out)), SUMMARY_HEADERS))
    best = result.best
    if best is not None:
        print(f"\nbest child {best['hash']} (search reward {best['reward']:.4f}) -> {args.out / 'best.json'}")
    print(f"journal: {result.run_dir / 'journal.jsonl'}; plot: {args.out / 'search.png'}")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from .search.loop import retrain

    try:
        rows = retrain(args.out, args.top_k, args.epochs, args.workers, args.backend, progress=True)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = [
        (i + 1, r["hash"], r["run"], f"{r['search_reward']:.4f}", "-" if r["reward"] is None else f"{r['reward']:.4f}")
        for i, r in enumerate(rows)
    ]
    print(format_table(table, ["rank", "child", "run", "search reward", f"after {rows[0]['epochs']} epochs"]))
    print(f"\nfinal cell -> {args.out / 'final.json'}")
    return 0


# --- parser ---------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nasnet-zoo", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(fn=fn)
        return sp

    add("list", cmd_list, "the zoo's models and their pretrained tags")
    sp = add("info", cmd_info, "one model: measured params and mult-adds beside the paper's, genotype, weights")
    sp.add_argument("model")
    sp = add("convert", cmd_convert, "convert another implementation's weights to a zoo safetensors file")
    sp.add_argument("source", choices=["timm"], help="layout of SRC: timm/Cadene state dict (.pth or .safetensors)")
    sp.add_argument("src", type=Path)
    sp.add_argument("--model", required=True, help="zoo model name, e.g. nasnet_a_large")
    sp.add_argument("-o", "--out", required=True, type=Path, help="output .safetensors")
    add("demo", cmd_demo, "the end-to-end story on bundled data")
    sp = add("search", cmd_search, "the paper's RL cell search (or a baseline), resumable, from a laptop to Ray")
    sp.add_argument(
        "--preset",
        default="cpu-digits",
        choices=["nasnet", "cpu-digits", "synthetic"],
        help="nasnet: the paper's protocol on CIFAR-10 for a GPU cluster; cpu-digits: real children on "
        "bundled digits, minutes on 2 cores; synthetic: a known-optimum reward for testing",
    )
    sp.add_argument("--algo", default="ppo", choices=["ppo", "reinforce", "random", "evolution"])
    sp.add_argument("--budget", type=int, help="children to sample (default: the preset's)")
    sp.add_argument("--workers", type=int, help="children in flight (default: the preset's)")
    sp.add_argument("--backend", choices=["serial", "process", "ray"], help="default: the preset's")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--out", type=Path, required=True, help="folder of the search; one subfolder per algo and seed")
    sp.add_argument("--resume", action="store_true", help="continue the run in --out after a stop or a crash")
    sp.add_argument("--max-minutes", type=float, help="wall-time budget (children in flight resume later)")
    sp.add_argument("--data-dir", help="cifar10: a folder holding torchvision's cifar-10-batches-py")
    sp.add_argument("--ray-address", help="join this Ray cluster (e.g. auto) instead of starting a local Ray")
    sp.add_argument("--gpus-per-child", type=float, default=0.0, help="ray: GPUs each child requests")
    sp = add("retrain", cmd_retrain, "train a search's top-k children longer and pick the final cell")
    sp.add_argument("out", type=Path, help="the --out folder of a search")
    sp.add_argument("--top-k", type=int, help="children to retrain (default: the preset's; the paper: 250)")
    sp.add_argument("--epochs", type=int, help="default: the preset's")
    sp.add_argument("--workers", type=int)
    sp.add_argument("--backend", choices=["serial", "process", "ray"])
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
