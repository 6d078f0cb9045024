"""The 50-decision encoding, the canonical hash and the uniform sampler (search/space.py)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from nasnet_zoo.search.space import canonical_hash, decisions, decode, encode, random_genotype, sample_uniform

from nasnet_zoo.genotype import COMBINES, NASNET_A, OPS, Block, Cell, Genotype


def test_decisions_follow_the_paper() -> None:
    spec = decisions()
    assert len(spec) == 50
    assert [d.cell for d in spec] == ["normal"] * 25 + ["reduction"] * 25
    for i, d in enumerate(spec):
        block, slot = (i % 25) // 5, i % 5
        assert d.block == block
        assert d.kind == ["input", "input", "op", "op", "combine"][slot]
        assert d.num_choices == {"input": 2 + block, "op": 13, "combine": 2}[d.kind]
    assert len(OPS) == 13 and COMBINES == ("add", "concat")


@pytest.mark.parametrize("seed", range(20))
def test_round_trip(seed: int) -> None:
    actions = sample_uniform(random.Random(seed))
    g = decode(actions)
    assert encode(g) == actions
    assert decode(encode(g)) == g
    assert Genotype.from_json(g.to_json()) == g
    for cell in (g.normal, g.reduction):  # the paper's output rule: every state no block reads
        used = {i for b in cell.blocks for i in b.inputs}
        assert cell.concat == tuple(s for s in range(7) if s not in used)


def test_encode_nasnet_a() -> None:
    a = encode(NASNET_A)
    assert a[:5] == [0, 1, OPS.index("sep_conv_5x5"), OPS.index("sep_conv_3x3"), 0]
    g = decode(a)  # the blocks survive; the concat follows the paper's rule, not the released code's list
    assert g.normal.blocks == NASNET_A.normal.blocks and g.reduction.blocks == NASNET_A.reduction.blocks
    assert g.normal.concat == (2, 3, 4, 5, 6) and NASNET_A.normal.concat == (1, 2, 3, 4, 5, 6)


def test_decode_rejects_bad_sequences() -> None:
    with pytest.raises(ValueError, match="expected 50 decisions"):
        decode([0] * 49)
    bad = [0] * 50
    bad[0] = 2  # block 0 may read only h0 and h1
    with pytest.raises(ValueError, match=r"decision 0 \(normal block 0 input\) = 2, not in 0..1"):
        decode(bad)


def _swap_branches(g: Genotype, cell: str, b: int) -> Genotype:
    c = getattr(g, cell)
    blocks = list(c.blocks)
    x = blocks[b]
    blocks[b] = Block(x.inputs[::-1], x.ops[::-1], x.combine)
    swapped = Cell(tuple(blocks), c.concat)
    return Genotype(swapped, g.reduction) if cell == "normal" else Genotype(g.normal, swapped)


def test_hash_treats_add_as_commutative_and_concat_as_ordered() -> None:
    g = random_genotype(3)
    h = canonical_hash(g)
    assert len(h) == 16 and canonical_hash(random_genotype(3)) == h
    for cell in ("normal", "reduction"):
        for b, block in enumerate(getattr(g, cell).blocks):
            if block.inputs[0] == block.inputs[1] and block.ops[0] == block.ops[1]:
                continue  # a symmetric block: swapping changes nothing
            other = _swap_branches(g, cell, b)
            assert other != g
            assert (canonical_hash(other) == h) == (block.combine == "add")
    hashes = {canonical_hash(random_genotype(s)) for s in range(300)}
    assert len(hashes) == 300


def test_uniform_sampler_is_uniform() -> None:
    rng = random.Random(0)
    draws = [sample_uniform(rng) for _ in range(2600)]
    ops = Counter(a[2] for a in draws)  # normal block 0, op 1: 13 options
    assert set(ops) == set(range(13))
    assert all(abs(n / 2600 - 1 / 13) < 0.025 for n in ops.values())
    last_input = Counter(a[20] for a in draws)  # normal block 4, input 1: 6 options
    assert set(last_input) == set(range(6))
    assert all(abs(n / 2600 - 1 / 6) < 0.03 for n in last_input.values())
