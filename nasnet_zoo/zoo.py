"""The table: every model the zoo builds, its macro config, the paper's numbers, its released weights, and
its timm registration; `create_model` and `load_model`, the fronts that build from it.

A row is (genotype, macro config, input size, paper numbers, released `Weights` by tag). The paper's numbers
live here once; tests, model cards, the README and benchmarks read them from `MODELS`. Importing this module
registers every row with timm under the module name ``nasnet_zoo`` (``timm.create_model("nasnet_a_mobile")``,
``timm.list_models(module="nasnet_zoo")``) without touching timm's own names (``nasnetalarge``); a builder
with ``pretrained=True`` loads through `weights.load.load_pretrained`, so timm's entry point and ours agree.

The generic builders ``nasnet_cifar`` and ``nasnet_imagenet`` take any ``genotype=`` (a `Genotype`, a JSON
path or string, or a dict) and any `MacroConfig` field as a keyword, e.g.
``create_model("nasnet_cifar", genotype=g, num_cells=6, filters=16, num_classes=10)``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from .errors import ConfigError, WeightsError
from .genotype import NASNET_A, Genotype
from .network import MacroConfig, NASNet
from .sizing import out_of_memory
from .weights.load import load_pretrained, resolve
from .weights.sources import HUB_FILENAME, Weights, fetch_hub, split_hub_id

#: TF-slim's cifar_config / mobile_imagenet_config / large_imagenet_config (nasnet.py) and arg scopes.
CIFAR = MacroConfig(
    stem="cifar", num_cells=18, filters=32, stem_multiplier=3.0, skip_reduction_layer_input=False,
    drop_path_keep_prob=0.6, dense_dropout_keep_prob=1.0, bn_eps=1e-5, bn_decay=0.9,
)  # fmt: skip
MOBILE = MacroConfig(
    stem="imagenet", num_cells=12, filters=44, stem_multiplier=1.0, skip_reduction_layer_input=False,
    drop_path_keep_prob=1.0, dense_dropout_keep_prob=0.5, bn_eps=1e-3, bn_decay=0.9997,
)  # fmt: skip
LARGE = MacroConfig(
    stem="imagenet", num_cells=18, filters=168, stem_multiplier=3.0, skip_reduction_layer_input=True,
    drop_path_keep_prob=0.7, dense_dropout_keep_prob=0.5, bn_eps=1e-3, bn_decay=0.9997,
)  # fmt: skip


def _scaled(base: MacroConfig, n: int, penultimate: int) -> MacroConfig:
    """The paper's "N @ F" naming: N normal cells per stack, F = 24 x filters output channels (NASNet-A)."""
    return dataclasses.replace(base, num_cells=3 * n, filters=penultimate // 24)


@dataclass(frozen=True)
class Paper:
    """What the paper reports for a model (Tables 1 and 2 of arXiv:1707.07012)."""

    row: str  # the row's name in the paper ("N @ F")
    params_m: float
    mult_adds_m: float | None = None
    top1: float | None = None
    top5: float | None = None
    error: float | None = None  # CIFAR-10 test error, %
    error_cutout: float | None = None
    note: str = ""


@dataclass(frozen=True)
class ZooModel:
    """One row of the zoo."""

    name: str
    title: str  # the paper's "N @ F" name
    genotype: Genotype
    config: MacroConfig
    input_size: int
    num_classes: int
    dataset: str
    paper: Paper | None = None
    pretrained: dict[str, Weights] = field(default_factory=dict)  # tag -> weights; the first is the default
    generic: bool = False  # takes genotype= (the generic builders)

    @property
    def pool_size(self) -> tuple[int, int]:
        """The final feature map at the input size: TF-slim's VALID stride-2 stem conv (ImageNet), then one
        halving ("SAME", rounding up) per stem cell and reduction cell."""
        imagenet = self.config.stem == "imagenet"
        s = (self.input_size - 3) // 2 + 1 if imagenet else self.input_size
        for _ in range(self.config.num_reduction_layers + 2 * imagenet):
            s = -(-s // 2)
        return (s, s)

    def hub_model_args(self, model: nn.Module) -> dict[str, Any]:
        """What a Hub folder's ``config.json`` records beyond timm's own: a generic row's genotype, as JSON."""
        return {"genotype": model.genotype.to_dict()} if self.generic else {}


# The paper's in-between sizes (5 @ 1538, 7 @ 1920, CIFAR 7 @ 2304) cannot have the printed parameter counts
# under the released code's rule F = 24 x filters (they would have 12.2M, 24.6M and 32.6M). The widths that
# reproduce both the printed parameters and mult-adds are 1440, 1824 and 2112 (measured in tests/test_zoo.py),
# so those rows are built at those widths, named for what they are, and keep the paper's label in `Paper.row`.
_MISLABELLED = "the paper's label; the released code's F = 24 x filters rule gives other counts at that width"

# The released weights. All three are the authors' TF-slim checkpoints of 04_10_2017, converted
# by others; our TF-exact network runs them as TF-slim does. Preprocessing: the zoo's default, the TF release's.
_KERAS = "https://storage.googleapis.com/tensorflow/keras-applications/nasnet/"
_KERAS_ORIGIN = "Keras Applications' {}: the TF-slim checkpoint converted by Keras (1000 classes), converted here"
MOBILE_TF = Weights(
    "keras", url=_KERAS + "NASNet-mobile.h5", md5="020fb642bf7360b370c678b08e0adf61", top1=74.4, top5=91.9,
    reported_by="Keras Applications", origin=_KERAS_ORIGIN.format("NASNet-mobile.h5"),
)  # fmt: skip
LARGE_TF = Weights(
    "timm", hf_hub_id="timm/nasnetalarge.tf_in1k@2188423afb58a54ecc6eb20e22179f24bfb92275", top1=82.64, top5=96.07,
    reported_by="timm (its port, crop 0.911 bicubic)",
    origin="timm's nasnetalarge.tf_in1k: Cadene's conversion of the TF-slim checkpoint, renamed at load time",
)  # fmt: skip
LARGE_KERAS = Weights(
    "keras", url=_KERAS + "NASNet-large.h5", md5="11577c9a518f0070763c2b964a382f17", top1=82.5, top5=96.0,
    reported_by="Keras Applications", origin=_KERAS_ORIGIN.format("NASNet-large.h5"),
)  # fmt: skip

MODELS: dict[str, ZooModel] = {
    m.name: m
    for m in [
        ZooModel("nasnet_a_mobile", "NASNet-A 4 @ 1056", NASNET_A, MOBILE, 224, 1000, "imagenet-1k",
                 Paper("4 @ 1056", 5.3, 564, 74.0, 91.6), pretrained={"tf_in1k": MOBILE_TF}),
        ZooModel("nasnet_a_5_1440", "NASNet-A 5 @ 1440", NASNET_A, _scaled(LARGE, 5, 1440), 299, 1000,
                 "imagenet-1k", Paper("5 @ 1538", 10.9, 2350, 78.6, 94.2, note=_MISLABELLED)),
        ZooModel("nasnet_a_7_1824", "NASNet-A 7 @ 1824", NASNET_A, _scaled(LARGE, 7, 1824), 299, 1000,
                 "imagenet-1k", Paper("7 @ 1920", 22.6, 4930, 80.8, 95.3, note=_MISLABELLED)),
        ZooModel("nasnet_a_large", "NASNet-A 6 @ 4032", NASNET_A, LARGE, 331, 1000, "imagenet-1k",
                 Paper("6 @ 4032", 88.9, 23800, 82.7, 96.2),
                 pretrained={"tf_in1k": LARGE_TF, "keras_in1k": LARGE_KERAS}),
        ZooModel("nasnet_a_cifar", "NASNet-A 6 @ 768", NASNET_A, CIFAR, 32, 10, "cifar10",
                 Paper("6 @ 768", 3.3, error=3.41, error_cutout=2.65)),
        ZooModel("nasnet_a_cifar_7_2112", "NASNet-A 7 @ 2112", NASNET_A, _scaled(CIFAR, 7, 2112), 32, 10,
                 "cifar10", Paper("7 @ 2304", 27.6, error=2.97, error_cutout=2.40, note=_MISLABELLED)),
        ZooModel("nasnet_cifar", "NASNet, CIFAR layout, any genotype", NASNET_A, CIFAR, 32, 10, "cifar10",
                 generic=True),
        ZooModel("nasnet_imagenet", "NASNet, ImageNet layout, any genotype", NASNET_A, MOBILE, 224, 1000,
                 "imagenet-1k", generic=True),
    ]
}  # fmt: skip


def _pretrained_cfg(m: ZooModel, **overrides: Any) -> dict[str, Any]:
    """timm pretrained cfg: TF release preprocessing (central crop 0.875, bilinear, inputs in [-1, 1])."""
    s = m.input_size
    cfg = dict(
        num_classes=m.num_classes,
        input_size=(3, s, s),
        pool_size=m.pool_size,
        crop_pct=0.875 if m.dataset.startswith("imagenet") else 1.0,
        interpolation="bilinear",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        first_conv="stem.conv",
        classifier="classifier",
        license="apache-2.0",
        paper_ids="arXiv:1707.07012",
    )
    cfg.update(overrides)
    return cfg


default_cfgs = generate_default_cfgs(
    {
        (f"{m.name}.{tag}" if tag else m.name): _pretrained_cfg(m, **(w.timm_cfg() if w else {}))
        for m in MODELS.values()
        for tag, w in (m.pretrained or {"": None}).items()
    }
)


def _build(name: str, pretrained: bool = False, **kwargs: Any) -> NASNet:
    m = MODELS[name]
    genotype = kwargs.pop("genotype", None)
    if genotype is not None and not m.generic:
        raise ConfigError(f"{name} is NASNet-A; pass genotype= to 'nasnet_cifar' or 'nasnet_imagenet' instead")
    genotype = m.genotype if genotype is None else Genotype.load(genotype)
    config_fields = {f.name for f in dataclasses.fields(MacroConfig)}
    overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in config_fields}
    config = dataclasses.replace(m.config, **overrides)
    size = kwargs.get("img_size", m.input_size)
    kwargs["img_size"] = size if isinstance(size, int) else int(size[0])  # timm's config.json records (h, w)
    out_indices = tuple(range(5 if config.stem == "imagenet" else 4))
    overlay, cache_dir = kwargs.pop("pretrained_cfg_overlay", None), kwargs.pop("cache_dir", None)
    cfg = resolve(name, m.pretrained, kwargs.pop("pretrained_cfg", None), overlay)

    def build(pretrained: bool, **load: Any) -> NASNet:
        try:
            return build_model_with_cfg(
                NASNet,
                name,
                pretrained,
                genotype=genotype,
                config=config,
                feature_cfg=dict(feature_cls="getter", out_indices=out_indices),
                **kwargs,
                **load,
            )
        except RuntimeError as e:  # where the free memory could not be read beforehand (`sizing`)
            if not out_of_memory(e):
                raise
            raise ConfigError(
                f"{name} with {config.num_cells} cells and {config.filters} filters does not fit in memory "
                f"({str(e).splitlines()[0][:200]}): build it smaller (--filters, --num-cells)"
            ) from None

    if not pretrained:
        return build(False, pretrained_cfg=cfg)
    return load_pretrained(build, cfg, m.pretrained, functools.partial(template, name), overlay=overlay,
                           cache_dir=cache_dir)  # fmt: skip


# timm names a registration's module after the last part of its entry point's __module__, and reads the
# pretrained cfgs from that module's `default_cfgs`: the package, so that the module name says NASNet.
_PACKAGE = sys.modules[__package__]
_PACKAGE.default_cfgs = default_cfgs


def _register(name: str) -> None:
    def entrypoint(pretrained: bool = False, **kwargs: Any) -> NASNet:
        return _build(name, pretrained, **kwargs)

    m = MODELS[name]
    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __package__
    entrypoint.__doc__ = f"{m.title} ({m.dataset}, {m.input_size}x{m.input_size})."
    globals()[name] = register_model(entrypoint)


for _name in MODELS:
    _register(_name)


def list_models(pretrained: bool = False) -> list[str]:
    """The zoo's model names (with ``.tag`` suffixes for released weights when ``pretrained``)."""
    if pretrained:
        return [f"{m.name}.{tag}" for m in MODELS.values() for tag in m.pretrained]
    return list(MODELS)


def _row(name: str) -> ZooModel:
    """The row of ``name`` (``model``, ``model.tag``, ``hf-hub:``/``local-dir:`` names pass) or a clear error."""
    arch = name.split(".", 1)[0]
    if arch not in MODELS:
        raise ConfigError(f"unknown model {name!r}; the zoo has: {', '.join(MODELS)} (see `nasnet-zoo list`)")
    return MODELS[arch]


def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """`timm.create_model` for the zoo's names: same behaviour, plus a clear error for unknown names.

    ``create_model("nasnet_a_mobile", pretrained=True, num_classes=10)`` gives a new head for fine-tuning;
    ``create_model("nasnet_cifar", genotype="runs/search/best.json")`` builds a searched cell. A saved model's
    ``config.json`` (``hf-hub:``, ``local-dir:``) is checked first, so that an unreachable Hub fails at once.
    """
    if name.startswith(("hf-hub:", "hf_hub:", "local-dir:")):
        _saved_config(name, kwargs.get("cache_dir"))
    else:
        _row(name)
    return timm.create_model(name, pretrained=pretrained, **kwargs)


def template(name: str) -> nn.Module:
    """``name``'s model as its weight files hold it (the row's classes and channels), built on the meta device:
    its names, shapes and cells, for the converters, at no memory and no initialisation time."""
    with torch.device("meta"):
        return create_model(name)


def load_model(
    name: str | PathLike[str],
    *,
    pretrained: bool = True,
    weights: str | PathLike[str] | None = None,
    cache_dir: str | PathLike[str] | None = None,
    **kwargs: Any,
) -> tuple[nn.Module, str]:
    """A model with its weights, and where they were read from: ``(model, source)``.

    Args:
        name: a zoo model, optionally with a weights tag (``nasnet_a_large.keras_in1k``); or a folder in the zoo's
            Hub layout (a fine-tuning export; also as ``local-dir:FOLDER``) or ``hf-hub:ORG/NAME[@REVISION]``,
            whose config.json names the architecture and its arguments.
        pretrained: False builds a randomly initialised model, on purpose: nothing else does.
        weights: weights instead of the tag's: a file, or ``hf-hub:ORG/NAME[@REVISION]`` (that repo's
            ``model.safetensors`` in the zoo's layout).
        cache_dir: where downloaded weights are cached.
        kwargs: `create_model` arguments (``num_classes``, ``in_chans``, ``img_size``, macro fields, genotype).

    Raises `WeightsUnavailableError` when the weights cannot be had (none released; not cached, and offline or
    unreachable), `WeightsError` for weights that cannot be used, `ConfigError` for names that name nothing.
    """
    name = str(name)
    if Path(name).is_dir():
        name = f"local-dir:{name}"
    if name.startswith(("local-dir:", "hf-hub:", "hf_hub:")):
        if weights is not None or not pretrained:
            raise ConfigError(f"{name} is a saved model: it brings its own weights (no weights= / pretrained=False)")
        return create_model(name, pretrained=True, cache_dir=cache_dir, **kwargs), name
    if not pretrained:
        if weights is not None:
            raise ConfigError(f"weights={weights} would not be loaded with pretrained=False (--no-pretrained)")
        return create_model(name, **kwargs), "random initialisation (pretrained=False)"
    overlay = None
    if weights is not None and str(weights).startswith("hf-hub:"):
        overlay = {"hf_hub_id": str(weights).removeprefix("hf-hub:"), "hf_hub_filename": HUB_FILENAME}
    elif weights is not None:
        overlay = {"file": str(weights)}
    model = create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, cache_dir=cache_dir, **kwargs)
    return model, f"pretrained: {model.pretrained_cfg.get('file')}"


def _saved_config(name: str, cache_dir: str | PathLike[str] | None) -> None:
    """A saved model's config.json must be at hand: a folder's, or a Hub repo's, fetched (or failing) at once."""
    kind, _, where = name.partition(":")
    if kind == "local-dir":
        path = Path(where) / "config.json"
        if not path.is_file():
            raise WeightsError(f"{where} is not a folder in the zoo's Hub layout: it has no config.json")
    else:
        path = fetch_hub(name, *split_hub_id(where), "config.json", cache_dir)
    try:
        config = json.loads(path.read_bytes())
    except ValueError as e:  # not UTF-8, or not JSON
        raise WeightsError(f"{path} is not a timm config.json ({e}): save or download the model again") from None
    if not isinstance(config, dict):
        raise WeightsError(f"{path} is not a timm config.json (a JSON object): save or download the model again")


def describe_weights(
    name: str, cache_dir: str | PathLike[str] | None = None, verify: bool = False
) -> list[dict[str, Any]]:
    """One row per tag of ``name`` (``model.tag``: that tag only; the default first): layout, source, pin,
    reported accuracy, and the cache: ``cached`` (the checked file or None), ``cache`` (yes, no or corrupt) and
    the ``problem`` of a corrupt one. ``verify`` hashes cached files in full. Never touches the network."""
    m, tag = _row(name), name.partition(".")[2]
    if tag and tag not in m.pretrained:
        raise ConfigError(f"{m.name} has no pretrained tag {tag!r}; its tags: {', '.join(m.pretrained) or 'none'}")
    rows = []
    for t, w in m.pretrained.items():
        if tag and t != tag:
            continue
        try:
            cached, problem = w.cached(f"{m.name}.{t}", cache_dir, verify), None
        except WeightsError as e:
            cached, problem = None, str(e)
        fields = ("format", "hf_hub_id", "url", "md5", "top1", "top5", "reported_by", "origin")
        rows.append(dict(
            tag=t, **{k: getattr(w, k) for k in fields}, source=w.source_name, pin=w.pin,
            cached=str(cached) if cached else None, cache="corrupt" if problem else "yes" if cached else "no",
            problem=problem,
        ))  # fmt: skip
    return rows


def info(name: str, cache_dir: str | PathLike[str] | None = None, verify: bool = False) -> dict[str, Any]:
    """What ``nasnet-zoo info`` prints for ``model`` or ``model.tag``: the measured size beside the paper's, the
    genotype, the macro config and the weights (`describe_weights`)."""
    m = _row(name)
    pretrained = describe_weights(name, cache_dir, verify)
    return dict(
        measure(m.name), genotype=m.genotype.to_dict(), config=dataclasses.asdict(m.config), pretrained=pretrained
    )


def measure(name: str) -> dict[str, Any]:
    """A row's measured size beside the paper's: params (with BN statistics, as the paper counts) and
    mult-adds at the row's input size (see `complexity`)."""
    from .complexity import count_mult_adds, count_params

    m = MODELS[name]
    model = create_model(name)
    return dict(
        name=name,
        title=m.title,
        paper_row=m.paper.row if m.paper else "",
        input_size=m.input_size,
        params=count_params(model),
        params_with_bn_stats=count_params(model, with_bn_stats=True),
        mult_adds=count_mult_adds(model, m.input_size),
        paper_params_m=m.paper.params_m if m.paper else None,
        paper_mult_adds_m=m.paper.mult_adds_m if m.paper else None,
    )
