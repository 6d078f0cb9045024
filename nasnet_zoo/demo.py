"""``nasnet-zoo demo``: the zoo measured against the paper, then NASNet-A and a sampled cell through one builder.

Top layer, beside ``cli.py``: it may import everything, and only the CLI imports it.
"""

from __future__ import annotations

import time

import torch

from .cli import format_table
from .genotype import NASNET_A
from .search.space import canonical_hash, random_genotype
from .zoo import MODELS, create_model, measure


def _fmt_m(x: float | None, unit: float = 1e6) -> str:
    return "-" if x is None else f"{x / unit:.2f}"


def zoo_table() -> str:
    rows = []
    for name, m in MODELS.items():
        if m.generic:
            continue
        r = measure(name)
        p = m.paper
        rows.append(
            (
                name,
                m.title,
                p.row if p else "-",
                m.input_size,
                _fmt_m(r["params_with_bn_stats"]),
                p.params_m if p else "-",
                _fmt_m(r["mult_adds"]),
                p.mult_adds_m if p and p.mult_adds_m else "-",
            )
        )
    headers = ["model", "built", "paper row", "size", "params M", "paper", "mult-adds M", "paper"]
    return format_table(rows, headers)


def _time_forward(model: torch.nn.Module, size: int, batch: int = 8, repeats: int = 3) -> float:
    x = torch.randn(batch, 3, size, size)
    model.eval()
    with torch.inference_mode():
        model(x)
        t = time.perf_counter()
        for _ in range(repeats):
            model(x)
    return (time.perf_counter() - t) / repeats


def run_demo(seed: int = 0) -> int:
    torch.manual_seed(seed)
    print("NASNet zoo, measured beside the paper (params include BN statistics, as the paper counts):\n")
    print(zoo_table())

    g = random_genotype(seed)
    print("\nOne builder, two cells (CIFAR layout, 6 @ 768, batch of 8 at 32x32):\n")
    rows = []
    for label, genotype in (("NASNet-A", NASNET_A), (f"sampled {canonical_hash(g)}", g)):
        model = create_model("nasnet_cifar", genotype=genotype)
        seconds = _time_forward(model, 32)
        params = sum(p.numel() for p in model.parameters())
        rows.append((label, f"{params / 1e6:.2f}", model.num_features, f"{seconds * 1000:.0f}"))
    print(format_table(rows, ["cell", "params M", "features", "forward ms"]))
    print(f"\nsampled genotype: {g.to_json(indent=None)}")
    return 0
