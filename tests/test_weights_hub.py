"""The real download paths, offline: a local Hub cache for the Hub tags, a 127.0.0.1 server for the Keras tags.

* ``nasnet_a_large.tf_in1k`` loads through huggingface_hub's own ``hf_hub_download`` from a cache laid out as
  the Hub writes it (``refs/main`` = a 40-hex sha without newline, ``snapshots/<sha>/model.safetensors`` a link
  to ``blobs/<sha256>``), with offline mode on. The file is a full-size, random-weight state dict of timm's
  ``nasnetalarge`` (89M fp32 values = 356 MB), written once for this module and deleted after it.
* ``nasnet_a_mobile.tf_in1k`` is served from 127.0.0.1 as a Keras ``.h5`` (random weights): downloaded,
  md5-checked, converted, cached; the second load reads only the cache.
* An unreachable source is 127.0.0.1:9, where nothing listens: refused at once.

HF_HUB_OFFLINE: huggingface_hub reads ``constants.HF_HUB_OFFLINE`` on every call, so the `offline` fixture sets
that (and the environment variable) before any Hub call of a test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import h5py
import numpy as np
import pytest
import timm
import torch
from huggingface_hub import constants as hf_constants
from PIL import Image
from safetensors.torch import save_file

import nasnet_zoo
from nasnet_zoo import zoo
from nasnet_zoo.cli import main
from nasnet_zoo.weights import WeightsError, WeightsUnavailableError
from nasnet_zoo.weights import convert_keras as convert_keras_module
from nasnet_zoo.weights.convert_timm import rename_timm
from nasnet_zoo.zoo import describe_weights
from tests.weights_testing import write_hub_cache, write_keras_h5

LARGE_REPO, LARGE_REV = zoo.LARGE_TF.repo, zoo.LARGE_TF.revision
NOWHERE = "http://127.0.0.1:9"  # nothing listens there: a connection is refused at once


def cached_file(name: str, tag: str, cache: Path) -> Path | None:
    return zoo.MODELS[name].pretrained[tag].cached(f"{name}.{tag}", cache)


def _randomise_bn(model: torch.nn.Module) -> torch.nn.Module:
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return model


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def _equal_state(model: torch.nn.Module, expected: dict[str, torch.Tensor], skip: tuple[str, ...] = ()) -> None:
    sd = model.state_dict()
    for k, v in expected.items():
        if not k.endswith("num_batches_tracked") and not k.startswith(skip):
            assert torch.equal(sd[k], v), k


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


# --- the Hub path: nasnet_a_large.tf_in1k ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def large_hub(tmp_path_factory: pytest.TempPathFactory):
    """A Hub cache holding a random-weight timm ``nasnetalarge`` as ``timm/nasnetalarge.tf_in1k@<pinned sha>``."""
    torch.manual_seed(0)
    timm_sd = _randomise_bn(timm.create_model("nasnetalarge")).state_dict()
    cache = tmp_path_factory.mktemp("hub")
    tmp = cache / "model.safetensors"
    save_file(timm_sd, tmp)
    snapshot = write_hub_cache(cache, LARGE_REPO, LARGE_REV, {"model.safetensors": tmp})
    with torch.device("meta"):
        layer_names = nasnet_zoo.create_model("nasnet_a_large").layer_names
    yield SimpleNamespace(cache=cache, snapshot=snapshot, expected=rename_timm(timm_sd, layer_names, "test"))
    (snapshot / "model.safetensors").resolve().unlink()


def test_large_loads_from_the_hub_cache_offline(large_hub, offline):
    model = nasnet_zoo.create_model("nasnet_a_large", pretrained=True, cache_dir=large_hub.cache)
    assert model.pretrained_cfg["tag"] == "tf_in1k" and model.pretrained_cfg["hf_hub_id"] == zoo.LARGE_TF.hf_hub_id
    _equal_state(model, large_hub.expected)
    # timm's own entry point takes the very same path.
    same = timm.create_model("nasnet_a_large.tf_in1k", pretrained=True, cache_dir=large_hub.cache)
    _equal_state(same, model.state_dict())
    assert cached_file("nasnet_a_large", "tf_in1k", large_hub.cache) == large_hub.snapshot / "model.safetensors"
    assert cached_file("nasnet_a_large", "keras_in1k", large_hub.cache) is None


def test_hub_offline_with_nothing_cached(offline, tmp_path):
    with pytest.raises(WeightsError) as e:
        nasnet_zoo.create_model("nasnet_a_large", pretrained=True, cache_dir=tmp_path)
    for part in (
        "nasnet_a_large.tf_in1k",
        "model.safetensors",
        LARGE_REPO,
        LARGE_REV,
        "HF_HUB_OFFLINE",
        "Connect once",
    ):
        assert part in str(e.value)


def test_hub_truncated_file(large_hub, offline, tmp_path):
    with open(large_hub.snapshot / "model.safetensors", "rb") as f:
        (tmp_path / "part").write_bytes(f.read(1 << 20))
    snapshot = write_hub_cache(tmp_path, LARGE_REPO, LARGE_REV, {"model.safetensors": tmp_path / "part"})
    with pytest.raises(
        WeightsError, match=r"nasnet_a_large\.tf_in1k: .* truncated or corrupt: delete .* load again"
    ) as e:
        timm.create_model("nasnet_a_large", pretrained=True, cache_dir=tmp_path)
    assert f"delete {(snapshot / 'model.safetensors').resolve()} and load again" in str(e.value)


def test_hub_file_of_another_architecture(offline, tmp_path):
    save_file(nasnet_zoo.create_model("nasnet_a_mobile").state_dict(), tmp_path / "m")
    write_hub_cache(tmp_path, LARGE_REPO, LARGE_REV, {"model.safetensors": tmp_path / "m"})
    with pytest.raises(WeightsError) as e:
        nasnet_zoo.create_model("nasnet_a_large", pretrained=True, cache_dir=tmp_path)
    msg = str(e.value)
    assert "nasnet_a_large.tf_in1k (model.safetensors of timm/nasnetalarge.tf_in1k@" in msg
    assert "does not fit the model" in msg and "wrong shape: stem.conv.weight" in msg


def test_our_own_hub_repo_in_zoo_layout(offline, tmp_path):
    """The layout the publish step writes (safetensors + timm config.json), by ``hf-hub:`` name or table entry."""
    torch.manual_seed(2)
    model = _randomise_bn(nasnet_zoo.create_model("nasnet_a_mobile"))
    timm.models.save_for_hf(model, tmp_path / "out", safe_serialization=True)
    repo, rev = "nasnet-zoo-test/nasnet_a_mobile.tf_in1k", "0123456789abcdef0123456789abcdef01234567"
    files = {name: tmp_path / "out" / name for name in ("model.safetensors", "config.json")}
    write_hub_cache(tmp_path / "cache", repo, rev, files)
    loaded = nasnet_zoo.create_model(f"hf-hub:{repo}@{rev}", pretrained=True, cache_dir=tmp_path / "cache")
    _equal_state(loaded, model.state_dict())
    # What a table entry Weights("zoo", hf_hub_id=...) becomes in timm's pretrained cfg, and what it answers.
    w = zoo.Weights("zoo", hf_hub_id=f"{repo}@{rev}")
    assert (
        w.timm_cfg()["hf_hub_id"] == f"{repo}@{rev}" and w.timm_cfg()["origin_url"] == f"https://huggingface.co/{repo}"
    )
    assert (w.repo, w.revision, w.source_hash, w.pin) == (repo, rev, f"git:{rev}", f"revision {rev}")
    overlay = dict(hf_hub_id=f"{repo}@{rev}")
    same = timm.create_model(
        "nasnet_a_mobile", pretrained=True, pretrained_cfg_overlay=overlay, cache_dir=tmp_path / "cache"
    )
    _equal_state(same, model.state_dict())
    with pytest.raises(ValueError, match="pin Hub weights to a commit"):
        zoo.Weights("zoo", hf_hub_id=repo)


# --- the Keras path: nasnet_a_mobile.tf_in1k -------------------------------------------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.requests.append(self.path)
        data = self.files.get(self.path.removeprefix("/truncated"))
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        # /truncated/...: the connection drops halfway through the announced length.
        self.wfile.write(data[: len(data) // 2] if self.path.startswith("/truncated") else data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def keras_server(tmp_path_factory: pytest.TempPathFactory):
    """127.0.0.1 serving a random-weight NASNet-mobile.h5 in the layout of Keras's released file."""
    torch.manual_seed(1)
    model = _randomise_bn(nasnet_zoo.create_model("nasnet_a_mobile"))
    folder = tmp_path_factory.mktemp("keras")
    data = write_keras_h5(folder / "NASNet-mobile.h5", model).read_bytes()
    with h5py.File(folder / "not-keras.h5", "w") as h:  # a valid HDF5 file that is not a Keras weight file
        h.create_dataset("x", data=[1.0])
    handler = type("Handler", (_Handler,), dict(files={}, requests=[]))
    handler.files.update(
        {"/nasnet/NASNet-mobile.h5": data, "/nasnet/not-keras.h5": (folder / "not-keras.h5").read_bytes()}
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield SimpleNamespace(
        base=base,
        url=f"{base}/nasnet/NASNet-mobile.h5",
        md5=hashlib.md5(data).hexdigest(),
        model=model,
        requests=handler.requests,
        files=handler.files,
    )
    server.shutdown()
    server.server_close()


@pytest.fixture
def keras_tag(keras_server, monkeypatch: pytest.MonkeyPatch):
    """Point the nasnet_a_mobile.tf_in1k table entry at the local server (with the served file's md5)."""
    table = zoo.MODELS["nasnet_a_mobile"].pretrained
    monkeypatch.setitem(
        table, "tf_in1k", dataclasses.replace(table["tf_in1k"], url=keras_server.url, md5=keras_server.md5)
    )
    return keras_server


@pytest.fixture(scope="module")
def mobile_cache(keras_server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding the converted nasnet_a_mobile.tf_in1k, for the tests that only read it."""
    cache = tmp_path_factory.mktemp("mobile-cache")
    table = zoo.MODELS["nasnet_a_mobile"].pretrained
    real = table["tf_in1k"]
    table["tf_in1k"] = dataclasses.replace(real, url=keras_server.url, md5=keras_server.md5)
    try:
        nasnet_zoo.create_model("nasnet_a_mobile", pretrained=True, cache_dir=cache)
    finally:
        table["tf_in1k"] = real
    return cache


def test_keras_tag_downloads_once_then_reads_only_the_cache(keras_tag, tmp_path, monkeypatch):
    # Left by downloads killed a day ago and a moment ago (maybe still running): the first goes, the second stays.
    old, recent = tmp_path / "nasnet_zoo" / ".download-killed", tmp_path / "nasnet_zoo" / ".download-running"
    for d in (old, recent):
        d.mkdir(parents=True)
        (d / "NASNet-mobile.h5").write_bytes(b"partial")
    os.utime(old, (time.time() - 25 * 3600,) * 2)
    before = len(keras_tag.requests)
    model = nasnet_zoo.create_model("nasnet_a_mobile", pretrained=True, cache_dir=tmp_path)
    assert not old.exists() and recent.exists()
    shutil.rmtree(recent)
    assert keras_tag.requests[before:] == ["/nasnet/NASNet-mobile.h5"]
    assert _files(tmp_path) == [f"nasnet_zoo/nasnet_a_mobile.tf_in1k-{keras_tag.md5[:8]}.safetensors"]
    _equal_state(model, keras_tag.model.state_dict())
    assert model.pretrained_cfg["tag"] == "tf_in1k"

    # Later loads: no request, no .h5 read, and they work offline; timm's entry point is the same path.
    def no_h5(*args: object) -> None:
        raise AssertionError("the .h5 was read again")

    monkeypatch.setattr(convert_keras_module, "read_keras_h5", no_h5)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    again = timm.create_model("nasnet_a_mobile", pretrained=True, cache_dir=tmp_path)
    assert keras_tag.requests[before:] == ["/nasnet/NASNet-mobile.h5"]
    _equal_state(again, model.state_dict())


def test_new_head_and_input_channels_adapt_like_timm(keras_tag, mobile_cache, caplog):
    ref = keras_tag.model.state_dict()
    with caplog.at_level(logging.INFO, logger="nasnet_zoo.weights.load"):
        model = nasnet_zoo.create_model("nasnet_a_mobile", pretrained=True, num_classes=10, cache_dir=mobile_cache)
    assert "the weights classify 1000 classes; the model's 10-class head is newly initialised" in caplog.text
    assert model.classifier.weight.shape == (10, 1056)
    _equal_state(model, ref, skip=("classifier",))
    grey = timm.create_model("nasnet_a_mobile", pretrained=True, in_chans=1, cache_dir=mobile_cache)
    assert torch.allclose(grey.stem.conv.weight, ref["stem.conv.weight"].sum(1, keepdim=True))
    _equal_state(grey, ref, skip=("stem.conv",))
    aux = nasnet_zoo.create_model("nasnet_a_mobile", pretrained=True, aux_head=True, cache_dir=mobile_cache)
    _equal_state(aux, ref)
    assert aux.aux_head is not None


def test_keras_offline_with_nothing_cached(keras_tag, offline, tmp_path):
    before = len(keras_tag.requests)
    with pytest.raises(WeightsError) as e:
        nasnet_zoo.create_model("nasnet_a_mobile", pretrained=True, cache_dir=tmp_path)
    for part in ("nasnet_a_mobile.tf_in1k", "NASNet-mobile.h5", "HF_HUB_OFFLINE", keras_tag.md5, "nasnet-zoo convert"):
        assert part in str(e.value)
    assert len(keras_tag.requests) == before and _files(tmp_path) == []


@pytest.mark.parametrize("case", ["md5", "truncated", "unreachable", "not-keras"])
def test_failed_keras_download_leaves_nothing(case, keras_tag, tmp_path, monkeypatch):
    """Nothing in the cache, and no folder made for it: cache_dir is a folder that did not exist."""
    w = zoo.MODELS["nasnet_a_mobile"].pretrained["tf_in1k"]
    bad = {
        "md5": dict(md5="0" * 32),
        "truncated": dict(url=f"{keras_tag.base}/truncated/nasnet/NASNet-mobile.h5"),
        "unreachable": dict(url=f"{NOWHERE}/NASNet-mobile.h5"),
        "not-keras": dict(
            url=f"{keras_tag.base}/nasnet/not-keras.h5",
            md5=hashlib.md5(keras_tag.files["/nasnet/not-keras.h5"]).hexdigest(),
        ),
    }[case]
    monkeypatch.setitem(zoo.MODELS["nasnet_a_mobile"].pretrained, "tf_in1k", dataclasses.replace(w, **bad))
    expected = {
        "md5": r"arrived with md5 [0-9a-f]{32}, not the 0{32} Keras publishes.*nothing was cached",
        "truncated": r"arrived with md5",  # the connection drops quietly: only the md5 tells
        "unreachable": r"127\.0\.0\.1:9/NASNet-mobile\.h5 cannot be reached \(127\.0\.0\.1:9: Connection refused",
        "not-keras": r"\(md5 ok\) did not convert: .*no 'layer_names' attribute",
    }[case]
    with pytest.raises(WeightsError, match=r"nasnet_a_mobile\.tf_in1k: ") as e:
        nasnet_zoo.create_model("nasnet_a_mobile", pretrained=True, cache_dir=tmp_path / "data" / "w")
    assert e.match(expected)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_cached_conversion(keras_tag, tmp_path):
    nasnet_zoo.create_model("nasnet_a_mobile", pretrained=True, cache_dir=tmp_path)
    cached = cached_file("nasnet_a_mobile", "tf_in1k", tmp_path)
    cached.write_bytes(cached.read_bytes()[:1000])
    with pytest.raises(WeightsError, match=rf"nasnet_a_mobile\.tf_in1k: {cached} .*delete {cached} and load again"):
        nasnet_zoo.create_model("nasnet_a_mobile", pretrained=True, cache_dir=tmp_path)
    cached.unlink()
    _equal_state(
        nasnet_zoo.create_model("nasnet_a_mobile", pretrained=True, cache_dir=tmp_path), keras_tag.model.state_dict()
    )


# --- other sources and errors ------------------------------------------------------------------------------------
def test_unknown_tag_and_models_without_weights():
    with pytest.raises(
        WeightsError, match=r"nasnet_a_large has no pretrained tag 'bogus'; its tags: tf_in1k, keras_in1k"
    ):
        nasnet_zoo.create_model("nasnet_a_large.bogus", pretrained=True)
    with pytest.raises(WeightsError, match=r"nasnet_a_cifar has no released weights"):
        timm.create_model("nasnet_a_cifar", pretrained=True)


def test_user_files(keras_server, tmp_path):
    """``pretrained_cfg_overlay=dict(file=...)``: checked like any source, before anything loads."""
    ref = keras_server.model.state_dict()
    save_file(ref, tmp_path / "mine.safetensors")
    model = nasnet_zoo.create_model(
        "nasnet_a_mobile", pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / "mine.safetensors"))
    )
    _equal_state(model, ref)
    write_keras_h5(tmp_path / "k.h5", keras_server.model)
    with pytest.raises(WeightsError, match=r"is a Keras file; convert it first: nasnet-zoo convert keras"):
        nasnet_zoo.create_model(
            "nasnet_a_mobile", pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / "k.h5"))
        )


def test_a_files_own_classes_decide_its_head(tmp_path, caplog):
    """A 2-class file with ``num_classes=2`` loads its head, as timm users expect of a file's own weights; a count
    stated in the overlay that the file contradicts fails saying what to change."""
    torch.manual_seed(4)
    two = nasnet_zoo.create_model("nasnet_cifar", num_cells=3, filters=8, num_classes=2)
    save_file(two.state_dict(), tmp_path / "two.safetensors")
    overlay = dict(file=str(tmp_path / "two.safetensors"))
    small = dict(num_cells=3, filters=8)
    loaded = timm.create_model("nasnet_cifar", pretrained=True, num_classes=2, pretrained_cfg_overlay=overlay, **small)
    _equal_state(loaded, two.state_dict())
    assert (
        nasnet_zoo.create_model("nasnet_cifar", pretrained=True, pretrained_cfg_overlay=overlay, **small).num_classes
        == 2
    )
    with caplog.at_level(logging.INFO, logger="nasnet_zoo.weights.load"):
        five = nasnet_zoo.create_model(
            "nasnet_cifar", pretrained=True, num_classes=5, pretrained_cfg_overlay=overlay, **small
        )
    assert five.classifier.weight.shape == (5, 192) and "the weights classify 2 classes" in caplog.text
    _equal_state(five, two.state_dict(), skip=("classifier",))
    with pytest.raises(
        WeightsError, match=r"the file classifies 2 classes and its pretrained cfg says 10: set num_classes=2"
    ):
        nasnet_zoo.create_model(
            "nasnet_cifar", pretrained=True, pretrained_cfg_overlay={**overlay, "num_classes": 10}, **small
        )


def test_a_headless_file_gets_a_new_head_and_an_overlay_count_it_lacks_is_explained(tmp_path):
    """A file without a classifier (a feature extractor) loads under any ``num_classes`` with a new head; an
    overlay that says it has classes fails in one line saying what to change, not with torch's shape error."""
    small = dict(num_cells=3, filters=8)
    torch.manual_seed(5)
    headless = nasnet_zoo.create_model("nasnet_cifar", num_classes=0, **small)
    save_file(headless.state_dict(), tmp_path / "features.safetensors")
    overlay = dict(file=str(tmp_path / "features.safetensors"))
    three = timm.create_model("nasnet_cifar", pretrained=True, num_classes=3, pretrained_cfg_overlay=overlay, **small)
    assert three.classifier.weight.shape == (3, 192)
    _equal_state(three, headless.state_dict(), skip=("classifier",))
    with pytest.raises(WeightsError) as e:
        timm.create_model(
            "nasnet_cifar", pretrained=True, num_classes=3, pretrained_cfg_overlay={**overlay, "num_classes": 3},
            **small,
        )  # fmt: skip
    assert "the file has no classifier and its pretrained cfg says 3 classes: set num_classes=0" in str(e.value)
    assert len(str(e.value).splitlines()) <= 2


# --- the CLI: predict, list, info --------------------------------------------------------------------------------
def test_cli_predict_uses_the_models_own_preprocessing(keras_tag, mobile_cache, tmp_path, capsys):
    img = tmp_path / "gradient.png"
    xs = torch.linspace(0, 255, 300)
    rgb = torch.stack([xs.expand(260, 300), xs.flip(0).expand(260, 300), torch.full((260, 300), 90.0)], -1)
    Image.fromarray(rgb.to(torch.uint8).numpy()).save(img)
    assert main(["predict", "nasnet_a_mobile", str(img), "--json", "--cache-dir", str(mobile_cache)]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    # The TF release's evaluation: resize to 224 / 0.875 = 256 (bilinear), central 224 crop, scale to [-1, 1].
    with Image.open(img) as im:
        im = im.convert("RGB").resize((round(256 * 300 / 260), 256), Image.BILINEAR)
    left, top = (im.width - 224) // 2, (im.height - 224) // 2
    x = torch.from_numpy(np.asarray(im.crop((left, top, left + 224, top + 224)), dtype=np.float32))
    x = (x.permute(2, 0, 1) / 255 - 0.5) / 0.5
    with torch.no_grad():
        probs = keras_tag.model.eval()(x[None]).softmax(-1)[0]
    p, idx = probs.topk(5)
    assert [t["index"] for t in result["top"]] == idx.tolist()
    assert [t["probability"] for t in result["top"]] == pytest.approx(p.tolist(), abs=2e-3)
    names = timm.data.ImageNetInfo()
    assert result["top"][0]["label"] == names.index_to_description(int(idx[0]))
    assert main(["predict", "nasnet_a_mobile", str(img), "--cache-dir", str(mobile_cache)]) == 0
    assert names.index_to_description(int(idx[0])) in capsys.readouterr().out
    assert main(["predict", "nasnet_a_mobile", str(tmp_path / "absent.png"), "--cache-dir", str(mobile_cache)]) == 1
    assert "absent.png is not a readable image" in capsys.readouterr().err


def test_cli_list_and_info_show_tags_sources_and_cache(keras_tag, mobile_cache, capsys):
    assert main(["list", "--cache-dir", str(mobile_cache)]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| nasnet_a_")}
    assert f"{LARGE_REPO} (revision {LARGE_REV})" in rows["nasnet_a_large.tf_in1k"]
    assert "NASNet-large.h5 (md5 11577c9a518f0070763c2b964a382f17)" in rows["nasnet_a_large.keras_in1k"]
    assert rows["nasnet_a_mobile.tf_in1k"].rstrip(" |").endswith("yes")
    assert rows["nasnet_a_large.keras_in1k"].rstrip(" |").endswith("no")
    assert main(["info", "nasnet_a_mobile", "--cache-dir", str(mobile_cache)]) == 0
    (tf,) = json.loads(capsys.readouterr().out)["pretrained"]
    assert tf["tag"] == "tf_in1k" and tf["format"] == "keras" and tf["md5"] == keras_tag.md5
    assert tf["cached"] == str(cached_file("nasnet_a_mobile", "tf_in1k", mobile_cache)) and tf["cache"] == "yes"
    assert describe_weights("nasnet_a_large", mobile_cache)[0]["cached"] is None


def test_cli_info_takes_the_names_list_prints(capsys):
    """`list` prints ``model.tag`` names; `info` takes them (that tag's weights only) and rejects unknown tags."""
    assert main(["info", "nasnet_a_large.keras_in1k"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["name"] == "nasnet_a_large" and [w["tag"] for w in out["pretrained"]] == ["keras_in1k"]
    assert out["params"] == 88_753_150 and out["config"]["filters"] == 168
    assert main(["info", "nasnet_a_large.bogus"]) == 1
    assert "no pretrained tag 'bogus'; its tags: tf_in1k, keras_in1k" in capsys.readouterr().err


def test_cached_files_are_verified_on_use(offline, tmp_path, capsys, monkeypatch):
    """A truncated blob is caught by its header on every use (`list` calls it corrupt); a flipped byte, which the
    header cannot show, by the full hash: `list --verify`, and NASNET_ZOO_VERIFY=1 on load."""
    torch.manual_seed(5)
    save_file(nasnet_zoo.create_model("nasnet_a_mobile").state_dict(), tmp_path / "m")
    snapshot = write_hub_cache(tmp_path / "cut", LARGE_REPO, LARGE_REV, {"model.safetensors": tmp_path / "m"})
    blob = (snapshot / "model.safetensors").resolve()
    full = blob.read_bytes()
    blob.write_bytes(full[: len(full) // 2])
    assert main(["list", "--cache-dir", str(tmp_path / "cut")]) == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| nasnet_a_large.tf_in1k ")]
    assert row.rstrip(" |").endswith("corrupt")
    (info,) = describe_weights("nasnet_a_large.tf_in1k", tmp_path / "cut")
    assert info["cached"] is None and "truncated or corrupt: delete" in info["problem"]

    blob.write_bytes(full)
    _flip_last_byte(blob)
    assert describe_weights("nasnet_a_large.tf_in1k", tmp_path / "cut")[0]["cache"] == "yes"  # the header is fine
    assert main(["list", "--verify", "--cache-dir", str(tmp_path / "cut")]) == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| nasnet_a_large.tf_in1k ")]
    assert row.rstrip(" |").endswith("corrupt")
    monkeypatch.setenv("NASNET_ZOO_VERIFY", "1")
    with pytest.raises(WeightsError, match=rf"hashes to sha256 [0-9a-f]{{64}}, not the {blob.name} the Hub lists"):
        nasnet_zoo.create_model("nasnet_a_large", pretrained=True, cache_dir=tmp_path / "cut")


def test_cached_conversion_is_verified_against_its_recorded_hash(keras_tag, tmp_path, monkeypatch):
    nasnet_zoo.create_model("nasnet_a_mobile", pretrained=True, cache_dir=tmp_path)
    cached = cached_file("nasnet_a_mobile", "tf_in1k", tmp_path)
    assert cached_file("nasnet_a_mobile", "tf_in1k", tmp_path) == zoo.MODELS["nasnet_a_mobile"].pretrained[
        "tf_in1k"
    ].cached("nasnet_a_mobile.tf_in1k", tmp_path, verify=True)
    _flip_last_byte(cached)
    assert zoo.MODELS["nasnet_a_mobile"].pretrained["tf_in1k"].cached("nasnet_a_mobile.tf_in1k", tmp_path) == cached
    monkeypatch.setenv("NASNET_ZOO_VERIFY", "1")
    with pytest.raises(WeightsError, match=r"not the [0-9a-f]{64} recorded when it was converted: it is corrupt"):
        nasnet_zoo.create_model("nasnet_a_mobile", pretrained=True, cache_dir=tmp_path)


def test_unreachable_hub_fails_fast_and_creates_nothing(tmp_path, monkeypatch):
    """Not offline, nothing cached, the Hub unreachable: one refused connection, not half a minute of retries."""
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "ENDPOINT", NOWHERE)
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError, match=r"nasnet_a_large\.tf_in1k: .* the Hub cannot be reached") as e:
        nasnet_zoo.create_model("nasnet_a_large", pretrained=True, cache_dir=tmp_path / "hub")
    assert time.perf_counter() - start < 5
    assert "127.0.0.1:9" in str(e.value) and "HF_HUB_OFFLINE=1" in str(e.value)
    start = time.perf_counter()  # a repo in the zoo's layout: its config.json comes first, as fast
    with pytest.raises(WeightsUnavailableError, match=r"config\.json of .*org/mobile is not in the Hub cache"):
        nasnet_zoo.create_model("hf-hub:org/mobile", pretrained=True, cache_dir=tmp_path / "hub")
    assert time.perf_counter() - start < 5
    assert list(tmp_path.iterdir()) == []


def test_fresh_hub_download_is_checked_against_its_sha256(keras_server, tmp_path, monkeypatch):
    """What hf_hub_download leaves in the cache is hashed once, against the blob name (the Hub's LFS sha256)."""
    torch.manual_seed(3)
    model = nasnet_zoo.create_model("nasnet_cifar", num_cells=3, filters=8)
    timm.models.save_for_hf(model, tmp_path / "out", safe_serialization=True)
    repo, rev = "nasnet-zoo-test/small", "89abcdef0123456789abcdef0123456789abcdef"
    name = f"hf-hub:{repo}@{rev}"
    served = {n: (tmp_path / "out" / n).read_bytes() for n in ("model.safetensors", "config.json")}
    calls = []

    def download(repo_id: str, filename: str, revision: str | None = None, cache_dir=None, **kw) -> str:
        calls.append(filename)  # "downloads" the served bytes, corrupted when asked to (a flipped last byte)
        snapshot = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}" / "snapshots" / revision
        if (snapshot / filename).exists():
            return str(snapshot / filename)
        data = served[filename]
        blob = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}" / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data[:-1] + bytes([data[-1] ^ 1]) if corrupt and filename.endswith(".safetensors") else data)
        snapshot.mkdir(parents=True, exist_ok=True)
        (snapshot / filename).symlink_to(blob)
        return str(snapshot / filename)

    monkeypatch.setattr("nasnet_zoo.weights.sources.hf_hub_download", download)
    monkeypatch.setattr("timm.models._hub.hf_hub_download", download)
    monkeypatch.setattr(hf_constants, "ENDPOINT", keras_server.base)  # a host that takes connections
    corrupt = True
    with pytest.raises(WeightsError, match=r"hashes to sha256 [0-9a-f]{64}, not the [0-9a-f]{64} the Hub lists"):
        nasnet_zoo.create_model(name, pretrained=True, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("*.safetensors")) and not [
        b
        for b in (tmp_path / "cache").rglob("blobs/*")
        if hashlib.sha256(served["model.safetensors"]).hexdigest() in b.name
    ]  # the corrupt download is gone
    corrupt = False
    loaded = nasnet_zoo.create_model(name, pretrained=True, cache_dir=tmp_path / "cache")
    _equal_state(loaded, model.state_dict())
    assert "model.safetensors" in calls
