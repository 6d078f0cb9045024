"""The ``nasnet-zoo`` command: parses arguments, calls the layers below, prints. Nothing imports it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def format_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain-text table (also valid GitHub markdown)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells[1:])])


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


def cmd_bench(args: argparse.Namespace) -> int:
    root = Path(__file__).resolve().parent.parent
    if not (root / "benchmarks" / "run.py").is_file():
        print("error: benchmarks/ is part of the source checkout; clone the repository to run it", file=sys.stderr)
        return 2
    sys.path.insert(0, str(root))
    from benchmarks.run import main as bench

    return bench(args.extra)


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
    sp = sub.add_parser(
        "bench", add_help=False, help="speed beside timm and Cadene (python -m benchmarks.run; --help for options)"
    )
    sp.set_defaults(fn=cmd_bench, passthrough=True)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
