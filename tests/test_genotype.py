import json
import re

import pytest

from nasnet_zoo.genotype import NASNET_A, OPS, Block, Cell, Genotype, GenotypeError

# NASNet-A as TF-slim's nasnet_utils.py writes it (its op names, its flat lists).
TF_NORMAL_OPS = ["separable_5x5_2", "separable_3x3_2", "separable_5x5_2", "separable_3x3_2", "avg_pool_3x3",
                 "none", "avg_pool_3x3", "avg_pool_3x3", "separable_3x3_2", "none"]  # fmt: skip
TF_NORMAL_IDX = [0, 1, 1, 1, 0, 1, 1, 1, 0, 0]
TF_NORMAL_USED = [1, 0, 0, 0, 0, 0, 0]
TF_REDUCTION_OPS = ["separable_5x5_2", "separable_7x7_2", "max_pool_3x3", "separable_7x7_2", "avg_pool_3x3",
                    "separable_5x5_2", "none", "avg_pool_3x3", "separable_3x3_2", "max_pool_3x3"]  # fmt: skip
TF_REDUCTION_IDX = [0, 1, 0, 1, 0, 1, 3, 2, 2, 0]
TF_REDUCTION_USED = [1, 1, 1, 0, 0, 0, 0]


def tf_name(op: str) -> str:
    if op == "identity":
        return "none"
    if op.startswith("sep_conv_"):
        return f"separable_{op.removeprefix('sep_conv_')}_2"
    return op


@pytest.mark.parametrize(
    "cell, ops, idx, used",
    [
        (NASNET_A.normal, TF_NORMAL_OPS, TF_NORMAL_IDX, TF_NORMAL_USED),
        (NASNET_A.reduction, TF_REDUCTION_OPS, TF_REDUCTION_IDX, TF_REDUCTION_USED),
    ],
)
def test_nasnet_a_is_the_released_tf_cell(cell, ops, idx, used):
    assert [tf_name(op) for b in cell.blocks for op in b.ops] == ops
    assert [i for b in cell.blocks for i in b.inputs] == idx
    assert all(b.combine == "add" for b in cell.blocks)
    assert list(cell.concat) == [s for s, u in enumerate(used) if not u]


def test_released_concat_differs_from_the_papers_rule():
    # The code's lists, not "every unused state": normal adds h1, reduction adds h3 although blocks read them.
    assert Cell.unused_states(NASNET_A.normal.blocks) == (2, 3, 4, 5, 6)
    assert Cell.unused_states(NASNET_A.reduction.blocks) == (4, 5, 6)
    assert Cell.from_blocks(NASNET_A.normal.blocks).concat == (2, 3, 4, 5, 6)


def test_op_vocabulary_is_the_papers_thirteen():
    assert len(OPS) == 13 and len(set(OPS)) == 13 and "identity" in OPS


@pytest.mark.parametrize("via", ["file", "string", "dict", "name"])
def test_json_round_trip(tmp_path, via):
    blocks = [Block((0, 1), ("conv_1x7_7x1", "max_pool_5x5"), "concat"), Block((2, 0), ("identity", "dil_conv_3x3"))]
    g = Genotype(Cell.from_blocks(blocks), NASNET_A.reduction)
    if via == "file":
        back = Genotype.load(g.save(tmp_path / "g.json"))
    elif via == "string":
        back = Genotype.load(g.to_json())
    elif via == "dict":
        back = Genotype.load(json.loads(g.to_json()))
    else:
        g, back = NASNET_A, Genotype.load("NASNET_A")
    assert back == g and hash(back) == hash(g)


def cell_dict(**block_overrides):
    block = {"inputs": [0, 1], "ops": ["sep_conv_3x3", "identity"], "combine": "add"} | block_overrides
    return {"blocks": [block], "concat": [2]}


@pytest.mark.parametrize(
    "normal, message",
    [
        (cell_dict(ops=["sep_conv_9x9", "identity"]), "normal cell block 0: unknown op 'sep_conv_9x9'"),
        (cell_dict(inputs=[0, 2]), "normal cell block 0: input 2 out of range; block 0 may read states 0..1"),
        (cell_dict(inputs=[-1, 0]), "input -1 out of range"),
        (cell_dict(combine="mul"), "unknown combine 'mul'"),
        (cell_dict(ops=["identity"]), "needs exactly 2 inputs and 2 ops"),
        ({"blocks": [], "concat": [0]}, "normal cell: a cell needs at least one block"),
        ({"blocks": cell_dict()["blocks"], "concat": []}, "normal cell: empty concat list"),
        ({"blocks": cell_dict()["blocks"], "concat": [2, 2]}, "normal cell: duplicate states in concat list"),
        ({"blocks": cell_dict()["blocks"], "concat": [3]}, "concat state 3 out of range 0..2"),
        ({"blocks": cell_dict()["blocks"]}, "expected an object with keys 'blocks' and 'concat'"),
    ],
)
def test_validation_names_the_problem(normal, message):
    with pytest.raises(GenotypeError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        Genotype.from_dict({"normal": normal, "reduction": NASNET_A.reduction.to_dict()})


def test_wrong_block_count_in_flat_lists():
    with pytest.raises(GenotypeError, match="one op per input and an even length"):
        Cell.from_lists(["identity"] * 3, [0, 1, 0], concat=[2])
    with pytest.raises(GenotypeError, match="2 blocks but 3 combines"):
        Cell.from_lists(["identity"] * 4, [0, 1, 0, 1], concat=[2], combine=["add"] * 3)


def test_bad_sources(tmp_path):
    with pytest.raises(GenotypeError, match="not valid JSON"):
        Genotype.load("{not json")
    with pytest.raises(GenotypeError, match="no genotype file at"):
        Genotype.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"normal": cell_dict(inputs=[5, 0]), "reduction": cell_dict()}))
    with pytest.raises(GenotypeError, match=r"bad\.json: normal cell block 0: input 5"):
        Genotype.load(bad)
    with pytest.raises(GenotypeError, match="keys 'normal' and 'reduction'"):
        Genotype.from_dict({"normal": cell_dict()})


def test_a_binary_file_is_not_a_genotype(tmp_path) -> None:
    path = tmp_path / "best.json"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    with pytest.raises(GenotypeError, match=rf"{re.escape(str(path))} is not a text file"):
        Genotype.load(path)
