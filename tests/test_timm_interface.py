"""timm's model interface, and that eager, torch.compile, torch.export and channels_last agree."""

import shutil

import pytest
import timm
import torch
from timm.data import create_transform, resolve_model_data_config
from timm.optim import create_optimizer_v2

import nasnet_zoo  # noqa: F401  (registers the zoo with timm)
from tests.helpers import randomize_bn

SMALL = dict(num_cells=3, filters=8)  # the NASNet-A genotype at toy width, for speed


def small(name: str = "nasnet_imagenet", **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return randomize_bn(timm.create_model(name, **(SMALL | kw))).eval()


def test_head_api():
    m = small(num_classes=7)
    x = torch.randn(2, 3, 64, 64)
    feats = m.forward_features(x)
    assert feats.shape[1] == m.num_features == m.head_hidden_size and feats.min() >= 0  # final ReLU included
    pre = m.forward_head(feats, pre_logits=True)
    assert pre.shape == (2, m.num_features)
    torch.testing.assert_close(m.forward_head(feats), m(x))
    assert m.get_classifier().out_features == 7
    m.reset_classifier(3)
    assert m(x).shape == (2, 3)
    m.reset_classifier(0)
    assert m(x).shape == (2, m.num_features)


def test_pretrained_cfg_and_transforms():
    m = timm.create_model("nasnet_a_mobile")
    cfg = m.pretrained_cfg
    assert cfg["input_size"] == (3, 224, 224) and cfg["mean"] == cfg["std"] == (0.5, 0.5, 0.5)
    assert (cfg["crop_pct"], cfg["interpolation"]) == (0.875, "bilinear")  # the TF release's eval preprocessing
    data_cfg = resolve_model_data_config(m)
    t = create_transform(**data_cfg)
    from PIL import Image

    img = Image.new("RGB", (300, 400), (255, 0, 0))
    x = t(img)
    assert x.shape == (3, 224, 224)
    assert x[0].max().item() == pytest.approx(1.0) and x[1].min().item() == pytest.approx(-1.0)  # [-1, 1] range
    assert timm.create_model("nasnet_a_large").pretrained_cfg["input_size"] == (3, 331, 331)


@pytest.mark.parametrize("name, levels", [("nasnet_imagenet", [2, 4, 8, 16, 32]), ("nasnet_cifar", [1, 1, 2, 4])])
def test_features_only(name, levels):
    size = 64 if name == "nasnet_imagenet" else 32
    m = timm.create_model(name, features_only=True, **SMALL).eval()
    assert m.feature_info.reduction() == levels
    feats = m(torch.randn(1, 3, size, size))
    assert [f.shape[1] for f in feats] == m.feature_info.channels()
    assert [size // f.shape[-1] for f in feats] == [min(r, size) for r in levels]
    subset = timm.create_model(name, features_only=True, out_indices=(1, 2), **SMALL).eval()
    torch.manual_seed(0)
    assert [f.shape for f in subset(torch.randn(1, 3, size, size))] == [f.shape for f in feats[1:3]]


def test_forward_intermediates_match_forward():
    m = small()
    x = torch.randn(1, 3, 64, 64)
    final, inter = m.forward_intermediates(x)
    torch.testing.assert_close(final, m.forward_features(x))
    torch.testing.assert_close(inter[-1], final)
    assert len(inter) == len(m.feature_info)


def test_grad_checkpointing_same_gradients_and_less_saved_memory():
    torch.manual_seed(0)
    m = timm.create_model("nasnet_cifar", num_cells=6, filters=16, drop_rate=0.0).train()
    x = torch.randn(4, 3, 32, 32)

    def run() -> tuple[int, list[torch.Tensor]]:
        saved = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal saved
            saved += t.numel() * t.element_size()
            return t

        m.zero_grad()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = m(x).square().mean()
        loss.backward()
        return saved, [p.grad.clone() for p in m.parameters()]

    m.set_grad_checkpointing(False)
    state = {k: v.clone() for k, v in m.state_dict().items()}
    plain_bytes, plain_grads = run()
    plain_state = {k: v.clone() for k, v in m.state_dict().items()}
    m.load_state_dict(state)  # BN running stats moved; restore so both runs see the same model
    m.set_grad_checkpointing(True)
    ckpt_bytes, ckpt_grads = run()
    for a, b in zip(plain_grads, ckpt_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # The recomputation in backward leaves BN statistics alone: they moved once, as without checkpointing.
    stats = [k for k in state if "running_" in k or "num_batches" in k]
    assert stats and all(not torch.equal(state[k], plain_state[k]) for k in stats if "num_batches" in k)
    for k in stats:
        torch.testing.assert_close(m.state_dict()[k], plain_state[k], rtol=1e-5, atol=1e-6)
    print(f"activation memory saved for backward: {plain_bytes / 2**20:.1f} MiB -> {ckpt_bytes / 2**20:.1f} MiB")
    assert ckpt_bytes < 0.3 * plain_bytes


def test_group_matcher_and_layer_decay():
    m = timm.create_model("nasnet_a_mobile")
    groups = timm.models.group_parameters(m, m.group_matcher())
    # the stem with the stem cells, one group per normal cell (reduction cells join the next one), the head
    assert len(groups) == 1 + 12 + 1
    assert {n.split(".")[0] for n in groups[0]} == {"stem", "cell_stem_0", "cell_stem_1"}
    assert {n.split(".")[0] for n in groups[5]} == {"reduction_cell_0", "cell_4"}
    assert {n for g in groups.values() for n in g} == {n for n, _ in m.named_parameters()}
    opt = create_optimizer_v2(m, "sgd", lr=0.1, layer_decay=0.5)
    assert len({g["lr_scale"] for g in opt.param_groups}) == 14
    assert m.no_weight_decay() == set()


def compile_backend() -> str:
    """Inductor needs a C++ compiler; without one, compile through dynamo + AOTAutograd only."""
    return "inductor" if shutil.which("g++") or shutil.which("c++") else "aot_eager"


def test_eager_compile_export_channels_last_agree():
    m = small("nasnet_cifar", num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        eager = m(x)
        compiled = torch.compile(m, backend=compile_backend())(x)
        exported = torch.export.export(m, (x,)).module()(x)
        cl = m.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    for other in (compiled, exported, cl):
        torch.testing.assert_close(other, eager, rtol=1e-4, atol=1e-4)
