"""A cell module compiled from one `genotype.Cell`, wired as TF-slim's ``NasNetABaseCell``.

1. Prepare the two input states: ``h0`` = ReLU -> 1x1 conv -> BN of the current input; ``h1`` = the input two
   cells back, brought to the same shape (ReLU + factorized reduction if its resolution is higher, ReLU + 1x1
   conv + BN if only its width differs, unchanged otherwise; the raw current input when there is none).
2. Run the blocks. In a reduction cell, ops reading ``h0``/``h1`` have stride 2, ops on block outputs stride 1.
   Every op output except ``identity``'s goes through ScheduledDropPath while training.
3. Concatenate the ``concat`` states. An input state among them is first brought to the cell's width and
   output resolution (factorized reduction, or 1x1 conv + BN; no ReLU), like TF's ``_combine_unused_states``.

Each op takes its own ReLU, as in TF-slim (a state read by three ReLU-first ops is activated three times).
A parameter-free op (a pool) applied twice to one state runs once: NASNet-A's normal cell averages ``h1`` twice
and its reduction cell max-pools ``h0`` twice; the second reader gets the first one's result.
"""

from __future__ import annotations

import torch
import torch.fx
from torch import nn

from . import genotype as G
from .ops import FactorizedReduce, Norm, ReLUConvBN, ReLUReduce, drop_path, make_op, projection

# A traced graph (torch.fx) calls drop path as one function: its random mask is sized by the batch, which a
# tracer's proxy cannot give `torch.rand`.
torch.fx.wrap("drop_path")


class Branch(nn.Module):
    """One op of a block, remembering which state it reads and whether drop path applies to it."""

    def __init__(self, op_name: str, source: int, c_in: int, c_out: int, stride: int, norm: Norm) -> None:
        super().__init__()
        self.source = source
        self.droppable = op_name != "identity"  # TF exempts identity, even when it projects
        self.op = make_op(op_name, c_in, c_out, stride, norm)
        # A parameter-free op's result is shared by every branch applying it to the same state ("" : not shared).
        self.memo_key = f"{op_name}({source})" if next(self.op.parameters(), None) is None else ""

    def forward(
        self, states: list[torch.Tensor], memo: dict[str, torch.Tensor], keep_prob: torch.Tensor | None
    ) -> torch.Tensor:
        if self.memo_key in memo:
            x = memo[self.memo_key]
        else:
            x = self.op(states[self.source])
            if self.memo_key:
                memo[self.memo_key] = x
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

    def forward(
        self, states: list[torch.Tensor], memo: dict[str, torch.Tensor], keep_prob: torch.Tensor | None
    ) -> torch.Tensor:
        a, b = self.left(states, memo, keep_prob), self.right(states, memo, keep_prob)
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

    def forward(
        self, x: torch.Tensor, prev: torch.Tensor | None, keep_prob: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``keep_prob`` is this cell's ScheduledDropPath keep probability (None: no drop path)."""
        h1 = x if prev is None else self.pre1(prev)  # a first cell: h1 is the raw input
        states = [self.pre0(x), h1]
        memo: dict[str, torch.Tensor] = {}
        for block in self.blocks:
            states.append(block(states, memo, keep_prob))
        inputs = [states[0], states[1]]
        for key, adjust in self.adjust.items():
            inputs[int(key)] = adjust(inputs[int(key)])
        return torch.cat([inputs[s] if s < G.NUM_INPUT_STATES else states[s] for s in self.concat], 1)
