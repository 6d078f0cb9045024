"""The inference seam (`nasnet_zoo.fast.optimize_for_inference`: BN folded into convs, channels_last weights)
computes the exact model, the default channels_last activations do too, and a pool applied twice to one state
runs once. Small models, small inputs; no timings (see benchmarks/seam.py)."""

import copy

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import nasnet_zoo
from nasnet_zoo.cell import Branch
from nasnet_zoo.fast import optimize_for_inference
from nasnet_zoo.genotype import NASNET_A, Block, Genotype
from nasnet_zoo.genotype import Cell as CellGenotype
from nasnet_zoo.ops import FactorizedReduce, SamePool2d, SepConvStack
from tests.helpers import randomize_bn

SMALL = dict(num_cells=3, filters=8)
CASES = [("nasnet_imagenet", 64), ("nasnet_imagenet", 57), ("nasnet_cifar", 32)]


def small(name: str, size: int = 64, **kw) -> nn.Module:
    """A toy-width model with random BN affine parameters and BN statistics taken from a batch, so activations
    keep their scale through the cells, and logits of order 10 (an absolute 1e-4 bound means something)."""
    torch.manual_seed(0)
    m = randomize_bn(nasnet_zoo.create_model(name, **(SMALL | kw)))
    return calibrated(m, size)


def calibrated(m: nn.Module, size: int) -> nn.Module:
    bns = [b for b in m.modules() if isinstance(b, nn.BatchNorm2d)]
    for b in bns:
        b.momentum = None  # cumulative average: after one batch, exactly that batch's statistics
    with torch.no_grad():
        m.train()(torch.randn(8, 3, size, size))
        for b in bns:
            b.momentum = 0.1
        scale = 10 / m.eval()(torch.randn(8, 3, size, size)).abs().max()
        m.classifier.weight.mul_(scale), m.classifier.bias.mul_(scale)  # max |logit| about 10
    return m


def exact(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layers as written, NCHW, with autograd on."""
    ref = copy.deepcopy(model)
    ref.channels_last = False
    with torch.enable_grad():
        return ref(x).detach()


def fast(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return optimize_for_inference(model)(x)


@pytest.mark.parametrize("name, size", CASES)
def test_the_inference_seam_matches_the_exact_layers(name, size):
    m = small(name, size)
    x = torch.randn(2, 3, size, size)
    ref, opt = exact(m, x), optimize_for_inference(m)
    with torch.no_grad():
        out = opt(x)
    assert ref.abs().max() > 1.0
    assert (out - ref).abs().max() <= 1e-4
    with torch.inference_mode():
        torch.testing.assert_close(opt(x), out, rtol=0, atol=1e-6)
    with torch.no_grad():
        feats, inter = opt.forward_intermediates(x)
    assert (feats - exact_features(m, x)).abs().max() <= 1e-4
    assert all(f.min() >= 0 for f in inter)  # activated like the model's
    with torch.no_grad():  # the default eval path (channels_last activations, every BN a layer) is exact too
        assert (m.eval()(x) - ref).abs().max() <= 1e-4


def exact_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    ref = copy.deepcopy(model)
    ref.channels_last = False
    with torch.enable_grad():
        return ref.forward_features(x).detach()


def test_fast_path_is_as_close_to_float64_as_the_exact_layers():
    m = small("nasnet_imagenet")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        truth = copy.deepcopy(m).double()(x.double())
    fast_err = (fast(m, x).double() - truth).abs().max().item()
    exact_err = (exact(m, x).double() - truth).abs().max().item()
    assert fast_err <= 2 * exact_err + 1e-6, (fast_err, exact_err)


def assert_trains_the_same(m: nn.Module, plain: nn.Module, x: torch.Tensor) -> None:
    """Same training loss (drop path draws the same masks from the same seed) and gradients up to the order of
    the sums (relative to each gradient's scale)."""
    for model in (m, plain):
        model.train().set_drop_path_progress(1.0)  # drop path at its full rate
    assert max(m._max_drop) > 0
    torch.manual_seed(1)
    a = m(x).square().mean()
    torch.manual_seed(1)
    b = plain(x).square().mean()
    assert torch.equal(a, b)
    a.backward(), b.backward()
    for p, q in zip(m.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5 * q.grad.abs().max().item())


def test_a_pool_applied_twice_to_one_state_runs_once():
    m = small("nasnet_imagenet", drop_path_rate=0.3)
    pools = [mod for mod in m.modules() if isinstance(mod, SamePool2d)]
    calls = []
    handles = [p.register_forward_hook(lambda mod, i, o: calls.append(mod)) for p in pools]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        m(x)
    for h in handles:
        h.remove()
    # NASNet-A: 3 average pools per normal cell, 2 of them on h1; 2 max pools per reduction cell, both on h0.
    cells = [getattr(m, n) for n in m.layer_names]
    normal = sum(not c.reduction for c in cells)
    assert len(pools) == 3 * normal + 4 * (len(cells) - normal)
    assert len(calls) == len(pools) - normal - (len(cells) - normal)
    plain = copy.deepcopy(m)  # every op computed on its own
    for branch in plain.modules():
        if isinstance(branch, Branch):
            branch.memo_key = ""
    with torch.no_grad():
        assert torch.equal(m(x), plain(x))
    assert_trains_the_same(m, plain, x)


def test_the_seam_is_exact_where_an_input_state_is_read_raw():
    # A normal cell whose only output is one F-wide state: two cells later, pre1 is the identity (TF uses the
    # raw tensor there, no ReLU).
    chain = CellGenotype.from_blocks(
        [Block((0, 1), ("sep_conv_3x3", "identity")), Block((2, 2), ("avg_pool_3x3", "identity"))]
    )
    g = Genotype(chain, NASNET_A.reduction)
    torch.manual_seed(0)
    m = calibrated(randomize_bn(nasnet_zoo.create_model("nasnet_cifar", genotype=g, num_cells=9, filters=8)), 16)
    assert any(isinstance(getattr(m, n).pre1, nn.Identity) for n in m.layer_names[2:])
    x = torch.randn(2, 3, 16, 16)
    assert (fast(m, x) - exact(m, x)).abs().max() <= 1e-4


def assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal up to fp32 reordering, relative to the logits' scale (edits below move it); stale folded weights
    would be off by the size of the edit."""
    assert (a - b).abs().max() <= 1e-5 * b.abs().max()


def test_the_seam_folds_every_bn_into_a_copy():
    m = small("nasnet_imagenet").train()
    x = torch.randn(1, 3, 64, 64)
    count = lambda model: sum(isinstance(mod, nn.BatchNorm2d) for mod in model.modules())  # noqa: E731
    bns = count(m)
    opt = optimize_for_inference(m)
    assert count(opt) == 0 and count(m) == bns > 0
    assert m.training and not opt.training  # the model is left as it was
    assert next(mod for mod in opt.modules() if isinstance(mod, SepConvStack)).pw1.bias is not None
    out = fast(m, x)
    with torch.no_grad():  # a copy: later changes to the model are not seen
        m.stem[0].weight.mul_(-1)
        assert torch.equal(opt(x), opt(x)) and (opt(x) - out).abs().max() <= 1e-5 * out.abs().max()
    assert optimize_for_inference(m, inplace=True) is m and not m.training


def test_each_half_of_a_factorized_reduction_folds_into_its_conv():
    torch.manual_seed(0)
    reduce = randomize_bn(FactorizedReduce(6, 8, nn.BatchNorm2d)).eval()
    x = torch.randn(2, 6, 9, 9)
    with torch.no_grad():
        ref = reduce(x)
        out = optimize_for_inference(reduce, channels_last=False)(x)
    assert isinstance(optimize_for_inference(reduce).bn, nn.Identity)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_eval_with_autograd_uses_the_layers_and_trains_them():
    # BN frozen (eval) while convs train, e.g. fine-tuning: gradients must reach the BN and conv parameters.
    m = small("nasnet_imagenet")
    m(torch.randn(1, 3, 64, 64)).sum().backward()
    sep = next(mod for mod in m.modules() if isinstance(mod, SepConvStack))
    assert sep.pw1.weight.grad is not None and sep.bn1.weight.grad is not None


def test_activations_run_channels_last_and_parameters_save_anywhere(tmp_path):
    m = small("nasnet_imagenet").eval()
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        feats = m.forward_features(x)
    assert feats.is_contiguous(memory_format=torch.channels_last) and not feats.is_contiguous()
    assert all(p.is_contiguous() for p in m.state_dict().values())  # the standard layout: safetensors takes it
    save_file(m.state_dict(), tmp_path / "m.safetensors")
    nchw = nasnet_zoo.create_model("nasnet_imagenet", channels_last=False, **SMALL).eval()
    nchw.load_state_dict(m.state_dict())
    with torch.no_grad():
        out = nchw.forward_features(x)
    assert out.is_contiguous()
    torch.testing.assert_close(out, feats, rtol=0, atol=1e-5)


def test_a_one_channel_input_reaches_the_cells_in_channels_last():
    """A 1-channel image is contiguous in both layouts, so the stem's output would stay NCHW (the slow layout for
    the cells' convs on CPU) unless the network converts it after the stem; the laptop proxy's shapes are 1-channel."""
    torch.manual_seed(0)
    m = nasnet_zoo.create_model("nasnet_cifar", in_chans=1, **SMALL).eval()
    first = next(c for c in m.modules() if type(c).__name__ == "Cell")
    seen = []
    first.register_forward_pre_hook(
        lambda mod, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        out = m(x)
    assert seen == [True]
    assert (out - exact(m, x)).abs().max() <= 1e-4
