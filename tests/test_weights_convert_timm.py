"""Pickled weight files: read weights-only, and a refusal is a one-line error that never advises unpickling the
file unsafely (torch's own message does), whether the file reaches `convert`, `--weights` or `publish`."""

from __future__ import annotations

import os

import pytest
import timm
import torch

import nasnet_zoo
from nasnet_zoo.cli import main
from nasnet_zoo.weights import WeightsError, read_state_dict
from nasnet_zoo.weights.convert_timm import timm_to_zoo
from nasnet_zoo.zoo import load_model, template


@pytest.fixture
def pickles(tmp_path):
    """A pickle that would call a function when unpickled unsafely, one of garbage bytes, one cut in half."""
    torch.save({"w": torch.zeros(1), "f": os.getcwd}, tmp_path / "calls-code.pth")
    (tmp_path / "garbage.pth").write_bytes(b"garbage" * 10)
    torch.save({"w": torch.zeros(1000)}, tmp_path / "whole.pth")
    data = (tmp_path / "whole.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    return {name: tmp_path / f"{name}.pth" for name in ("calls-code", "garbage", "cut")}


def unsafe_advice(text: str) -> bool:
    return "weights_only" in text or "False" in text or "trusted source" in text


def test_convert_refuses_pickles_in_one_line(pickles, tmp_path, capsys):
    for name, path in pickles.items():
        out = tmp_path / f"{name}.safetensors"
        assert main(["convert", "timm", str(path), "--model", "nasnet_a_mobile", "-o", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path} is not ") and len(err.strip().splitlines()) == 1, err
        assert not unsafe_advice(err) and not out.exists()
    with pytest.raises(WeightsError, match=r"unsupported GLOBAL posix\.getcwd.*never unpickles") as e:
        read_state_dict(pickles["calls-code"])
    assert e.value.__cause__ is None and e.value.__suppress_context__  # no chained message with torch's advice


def test_weights_given_as_pickles_fail_before_loading(pickles, tmp_path):
    good = tmp_path / "good.pth"
    model = nasnet_zoo.create_model("nasnet_cifar", num_cells=3, filters=8)
    torch.save(model.state_dict(), good)
    loaded, source = load_model("nasnet_cifar", weights=good, num_cells=3, filters=8)
    assert source == f"pretrained: {good}" and torch.equal(loaded.classifier.weight, model.classifier.weight)
    for path in pickles.values():
        with pytest.raises(WeightsError, match=f"nasnet_cifar|{path}") as e:
            load_model("nasnet_cifar", weights=path, num_cells=3, filters=8)
        assert not unsafe_advice(str(e.value))


def test_timm_layout_converts_against_a_template():
    """The converter takes a model (here a template on the meta device) and any number of classifier rows."""
    peer = timm.create_model("nasnetalarge", num_classes=1001)
    sd = timm_to_zoo(peer.state_dict(), template("nasnet_a_large"))
    assert sd["classifier.weight"].shape == (1000, 4032)  # TF's background row dropped
    assert torch.equal(sd["classifier.weight"], peer.state_dict()["last_linear.weight"][1:])
    headless = timm_to_zoo(
        {k: v for k, v in peer.state_dict().items() if "last_linear" not in k}, template("nasnet_a_large")
    )
    assert "classifier.weight" not in headless
