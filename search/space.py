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
        raise ValueError(f"expected {len(spec)} decisions for B = {num_blocks}, got {len(actions)}")
    for i, (a, d) in enumerate(zip(actions, spec, strict=True)):
        if not 0 <= int(a) < d.num_choices:
            raise ValueError(f"decision {i} ({d.cell} block {d.block} {d.kind}) = {a}, not in 0..{d.num_choices - 1}")
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
    """A 16-hex id equal for genotypes that differ only in the order of an ``add`` block's two branches."""

    def canon(cell: Cell) -> dict:
        blocks = []
        for b in cell.blocks:
            branches = list(zip(b.inputs, b.ops, strict=True))
            if b.combine == "add":
                branches.sort()
            blocks.append([branches, b.combine])
        return {"blocks": blocks, "concat": list(cell.concat)}

    text = json.dumps([canon(genotype.normal), canon(genotype.reduction)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
