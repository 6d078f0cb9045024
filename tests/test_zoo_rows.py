"""Every row of the zoo under the same generic checks, as timm's suite runs every registered model: its cfg,
forward and backward, features_only and forward_intermediates, at each row's own width and a small input."""

import pytest
import timm
import torch

import nasnet_zoo  # noqa: F401  (registers the zoo with timm)

ROWS = timm.list_models(module="nasnet_zoo")


def test_the_rows_are_the_registered_zoo() -> None:
    assert len(ROWS) >= 8 and {"nasnet_a_large", "nasnet_a_mobile", "nasnet_a_cifar"} <= set(ROWS)


def _small_input(model: torch.nn.Module) -> torch.Tensor:
    size = 32 if model.pretrained_cfg["input_size"][-1] <= 32 else 64
    return torch.randn(2, 3, size, size)


@pytest.mark.parametrize("name", ROWS)
def test_row(name: str) -> None:
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=5)
    cfg = model.pretrained_cfg
    # timm's test_model_default_cfgs: the fields its scripts read, and names that point into the model
    assert len(cfg["input_size"]) == 3 and cfg["pool_size"] is not None and cfg["crop_pct"] > 0
    state = model.state_dict()
    assert cfg["first_conv"] + ".weight" in state and cfg["classifier"] + ".weight" in state
    assert model.get_classifier().out_features == model.num_classes == 5

    x = _small_input(model)
    out = model(x)
    logits = out[0] if isinstance(out, tuple) else out
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    logits.sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters without a gradient: {no_grad[:3]}"

    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        final, inter = model.forward_intermediates(x)
        torch.testing.assert_close(final, feats)
        assert len(inter) == len(model.feature_info)
        assert [t.shape[1] for t in inter] == [f["num_chs"] for f in model.feature_info]


@pytest.mark.parametrize("name", ["nasnet_a_mobile", "nasnet_a_cifar"])
def test_features_only_channels_and_reductions(name: str) -> None:
    model = timm.create_model(name, features_only=True).eval()
    x = _small_input(model)
    with torch.no_grad():
        feats = model(x)
    assert [f.shape[1] for f in feats] == model.feature_info.channels()
    assert [x.shape[-1] // f.shape[-1] for f in feats] == model.feature_info.reduction()
