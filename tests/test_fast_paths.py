"""The fast paths compute the exact model: channels_last activations, BN folded into convs for inference (and its
cache), each ReLU computed once per tensor, a pool applied twice to one state run once, and the compiled path.
Small models, small inputs; no timings (see benchmarks/)."""

import copy

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import nasnet_zoo
from nasnet_zoo.cell import Branch
from nasnet_zoo.genotype import NASNET_A, Block, Genotype
from nasnet_zoo.genotype import Cell as CellGenotype
from nasnet_zoo.ops import _FOLDED, SameConv2d, SamePool2d, SepConvStack, conv_bn
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
    """The layers as written (autograd on: nothing is folded), NCHW, every ReLU where TF-slim has it."""
    ref = copy.deepcopy(model)
    ref.channels_last = False
    for name in ref.layer_names:
        cell = getattr(ref, name)
        cell.relu_output, cell.relu_inputs = False, (False, False)
    with torch.enable_grad():
        return ref(x).detach()


def fast(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("name, size", CASES)
def test_default_inference_path_matches_the_exact_layers(name, size):
    m = small(name, size)
    x = torch.randn(2, 3, size, size)
    ref, out = exact(m, x), fast(m, x)
    assert ref.abs().max() > 1.0
    assert (out - ref).abs().max() <= 1e-4
    with torch.inference_mode():  # inference tensors in the cache, then reused outside inference mode
        torch.testing.assert_close(m(x), out, rtol=0, atol=1e-6)
    torch.testing.assert_close(fast(m, x), out, rtol=0, atol=1e-6)
    with torch.no_grad():
        feats, inter = m.forward_intermediates(x)
    assert (feats - exact_features(m, x)).abs().max() <= 1e-4
    assert all(f.min() >= 0 for f in inter)  # activated like before


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


def test_sharing_relus_is_bitwise_the_same_function():
    mobile = nasnet_zoo.create_model("nasnet_a_mobile")
    assert all(getattr(mobile, n).relu_output for n in mobile.layer_names)  # no reader needs a raw output
    m = small("nasnet_imagenet", drop_path_rate=0.3)  # at toy width one reader does
    assert not all(getattr(m, n).relu_output for n in m.layer_names)
    plain = copy.deepcopy(m)
    for name in plain.layer_names:
        cell = getattr(plain, name)
        cell.relu_output, cell.relu_inputs = False, (False, False)
    x = torch.randn(2, 3, 64, 64)
    with torch.enable_grad():
        assert torch.equal(m(x), plain(x))
    assert_trains_the_same(m, plain, x)


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
            branch.pure = False
    with torch.no_grad():
        assert torch.equal(m(x), plain(x))
    assert_trains_the_same(m, plain, x)


def test_an_output_read_raw_stays_raw():
    # A normal cell whose only output is one F-wide state: two cells later, pre1 is the identity (TF uses the
    # raw tensor there), so that output must not be activated, while the others are.
    chain = CellGenotype.from_blocks(
        [Block((0, 1), ("sep_conv_3x3", "identity")), Block((2, 2), ("avg_pool_3x3", "identity"))]
    )
    g = Genotype(chain, NASNET_A.reduction)
    torch.manual_seed(0)
    m = calibrated(randomize_bn(nasnet_zoo.create_model("nasnet_cifar", genotype=g, num_cells=9, filters=8)), 16)
    readers = [getattr(m, n) for n in m.layer_names]
    raw_readers = [i for i, c in enumerate(readers) if c.reads_raw_prev and i >= 2]
    assert raw_readers, "the genotype should make some pre1 an identity"
    for i in raw_readers:
        assert not readers[i + m._prev[i]].relu_output and not readers[i].relu_inputs[1]
    assert any(c.relu_output for c in readers)
    x = torch.randn(2, 3, 16, 16)
    assert (fast(m, x) - exact(m, x)).abs().max() <= 1e-4


def assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal up to fp32 reordering, relative to the logits' scale (edits below move it); stale folded weights
    would be off by the size of the edit."""
    assert (a - b).abs().max() <= 1e-5 * b.abs().max()


def test_folded_weights_follow_every_change_of_the_weights():
    m = small("nasnet_imagenet")
    x = torch.randn(1, 3, 64, 64)
    fast(m, x)
    sep = next(mod for mod in m.modules() if isinstance(mod, SepConvStack))
    assert sep.pw1 in _FOLDED
    with torch.no_grad():  # in-place edits: conv weight, BN statistics and affine parameters
        sep.pw1.weight.mul_(1.5)
        sep.bn2.running_var.mul_(2.0)
        m.stem.bn.bias.add_(0.3)
    assert_same(fast(m, x), exact(m, x))

    other = small("nasnet_imagenet")
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(0.9)
    m.load_state_dict(other.state_dict())
    assert_same(fast(m, x), exact(other, x))

    m.train()  # training drops the cache; a step moves weights and BN statistics
    assert not any(mod in _FOLDED for mod in m.modules())
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    m(torch.randn(4, 3, 64, 64)).square().mean().backward()
    opt.step()
    m.eval()
    assert_same(fast(m, x), exact(m, x))

    m.double()  # new storage and dtype: refolded, not reused
    assert fast(m, x.double()).dtype == torch.float64


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


def test_conv_bn_folds_only_for_inference():
    conv, bn = SameConv2d(4, 6, 3, 2), nn.BatchNorm2d(6)
    randomize_bn(bn)
    bn.eval()
    x = torch.randn(2, 4, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(conv_bn(conv, bn, x), bn(conv(x)), rtol=1e-5, atol=1e-5)
        assert conv in _FOLDED
    bn.train()
    with torch.no_grad(), pytest.raises(ValueError, match="shared"):
        conv_bn(conv, bn, x, slice(0, 3))


def test_hooked_layers_run_as_layers():
    # Tools that hook convs or BNs (complexity.count_mult_adds, pruning, activation statistics) see them run.
    m = small("nasnet_imagenet")
    x = torch.randn(1, 3, 64, 64)
    out = fast(m, x)
    seen = []
    sep = next(mod for mod in m.modules() if isinstance(mod, SepConvStack))
    handles = [sep.pw1.register_forward_hook(lambda *a: seen.append("pw1")),
               sep.bn2.register_forward_hook(lambda *a: seen.append("bn2"))]  # fmt: skip
    torch.testing.assert_close(fast(m, x), out, rtol=0, atol=1e-4)
    assert seen == ["pw1", "bn2"]
    for h in handles:
        h.remove()


def test_compile_for_inference_is_frozen_and_matches_the_exact_layers():
    # Inductor with freezing: BN folded, weights prepacked, convs fused with their ReLUs and adds. Called as a
    # user would, autograd on: the model turns it off itself (freezing needs that).
    m = small("nasnet_imagenet")
    x = torch.randn(2, 3, 64, 64)
    ref = exact(m, x)
    compiled = m.compile_for_inference()
    out = compiled(x)
    assert not m.training and ref.abs().max() > 1.0 and not out.requires_grad
    assert compiled.num_classes == m.num_classes and compiled.pretrained_cfg is m.pretrained_cfg
    assert (out - ref).abs().max() <= 1e-4
    # Frozen: the weights are constants of the compiled code, so changing the model's no longer shows (with
    # the weights as graph inputs, as torch.compile(options={"freezing": True}) leaves them, it would).
    with torch.no_grad():
        m.cell_0.pre0.conv.weight.mul_(-1)
    assert torch.equal(compiled(x), out)
    assert (fast(m, x) - out).abs().max() > 1e-2
