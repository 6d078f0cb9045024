"""Whether a NASNet fits in memory, decided before any of it is allocated.

`NASNet` calls `refuse_oversized` first. A cheap upper bound of what its parameters and buffers take
(`memory_bound`: from the plan of cells and the genotype's ops, building no module) clears a network that surely
fits; one that might not is built on the meta device and counted exactly (`exact_bytes`; a second or two). A
network whose tensors need more than the device has free is a `ConfigError` that names the size and what to
change, instead of torch's allocation error, or the kernel's OOM killer halfway through the initialisation.
Where the free memory cannot be read (no ``/proc/meminfo``, a device without a query) nothing is refused.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from .errors import ConfigError
from .genotype import NUM_INPUT_STATES, Cell, Genotype

if TYPE_CHECKING:
    from .network import MacroConfig

__all__ = ["available_memory", "exact_bytes", "memory_bound", "op_bound", "out_of_memory", "refuse_oversized"]


def _bn(c: int) -> int:
    """A BatchNorm's tensors: weight, bias, running mean and variance, and the batch count."""
    return 4 * c + 1


_SEPARABLE = re.compile(r"sep_conv_(\d+)x\1$")  # twice (depthwise kxk, pointwise 1x1, BN)
_FACTORIZED = re.compile(r"conv_1x(\d+)_\1x1$")  # 1xk conv, kx1 conv, BN
_CONV = re.compile(r"(?:dil_)?conv_(\d+)x\1$")  # kxk conv, BN


def op_bound(op: str, c_in: int, c_out: int) -> int:
    """At least the tensors of op ``op`` (a name in `genotype.OPS`) from ``c_in`` to ``c_out`` channels: its
    convolutions by the kernel its name gives, a 1x1 projection for identity and the pools."""
    if m := _SEPARABLE.match(op):
        k = int(m[1])
        return k * k * (c_in + c_out) + c_in * c_out + c_out * c_out + 2 * _bn(c_out)
    if m := _FACTORIZED.match(op):
        return int(m[1]) * (c_in + c_out) * c_out + _bn(c_out)
    if m := _CONV.match(op):
        return int(m[1]) ** 2 * c_in * c_out + _bn(c_out)
    return c_in * c_out + _bn(c_out)


def _cell_bound(cell: Cell, c_in: int, c_prev: int | None, f: int, reduction: bool) -> tuple[int, int]:
    """An upper bound of one cell's tensors, and its output channels (exactly as `cell.Cell` has them)."""
    total = c_in * f + _bn(f)  # pre0
    if c_prev is not None:
        total += c_prev * f + _bn(f)  # pre1, a factorized reduction or a projection, at most
    widths = [f, c_in if c_prev is None else f]
    for block in cell.blocks:
        total += sum(op_bound(op, widths[i], f) for op, i in zip(block.ops, block.inputs, strict=True))
        widths.append(2 * f if block.combine == "concat" else f)
    out = 0
    for s in cell.concat:
        adjusted = s < NUM_INPUT_STATES and (reduction or widths[s] != f)
        total += widths[s] * f + _bn(f) if adjusted else 0
        out += f if adjusted else widths[s]
    return total, out


def _plan(config: MacroConfig) -> list[tuple[str, bool, int, int]]:
    """The cells in forward order as `network.NASNet` lays them out: name, reduction, filters, second input."""
    rate, at, plan = config.filter_scaling_rate, config.reduction_indices, []
    if config.stem == "imagenet":
        plan += [(f"cell_stem_{i}", True, int(config.filters / rate ** (2 - i)), -2) for i in range(2)]
    scaling = 1.0
    for n in range(config.num_cells):
        prev = -2
        if n in at:
            scaling *= rate
            plan.append((f"reduction_cell_{at.index(n)}", True, int(config.filters * scaling), -2))
            prev = -3 if config.skip_reduction_layer_input else -2
        plan.append((f"cell_{n}", False, int(config.filters * scaling), prev))
    return plan


def memory_bound(
    genotype: Genotype, config: MacroConfig, num_classes: int, in_chans: int, img_size: int, aux_head: bool
) -> int:
    """Bytes that bound from above the parameters and buffers of ``NASNet(genotype, config, num_classes,
    in_chans, img_size, aux_head=aux_head)`` in the default dtype, whatever the head's pooling."""
    imagenet = config.stem == "imagenet"
    c_stem = int(32 * config.stem_multiplier) if imagenet else int(config.filters * config.stem_multiplier)
    total = 9 * in_chans * c_stem + _bn(c_stem)
    chans: list[int | None] = [None, c_stem]
    size = (img_size - 3) // 2 + 1 if imagenet else img_size
    at = config.reduction_indices
    aux_cell = f"cell_{at[1] - 1}" if aux_head and num_classes and len(at) >= 2 else None
    for name, reduction, filters, prev in _plan(config):
        c_prev = chans[prev] if len(chans) >= -prev else None
        cells = genotype.reduction if reduction else genotype.normal
        cell, out = _cell_bound(cells, chans[-1], c_prev, filters, reduction)
        total += cell
        chans.append(out)
        if reduction:
            size = -(-size // 2)
        if name == aux_cell:
            k = max((size - 5) // 3 + 1, 1)
            total += out * 128 + _bn(128) + 128 * 768 * k * k + _bn(768) + 769 * num_classes
    total += 2 * out * num_classes + num_classes  # the classifier (twice the features: catavgmax pooling)
    return total * torch.empty(()).element_size()


def exact_bytes(build: Callable[[], nn.Module]) -> int:
    """Bytes of the parameters and buffers of the module ``build()`` makes, built on the meta device."""
    with torch.device("meta"):
        model = build()
    return sum(t.numel() * t.element_size() for t in itertools.chain(model.parameters(), model.buffers()))


def available_memory(device: torch.device) -> int | None:
    """Bytes that ``device`` can still allocate: CUDA's free memory, or on Linux the memory available to new
    allocations (``MemAvailable``, within the cgroup's limit when there is one); None where it cannot be read."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        free = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    for limit, used in (
        ("memory.max", "memory.current"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),
    ):
        try:
            left = int(Path("/sys/fs/cgroup", limit).read_text()) - int(Path("/sys/fs/cgroup", used).read_text())
        except (OSError, ValueError):  # no such cgroup file, or "max": no limit
            continue
        free = min(free, max(left, 0))
    return free


def refuse_oversized(bound: int, build: Callable[[], nn.Module], what: str) -> None:
    """A `ConfigError` when the module ``build()`` makes on the default device, whose tensors take at most
    ``bound`` bytes, needs more memory than that device has free; ``what`` names it and what sets its size."""
    device = torch.empty(()).device
    if device.type == "meta":
        return
    free = available_memory(device)
    if free is None or bound <= free:
        return
    need = exact_bytes(build)
    if need > free:
        raise ConfigError(
            f"{what} needs {_size(need)} for its weights alone, more than the {_size(free)} free on {device}: build "
            "it smaller (fewer filters or cells: --filters, --num-cells)"
        )


def _size(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def out_of_memory(error: BaseException) -> bool:
    """True when ``error`` is torch's failure to allocate (CUDA's out of memory, or the CPU allocator's)."""
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    return isinstance(error, oom) or (isinstance(error, RuntimeError) and "DefaultCPUAllocator" in str(error))
