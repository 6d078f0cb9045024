"""Network assembly as TF-slim builds it: stems, reduction placement, skip_reduction_layer_input, shapes, aux
head, ScheduledDropPath, BN settings."""

import pytest
import torch
from torch import nn

import nasnet_zoo
from nasnet_zoo.network import NASNetOutput


def cell_outputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every cell's output (and the stem's), and for each cell the tensors it received."""
    outs, inputs = {}, {}
    hooks = [model.stem.register_forward_hook(lambda m, a, o: outs.__setitem__("stem", o))]
    for name in model.layer_names:
        cell = getattr(model, name)
        hooks.append(cell.register_forward_hook(lambda m, a, o, n=name: outs.__setitem__(n, o)))
        hooks.append(cell.register_forward_pre_hook(lambda m, a, n=name: inputs.__setitem__(n, a)))
    model.eval()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return outs, inputs


# TF-slim's endpoint shapes (C, H, W).
ENDPOINTS = {
    "nasnet_a_mobile": (224, {"cell_stem_1": (88, 28), "cell_3": (264, 28), "cell_7": (528, 14),
                              "cell_11": (1056, 7)}),
    "nasnet_a_large": (331, {"cell_stem_1": (336, 42), "cell_5": (1008, 42), "cell_11": (2016, 21),
                             "cell_17": (4032, 11)}),
    "nasnet_a_cifar": (32, {"stem": (96, 32), "cell_5": (192, 32), "cell_11": (384, 16), "cell_17": (768, 8)}),
}  # fmt: skip


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_endpoint_shapes(name):
    size, expected = ENDPOINTS[name]
    outs, _ = cell_outputs(nasnet_zoo.create_model(name), torch.randn(1, 3, size, size))
    assert {k: (outs[k].shape[1], outs[k].shape[2]) for k in expected} == expected


def test_large_stem_and_reduction_sizes():
    # 331 -> 165 (VALID stem) -> 83 -> 42 -> 21 -> 11: every even size takes TF's asymmetric padding.
    outs, _ = cell_outputs(nasnet_zoo.create_model("nasnet_a_large"), torch.randn(1, 3, 331, 331))
    sizes = [outs[n].shape[-1] for n in ("stem", "cell_stem_0", "cell_stem_1", "reduction_cell_0", "reduction_cell_1")]
    assert sizes == [165, 83, 42, 21, 11]


def test_reduction_placement_and_order():
    model = nasnet_zoo.create_model("nasnet_a_mobile")
    names = model.layer_names
    assert names[:3] == ["cell_stem_0", "cell_stem_1", "cell_0"]
    assert names.index("reduction_cell_0") == names.index("cell_4") - 1  # int(1/3 * 12) = 4
    assert names.index("reduction_cell_1") == names.index("cell_8") - 1  # int(2/3 * 12) = 8
    assert len(names) == 2 + 12 + 2


SKIP_WIRING = [("nasnet_a_large", "cell_6", "cell_4"), ("nasnet_a_mobile", "cell_4", "cell_3")]


@pytest.mark.parametrize("name, after, prev_name", SKIP_WIRING)
def test_skip_reduction_layer_input(name, after, prev_name):
    # large (skip=1): cell_6(reduction_cell_0, cell_4); mobile (skip=0): cell_4(reduction_cell_0, cell_3).
    model = nasnet_zoo.create_model(name)
    outs, inputs = cell_outputs(model, torch.randn(1, 3, 64, 64))
    x, prev = inputs[after][:2]
    assert x is outs["reduction_cell_0"] and prev is outs[prev_name]
    # every other cell reads the output just before its input; the first stem cell has none
    x, prev = inputs["cell_1"][:2]
    assert x is outs["cell_0"] and prev is outs["cell_stem_1"]
    x, prev = inputs["cell_stem_1"][:2]
    assert x is outs["cell_stem_0"] and prev is outs["stem"]
    assert inputs["cell_stem_0"][1] is None


def test_bn_settings_per_config():
    bns = lambda m: [b for b in m.modules() if isinstance(b, nn.BatchNorm2d)]  # noqa: E731
    mobile = bns(nasnet_zoo.create_model("nasnet_a_mobile"))
    cifar = bns(nasnet_zoo.create_model("nasnet_a_cifar"))
    assert {(b.eps, round(b.momentum, 6)) for b in mobile} == {(1e-3, 0.0003)}
    assert {(b.eps, round(b.momentum, 6)) for b in cifar} == {(1e-5, 0.1)}


def test_aux_head_in_training_only():
    model = nasnet_zoo.create_model("nasnet_a_cifar", aux_head=True, num_cells=6, filters=8)
    # on the ReLU of the normal cell before the second reduction (cell_3 of 6), 16x16 -> 5x5 avg/3 -> 4x4
    assert model._aux_after == model.layer_names.index("cell_3") and model.aux_head.kernel_size == 4
    model.train()
    out = model(torch.randn(2, 3, 32, 32))
    assert isinstance(out, NASNetOutput) and out.logits.shape == out.aux_logits.shape == (2, 10)
    model.eval()
    assert isinstance(model(torch.randn(2, 3, 32, 32)), torch.Tensor)
    mobile = nasnet_zoo.create_model("nasnet_a_mobile", aux_head=True)
    assert mobile.aux_head.kernel_size == 4  # 14x14 at 224
    large = nasnet_zoo.create_model("nasnet_a_large", aux_head=True, num_classes=5)
    assert large.aux_head.kernel_size == 6 and large.aux_head.fc.out_features == 5  # 21x21 at 331
    assert nasnet_zoo.create_model("nasnet_a_mobile").aux_head is None  # off by default (no released weights)


def test_scheduled_drop_path_schedule():
    model = nasnet_zoo.create_model("nasnet_a_cifar", num_cells=6, filters=8)
    total = len(model.layer_names)  # cells incl. reduction cells: 6 + 2
    keep = 0.6
    model.train()
    model.set_drop_path_progress(0.5)
    for i in range(total):
        expected = 1 - (1 - keep) * (i + 1) / total * 0.5
        assert model._keep_prob(i).item() == pytest.approx(expected)
    model.set_drop_path_progress(3.0)  # clipped at 1
    assert model._keep_prob(total - 1).item() == pytest.approx(keep)
    model.eval()
    assert model._keep_prob(total - 1) is None
    mobile = nasnet_zoo.create_model("nasnet_a_mobile").train()  # keep 1.0: no drop path at all
    assert mobile._keep_prob(5) is None


def test_drop_path_is_active_in_training():
    torch.manual_seed(0)
    model = nasnet_zoo.create_model("nasnet_a_cifar", num_cells=3, filters=8, drop_rate=0.0).train()
    x = torch.randn(4, 3, 16, 16)
    model.set_drop_path_progress(0.0)
    torch.manual_seed(1)
    a = model(x)
    torch.manual_seed(1)
    b = model(x)
    model.set_drop_path_progress(1.0)
    torch.manual_seed(1)
    c = model(x)
    assert torch.allclose(a, b) and not torch.allclose(a, c)


def test_in_chans_and_headless():
    m = nasnet_zoo.create_model("nasnet_cifar", in_chans=1, num_classes=0, num_cells=3, filters=8)
    y = m(torch.randn(2, 1, 8, 8))
    assert y.shape == (2, m.num_features)


@pytest.mark.parametrize(
    "kw", [dict(num_cells=0), dict(num_cells=-3), dict(filters=0), dict(filters=-8), dict(filters=7)]
)
def test_a_macro_config_that_builds_no_network_is_refused(kw) -> None:
    from nasnet_zoo.errors import ConfigError

    with pytest.raises(ConfigError, match="at least 1 cell and an even number of filters"):
        nasnet_zoo.create_model("nasnet_cifar", **kw)


def test_layouts_that_cannot_be_built_are_config_errors() -> None:
    from nasnet_zoo.errors import ConfigError

    with pytest.raises(ConfigError, match=r"ImageNet stem's first cell has filters / 4 = 0 filters.*at least 8"):
        nasnet_zoo.create_model("nasnet_imagenet", filters=2)
    with pytest.raises(ConfigError, match=r"even number of output channels, got 3: choose filters \(--filters\)"):
        nasnet_zoo.create_model("nasnet_imagenet", num_cells=3, filters=6)
    with pytest.raises(ConfigError, match=r"at least 5x5, got 4x4: build the model for a larger input"):
        nasnet_zoo.create_model("nasnet_cifar", num_cells=3, filters=8, img_size=8, aux_head=True)
    model = nasnet_zoo.create_model("nasnet_cifar", num_cells=3, filters=8, img_size=32, aux_head=True).train()
    with pytest.raises(ConfigError, match="aux head was built for a 4x4 map"):
        model(torch.randn(2, 3, 64, 64))
    with pytest.raises(ConfigError, match="only NCHW output"):
        model.forward_intermediates(torch.randn(1, 3, 32, 32), output_fmt="NHWC")


@pytest.mark.parametrize("name, size", [("nasnet_a_cifar", 32), ("nasnet_a_mobile", 96)])
def test_a_fresh_models_eval_outputs_are_of_order_one(name, size):
    """With random weights and BN at its initial statistics (the identity in eval mode), the features the head
    reads and the logits stay O(1): TF-slim's fan-out init gave 1e3-1e5 here, which no absolute tolerance of a
    fresh-model check (timm's --check-forward) survives."""
    torch.manual_seed(0)
    m = nasnet_zoo.create_model(name).eval()
    with torch.no_grad():
        feats = m.forward_head(m.forward_features(torch.randn(2, 3, size, size)), pre_logits=True)
        logits = m.forward_head(m.forward_features(torch.randn(2, 3, size, size)))
    assert 1e-3 < feats.pow(2).mean().sqrt() < 3 and feats.abs().max() < 10
    assert logits.abs().max() < 10 and logits.std() > 0


def test_every_new_head_starts_the_same_way_and_small(tmp_path):
    """The build, a new head on pretrained weights (``num_classes`` differs from the file's) and
    ``reset_classifier`` all start the classifier with `init_head`: the same distribution, and train-mode logits
    of a few classes small at step 0 (the fan-out init, std sqrt(2 / classes), gave logits of 10-60)."""
    from safetensors.torch import save_file

    from nasnet_zoo.init import init_head

    small = dict(num_cells=3, filters=8)
    torch.manual_seed(0)
    five = nasnet_zoo.create_model("nasnet_cifar", num_classes=5, **small)
    save_file(five.state_dict(), tmp_path / "five.safetensors")
    torch.manual_seed(1)
    built = nasnet_zoo.create_model("nasnet_cifar", num_classes=2, **small)
    torch.manual_seed(2)
    overlay = dict(file=str(tmp_path / "five.safetensors"))
    loaded = nasnet_zoo.create_model(
        "nasnet_cifar", pretrained=True, num_classes=2, pretrained_cfg_overlay=overlay, **small
    )
    torch.manual_seed(3)
    reset = nasnet_zoo.create_model("nasnet_cifar", num_classes=5, **small)
    reset.reset_classifier(2)
    reference = torch.nn.Linear(built.num_features, 2)
    torch.manual_seed(4)
    init_head(reference)
    expected = reference.weight.std()
    x = torch.randn(16, 3, 32, 32)
    for m in (built, loaded, reset):
        w = m.get_classifier().weight
        assert w.shape == (2, 192) and torch.isclose(w.std(), expected, rtol=0.25)
        m.train()
        with torch.no_grad():
            assert m(x).abs().max() < 3
