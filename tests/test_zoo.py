"""The table against the paper: exact released counts, the paper's params and mult-adds, registration."""

import pytest
import timm
import torch
from nasnet_zoo.search.space import random_genotype

import nasnet_zoo
from nasnet_zoo.complexity import count_mult_adds, count_params
from nasnet_zoo.errors import ConfigError
from nasnet_zoo.zoo import MODELS, measure

# The released code's trainable counts (1000 classes) and Keras's counts with BN stats.
EXACT = {"nasnet_a_mobile": (5_289_978, 5_326_716), "nasnet_a_large": (88_753_150, 88_949_818)}


@pytest.mark.parametrize("name", list(EXACT))
def test_released_models_have_the_exact_parameter_counts(name):
    model = nasnet_zoo.create_model(name)
    assert (count_params(model), count_params(model, with_bn_stats=True)) == EXACT[name]


PAPER_ROWS = [name for name, m in MODELS.items() if m.paper is not None]


@pytest.mark.parametrize("name", PAPER_ROWS)
def test_paper_params_and_mult_adds(name, measurements):
    m = MODELS[name]
    r = measure(name)
    sizes = {k: r[k] for k in ("input_size", "params", "params_with_bn_stats", "mult_adds")}
    measurements.size(name, **sizes)  # what the model cards state
    params_m, mult_adds_m = r["params_with_bn_stats"] / 1e6, r["mult_adds"] / 1e6
    print(f"{name} ({m.paper.row}): params {params_m:.2f}M vs paper {m.paper.params_m}M", end="")
    assert params_m == pytest.approx(m.paper.params_m, rel=0.03)
    if m.paper.mult_adds_m is not None:
        print(f", mult-adds {mult_adds_m:.0f}M vs paper {m.paper.mult_adds_m}M")
        tolerance = 0.01 if name in EXACT else 0.03
        assert mult_adds_m == pytest.approx(m.paper.mult_adds_m, rel=tolerance)


def test_mult_adds_method_counts_conv_and_linear_macs():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 4 * 4, 10))  # fmt: skip
    assert count_mult_adds(model, 8) == 8 * 4 * 4 * 3 * 9 + 128 * 10


def test_registered_with_timm_without_touching_timms_own():
    assert set(MODELS) <= set(timm.list_models("nasnet*"))
    assert timm.list_models(module="nasnet_zoo") == sorted(MODELS)  # a module name that says what they are
    assert "nasnetalarge" not in timm.list_models(module="nasnet_zoo")
    assert type(timm.create_model("nasnetalarge")).__module__ == "timm.models.nasnet"
    assert isinstance(timm.create_model("nasnet_a_mobile"), nasnet_zoo.NASNet)
    assert nasnet_zoo.list_models() == list(MODELS)


@pytest.mark.parametrize("name", [*MODELS, *nasnet_zoo.list_models(pretrained=True)])
def test_pretrained_cfgs_state_the_final_feature_map(name):
    """timm's default-cfg test: forward_features at the cfg's input_size gives the cfg's pool_size (meta device)."""
    cfg = timm.get_pretrained_cfg(name)
    with torch.device("meta"):
        model = nasnet_zoo.create_model(name)
        features = model.forward_features(torch.empty(1, *cfg.input_size))
    assert cfg.pool_size == tuple(features.shape[-2:]) and model.pretrained_cfg["pool_size"] == cfg.pool_size


def test_generic_builders_take_any_genotype(tmp_path):
    g = random_genotype(3)
    path = g.save(tmp_path / "best.json")
    m = nasnet_zoo.create_model("nasnet_cifar", genotype=path, num_classes=10, num_cells=3, filters=8)
    assert m.genotype == g and m.config.num_cells == 3 and m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    m = timm.create_model("nasnet_imagenet", genotype=g.to_dict(), num_cells=3, filters=8, num_classes=7)
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 7)


def test_clear_errors():
    with pytest.raises(ValueError, match=r"unknown model 'nasnet_b'.*nasnet_a_mobile"):
        nasnet_zoo.create_model("nasnet_b")
    with pytest.raises(ConfigError, match="nasnet_a_mobile is NASNet-A; pass genotype= to 'nasnet_cifar'"):
        nasnet_zoo.create_model("nasnet_a_mobile", genotype=random_genotype(0))
