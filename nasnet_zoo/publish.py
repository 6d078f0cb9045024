"""``nasnet-zoo publish``: a Hub-ready folder (weights, timm config, genotype, model card) for one of three inputs.

* a released tag, ``MODEL[.TAG]`` (no tag: the default one): loaded from its source through the zoo's loader
  (download, hash check, conversion, cache), with the card from `cards.zoo_facts`, the one in ``model_cards/``;
* your own weights, ``MODEL --weights FILE``: any state dict in the zoo's layout, e.g. ``best.safetensors`` of a
  ``nasnet-zoo train`` run, a fine-tuning run or a searched cell's training (``MODEL`` is then ``nasnet_cifar`` or
  ``nasnet_imagenet`` with ``genotype=`` the search's JSON). Pass the architecture as it was trained
  (``genotype``, ``num_cells``, ``filters``, ``img_size``); the class and input-channel counts are read from the
  file. An aux head in the file is dropped. When the file's folder has the ``metrics.jsonl`` of its run and the
  file names its ``epoch`` (as `train.fit` writes them), the card states that epoch's validation accuracy;
* a folder in the zoo's Hub layout, ``local-dir:DIR`` (``model.safetensors`` + timm ``config.json``: what a
  fine-tuning export or an earlier publish writes): rebuilt from its ``config.json``. Metadata in its
  safetensors (``dataset``, ``base_model``, ``epoch``, ``val_acc``) goes into the card.

`weights.hub_folder.push_hub_folder` uploads the folder and returns the commit, which pins the repo in the zoo table:
``Weights("zoo", hf_hub_id="ORG/NAME@<commit>")``.
"""

from __future__ import annotations

import json
from os import PathLike
from pathlib import Path
from typing import Any

from safetensors import safe_open

from . import cards
from .complexity import count_mult_adds, count_params
from .errors import ConfigError, DataError
from .genotype import Genotype
from .network import NASNet
from .train import scored_accuracy
from .weights import WeightsError, check_state_dict, read_state_dict
from .weights.common import file_digest
from .weights.hub_folder import save_hub_folder
from .weights.sources import HUB_FILENAME
from .zoo import MODELS, create_model, list_models

__all__ = ["publish"]


def publish(
    model: str,
    out: str | PathLike[str],
    *,
    weights: str | PathLike[str] | None = None,
    genotype: Genotype | str | PathLike[str] | None = None,
    num_cells: int | None = None,
    filters: int | None = None,
    img_size: int | None = None,
    num_classes: int | None = None,
    dataset: str | None = None,
    base_model: str | None = None,
    repo_id: str | None = None,
    cache_dir: str | PathLike[str] | None = None,
) -> list[Path]:
    """Write the Hub folder ``out`` for ``model`` (see the module docstring); return the files written."""
    architecture = dict(genotype=genotype, num_cells=num_cells, filters=filters, img_size=img_size)
    given = [k for k, v in architecture.items() if v is not None]
    if model.startswith("local-dir:"):
        if weights is not None or given or num_classes is not None:
            raise ConfigError("local-dir: folders carry their own config.json; drop --weights and the model flags")
        net, metadata, facts = _from_folder(Path(model.removeprefix("local-dir:")), dataset, base_model, repo_id)
    elif weights is not None:
        if model not in MODELS:
            hint = " (tags name released weights; with --weights give the model alone)" if "." in model else ""
            raise ConfigError(f"unknown model {model!r}{hint}; the zoo has: {', '.join(MODELS)}")
        net, metadata, facts = _from_file(model, Path(weights), architecture, num_classes, dataset, base_model, repo_id)
    else:
        if given or num_classes is not None or dataset or base_model:
            raise ConfigError(
                "the model flags (--genotype, --num-cells, --filters, --img-size, --num-classes, --dataset, "
                "--base-model) describe your own weights: add --weights FILE, or publish a released tag alone"
            )
        net, metadata, facts = _from_tag(model, repo_id, cache_dir)
    override = {} if facts.tag else {"tag": None, "origin_url": None, "description": _trained_description(facts)}
    model_args = MODELS[metadata["architecture"]].hub_model_args(net)
    return save_hub_folder(net, out, metadata, cards.render_card(facts), override, model_args=model_args)


# --- the three inputs -------------------------------------------------------------------------------------------
def _from_tag(model: str, repo_id: str | None, cache_dir: Any) -> tuple[NASNet, dict[str, str], cards.CardFacts]:
    name, _, tag = model.partition(".")
    if name not in MODELS or MODELS[name].generic:
        known = ", ".join(list_models(pretrained=True))
        raise ConfigError(f"{model!r} is not a zoo model; released tags: {known} (your own weights: --weights FILE)")
    m = MODELS[name]
    if not m.pretrained:
        raise ConfigError(
            f"{name} has no released weights. Train it (`nasnet-zoo train`) and publish your file: "
            f"nasnet-zoo publish {name} --weights runs/NAME/best.safetensors --out DIR"
        )
    tag = tag or next(iter(m.pretrained))
    facts = cards.zoo_facts(name, tag, repo_id)  # checks the tag
    net = create_model(f"{name}.{tag}", pretrained=True, cache_dir=cache_dir)
    w = m.pretrained[tag]
    metadata = dict(architecture=name, tag=tag, source=w.source_url, source_hash=w.source_hash, origin=w.origin)
    return net, metadata, facts


def _from_file(
    name: str,
    path: Path,
    architecture: dict[str, Any],
    num_classes: int | None,
    dataset: str | None,
    base_model: str | None,
    repo_id: str | None,
) -> tuple[NASNet, dict[str, str], cards.CardFacts]:
    row = MODELS[name]
    if architecture["genotype"] is not None:
        if not row.generic:
            raise ConfigError(
                f"{name} is NASNet-A; a searched genotype is published as nasnet_cifar or nasnet_imagenet"
            )
        architecture["genotype"] = Genotype.load(architecture["genotype"]).to_dict()  # config.json's model_args
    sd = {k: v for k, v in read_state_dict(path).items() if not k.startswith("aux_head.")}
    head, stem = sd.get("classifier.weight"), sd.get("stem.conv.weight")
    kwargs = {k: v for k, v in architecture.items() if v is not None}
    kwargs["num_classes"] = num_classes if num_classes is not None else (0 if head is None else head.shape[0])
    kwargs["in_chans"] = 3 if stem is None else stem.shape[1]
    net = create_model(name, **kwargs)  # no aux head: inference only, as the loader expects
    try:
        sd = check_state_dict(sd, net.state_dict(), f"{path} (as {name})")
    except WeightsError as e:
        raise WeightsError(
            f"{e} Pass the architecture it was trained with: --genotype, --num-cells, --filters (and --num-classes "
            "when the file has no classifier)."
        ) from None
    net.load_state_dict(sd)
    meta = _file_metadata(path)
    epoch = int(meta["epoch"]) if meta.get("epoch", "").isdigit() else None
    size = architecture["img_size"] or row.input_size
    facts = _trained_facts(
        net, name, size, repo_id, file=path.name, sha256=file_digest(path), epoch=epoch,
        val_acc=_val_acc(path.parent, epoch),
        dataset=dataset or meta.get("dataset") or row.dataset, base_model=base_model or meta.get("base_model"),
    )  # fmt: skip
    return net.eval(), _trained_metadata(facts), facts


def _from_folder(
    folder: Path, dataset: str | None, base_model: str | None, repo_id: str | None
) -> tuple[NASNet, dict[str, str], cards.CardFacts]:
    path = folder / HUB_FILENAME
    if not (folder / "config.json").is_file() or not path.is_file():
        raise WeightsError(f"{folder} is not a folder in the zoo's Hub layout (needs config.json and {HUB_FILENAME})")
    net = create_model(f"local-dir:{folder}", pretrained=True).eval()
    name = net.pretrained_cfg["architecture"]
    meta = _file_metadata(path)
    tag = meta.get("tag")
    if tag and tag in MODELS[name].pretrained and meta.get("source") == MODELS[name].pretrained[tag].source_url:
        keep = ("architecture", "tag", "source", "source_hash", "origin")  # an earlier publish of a released tag
        return net, {k: meta[k] for k in keep if k in meta}, cards.zoo_facts(name, tag, repo_id)
    epoch = int(meta["epoch"]) if meta.get("epoch", "").isdigit() else None
    val_acc = float(meta["val_acc"]) if meta.get("val_acc") else _val_acc(folder, epoch)
    facts = _trained_facts(
        net, name, net.pretrained_cfg["input_size"][-1], repo_id, file=path.name, sha256=file_digest(path), epoch=epoch,
        val_acc=val_acc,
        dataset=dataset or meta.get("dataset") or MODELS[name].dataset, base_model=base_model or meta.get("base_model"),
    )  # fmt: skip
    return net, _trained_metadata(facts), facts


# --- facts about your own weights --------------------------------------------------------------------------------
def _trained_facts(net: NASNet, name: str, size: int, repo_id: str | None, **trained: Any) -> cards.CardFacts:
    """Facts about a model built for your weights; its size is measured here, on the model itself."""
    row = MODELS[name]
    measured = dict(
        params=count_params(net),
        params_with_bn_stats=count_params(net, with_bn_stats=True),
        mult_adds=count_mult_adds(net, size, net.in_chans),
    )
    same = net.genotype == row.genotype and net.config == row.config and net.in_chans == 3
    measurements = cards.load_measurements()
    return cards.CardFacts(
        name=name,
        title=repo_id.split("/")[-1] if repo_id else f"{name} (trained with nasnet-zoo)",
        repo_id=repo_id,
        genotype=net.genotype,
        config=net.config,
        num_classes=net.num_classes,
        in_chans=net.in_chans,
        input_size=size,
        num_features=net.num_features,
        size=measured,
        pretrained_cfg={**net.pretrained_cfg, "input_size": (net.in_chans, size, size)},
        trained=cards.TrainedWeights(**trained),
        peers=measurements["peers"].get(name, []) if same else [],
        same_as_row=same,
    )


def _trained_metadata(facts: cards.CardFacts) -> dict[str, str]:
    t = facts.trained
    meta = dict(architecture=facts.name, source=t.file, source_hash=f"sha256:{t.sha256}", dataset=t.dataset)
    extra = dict(base_model=t.base_model, epoch=t.epoch, val_acc=t.val_acc)
    return {**meta, **{k: str(v) for k, v in extra.items() if v is not None}}


def _trained_description(facts: cards.CardFacts) -> str:
    base = f", fine-tuned from {facts.trained.base_model}" if facts.trained.base_model else ""
    return f"{facts.name} trained with nasnet-zoo on {facts.trained.dataset}{base}"


def _file_metadata(path: Path) -> dict[str, str]:
    if path.suffix != ".safetensors":
        return {}
    with safe_open(str(path), "pt") as f:
        return dict(f.metadata() or {})


def _val_acc(folder: Path, epoch: int | None) -> float | None:
    """The validation accuracy `train.fit` scored the weights of ``epoch`` by (EMA's when it kept one)."""
    metrics = folder / "metrics.jsonl"
    if epoch is None or not metrics.is_file():
        return None
    for n, line in enumerate(metrics.read_text(errors="replace").splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError as e:
            raise DataError(
                f"{metrics} line {n} is not JSON ({e}): restore the run's metrics, or move it away"
            ) from None
        if record.get("epoch") == epoch:
            return scored_accuracy(record)
    return None
