"""The supernet's sub-network of a genotype is the stand-alone NASNet of that genotype with the same weights."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from nasnet_zoo.search.space import random_genotype
from nasnet_zoo.search.supernet import PartReader, Supernet, output_parts
from torch import nn

from nasnet_zoo import genotype as G
from nasnet_zoo.genotype import NASNET_A, Block, Genotype
from nasnet_zoo.network import NASNet
from nasnet_zoo.zoo import CIFAR
from tests.helpers import DEVICES, randomize_bn

CONFIG = dataclasses.replace(CIFAR, num_cells=3, filters=4, drop_path_keep_prob=1.0)

# add and concat combines in both cells; state 1 and block outputs of either combine in the concat lists, a
# concat state read by a later block (the wide edges), identity and pools on wide states (they project).
MIXED = Genotype(
    normal=G.Cell((
        Block((0, 1), ("sep_conv_3x3", "max_pool_3x3"), "concat"),
        Block((2, 1), ("identity", "avg_pool_3x3"), "add"),
        Block((2, 0), ("conv_1x3_3x1", "dil_conv_3x3"), "concat"),
    ), concat=(1, 2, 3, 4)),
    reduction=G.Cell((
        Block((0, 0), ("conv_3x3", "identity"), "concat"),
        Block((2, 1), ("max_pool_5x5", "sep_conv_7x7"), "add"),
        Block((1, 3), ("conv_1x1", "identity"), "concat"),
    ), concat=(0, 3, 4)),
)  # fmt: skip


def copy_into(model: NASNet, supernet: Supernet, genotype: Genotype) -> None:
    """Give the stand-alone ``model`` the supernet's weights for ``genotype`` (the test's own mapping)."""
    model.stem.conv.weight.data.copy_(supernet.stem_conv.weight)
    model.stem.bn.load_state_dict(supernet.stem_bn.state_dict())
    parts = supernet.output_parts(genotype)
    for n, g, prev in supernet.wiring(genotype):
        cell, sc = getattr(model, supernet.plan[n].name), supernet.cells[n]
        _reader(cell.pre0, cell.pre0.bn, sc.pre0, parts[n + 1])
        if sc.reads_prev(() if prev is None else parts[prev]):
            pre1 = cell.pre1.reduce if sc.prev_reduced else cell.pre1
            _reader(pre1, pre1.bn, sc.pre1, parts[prev])
        else:
            assert isinstance(cell.pre1, nn.Identity)
        for b in range(len(g.blocks)):
            for branch, key in zip((cell.blocks[b].left, cell.blocks[b].right), sc.edge_keys(g, b), strict=True):
                branch.op.load_state_dict(sc.edges[key].state_dict())
        for s, module in cell.adjust.items():
            _reader(module, module.bn, sc.adjust[s], (0,))
    w, width = supernet.classifier_weight.detach(), supernet.plan[-1].filters
    model.classifier.weight.data.copy_(torch.cat([w[:, p * width : (p + 1) * width] for p in parts[-1]], 1))
    model.classifier.bias.data.copy_(supernet.classifier_bias)


def _reader(target: nn.Module, bn: nn.Module, reader: PartReader, parts: tuple[int, ...]) -> None:
    """A 1x1 conv (``conv``) or factorized reduction (``conv1``, ``conv2``) gets the slices of ``parts``."""
    w = reader.weight.detach()
    sliced = torch.cat([w[:, :, p * reader.width : (p + 1) * reader.width] for p in parts], 2)
    convs = [target.conv] if hasattr(target, "conv") else [target.conv1, target.conv2]
    assert len(convs) == len(sliced)
    for conv, weight in zip(convs, sliced, strict=True):
        assert conv.weight.shape == weight.shape
        conv.weight.data.copy_(weight)
    bn.load_state_dict(reader.bn.state_dict())


def _pair(genotype: Genotype, config=CONFIG, device: str = "cpu") -> tuple[Supernet, NASNet]:
    torch.manual_seed(0)
    supernet = randomize_bn(Supernet(config, num_classes=10, in_chans=1, num_blocks=5), seed=1)
    nn.init.normal_(supernet.classifier_weight)  # zero at init: a copy of zeros would test nothing
    model = NASNet(genotype, config, num_classes=10, in_chans=1, img_size=9)
    copy_into(model, supernet, genotype)
    supernet.channels_last = model.channels_last = False  # one layout for both: channels_last kernels round apart
    return supernet.to(device), model.to(device)


@pytest.mark.parametrize("genotype", [NASNET_A, MIXED, random_genotype(3), random_genotype(11)],
                         ids=["nasnet-a", "add-and-concat", "random-3", "random-11"])  # fmt: skip
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("device", DEVICES)
def test_sub_network_equals_the_stand_alone_network_with_the_same_weights(genotype, train, device, one_thread):
    supernet, model = _pair(genotype, device=device)
    supernet.train(train)
    model.train(train)
    x = torch.randn(3, 1, 9, 9, generator=torch.Generator().manual_seed(2)).to(device)  # odd: TF's asymmetric pads
    with torch.no_grad():
        expected = model(x)
        got = supernet(x, genotype)
    assert got.shape == expected.shape == (3, 10)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5), (got - expected).abs().max()


def test_the_cases_are_what_they_claim():
    """The mixed genotype exercises concat outputs, wide edges and both readers in both cells."""
    for cell in (MIXED.normal, MIXED.reduction):
        assert {b.combine for b in cell.blocks} == {"add", "concat"}
        parts = output_parts(cell)
        assert len(parts) > len(cell.concat)  # a concat block in the output: two parts
    assert 1 in MIXED.normal.concat and 0 in MIXED.reduction.concat  # input states adjusted in the output
    assert any(i >= 2 and MIXED.normal.blocks[i - 2].combine == "concat" for b in MIXED.normal.blocks for i in b.inputs)


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_reach_the_used_edges_only_and_equal_the_stand_alone_ones(device, one_thread):
    supernet, model = _pair(MIXED, device=device)
    x, y = torch.randn(4, 1, 9, 9, device=device), torch.randint(0, 10, (4,), device=device)
    nn.functional.cross_entropy(supernet(x, MIXED), y).backward()
    nn.functional.cross_entropy(model(x), y).backward()
    used = {id(p) for m in supernet.used(MIXED) for p in m.parameters()}
    for name, p in supernet.named_parameters():
        if name.startswith(("stem", "classifier")):
            continue
        assert (p.grad is not None) == (id(p) in used), name
    left = model.cell_0.blocks[0].left.op  # sep_conv_3x3 on h0
    key = supernet.cells[0].edge_keys(MIXED.normal, 0)[0]
    for (name, a), b in zip(left.named_parameters(), supernet.cells[0].edges[key].parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4), name


def test_every_genotype_of_the_space_fits_and_more_blocks_do_not():
    supernet = Supernet(CONFIG, num_classes=10, in_chans=1, num_blocks=2)
    small = Genotype(G.Cell.from_blocks(MIXED.normal.blocks[:2]), G.Cell.from_blocks(MIXED.reduction.blocks[:2]))
    assert supernet(torch.randn(2, 1, 8, 8), small).shape == (2, 10)
    with pytest.raises(Exception, match="blocks per cell"):
        supernet(torch.randn(2, 1, 8, 8), MIXED)


def test_a_one_channel_input_runs_channels_last_from_the_stem_with_the_same_outputs(one_thread):
    """A 1-channel input is NCHW and channels_last at once; the supernet converts the stem's output so every layer
    runs in the fast layout, and the outputs agree with NCHW to rounding."""
    torch.manual_seed(0)
    supernet = randomize_bn(Supernet(CONFIG, num_classes=10, in_chans=1, num_blocks=5), seed=1).eval()
    nn.init.normal_(supernet.classifier_weight)
    seen = []
    hook = supernet.cells[0].pre0.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    x = torch.randn(3, 1, 9, 9, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        fast = supernet(x, MIXED)
        supernet.channels_last = False
        plain = supernet(x, MIXED)
    hook.remove()
    assert seen[0].is_contiguous(memory_format=torch.channels_last) and not seen[0].is_contiguous()
    assert seen[1].is_contiguous()
    assert torch.allclose(fast, plain, rtol=1e-4, atol=1e-4)
