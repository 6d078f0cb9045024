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


def _swap_branches(cell: Cell, b: int) -> Cell:
    blocks = list(cell.blocks)
    x = blocks[b]
    blocks[b] = Block(x.inputs[::-1], x.ops[::-1], x.combine)
    return Cell(tuple(blocks), cell.concat)


def _reorder(cell: Cell, order: list[int]) -> Cell | None:
    """The same blocks listed in ``order`` (order[k] = the old index of the k-th block), every input and the
    output renumbered; None when ``order`` puts a block before one it reads."""
    new = {0: 0, 1: 1} | {2 + b: 2 + k for k, b in enumerate(order)}
    if any(i >= 2 and new[i] >= 2 + k for k, b in enumerate(order) for i in cell.blocks[b].inputs):
        return None
    blocks = [Block(tuple(new[i] for i in cell.blocks[b].inputs), cell.blocks[b].ops, cell.blocks[b].combine)
              for b in order]  # fmt: skip
    return Cell(tuple(blocks), tuple(new[s] for s in cell.concat))


def _with(g: Genotype, normal: Cell) -> Genotype:
    return Genotype(normal, g.reduction)


def test_hash_merges_cells_that_are_the_same_network() -> None:
    rng = random.Random(0)
    reorders = 0
    for seed in range(40):
        g = random_genotype(seed)
        h = canonical_hash(g)
        for _ in range(10):  # blocks listed in another order, inputs and output renumbered
            order = list(range(5))
            rng.shuffle(order)
            other = _reorder(g.normal, order)
            if other is None or other == g.normal:
                continue
            reorders += 1
            assert tuple(sorted(other.concat)) == Cell.unused_states(other.blocks)  # still the paper's rule
            assert canonical_hash(_with(g, other)) == h
        for b in range(5):  # either combine: swapping the branches only permutes channels (see canonical_cell)
            assert canonical_hash(_with(g, _swap_branches(g.normal, b))) == h
        concat = list(g.normal.concat)
        rng.shuffle(concat)
        assert canonical_hash(_with(g, Cell(g.normal.blocks, tuple(concat)))) == h
    assert reorders > 50


def _cell(*blocks: tuple[int, int, str, str, str], concat: tuple[int, ...]) -> Cell:
    return Cell(tuple(Block((i, j), (a, b), c) for i, j, a, b, c in blocks), concat)


def test_hash_keeps_different_networks_apart() -> None:
    g = random_genotype(3)
    h = canonical_hash(g)
    assert len(h) == 16 and canonical_hash(random_genotype(3)) == h
    assert len({canonical_hash(random_genotype(s)) for s in range(300)}) == 300
    assert canonical_hash(Genotype(g.reduction, g.normal)) != h  # the cells' roles matter
    first = g.normal.blocks[0]
    for changed in (
        Block(first.inputs, (OPS[(OPS.index(first.ops[0]) + 1) % 13], first.ops[1]), first.combine),
        Block(first.inputs, first.ops, "concat" if first.combine == "add" else "add"),
    ):
        assert canonical_hash(_with(g, Cell((changed, *g.normal.blocks[1:]), g.normal.concat))) != h
    # Two blocks alike in ops and inputs are two computations: a reader of the first is not a reader of the
    # second (a tree of expressions would merge these two).
    x = (0, 1, "sep_conv_3x3", "identity", "add")
    shared = _cell(x, x, (2, 2, "conv_3x3", "avg_pool_3x3", "add"), concat=(3, 4))
    separate = _cell(x, x, (2, 3, "conv_3x3", "avg_pool_3x3", "add"), concat=(3, 4))
    assert canonical_hash(_with(g, shared)) != canonical_hash(_with(g, separate))
    assert canonical_hash(_with(g, separate)) == canonical_hash(_with(g, _swap_branches(separate, 2)))
    # the output list is a set of states, not an order-free count: another state is another network
    assert canonical_hash(_with(g, _cell(x, x, x, concat=(2, 3, 4)))) != canonical_hash(
        _with(g, _cell(x, x, x, concat=(1, 2, 3, 4))))  # fmt: skip


def test_uniform_sampler_is_uniform() -> None:
    rng = random.Random(0)
    draws = [sample_uniform(rng) for _ in range(2600)]
    ops = Counter(a[2] for a in draws)  # normal block 0, op 1: 13 options
    assert set(ops) == set(range(13))
    assert all(abs(n / 2600 - 1 / 13) < 0.025 for n in ops.values())
    last_input = Counter(a[20] for a in draws)  # normal block 4, input 1: 6 options
    assert set(last_input) == set(range(6))
    assert all(abs(n / 2600 - 1 / 6) < 0.03 for n in last_input.values())
