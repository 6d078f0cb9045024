import pytest
import torch
from torch import nn

from nasnet_zoo.cell import Cell
from nasnet_zoo.genotype import NASNET_A, Block
from nasnet_zoo.genotype import Cell as CellGenotype
from nasnet_zoo.ops import FactorizedReduce


def test_nasnet_a_cells_output_6f_and_4f():
    normal = Cell(NASNET_A.normal, 30, 20, False, 8, False, nn.BatchNorm2d)
    reduction = Cell(NASNET_A.reduction, 30, 20, False, 8, True, nn.BatchNorm2d)
    x, prev = torch.randn(2, 30, 9, 9), torch.randn(2, 20, 9, 9)
    assert normal(x, prev).shape == (2, 48, 9, 9) and normal.out_channels == 48
    assert reduction(x, prev).shape == (2, 32, 5, 5) and reduction.out_channels == 32


def test_preparing_the_previous_input():
    norm = nn.BatchNorm2d
    reduced = Cell(NASNET_A.normal, 16, 12, True, 8, False, norm)  # prev at twice the resolution
    assert isinstance(reduced.pre1.reduce, FactorizedReduce) and isinstance(reduced.pre1.act, nn.ReLU)
    assert reduced(torch.randn(1, 16, 5, 5), torch.randn(1, 12, 9, 9)).shape == (1, 48, 5, 5)
    widened = Cell(NASNET_A.normal, 16, 12, False, 8, False, norm)  # only the width differs
    assert isinstance(widened.pre1.conv, nn.Conv2d) and widened.pre1.conv.in_channels == 12
    same = Cell(NASNET_A.normal, 16, 8, False, 8, False, norm)
    assert isinstance(same.pre1, nn.Identity)


def test_first_cell_reads_the_raw_input_and_projects_it_in_the_output():
    # CIFAR's cell_0: no previous input, so h1 is the raw 96-channel stem output. Its pools get a 1x1 conv + BN
    # and, being in the concat list, it is brought to F by a 1x1 conv + BN (TF's _combine_unused_states).
    cell = Cell(NASNET_A.normal, 96, None, False, 32, False, nn.BatchNorm2d)
    assert isinstance(cell.pre1, nn.Identity)
    pool_on_h1 = cell.blocks[3].left.op  # avg_pool_3x3 on h1
    assert isinstance(pool_on_h1, nn.Sequential) and pool_on_h1.conv.in_channels == 96
    assert cell.adjust["1"].conv.in_channels == 96
    assert cell(torch.randn(2, 96, 8, 8), None).shape == (2, 192, 8, 8)


def test_concat_combine_doubles_a_states_width_and_the_cell_tracks_it():
    g = CellGenotype.from_blocks(
        [Block((0, 1), ("sep_conv_3x3", "max_pool_3x3"), "concat"), Block((2, 2), ("identity", "conv_1x1"))]
    )
    cell = Cell(g, 10, 10, False, 6, True, nn.BatchNorm2d)
    assert cell.blocks[0].out_channels == 12
    assert isinstance(cell.blocks[1].left.op, nn.Sequential)  # identity on a 12-wide state projects to 6
    assert g.concat == (3,)
    assert cell(torch.randn(2, 10, 7, 7), torch.randn(2, 10, 7, 7)).shape == (2, 6, 4, 4)


def test_unused_inputs_of_a_reduction_cell_are_reduced_before_the_concat():
    g = CellGenotype.from_blocks([Block((1, 1), ("conv_3x3", "avg_pool_3x3"))])
    assert g.concat == (0, 2)
    cell = Cell(g, 10, 14, False, 6, True, nn.BatchNorm2d)
    assert isinstance(cell.adjust["0"], FactorizedReduce)
    assert cell(torch.randn(2, 10, 8, 8), torch.randn(2, 14, 8, 8)).shape == (2, 12, 4, 4)


@pytest.mark.parametrize("reduction", [False, True])
def test_drop_path_spares_identity_only(reduction):
    cell = Cell(NASNET_A.reduction if reduction else NASNET_A.normal, 8, 8, False, 8, reduction, nn.BatchNorm2d)
    for block, gblock in zip(cell.blocks, (NASNET_A.reduction if reduction else NASNET_A.normal).blocks, strict=True):
        assert block.left.droppable == (gblock.ops[0] != "identity")
        assert block.right.droppable == (gblock.ops[1] != "identity")
    cell.train()
    x, prev = torch.randn(64, 8, 6, 6), torch.randn(64, 8, 6, 6)
    torch.manual_seed(0)
    dropped = cell(x, prev, torch.tensor(0.5))
    torch.manual_seed(0)
    plain = cell(x, prev, None)
    assert not torch.allclose(dropped, plain)
