"""``nasnet-zoo publish``: folders that round-trip through timm's ``hf-hub:`` loader, and the push to the Hub.

* A released tag (``nasnet_a_mobile.tf_in1k``, random weights standing in for the cached conversion of Keras's
  file) is published, laid out as huggingface_hub's cache (``refs/main`` = a 40-hex sha, ``snapshots/<sha>/``),
  and loaded offline with ``timm.create_model("hf-hub:org/name", pretrained=True)``: every tensor and the outputs
  are identical to the source model's, and the card is the committed one.
* A searched cell trained by ``nasnet-zoo train cifar10`` (one epoch on a tiny fake CIFAR-10) is published from
  its run folder (``best.safetensors`` + ``metrics.jsonl``), loaded back the same way, and republished from the
  folder (``local-dir:``), the path a fine-tuning export takes.
* A fine-tuning export (``nasnet-zoo finetune``'s ``OUT/model``: model.safetensors + timm config.json) publishes
  as it is, label names and all, and round-trips the same way.
* The push runs huggingface_hub's real client against a 127.0.0.1 stand-in for the Hub API that records every
  call: repo creation, the branch, the files and the revision of the commit.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest
import timm
import torch
from huggingface_hub import ModelCard
from huggingface_hub import constants as hf_constants
from nasnet_zoo.search.space import random_genotype
from safetensors import safe_open
from safetensors.torch import load_file

import nasnet_zoo
from nasnet_zoo import Genotype, cards, zoo
from nasnet_zoo.cli import main
from nasnet_zoo.weights import save_safetensors
from tests.helpers import fake_cifar_release, randomize_bn, write_image_folder
from tests.weights_testing import write_hub_cache

ROOT = Path(__file__).resolve().parent.parent
FILES = ["README.md", "config.json", "genotype.json", "model.safetensors"]


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)


def metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), "pt") as f:
        return f.metadata()


def into_hub_cache(folder: Path, cache: Path, repo_id: str, seed: int) -> None:
    """Copy a published folder into a local Hub cache as ``repo_id`` at a made-up commit."""
    staged = cache / ".staged" / repo_id.replace("/", "--")
    shutil.copytree(folder, staged)
    revision = hashlib.sha1(f"{repo_id}{seed}".encode()).hexdigest()
    write_hub_cache(cache, repo_id, revision, {name: staged / name for name in FILES})


def data_config(model: torch.nn.Module) -> dict:
    """timm's preprocessing config, lists (as JSON gives them) read as tuples."""
    cfg = timm.data.resolve_model_data_config(model)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


# --- a released tag ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mobile_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights cache holding nasnet_a_mobile.tf_in1k's conversion (random weights, the real file's cache name)."""
    cache = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    model = randomize_bn(nasnet_zoo.create_model("nasnet_a_mobile"))
    save_safetensors(model.state_dict(), zoo.MOBILE_TF.cache_file("nasnet_a_mobile.tf_in1k", cache))
    return cache


def test_released_tag_round_trips_through_timms_hf_hub_loader(mobile_cache, offline, tmp_path, capsys):
    out = tmp_path / "nasnet_a_mobile.tf_in1k"
    assert main(["publish", "nasnet_a_mobile.tf_in1k", "--out", str(out), "--cache-dir", str(mobile_cache)]) == 0
    assert capsys.readouterr().out.split() == [w for f in FILES for w in ("wrote", str(out / f))]
    assert sorted(p.name for p in out.iterdir()) == FILES
    assert (out / "README.md").read_text() == (ROOT / "model_cards" / "nasnet_a_mobile.tf_in1k.md").read_text()
    w = zoo.MOBILE_TF
    meta = metadata(out / "model.safetensors")
    assert meta["source"] == w.url and meta["source_hash"] == f"md5:{w.md5}"
    assert (meta["architecture"], meta["tag"], meta["origin"]) == ("nasnet_a_mobile", "tf_in1k", w.origin)
    config = json.loads((out / "config.json").read_text())
    assert (config["architecture"], config["num_classes"], config["num_features"]) == ("nasnet_a_mobile", 1000, 1056)
    assert Genotype.load(out / "genotype.json") == nasnet_zoo.NASNET_A

    hub = tmp_path / "hub"
    into_hub_cache(out, hub, "org/mobile", seed=0)
    loaded = timm.create_model("hf-hub:org/mobile", pretrained=True, cache_dir=hub).eval()
    source = nasnet_zoo.create_model("nasnet_a_mobile.tf_in1k", pretrained=True, cache_dir=mobile_cache).eval()
    assert_same_tensors(loaded.state_dict(), source.state_dict())
    assert data_config(loaded) == data_config(source)  # the same preprocessing
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))

    # Republishing the folder (e.g. after downloading it) gives the same folder: card, source and hash included.
    assert main(["publish", f"local-dir:{out}", "--out", str(tmp_path / "again")]) == 0
    for name in ("README.md", "genotype.json"):
        assert (tmp_path / "again" / name).read_text() == (out / name).read_text()
    assert metadata(tmp_path / "again" / "model.safetensors") == meta
    assert_same_tensors(load_file(tmp_path / "again" / "model.safetensors"), source.state_dict())


# --- your own weights: a searched cell trained by `nasnet-zoo train` ------------------------------------------------
@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """One epoch of `nasnet-zoo train cifar10` for a searched cell (3 cells of 8 filters, aux head on)."""
    tmp = tmp_path_factory.mktemp("searched")
    genotype = random_genotype(7)
    genotype.save(tmp / "best.json")
    args = ["--model", "nasnet_cifar", "--genotype", str(tmp / "best.json"), "--num-cells", "3", "--filters", "8"]
    run = tmp / "run"
    train = ["train", "cifar10", "--data-dir", str(tmp / "data"), "--epochs", "1", "--out", str(run), "--workers", "0"]
    with pytest.MonkeyPatch.context() as mp:
        fake_cifar_release(tmp / "data", mp)  # 20 training and 4 validation images
        assert main([*train, *args, "--device", "cpu"]) == 0
    flags = [a for a in args if a != "--model" and a != "nasnet_cifar"]
    return SimpleNamespace(tmp=tmp, genotype=genotype, run=run, flags=flags)


def test_searched_cell_round_trips_and_republishes_from_its_folder(searched, offline, tmp_path, capsys):
    out = tmp_path / "searched"
    weights = searched.run / "best.safetensors"
    argv = ["publish", "nasnet_cifar", "--weights", str(weights), *searched.flags, "--repo-id", "org/searched"]
    assert main([*argv, "--out", str(out)]) == 0
    capsys.readouterr()
    trained = load_file(weights)
    assert any(k.startswith("aux_head.") for k in trained)  # the recipe trains with the aux head ...
    published = load_file(out / "model.safetensors")
    assert_same_tensors(published, {k: v for k, v in trained.items() if not k.startswith("aux_head.")})  # ... dropped
    meta = metadata(out / "model.safetensors")
    assert meta["source"] == "best.safetensors" and meta["epoch"] == "1"
    assert meta["source_hash"] == "sha256:" + hashlib.sha256(weights.read_bytes()).hexdigest()
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "nasnet_cifar" and config["num_classes"] == 10
    assert config["model_args"]["genotype"] == searched.genotype.to_dict()
    assert (config["model_args"]["num_cells"], config["model_args"]["filters"]) == (3, 8)
    assert Genotype.load(out / "genotype.json") == searched.genotype

    # The card: the run's measured accuracy (metrics.jsonl, epoch 1), the cells, the model's own size.
    (record,) = [json.loads(line) for line in (searched.run / "metrics.jsonl").read_text().splitlines()]
    card = ModelCard((out / "README.md").read_text())
    (result,) = card.data.eval_results
    assert result.metric_value == round(100 * record["val_acc"], 2) and result.dataset_type == "cifar10"
    assert card.data.library_name == "timm" and card.data.model_name == "searched"
    assert "hf-hub:org/searched" in card.text and "a searched cell" in card.text
    model = nasnet_zoo.create_model("nasnet_cifar", genotype=searched.genotype, num_cells=3, filters=8, num_classes=10)
    params = sum(p.numel() for p in model.parameters())
    assert f"({params:,})" in card.text

    hub = tmp_path / "hub"
    into_hub_cache(out, hub, "org/searched", seed=1)
    loaded = timm.create_model("hf-hub:org/searched", pretrained=True, cache_dir=hub).eval()
    assert loaded.genotype == searched.genotype and loaded.config.num_cells == 3 and loaded.config.filters == 8
    assert_same_tensors(loaded.state_dict(), {**model.state_dict(), **published})
    model.load_state_dict(published)
    x = torch.randn(2, 3, 32, 32)
    features = timm.create_model("hf-hub:org/searched", pretrained=True, features_only=True, cache_dir=hub).eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
        assert torch.equal(features(x)[-1], model.forward_intermediates(x, intermediates_only=True)[-1])

    # A folder in the Hub layout (an earlier publish, or a fine-tuning export) publishes as it is.
    again = tmp_path / "again"
    assert main(["publish", f"local-dir:{out}", "--out", str(again), "--repo-id", "org/searched"]) == 0
    assert_same_tensors(load_file(again / "model.safetensors"), published)
    assert json.loads((again / "config.json").read_text())["model_args"] == config["model_args"]
    assert metadata(again / "model.safetensors")["val_acc"] == meta["val_acc"]
    assert ModelCard((again / "README.md").read_text()).data.eval_results[0].metric_value == result.metric_value


# --- a fine-tuning export: `nasnet-zoo finetune` writes the folder, `publish local-dir:` takes it as it is ----------
def test_finetune_export_publishes_and_round_trips(offline, tmp_path, capsys):
    write_image_folder(tmp_path / "pets", ("cat", "dog", "fox"), per_class=4)
    tiny = [
        "--num-cells",
        "3",
        "--filters",
        "8",
        "--img-size",
        "16",
        "--epochs",
        "1",
        "--workers",
        "0",
        "--no-pretrained",
        "--channels-last",  # the export writes contiguous tensors (safetensors refuses channels_last ones)
    ]
    assert main(["finetune", "nasnet_cifar", str(tmp_path / "pets"), *tiny, "--out", str(tmp_path / "run")]) == 0
    export = tmp_path / "run" / "model"
    out = tmp_path / "hub-folder"
    argv = ["publish", f"local-dir:{export}", "--base-model", "nasnet_a_cifar", "--dataset", "my-pets"]
    assert main([*argv, "--repo-id", "org/pets", "--out", str(out)]) == 0
    capsys.readouterr()
    assert_same_tensors(load_file(out / "model.safetensors"), load_file(export / "model.safetensors"))
    config, exported = (json.loads((d / "config.json").read_text()) for d in (out, export))
    assert config["label_names"] == exported["label_names"] == ["cat", "dog", "fox"]
    assert config["model_args"]["genotype"] == exported["model_args"]["genotype"]
    assert config["pretrained_cfg"]["input_size"] == exported["pretrained_cfg"]["input_size"] == [3, 16, 16]
    meta = metadata(out / "model.safetensors")
    assert meta["source_hash"] == "sha256:" + hashlib.sha256((export / "model.safetensors").read_bytes()).hexdigest()
    card = ModelCard((out / "README.md").read_text())
    assert card.data.base_model == f"{cards.HUB_ORG}/nasnet_a_cifar" and card.data.datasets == ["my-pets"]
    assert "fine-tuned from `nasnet_a_cifar`: 3 classes of `my-pets`" in card.text

    hub = tmp_path / "hub"
    into_hub_cache(out, hub, "org/pets", seed=2)
    loaded = timm.create_model("hf-hub:org/pets", pretrained=True, cache_dir=hub).eval()
    source = nasnet_zoo.create_model(f"local-dir:{export}", pretrained=True).eval()
    assert_same_tensors(loaded.state_dict(), source.state_dict())
    assert loaded.pretrained_cfg["label_names"] == ["cat", "dog", "fox"]
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))


# --- the push ------------------------------------------------------------------------------------------------------
class _HubStandIn(http.server.BaseHTTPRequestHandler):
    """The Hub API endpoints ``create_repo``, ``create_branch`` and ``upload_folder`` call (create, branch, validate
    the card's YAML, preupload, commit): records each call and takes every file as a regular (non-LFS) file, so the
    commit carries the files' bytes."""

    calls: ClassVar[list[dict]] = []
    fail: ClassVar[dict[str, int]] = {}

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        call = dict(path=self.path, auth=self.headers.get("Authorization"))
        self.calls.append(call)
        kinds = ("create", "branch", "validate-yaml", "preupload", "commit")
        kind = next((k for k in kinds if f"/{k}" in self.path), None)
        if kind in self.fail:
            return self._send({"error": f"{kind} refused"}, self.fail[kind])
        if kind == "create":
            call["json"] = json.loads(body)
            return self._send({"url": f"{self.base}/{call['json']['organization']}/{call['json']['name']}"})
        if kind == "branch":
            return self._send({})
        if kind == "validate-yaml":  # the Hub checks a README's front matter before the commit
            call["json"] = json.loads(body)
            return self._send({"errors": [], "warnings": []})
        if kind == "preupload":
            files = json.loads(body)["files"]
            return self._send(
                {"files": [dict(path=f["path"], uploadMode="regular", shouldIgnore=False) for f in files]}
            )
        if kind == "commit":
            lines = [json.loads(line) for line in body.splitlines()]
            call["summary"] = lines[0]["value"]["summary"]
            files = [line["value"] for line in lines if line["key"] == "file"]  # NDJSON: a header, then the files
            call["files"] = {f["path"]: base64.b64decode(f["content"]) for f in files}
            oid = call["oid"] = hashlib.sha1(body).hexdigest()
            repo = self.path.removeprefix("/api/models/").split("/commit/")[0]
            return self._send(
                {"commitOid": oid, "commitUrl": f"{self.base}/{repo}/commit/{oid}", "pullRequestUrl": None}
            )
        return self._send({"error": "not a Hub API call this stand-in knows"}, 404)

    def _send(self, obj: dict, code: int = 200) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub_api(monkeypatch: pytest.MonkeyPatch):
    handler = type("Handler", (_HubStandIn,), dict(calls=[], fail={}))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.base = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(hf_constants, "ENDPOINT", handler.base)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_stand_in_token")
    yield handler
    server.shutdown()
    server.server_close()


def test_push_creates_the_repo_and_commits_the_folder(searched, hub_api, tmp_path, capsys):
    out = tmp_path / "pushed"
    argv = ["publish", "nasnet_cifar", "--weights", str(searched.run / "best.safetensors"), *searched.flags]
    assert main([*argv, "--out", str(out), "--repo-id", "org/searched-cell", "--push", "--revision", "v1"]) == 0
    create, branch, validate, preupload, commit = hub_api.calls
    assert create["path"] == "/api/repos/create"
    made = create["json"]
    assert (made["name"], made["organization"], made.get("type", "model")) == ("searched-cell", "org", "model")
    assert not made.get("private") and made.get("visibility", "public") == "public"
    assert branch["path"] == "/api/models/org/searched-cell/branch/v1"
    assert validate["json"] == {"content": (out / "README.md").read_text(), "repoType": "model"}
    assert preupload["path"] == "/api/models/org/searched-cell/preupload/v1"
    assert commit["path"] == "/api/models/org/searched-cell/commit/v1"
    assert commit["files"] == {name: (out / name).read_bytes() for name in FILES}
    assert {c["auth"] for c in hub_api.calls} == {"Bearer hf_stand_in_token"}
    printed = capsys.readouterr().out
    url = f"{hub_api.base}/org/searched-cell/commit/{commit['oid']}"
    assert f"pushed to org/searched-cell in commit {commit['oid']}: {url}" in printed
    assert f'Weights("zoo", hf_hub_id="org/searched-cell@{commit["oid"]}", ...)' in printed
    assert "hf-hub:org/searched-cell" in (out / "README.md").read_text()


def test_push_failures_say_what_to_do(searched, hub_api, tmp_path, capsys, monkeypatch):
    argv = ["publish", "nasnet_cifar", "--weights", str(searched.run / "best.safetensors"), *searched.flags]
    hub_api.fail["create"] = 403
    assert main([*argv, "--out", str(tmp_path / "a"), "--repo-id", "org/x", "--push"]) == 1
    assert "pushing" in (err := capsys.readouterr().err) and "may write to org" in err
    assert len(hub_api.calls) == 1
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    assert main([*argv, "--out", str(tmp_path / "b"), "--repo-id", "org/x", "--push"]) == 1
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in capsys.readouterr().err and len(hub_api.calls) == 1
    # Offline without the flag: the Hub refuses connections. One line, no HTTP traceback, nothing sent.
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "ENDPOINT", "http://127.0.0.1:9")
    assert main([*argv, "--out", str(tmp_path / "d"), "--repo-id", "org/x", "--push"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot push to org/x: the Hub cannot be reached (127.0.0.1:9: Connection refused)")
    assert len(err.strip().splitlines()) == 1 and len(hub_api.calls) == 1
    assert main([*argv, "--out", str(tmp_path / "c"), "--push"]) == 2
    assert "--push needs --repo-id" in capsys.readouterr().err


# --- errors ----------------------------------------------------------------------------------------------------------
def test_clear_errors_and_nothing_half_written(searched, tmp_path, capsys):
    def fails(*argv: str) -> str:
        assert main(["publish", *argv]) == 1
        return capsys.readouterr().err

    out = str(tmp_path / "out")
    assert "nasnet_a_cifar has no released weights" in fails("nasnet_a_cifar", "--out", out)
    assert "--weights runs/NAME/best.safetensors" in fails("nasnet_a_cifar", "--out", out)
    assert "no pretrained tag 'bogus'; its tags: tf_in1k" in fails("nasnet_a_mobile.bogus", "--out", out)
    assert "add --weights FILE" in fails("nasnet_cifar", "--out", out, "--num-cells", "3")
    weights = str(searched.run / "best.safetensors")
    err = fails("nasnet_cifar", "--weights", weights, "--out", out)  # trained with 3 cells of 8 filters
    assert "does not fit the model" in err and "Pass the architecture it was trained with" in err
    assert "a searched genotype is published as nasnet_cifar" in fails(
        "nasnet_a_cifar", "--weights", weights, "--genotype", str(searched.tmp / "best.json"), "--out", out
    )
    assert not (tmp_path / "out").exists()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    err = fails("nasnet_cifar", "--weights", weights, *searched.flags, "--out", str(taken))
    assert "holds files a publish does not write (notes.txt)" in err
    assert sorted(p.name for p in taken.iterdir()) == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left


def test_a_torn_metrics_line_is_named(tmp_path: Path) -> None:
    from nasnet_zoo.errors import DataError
    from nasnet_zoo.publish import _val_acc

    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "val_acc": 0.5}\n{"epoch": 2, "val_')
    assert _val_acc(tmp_path, 1) == 0.5
    with pytest.raises(DataError, match=r"metrics.jsonl line 2 is not JSON"):
        _val_acc(tmp_path, 2)
