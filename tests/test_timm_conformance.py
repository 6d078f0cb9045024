"""timm's model conformance checks on every zoo row: what timm's own ``tests/test_models.py`` asks of each
registered model (default cfgs, forward, backward, features_only, forward_intermediates, TorchScript, FX forward
and backward), downloads aside, with the rows selected as timm selects its models (``timm.list_models``, here
limited to the zoo's module; the default-cfg check also takes the pretrained tags). Written from that file at
timm commit aa4b5850c1543fa488abf260f18390eda46cf85d (2026-08-08); no code of it is copied.

Input sizes. timm shrinks inputs to a per-check target: forward 384 (above every row's own size, so the forward
check runs at full size here too), backward, TorchScript and FX 128, features 96. On a CPU the widest rows
would dominate at 128 px (nasnet_a_large: 8 s for one backward on a core), so those checks run at 64 px on
the ImageNet stem, which still ends on a 2x2 map (64 -> 31 -> 16 -> 8 -> 4 -> 2), and at 16 px on the CIFAR
stem, half the CIFAR rows' size (nasnet_a_cifar_7_2112: 4 s for a backward at 32 px), ending on 4x4. The
default-cfg check needs the full input size but only shapes and names: it runs on the meta device.

Where timm checks only shapes and NaNs, TorchScript is also compared with eager. timm traces through
torchvision's create_feature_extractor, whose node naming is quadratic in the graph (about 10 s per full-depth
row on a core); here the rows are traced by torch.fx with the settings timm gives it, and torchvision's
extractor, the FX graph scripted (timm's test_model_forward_fx_torchscript, which timm's own CI leaves out) and
``features_only=True, feature_cls="fx"`` (which timm tests on one model) run per model family in
tests/test_tracers_exporters.py.
"""

from __future__ import annotations

import functools
import math

import pytest
import timm
import torch
from timm.layers import get_channel_dim, get_spatial_dim
from timm.models import get_notrace_functions, get_notrace_modules

from nasnet_zoo.zoo import MODELS  # registers the zoo with timm

ROWS = timm.list_models(module="nasnet_zoo")
TAGGED = timm.list_models(module="nasnet_zoo", include_tags=True)  # timm's default-cfg check takes the tags

SMALL = {"imagenet": 64, "cifar": 16}  # input size by stem (see the module docstring)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_rows_are_the_registered_zoo() -> None:
    assert len(ROWS) >= 8 and {"nasnet_a_large", "nasnet_a_mobile", "nasnet_a_cifar"} <= set(ROWS)
    assert {"nasnet_a_mobile.tf_in1k", "nasnet_a_large.tf_in1k"} <= set(TAGGED)


def small_input(name: str, batch: int = 1) -> torch.Tensor:
    """A batch at the size these checks use: 64 px on the ImageNet stem, 16 px on the CIFAR stem."""
    c, h, w = timm.get_pretrained_cfg_value(name, "input_size")
    size = SMALL[MODELS[name].config.stem]
    return torch.randn(batch, c, min(h, size), min(w, size))


@functools.cache
def eval_model(name: str) -> torch.nn.Module:
    """One randomly initialised eval-mode model per row, for the checks that only read it."""
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False).eval()


def as_tensor(out: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    return torch.cat(out) if isinstance(out, tuple) else out


def assert_feature_maps(feats: list[torch.Tensor], channels: list[int], reductions: list[int], x: torch.Tensor):
    """timm's feature check: one map per level, its channels, at most ceil(size / reduction) + 1 wide, finite."""
    assert len(channels) >= 3 and len(feats) == len(channels)
    spatial, feat_axis = get_spatial_dim("NCHW"), get_channel_dim("NCHW")
    for c, r, f in zip(channels, reductions, feats, strict=True):
        assert f.shape[feat_axis] == c and f.shape[0] == x.shape[0]
        for axis in spatial:
            assert f.shape[axis] <= math.ceil(x.shape[axis] / r) + 1
        assert not torch.isnan(f).any()


@pytest.mark.parametrize("name", TAGGED)
def test_default_cfg(name: str) -> None:
    """timm's test_model_default_cfgs, the part that needs the cfg's full input size: run on the meta device."""
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False).eval()
        cfg, state = model.pretrained_cfg, model.state_dict()
        assert model.num_classes >= 0 and model.num_features > 0 and model.head_hidden_size > 0
        assert len(cfg["input_size"]) == 3 and len(cfg["pool_size"]) == 2 and 0 < cfg["crop_pct"] <= 1
        assert len(cfg["mean"]) == len(cfg["std"]) == cfg["input_size"][0] and min(cfg["std"]) > 0
        x = torch.empty(1, *cfg["input_size"])
        feats = model.forward_features(x)
        assert tuple(feats.shape[2:]) == cfg["pool_size"] and feats.shape[1] == model.num_features
        model.reset_classifier(0, "")  # no classifier and no pooling: the unpooled map
        assert tuple(model(x).shape) == tuple(feats.shape)
    for key in ("classifier", "first_conv"):
        names = cfg[key] if isinstance(cfg[key], list | tuple) else (cfg[key],)
        assert all(f"{n}.weight" in state for n in names), f"{key} {names} is not a module of the model"


@pytest.mark.parametrize("name", ROWS)
def test_forward(name: str) -> None:
    """timm's test_model_forward at the row's full size; grad checkpointing leaves the output alone."""
    model = eval_model(name)
    torch.manual_seed(1)
    x = torch.randn(1, *model.pretrained_cfg["input_size"])
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, model.num_classes) and not torch.isnan(out).any()
        model.set_grad_checkpointing()
        try:
            again = model(x)
        finally:
            model.set_grad_checkpointing(False)
    torch.testing.assert_close(as_tensor(again), out, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ROWS)
def test_backward_and_head(name: str) -> None:
    """timm's test_model_backward (a new head of 42 classes, train mode, every parameter gets a gradient), then
    the head part of its test_model_default_cfgs in eval mode: pre-logits, reset_classifier(0) and (0, ""), and
    a model built without classifier and pooling."""
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=42).train()
    out = as_tensor(model(small_input(name, batch=2)))
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without a gradient: {missing[:3]}"
    assert out.shape[-1] == 42 and not torch.isnan(out).any()

    model.eval()
    x = small_input(name)
    with torch.no_grad():
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
        assert feats.shape[1] == model.num_features and pre.shape[1] == model.head_hidden_size
        model.reset_classifier(0)
        assert model.num_classes == 0
        torch.testing.assert_close(model(x), pre)
        model.reset_classifier(0, "")
        torch.testing.assert_close(model(x), feats)
    with torch.device("meta"):
        headless = timm.create_model(name, pretrained=False, num_classes=0, global_pool="")
        assert headless(x.to("meta")).shape == feats.shape


@pytest.mark.parametrize("feature_cls", ["getter", "hook"])
@pytest.mark.parametrize("name", ROWS)
def test_features_only(name: str, feature_cls: str) -> None:
    """timm's test_model_forward_features (the zoo's default class, "getter") and the hook wrapper."""
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, features_only=True, feature_cls=feature_cls).eval()
    x = small_input(name)
    with torch.no_grad():
        feats = model(x)
    assert_feature_maps(feats, model.feature_info.channels(), model.feature_info.reduction(), x)


@pytest.mark.parametrize("name", ROWS)
def test_forward_intermediates(name: str) -> None:
    """timm's test_model_forward_intermediates: one map per `feature_info` level, the final map as
    forward_features gives it, and the same with grad checkpointing on."""
    model = eval_model(name)
    info = timm.models.FeatureInfo(model.feature_info, list(range(len(model.feature_info))))
    x = small_input(name)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x, output_fmt="NCHW")
        assert_feature_maps(inter, info.channels(), info.reduction(), x)
        torch.testing.assert_close(final, model.forward_features(x))
        model.set_grad_checkpointing()
        try:
            again, _ = model.forward_intermediates(x)
        finally:
            model.set_grad_checkpointing(False)
    torch.testing.assert_close(again, final, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ROWS)
def test_torchscript(name: str) -> None:
    """timm's test_model_forward_torchscript (built under set_scriptable), and the same logits as eager."""
    with timm.set_scriptable(True):
        torch.manual_seed(0)
        model = timm.create_model(name, pretrained=False).eval()
    scripted = torch.jit.script(model)
    x = small_input(name)
    with torch.no_grad(), torch.jit.optimized_execution(False):  # skip the profiling executor's warm-up runs
        out = scripted(x)
        ref = model(x)
    assert out.shape == (1, model.num_classes) and not torch.isnan(out).any()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


class TimmTracer(torch.fx.Tracer):
    """torch.fx's tracer set up as timm's FX helpers set it up: timm's untraceable layers as leaves, its
    untraceable functions wrapped, parameter shapes as constants."""

    def __init__(self) -> None:
        super().__init__(autowrap_functions=tuple(get_notrace_functions()), param_shapes_constant=True)
        self.leaves = tuple(get_notrace_modules())

    def is_leaf_module(self, m: torch.nn.Module, qualname: str) -> bool:
        return isinstance(m, self.leaves) or super().is_leaf_module(m, qualname)


def trace(model: torch.nn.Module) -> torch.fx.GraphModule:
    return torch.fx.GraphModule(model, TimmTracer().trace(model))


@pytest.mark.parametrize("name", ROWS)
def test_fx(name: str) -> None:
    """timm's test_model_forward_fx (the eval-mode graph's output equals eager's) and test_model_backward_fx
    (the train-mode graph gives every parameter a gradient)."""
    model = eval_model(name)
    x = small_input(name)
    with torch.inference_mode():
        assert torch.equal(trace(model)(x), model(x))

    stats = [b.clone() for b in model.buffers()]
    try:
        graph = trace(model.train())
        out = graph(small_input(name, batch=2))
        out.mean().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        assert not missing, f"parameters without a gradient in the traced graph: {missing[:3]}"
        assert out.shape == (2, model.num_classes) and not torch.isnan(out).any()
    finally:  # the cached model goes back as it was: eval mode, its BN statistics, no gradients
        model.eval().zero_grad(set_to_none=True)
        with torch.no_grad():
            for b, s in zip(model.buffers(), stats, strict=True):
                b.copy_(s)
