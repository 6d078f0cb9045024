"""What the ``nasnet-zoo`` commands share: the `Command` record, argument types, and the parent parsers that
declare each shared option once (weights and architecture, device, data workers, the weights cache)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError


class UsageError(ConfigError):
    """The command line itself is wrong (flags that need each other): exit status 2, like argparse's errors."""


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, a one-line help, its own arguments and the parents it shares options with."""

    name: str
    help: str
    run: Callable[[argparse.Namespace], int | None]
    arguments: Callable[[argparse.ArgumentParser], None] = lambda p: None
    parents: tuple[argparse.ArgumentParser, ...] = ()
    description: str = ""


def _whole(text: str, least: int) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {n}")
    return n


def count(text: str) -> int:
    """An argparse type: an integer >= 1 (cells, filters, epochs, budgets, children in flight)."""
    return _whole(text, 1)


def loader_workers(text: str) -> int:
    """An argparse type: DataLoader processes, >= 0 (0 loads in the main process)."""
    return _whole(text, 0)


def seed(text: str) -> int:
    """An argparse type: a seed of the training RNGs, 0 <= seed < 2**32 (numpy's range)."""
    n = _whole(text, 0)
    if n >= 2**32:
        raise argparse.ArgumentTypeError(f"must be below 2**32, got {n}")
    return n


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def positive(text: str) -> float:
    """An argparse type: a number > 0 (minutes)."""
    x = _number(text)
    if not x > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {x}")
    return x


def nonnegative(text: str) -> float:
    """An argparse type: a number >= 0 (GPUs per child)."""
    x = _number(text)
    if not x >= 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {x}")
    return x


def device(text: str) -> str:
    """An argparse type: a torch device this machine has (cpu, cuda, cuda:1, mps, ...)."""
    import torch

    try:
        d = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: cpu, cuda, cuda:1, mps, ...") from None
    if d.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text}: this machine has no CUDA device torch can use; use --device cpu")
    if d.type == "cuda" and d.index is not None and d.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text}: this machine has CUDA devices 0..{torch.cuda.device_count() - 1}")
    return text


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1]."""
    x = _number(text)
    if not 0 <= x <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {x}")
    return x


def _parent(add: Callable[[argparse.ArgumentParser], Any]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    add(parser)
    return parser


CACHE = _parent(
    lambda p: p.add_argument(
        "--cache-dir", type=Path, help="weights cache folder (default: huggingface_hub's and torch.hub's)"
    )
)
DEVICE = _parent(
    lambda p: p.add_argument("--device", type=device, help="cuda, cuda:1, cpu, ... (default: cuda when available)")
)


def _workers(p: argparse.ArgumentParser) -> None:
    default = min(4, os.cpu_count() or 1)
    p.add_argument(
        "-j",
        "--workers",
        type=loader_workers,
        default=default,
        help=f"data loading processes; 0 loads in the main process (default {default}: at most the CPUs)",
    )


WORKERS = _parent(_workers)


def _architecture(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("architecture", "for nasnet_cifar / nasnet_imagenet, or to change a zoo model's size")
    g.add_argument("--genotype", help="a cell genotype: a JSON file (a search's best.json) or NASNET_A")
    g.add_argument("--num-cells", type=count, help="normal cells in all (3 N); default: the model's")
    g.add_argument("--filters", type=count, help="the first stack's width F; default: the model's")


ARCHITECTURE = _parent(_architecture)


def _weights(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("weights", "MODEL may also be a finetune export folder, local-dir:DIR or hf-hub:ORG/NAME")
    g.add_argument("--weights", help="weights instead of the tag's: a .safetensors file, or hf-hub:ORG/NAME@REVISION")
    g.add_argument("--no-pretrained", action="store_true", help="random initialisation, on purpose")
    g.add_argument("--in-chans", type=count, help="input channels (default 3)")


WEIGHTS = _parent(_weights)


def model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """`create_model` arguments from the architecture and weights options that were given."""
    names = ("genotype", "num_cells", "filters", "in_chans")
    return {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}


# --- timm's script flags, where the zoo's commands do the same job ---------------------------------------------
def _timm_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("timm's flags", "named as in timm's validate.py, train.py, benchmark.py, inference.py")
    g.add_argument("--amp", action="store_true", help="bf16 autocast, on CPU too (timm's float16 is not offered)")
    g.add_argument("--channels-last", action="store_true", help="channels_last weights too (activations already are)")
    g.add_argument(
        "--torchcompile", nargs="?", const="inductor", metavar="BACKEND",
        help="torch.compile the model (in place) with BACKEND (default inductor)",
    )  # fmt: skip
    g.add_argument("--results-file", type=Path, metavar="FILE", help="also write the printed JSON result to FILE")


TIMM_FLAGS = _parent(_timm_flags)


def compile_in_place(model: Any, args: argparse.Namespace) -> None:
    """``--torchcompile BACKEND``: compile ``model``'s forward in place (its state dict keeps its names)."""
    if getattr(args, "torchcompile", None):
        model.compile(backend=args.torchcompile)


def write_results(args: argparse.Namespace, result: Any) -> None:
    """``--results-file FILE``: the JSON the command prints, written to FILE as well (atomically)."""
    import json

    from ..files import atomic_write

    if getattr(args, "results_file", None) is not None:
        atomic_write(args.results_file, json.dumps(result, indent=2, default=str) + "\n")
