"""The search space of the paper (Sec. 3): 50 decisions <-> `Genotype`, a uniform sampler, a canonical hash.

Per cell, each of B = 5 blocks makes 5 decisions, in this order: input 1, input 2 (block b chooses among the
2 + b states h0, h1 and earlier blocks' outputs), op 1, op 2 (one of the 13 ops of `genotype.OPS`), and the
combine (`genotype.COMBINES`). The normal cell's 5B decisions come first, then the reduction cell's. A
decoded cell outputs every state no block reads (the paper's rule), like any searched cell.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from functools import cache

from nasnet_zoo.errors import ConfigError
from nasnet_zoo.genotype import COMBINES, NUM_INPUT_STATES, OPS, Block, Cell, Genotype

DECISIONS_PER_BLOCK = 5  # input, input, op, op, combine
NUM_BLOCKS = 5  # B in the paper


@dataclass(frozen=True)
class Decision:
    """One softmax of the controller: what it chooses and among how many options."""

    kind: str  # "input", "op" or "combine"
    num_choices: int
    cell: str  # "normal" or "reduction"
    block: int


@dataclass(frozen=True)
class Proposal:
    """A decision sequence as a search algorithm proposes it, with what its policy update needs later.

    Rewards arrive asynchronously, so the log-probability under the policy that sampled the sequence (and
    that policy's version) travel with it. Algorithms without a policy leave them at 0.
    """

    actions: tuple[int, ...]
    log_prob: float = 0.0
    policy_version: int = 0


@cache
def decisions(num_blocks: int = NUM_BLOCKS) -> tuple[Decision, ...]:
    """The decision sequence, normal cell then reduction cell (2 x 5 x B entries)."""
    out: list[Decision] = []
    for cell in ("normal", "reduction"):
        for b in range(num_blocks):
            n_in = NUM_INPUT_STATES + b
            out += [Decision("input", n_in, cell, b), Decision("input", n_in, cell, b)]
            out += [Decision("op", len(OPS), cell, b), Decision("op", len(OPS), cell, b)]
            out.append(Decision("combine", len(COMBINES), cell, b))
    return tuple(out)


def decode(actions: list[int], num_blocks: int = NUM_BLOCKS) -> Genotype:
    """Turn 2 x 5 x B choices into a genotype (each cell's concat = its unused states)."""
    spec = decisions(num_blocks)
    if len(actions) != len(spec):
        raise ConfigError(f"expected {len(spec)} decisions for B = {num_blocks}, got {len(actions)}")
    for i, (a, d) in enumerate(zip(actions, spec, strict=True)):
        if not 0 <= int(a) < d.num_choices:
            raise ConfigError(f"decision {i} ({d.cell} block {d.block} {d.kind}) = {a}, not in 0..{d.num_choices - 1}")
    cells = []
    per_cell = DECISIONS_PER_BLOCK * num_blocks
    for c in range(2):
        a = [int(x) for x in actions[c * per_cell : (c + 1) * per_cell]]
        blocks = [
            Block((a[5 * b], a[5 * b + 1]), (OPS[a[5 * b + 2]], OPS[a[5 * b + 3]]), COMBINES[a[5 * b + 4]])
            for b in range(num_blocks)
        ]
        cells.append(Cell.from_blocks(blocks))
    return Genotype(*cells)


def encode(genotype: Genotype) -> list[int]:
    """The inverse of `decode` (the concat lists are implied by the paper's rule and not encoded)."""
    out: list[int] = []
    for cell in (genotype.normal, genotype.reduction):
        for block in cell.blocks:
            out += [
                *block.inputs,
                OPS.index(block.ops[0]),
                OPS.index(block.ops[1]),
                COMBINES.index(block.combine),
            ]
    return out


def sample_uniform(rng: random.Random, num_blocks: int = NUM_BLOCKS) -> list[int]:
    """Random search as the paper defines it: every decision uniform over its choices."""
    return [rng.randrange(d.num_choices) for d in decisions(num_blocks)]


def random_genotype(seed: int | None = None, num_blocks: int = NUM_BLOCKS) -> Genotype:
    return decode(sample_uniform(random.Random(seed), num_blocks), num_blocks)


def canonical_hash(genotype: Genotype) -> str:
    """A 16-hex id, equal exactly for genotypes that build the same network (see `canonical_cell`)."""
    text = json.dumps([canonical_cell(genotype.normal), canonical_cell(genotype.reduction)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def canonical_cell(cell: Cell) -> tuple:
    """The cell's blocks and output in a canonical order: equal for two cells iff they are the same network.

    A cell is a graph, so these describe one network and are merged:

    * blocks listed in another topological order, every input and the output list renumbered to match;
    * the two branches of a block swapped, for ``add`` (it commutes) and for ``concat``;
    * the output list in another order.

    A block's ``concat`` and the cell's output order only permute channels, and every reader of a state either
    acts on each channel alike without parameters (identity, pools, ReLU, drop path, ``add`` with another
    tensor permuted alike) or reads it through learned weights whose initial distribution does not depend on
    the channel order (1x1, depthwise and full convolutions, BN, the classifier). So a permutation is carried
    through to the next learned layer and absorbed there: the two networks are one reparametrised, with the same
    initial distribution and the same training dynamics. Everything else keeps cells apart: another op, input or
    combine, and which states share a computation (two blocks alike in ops and inputs are still two blocks).

    The form is the smallest, over every topological order of the blocks, of the renumbered blocks (branches
    sorted) and the sorted output list; B = 5 blocks have at most 120 orders.
    """
    best = None
    for order in _topological_orders(cell.blocks):
        new = {s: s for s in range(NUM_INPUT_STATES)} | {NUM_INPUT_STATES + b: NUM_INPUT_STATES + k
                                                          for k, b in enumerate(order)}  # fmt: skip
        blocks = tuple(
            (tuple(sorted((new[i], op) for i, op in zip(b.inputs, b.ops, strict=True))), b.combine)
            for b in (cell.blocks[k] for k in order)
        )
        form = (blocks, tuple(sorted(new[s] for s in cell.concat)))
        best = form if best is None or form < best else best
    assert best is not None
    return best


def _topological_orders(blocks: tuple[Block, ...]) -> list[tuple[int, ...]]:
    """Every order of the blocks in which each block comes after the blocks it reads."""
    needs = [{i - NUM_INPUT_STATES for i in b.inputs if i >= NUM_INPUT_STATES} for b in blocks]
    orders: list[tuple[int, ...]] = []

    def extend(order: tuple[int, ...]) -> None:
        if len(order) == len(blocks):
            orders.append(order)
        for b in range(len(blocks)):
            if b not in order and needs[b] <= set(order):
                extend((*order, b))

    extend(())
    return orders
