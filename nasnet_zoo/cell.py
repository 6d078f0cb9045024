"""A cell module compiled from one `genotype.Cell`, wired as TF-slim's ``NasNetABaseCell``.

1. Prepare the two input states: ``h0`` = ReLU -> 1x1 conv -> BN of the current input; ``h1`` = the input two
   cells back, brought to the same shape (ReLU + factorized reduction if its resolution is higher, ReLU + 1x1
   conv + BN if only its width differs, unchanged otherwise; the raw current input when there is none).
2. Run the blocks. In a reduction cell, ops reading ``h0``/``h1`` have stride 2, ops on block outputs stride 1.
   Every op output except ``identity``'s goes through ScheduledDropPath while training.
3. Concatenate the ``concat`` states. An input state among them is first brought to the cell's width and
   output resolution (factorized reduction, or 1x1 conv + BN; no ReLU), like TF's ``_combine_unused_states``.

Every ReLU is computed once per tensor: a state read by several ReLU-first ops is activated once (`ReLUFirst`).
Likewise a parameter-free op (a pool) applied twice to one state runs once: NASNet-A's normal cell averages
``h1`` twice and its reduction cell max-pools ``h0`` twice.
Across cells, the network sets `Cell.relu_output` when every reader of a cell's output applies ReLU first (all
of them do in NASNet-A, except a ``pre1`` that is the identity), so the cell returns ReLU(concat) and its
readers, told by `Cell.relu_inputs`, skip their own ReLU: one pass instead of two over the widest tensors.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import genotype as G
from .ops import FactorizedReduce, Norm, ReLUConvBN, ReLUFirst, ReLUReduce, drop_path, make_op, projection


class _States(list):
    """The cell's hidden states, and the parameter-free functions of them the ops ask for (the ReLU of a state,
    a pool of it), each computed the first time and reused after."""

    def __init__(self, *states: torch.Tensor) -> None:
        super().__init__(states)
        self._once: dict[tuple[str, int], torch.Tensor] = {}

    def once(self, name: str, i: int, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``fn(state i)``, computed once per ``(name, i)``."""
        if (name, i) not in self._once:
            self._once[name, i] = fn(self[i])
        return self._once[name, i]

    def relu(self, i: int) -> torch.Tensor:
        return self.once("relu", i, F.relu)


class Branch(nn.Module):
    """One op of a block, remembering which state it reads and whether drop path applies to it."""

    def __init__(self, op_name: str, source: int, c_in: int, c_out: int, stride: int, norm: Norm) -> None:
        super().__init__()
        self.source = source
        self.droppable = op_name != "identity"  # TF exempts identity, even when it projects
        self.op = make_op(op_name, c_in, c_out, stride, norm)
        # Parameter-free ops are shared by name; the stride follows from the source within a cell.
        self.pure = next(self.op.parameters(), None) is None
        self.op_name = op_name

    def forward(self, states: _States, keep_prob: torch.Tensor | None) -> torch.Tensor:
        op, i = self.op, self.source
        if isinstance(op, ReLUFirst):
            x = op.body(states.relu(i))
        elif self.pure:
            x = states.once(self.op_name, i, op)
        else:
            x = op(states[i])
        if keep_prob is not None and self.droppable:
            x = drop_path(x, keep_prob)
        return x


class BlockModule(nn.Module):
    def __init__(self, block: G.Block, widths: list[int], filters: int, reduction: bool, norm: Norm) -> None:
        super().__init__()
        strides = [2 if reduction and i < G.NUM_INPUT_STATES else 1 for i in block.inputs]
        self.left = Branch(block.ops[0], block.inputs[0], widths[block.inputs[0]], filters, strides[0], norm)
        self.right = Branch(block.ops[1], block.inputs[1], widths[block.inputs[1]], filters, strides[1], norm)
        self.concat = block.combine == "concat"
        self.out_channels = 2 * filters if self.concat else filters

    def forward(self, states: _States, keep_prob: torch.Tensor | None) -> torch.Tensor:
        a, b = self.left(states, keep_prob), self.right(states, keep_prob)
        return torch.cat([a, b], 1) if self.concat else a + b


class Cell(nn.Module):
    """A normal (``reduction=False``) or reduction cell.

    Args:
        cell: the genotype of this cell.
        c_in: channels of the current input.
        c_prev: channels of the input two cells back, or None when there is none (first cell).
        prev_reduced: the input two cells back has twice the resolution of the current input.
        filters: the cell's width F (every op outputs F channels).
        reduction: halve the resolution.
        norm: BatchNorm factory.
    """

    def __init__(
        self,
        cell: G.Cell,
        c_in: int,
        c_prev: int | None,
        prev_reduced: bool,
        filters: int,
        reduction: bool,
        norm: Norm,
    ) -> None:
        super().__init__()
        cell.validate()
        self.reduction = reduction
        self.pre0 = ReLUConvBN(c_in, filters, 1, 1, norm)
        if c_prev is None:
            self.pre1: nn.Module = nn.Identity()
            c1 = c_in
        elif prev_reduced:
            self.pre1 = ReLUReduce(c_prev, filters, norm)
            c1 = filters
        elif c_prev != filters:
            self.pre1 = ReLUConvBN(c_prev, filters, 1, 1, norm)
            c1 = filters
        else:
            self.pre1 = nn.Identity()
            c1 = filters

        widths = [filters, c1]
        self.blocks = nn.ModuleList()
        for block in cell.blocks:
            self.blocks.append(BlockModule(block, widths, filters, reduction, norm))
            widths.append(self.blocks[-1].out_channels)

        self.concat = list(cell.concat)
        self.adjust = nn.ModuleDict()  # input states in the concat list brought to the output shape
        for s in self.concat:
            if s < G.NUM_INPUT_STATES and reduction:
                self.adjust[str(s)] = FactorizedReduce(widths[s], filters, norm)
            elif s < G.NUM_INPUT_STATES and widths[s] != filters:
                self.adjust[str(s)] = projection(widths[s], filters, norm)
        self.out_channels = sum(filters if str(s) in self.adjust else widths[s] for s in self.concat)
        self.relu_output = False  # return ReLU(concat); the network sets these two (see the module docstring)
        self.relu_inputs = (False, False)  # ``x`` / ``prev`` arrive as ReLU(raw output)

    @property
    def reads_raw_prev(self) -> bool:
        """Whether ``prev`` is used as it is (``h1`` without ReLU), so it must not arrive activated."""
        return isinstance(self.pre1, nn.Identity)

    def forward(
        self, x: torch.Tensor, prev: torch.Tensor | None, keep_prob: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``keep_prob`` is this cell's ScheduledDropPath keep probability (None: no drop path)."""
        x_relu = x if self.relu_inputs[0] else F.relu(x)
        if prev is None:  # a first cell: h1 is the raw input
            h1 = x
        elif isinstance(self.pre1, ReLUFirst):
            h1 = self.pre1.body(prev if self.relu_inputs[1] else F.relu(prev))
        else:
            h1 = self.pre1(prev)
        states = _States(self.pre0.body(x_relu), h1)
        for block in self.blocks:
            states.append(block(states, keep_prob))
        adjust = self.adjust
        out = torch.cat([adjust[str(s)](states[s]) if str(s) in adjust else states[s] for s in self.concat], 1)
        return out.relu_() if self.relu_output else out
