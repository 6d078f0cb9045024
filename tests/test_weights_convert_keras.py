"""The Keras .h5 converter without Keras: layouts, one-to-one mapping, loud failures, the CLI.

Files are written from zoo models by `weights_testing.write_keras_h5`; real Keras files are converted and
compared logit by logit in tests/peers/test_keras.py.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import nasnet_zoo
from nasnet_zoo.cli import main
from nasnet_zoo.weights import WeightsError, read_state_dict
from nasnet_zoo.weights.convert_keras import keras_cell_ids, keras_names, keras_to_zoo, read_keras_h5
from nasnet_zoo.zoo import template
from tests.weights_testing import write_keras_h5


@pytest.fixture(scope="module")
def mobile() -> torch.nn.Module:
    torch.manual_seed(0)
    model = nasnet_zoo.create_model("nasnet_a_mobile")
    for m in model.modules():  # non-trivial BN statistics, so a swapped mean/var would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def mobile_h5(mobile, tmp_path_factory) -> str:
    return str(write_keras_h5(tmp_path_factory.mktemp("keras") / "NASNet-mobile.h5", mobile))


def test_keras_cell_ids_follow_keras_numbering():
    with torch.device("meta"):
        ids = keras_cell_ids(nasnet_zoo.create_model("nasnet_a_large"))  # N = 6 normal cells per stack
    assert list(ids.values()) == [
        "stem_1", "stem_2", "0", "1", "2", "3", "4", "5", "reduce_6",
        "7", "8", "9", "10", "11", "12", "reduce_12", "13", "14", "15", "16", "17", "18",
    ]  # fmt: skip
    assert ids["cell_6"] == "7" and ids["reduction_cell_1"] == "reduce_12"


def test_keras_names_cover_every_tensor_once():
    with torch.device("meta"):
        model = nasnet_zoo.create_model("nasnet_a_mobile")
    names = keras_names(model)
    keys = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    assert sorted(names) == sorted(keys)
    assert len(set(names.values())) == len(names)
    # Spot checks against Keras's layer names (keras/src/applications/nasnet.py).
    assert names["stem.conv.weight"] == ("stem_conv1", "kernel")
    assert names["cell_stem_1.pre1.reduce.conv2.weight"] == ("adjust_conv_2_stem_2", "kernel")
    assert names["cell_0.blocks.0.left.op.dw1.weight"] == ("separable_conv_1_normal_left1_0", "depthwise_kernel")
    assert names["cell_4.pre0.bn.running_var"] == ("normal_bn_1_5", "moving_variance")
    assert names["reduction_cell_0.pre1.conv.weight"] == ("adjust_conv_projection_reduce_4", "kernel")
    # Keras's quirk: the separable conv of reduction block 5 is called "left4".
    assert names["reduction_cell_1.blocks.4.left.op.pw2.weight"] == (
        "separable_conv_2_reduction_left4_reduce_8",
        "pointwise_kernel",
    )
    assert names["classifier.weight"] == ("predictions", "kernel")


def test_round_trip_is_exact(mobile, mobile_h5):
    weights = read_keras_h5(mobile_h5)
    assert len(weights) == len(keras_names(mobile))
    assert weights[("stem_conv1", "kernel")].shape == (3, 3, 3, 32)  # channels last
    sd = keras_to_zoo(weights, template("nasnet_a_mobile"))
    ref = mobile.state_dict()
    assert sorted(sd) == sorted(ref)
    for k, v in ref.items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(sd[k], v), k


def test_full_model_files_are_read_too(mobile, mobile_h5, tmp_path):
    """``model.save("x.h5")`` puts the same layout under a ``model_weights`` group."""
    path = tmp_path / "full.h5"
    with h5py.File(mobile_h5, "r") as src, h5py.File(path, "w") as dst:
        dst.create_group("model_config")
        src.copy(src, dst, "model_weights")
    weights = read_keras_h5(path)
    assert len(weights) == len(keras_names(mobile))
    assert torch.equal(keras_to_zoo(weights, template("nasnet_a_mobile"))["stem.conv.weight"], mobile.stem.conv.weight)


def test_no_top_file_gives_a_headless_state_dict(mobile, tmp_path):
    mobile_no_top = nasnet_zoo.create_model("nasnet_a_mobile", num_classes=0)
    mobile_no_top.load_state_dict({k: v for k, v in mobile.state_dict().items() if not k.startswith("classifier")})
    sd = keras_to_zoo(read_keras_h5(write_keras_h5(tmp_path / "no-top.h5", mobile_no_top)), template("nasnet_a_mobile"))
    assert not any(k.startswith("classifier") for k in sd)
    assert torch.equal(
        sd["cell_11.blocks.4.left.op.pw2.weight"], mobile.state_dict()["cell_11.blocks.4.left.op.pw2.weight"]
    )


def test_leftover_keras_weight_fails_loudly(mobile, tmp_path):
    path = write_keras_h5(tmp_path / "extra.h5", mobile, extra={("aux_dense", "kernel"): np.zeros((4, 4), "f4")})
    with pytest.raises(WeightsError, match=r"1 left over: aux_dense/kernel"):
        keras_to_zoo(read_keras_h5(path), template("nasnet_a_mobile"))


def test_missing_keras_weight_fails_loudly(mobile_h5, tmp_path):
    path = tmp_path / "missing.h5"
    path.write_bytes(Path(mobile_h5).read_bytes())
    with h5py.File(path, "a") as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
        assert "adjust_bn_stem_2" in names
        f.attrs["layer_names"] = [n.encode() for n in names if n != "adjust_bn_stem_2"]
    with pytest.raises(
        WeightsError, match=r"4 missing: cell_stem_1\.pre1\.reduce\.bn\.weight \(Keras adjust_bn_stem_2/gamma\)"
    ):
        keras_to_zoo(read_keras_h5(path), template("nasnet_a_mobile"))


def test_file_of_another_model_fails_loudly(mobile_h5):
    with pytest.raises(WeightsError, match=r"do not map one-to-one onto nasnet_a_large.*NASNet-large\.h5"):
        keras_to_zoo(read_keras_h5(mobile_h5), template("nasnet_a_large"))


def test_wrong_shape_fails_loudly(mobile, tmp_path):
    path = write_keras_h5(tmp_path / "wide.h5", mobile)
    with h5py.File(path, "a") as f:
        del f["stem_conv1/stem_conv1/kernel:0"]
        f["stem_conv1"].create_dataset("stem_conv1/kernel:0", data=np.zeros((3, 3, 3, 96), "f4"))
    with pytest.raises(
        WeightsError, match=r"wrong shape: stem\.conv\.weight: file \(96, 3, 3, 3\) vs model \(32, 3, 3, 3\)"
    ):
        keras_to_zoo(read_keras_h5(path), template("nasnet_a_mobile"))


def test_unreadable_files_fail_loudly(mobile_h5, tmp_path):
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(Path(mobile_h5).read_bytes()[:100_000])
    with pytest.raises(WeightsError, match=r"truncated\.h5 is not a readable Keras \.h5 file.*download it again"):
        read_keras_h5(truncated)
    keras3 = tmp_path / "model.weights.h5"
    with h5py.File(keras3, "w") as f:
        f.create_group("layers/stem_conv1/vars").create_dataset("0", data=np.zeros(3))
    with pytest.raises(WeightsError, match=r"no 'layer_names' attribute"):
        read_keras_h5(keras3)
    with pytest.raises(WeightsError, match="no Keras weight file"):
        read_keras_h5(tmp_path / "absent.h5")


def test_cli_convert_keras_writes_loadable_safetensors(mobile, mobile_h5, tmp_path, capsys):
    out = tmp_path / "mobile.safetensors"
    assert main(["convert", "keras", mobile_h5, "--model", "nasnet_a_mobile", "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    model = nasnet_zoo.create_model("nasnet_a_mobile", pretrained=True, pretrained_cfg_overlay=dict(file=str(out)))
    for k, v in mobile.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert read_state_dict(out)["classifier.weight"].shape == (1000, 1056)
    # A file that does not fit: an error and exit status 1, nothing written.
    assert (
        main(["convert", "keras", mobile_h5, "--model", "nasnet_a_large", "-o", str(tmp_path / "x.safetensors")]) == 1
    )
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
