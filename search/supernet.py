"""A supernet of the whole NASNet space: one set of weights of which every genotype is a sub-network (ENAS).

The macro layout is the zoo's CIFAR one (`nasnet_zoo.network`): a 3x3 stem, ``num_cells`` normal cells, a
reduction cell before the normal cells at ``config.reduction_indices`` doubling the filters, each cell reading
the previous output and the one before. Every cell position owns weights for everything any genotype could
put there, normal and reduction cells alike:

* **Edges**: for block ``b``, input state ``i`` and op ``o``, the module ``make_op(o, width, F, stride, norm)``,
  the very module a stand-alone cell builds for that branch (`nasnet_zoo.ops.make_op`: no second copy of an
  op). A block's output is F wide (``add``) or 2F wide (``concat``), so an edge from a block-output state owns
  one module per width; the two branches of a block that pick the same (state, op) share its weights.
* **Readers of a cell's output** (the next cells' ``pre0``/``pre1``, the classifier): that output concatenates
  the cell's ``concat`` states, so its width depends on the genotype. It is a sequence of *parts*, each F wide:
  an input state, an ``add`` block's output, or one half of a ``concat`` block's output (`output_parts`). A
  1x1 conv (or a linear layer) over a concatenation is the sum of 1x1 convs over its parts, so a reader owns a
  weight slice per possible part and a sub-network uses the slices of its parts, concatenated in its order:
  exactly the widths and the computation of the stand-alone network, for any concat list and any mix of
  combines. `PartReader` does the three things a cell does with such an input (ReLU -> 1x1 -> BN, ReLU ->
  factorized reduction, and the same without ReLU for an input state in the concat list).

So ``supernet(x, genotype)`` computes what ``NASNet(genotype, config)`` computes with the corresponding weights
(tests/test_search_supernet.py copies them across and compares the outputs, within 1e-5). Parameters of edges
a genotype does not use get no gradient. Drop path and the aux head are not part of a supernet (the search's
children use neither).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from nasnet_zoo import genotype as G
from nasnet_zoo.errors import ConfigError
from nasnet_zoo.network import MacroConfig
from nasnet_zoo.ops import Norm, make_op

from .space import NUM_BLOCKS

KINDS = ("conv", "reduce")  # a reader's computation: 1x1 conv -> BN, or factorized reduction (two 1x1 -> BN)


def num_parts(num_blocks: int) -> int:
    """Parts a cell output can hold: the two input states, then per block its sum or its two halves."""
    return G.NUM_INPUT_STATES + 3 * num_blocks


def output_parts(cell: G.Cell) -> list[int]:
    """The parts of ``cell``'s output in channel order: state ``s < 2`` is part ``s``; block state ``s`` is part
    ``2 + 3 (s - 2)`` (add) or its two halves ``+1`` (left op) and ``+2`` (right op) (concat)."""
    parts: list[int] = []
    for s in cell.concat:
        if s < G.NUM_INPUT_STATES:
            parts.append(s)
            continue
        k = G.NUM_INPUT_STATES + 3 * (s - G.NUM_INPUT_STATES)
        parts += [k] if cell.blocks[s - G.NUM_INPUT_STATES].combine == "add" else [k + 1, k + 2]
    return parts


class PartReader(nn.Module):
    """[ReLU ->] a 1x1 conv (``kind="conv"``) or a factorized reduction (``"reduce"``) -> BN, over an input made
    of parts of ``width`` channels each, any of ``parts`` possible ones, in any order; ``c_out`` channels out."""

    def __init__(self, kind: str, parts: int, width: int, c_out: int, norm: Norm, relu: bool = True) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ConfigError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind, self.width, self.relu = kind, width, relu
        halves = 2 if kind == "reduce" else 1
        if c_out % halves:
            raise ConfigError(f"factorized reduction needs an even number of output channels, got {c_out}")
        self.weight = nn.Parameter(torch.empty(halves, c_out // halves, parts * width, 1, 1))
        self.bn = norm(c_out)
        self._index: dict[tuple, torch.Tensor] = {}

    def forward(self, x: torch.Tensor, parts: tuple[int, ...]) -> torch.Tensor:
        w = self.weight.index_select(2, part_channels(parts, self.width, x.device, self._index))
        if self.relu:
            x = F.relu(x)
        if self.kind == "conv":
            return self.bn(F.conv2d(x, w[0]))
        x1 = x[:, :, ::2, ::2]
        if x.shape[-2] % 2 or x.shape[-1] % 2:  # the pad's zero row/column falls on the shifted grid
            x = F.pad(x, (0, 1, 0, 1))
        x2 = x[:, :, 1::2, 1::2]
        return self.bn(torch.cat([F.conv2d(x1, w[0]), F.conv2d(x2, w[1])], 1))


def part_channels(parts: tuple[int, ...], width: int, device: torch.device, cache: dict) -> torch.Tensor:
    """The channels of a per-part weight that ``parts`` (in this order, ``width`` each) read; cached."""
    key = (parts, str(device))
    if key not in cache:
        cache[key] = torch.cat([torch.arange(p * width, (p + 1) * width) for p in parts]).to(device)
    return cache[key]


@dataclass(frozen=True)
class _Source:
    """An output a cell reads: how many parts it may hold, how wide each is, its stride from the input."""

    parts: int
    width: int
    stride: int


def edge_key(block: int, state: int, op: str, wide: bool = False) -> str:
    """The name of an edge's module; ``wide``: the state is a ``concat`` block's output (2F channels)."""
    return f"b{block}_s{state}_{op}" + ("_wide" if wide else "")


class SuperCell(nn.Module):
    """One cell position: every edge, the two input readers and the adjustments of input states."""

    def __init__(
        self, x: _Source, prev: _Source | None, filters: int, reduction: bool, num_blocks: int, norm: Norm
    ) -> None:
        super().__init__()
        self.reduction, self.filters, self.num_blocks = reduction, filters, num_blocks
        self.pre0 = PartReader("conv", x.parts, x.width, filters, norm)
        self.prev_reduced = prev is not None and prev.stride != x.stride
        self.pre1 = None
        if prev is not None:  # identity when the input is one part of F channels (decided per genotype)
            self.pre1 = PartReader("reduce" if self.prev_reduced else "conv", prev.parts, prev.width, filters, norm)
        widths = [filters, x.width if prev is None else filters]  # a first cell's h1 is its raw input
        self.edges = nn.ModuleDict()
        for b in range(num_blocks):
            for i in range(G.NUM_INPUT_STATES + b):
                stride = 2 if reduction and i < G.NUM_INPUT_STATES else 1
                for op in G.OPS:
                    if i < G.NUM_INPUT_STATES:
                        self.edges[edge_key(b, i, op)] = make_op(op, widths[i], filters, stride, norm)
                    else:
                        self.edges[edge_key(b, i, op)] = make_op(op, filters, filters, stride, norm)
                        self.edges[edge_key(b, i, op, True)] = make_op(op, 2 * filters, filters, stride, norm)
        self.adjust = nn.ModuleDict()  # input states in the concat list, brought to the output's shape
        for s, w in enumerate(widths):
            if reduction or w != filters:
                self.adjust[str(s)] = PartReader("reduce" if reduction else "conv", 1, w, filters, norm, relu=False)

    def forward(
        self, x: torch.Tensor, x_parts: tuple[int, ...], prev: torch.Tensor | None, prev_parts: tuple[int, ...],
        cell: G.Cell,
    ) -> torch.Tensor:  # fmt: skip
        states = [self.pre0(x, x_parts)]
        if prev is None:
            states.append(x)
        elif self.reads_prev(prev_parts):
            states.append(self.pre1(prev, prev_parts))
        else:
            states.append(prev)
        for b, block in enumerate(cell.blocks):
            out = [self.edges[key](states[i]) for i, key in zip(block.inputs, self.edge_keys(cell, b), strict=True)]
            states.append(torch.cat(out, 1) if block.combine == "concat" else out[0] + out[1])
        adjust = self.adjust
        outs = [adjust[str(s)](states[s], (0,)) if str(s) in adjust else states[s] for s in cell.concat]
        return torch.cat(outs, 1)

    def reads_prev(self, prev_parts: tuple[int, ...]) -> bool:
        """Whether ``pre1`` transforms the input two cells back (else it is used as it is: one part of F)."""
        return self.pre1 is not None and (self.prev_reduced or len(prev_parts) * self.pre1.width != self.filters)

    def edge_keys(self, cell: G.Cell, b: int) -> list[str]:
        """The edges block ``b`` of ``cell`` runs, left then right."""
        if len(cell.blocks) > self.num_blocks:
            raise ConfigError(f"the supernet has {self.num_blocks} blocks per cell, the genotype {len(cell.blocks)}")
        block = cell.blocks[b]
        return [edge_key(b, i, op, i >= G.NUM_INPUT_STATES and cell.blocks[i - G.NUM_INPUT_STATES].combine == "concat")
                for i, op in zip(block.inputs, block.ops, strict=True)]  # fmt: skip

    def used(self, cell: G.Cell, prev_parts: tuple[int, ...]) -> list[nn.Module]:
        """The modules this position runs for ``cell``."""
        modules: list[nn.Module] = [self.pre0, *([self.pre1] if self.reads_prev(prev_parts) else [])]
        modules += [self.adjust[str(s)] for s in cell.concat if str(s) in self.adjust]
        return modules + [self.edges[k] for b in range(len(cell.blocks)) for k in self.edge_keys(cell, b)]


@dataclass(frozen=True)
class _Layer:
    name: str
    reduction: bool
    filters: int
    prev: int  # offset into the outputs: -2 the output before the input, -3 one further back


def layer_plan(config: MacroConfig) -> list[_Layer]:
    """The cells in forward order, as `NASNet` stacks them for a CIFAR stem."""
    plan, scaling = [], 1.0
    at = config.reduction_indices
    for n in range(config.num_cells):
        prev = -2
        if n in at:
            scaling *= config.filter_scaling_rate
            plan.append(_Layer(f"reduction_cell_{at.index(n)}", True, int(config.filters * scaling), -2))
            prev = -3 if config.skip_reduction_layer_input else -2
        plan.append(_Layer(f"cell_{n}", False, int(config.filters * scaling), prev))
    return plan


class Supernet(nn.Module):
    """Every genotype of the space with ``num_blocks`` blocks per cell, in the macro layout ``config`` (a CIFAR
    stem). ``supernet(x, genotype)`` runs that genotype's sub-network; see the module docstring."""

    def __init__(
        self, config: MacroConfig, num_classes: int = 10, in_chans: int = 3, num_blocks: int = NUM_BLOCKS,
        channels_last: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        if config.stem != "cifar":
            raise ConfigError(f"the supernet builds the CIFAR layout; got a {config.stem!r} stem")
        self.config, self.num_classes, self.num_blocks = config, num_classes, num_blocks
        self.channels_last = channels_last
        norm = partial(nn.BatchNorm2d, eps=config.bn_eps, momentum=1 - config.bn_decay)
        c_stem = int(config.filters * config.stem_multiplier)
        self.stem_conv = nn.Conv2d(in_chans, c_stem, 3, padding=1, bias=False)  # TF SAME for 3x3 stride 1
        self.stem_bn = norm(c_stem)
        self.plan = layer_plan(config)
        sources = [None, _Source(1, c_stem, 1)]  # None: no output two cells back
        self.cells = nn.ModuleList()
        for layer in self.plan:
            x = sources[-1]
            prev = sources[layer.prev] if len(sources) >= -layer.prev else None
            self.cells.append(SuperCell(x, prev, layer.filters, layer.reduction, num_blocks, norm))
            sources.append(_Source(num_parts(num_blocks), layer.filters, x.stride * (2 if layer.reduction else 1)))
        last = sources[-1]
        self.classifier_weight = nn.Parameter(torch.empty(num_classes, last.parts * last.width))
        self.classifier_bias = nn.Parameter(torch.zeros(num_classes))
        self.drop_rate = 1 - config.dense_dropout_keep_prob
        self._classifier_index: dict[tuple[int, ...], torch.Tensor] = {}
        for m in self.modules():  # TF-slim's variance_scaling(FAN_OUT), as NASNet
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, PartReader):
                for w in m.weight:  # each half as the conv it stands for
                    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.classifier_weight)  # kaiming's logits (std ~6) blew up the first shared steps

    def wiring(self, genotype: G.Genotype) -> Iterator[tuple[int, G.Cell, int | None]]:
        """Per cell position: its index, its genotype cell, and the index of its input two cells back in the list
        of outputs ``[none, stem, cell 0, ...]`` (None: there is none); its input is the output before it."""
        for n, layer in enumerate(self.plan):
            prev = n + 2 + layer.prev
            yield n, (genotype.reduction if layer.reduction else genotype.normal), prev if prev > 0 else None

    def output_parts(self, genotype: G.Genotype) -> list[tuple[int, ...]]:
        """The parts of every output ``[none, stem, cell 0, ...]`` (the stem's is one part)."""
        parts: list[tuple[int, ...]] = [(), (0,)]
        for _, g, _ in self.wiring(genotype):
            parts.append(tuple(output_parts(g)))
        return parts

    def forward(self, x: torch.Tensor, genotype: G.Genotype) -> torch.Tensor:
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        parts = self.output_parts(genotype)
        stem = self.stem_bn(self.stem_conv(x))
        if self.channels_last:  # a 1-channel input is both layouts at once, and the stem's output follows NCHW
            stem = stem.contiguous(memory_format=torch.channels_last)
        outs: list[torch.Tensor | None] = [None, stem]
        for n, g, prev in self.wiring(genotype):
            p = None if prev is None else outs[prev]
            outs.append(self.cells[n](outs[n + 1], parts[n + 1], p, () if prev is None else parts[prev], g))
        x = F.dropout(F.relu(outs[-1]).mean((2, 3)), self.drop_rate, self.training)
        w = self.classifier_weight.index_select(1, part_channels(parts[-1], self.plan[-1].filters, x.device,
                                                                self._classifier_index))  # fmt: skip
        return F.linear(x, w, self.classifier_bias)

    def used(self, genotype: G.Genotype) -> list[nn.Module]:
        """The modules the sub-network of ``genotype`` runs (re-estimating BN statistics resets theirs only)."""
        parts = self.output_parts(genotype)
        modules: list[nn.Module] = [self.stem_bn]
        for n, g, prev in self.wiring(genotype):
            modules += self.cells[n].used(g, () if prev is None else parts[prev])
        return modules
