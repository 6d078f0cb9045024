"""Fine-tuning on your own data through the one loop in `train`, and the export of the best epoch.

Public API::

    finetune(name, data, out_dir, *, config=FINETUNE_CONFIG, freeze_backbone=False, backbone_lr_scale=1.0,
             patience=None, ...) -> FinetuneResult
    save_finetuned(model, folder, *, classes=None, data_config=None, description="") -> Path
    backbone_parameter_names(model) -> set[str]   what ``group_matcher`` puts in a layer group (the rest: head)

(``validate``, top-1 / top-5 on an image folder, lives in `nasnet_zoo.validation`; it is importable from here too.)

Weights. `zoo.load_model` loads the starting weights: the model's released ones, ``weights=`` (a file or a Hub
repo), or a saved folder. Whatever is named either loads or fails with `WeightsError` (`WeightsUnavailableError`
when the model has none or they cannot be fetched now); random initialisation comes only from
``pretrained=False``.

Fine-tuning. DATA is ``"digits"`` (the bundled 8x8 digits and their fixed split) or an image folder: with
``train/`` and ``val/`` class folders, or class folders only, split per class with a fixed seed. The model gets
a new head for the data's classes; the backbone (every parameter that the model's ``group_matcher`` places in
a layer group: stem and cells) is optionally frozen (no gradients, BatchNorm statistics fixed) or trained at
``backbone_lr_scale`` x the learning rate. `train.fit` trains and keeps the weights of the best validation
epoch (``best.safetensors``); ``patience`` stops a run that has not improved for that many epochs. The best
model is exported to ``out_dir/model/`` as the zoo's Hub folder (`weights.hub_folder.save_hub_folder`):
``model.safetensors``, timm's ``config.json`` (architecture, num_classes, num_features, label_names, model_args
with the genotype of a generic model, pretrained_cfg with the preprocessing) and ``genotype.json``, which loads
back with any of::

    nasnet_zoo.create_model("local-dir:runs/ft/model", pretrained=True)
    load_model("runs/ft/model")
    create_model(arch, pretrained=True, pretrained_cfg_overlay=dict(file="runs/ft/model/model.safetensors",
                 num_classes=K), **config["model_args"])

and is the folder layout the Hub publishing command uploads.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from . import data as datasets
from .errors import ConfigError, DataError, NotFoundError, RunError
from .train import FitResult, TrainConfig, distributed, fit, scored_accuracy
from .train.divergence import check_weights
from .train.outputs import BEST, METRICS
from .train.run_folder import OUTPUTS, claim
from .validation import validate
from .weights import read_state_dict
from .weights.hub_folder import save_hub_folder
from .zoo import MODELS, load_model

_logger = logging.getLogger(__name__)
__all__ = [
    "EXPORT_FOLDER",
    "FINETUNE_CONFIG",
    "FinetuneResult",
    "backbone_parameter_names",
    "data_classes",
    "finetune",
    "finetune_data",
    "save_finetuned",
    "validate",
]

#: The default fine-tuning run: SGD with momentum and a cosine schedule, light L2 and label smoothing.
FINETUNE_CONFIG = TrainConfig(
    epochs=10, batch_size=32, optimizer="sgd", lr=0.05, momentum=0.9, schedule="cosine", weight_decay=5e-4,
    label_smoothing=0.1, clip_grad_norm=5.0,
)  # fmt: skip
EXPORT_FOLDER = "model"


# --- the backbone, through group_matcher ---------------------------------------------------------------------------
def _matcher_patterns(model: nn.Module) -> list[re.Pattern[str]]:
    matcher = getattr(model, "group_matcher", None)
    if matcher is None:
        raise ConfigError(f"{type(model).__name__} has no group_matcher(); cannot tell its backbone from its head")
    patterns = []
    for spec in matcher(coarse=True).values():
        specs = spec if isinstance(spec, list | tuple) else [(spec, None)]
        patterns += [re.compile(s[0] if isinstance(s, list | tuple) else s) for s in specs]
    return patterns


def backbone_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters that ``model.group_matcher()`` places in a layer group (stem, blocks, as timm's
    layer-wise tools use it); the others (classifier, aux head) are the head."""
    patterns = _matcher_patterns(model)
    return {n for n, _ in model.named_parameters() if any(p.match(n) for p in patterns)}


def _eval_batchnorms(model: nn.Module, args: Any, names: frozenset[str]) -> None:
    """Forward pre-hook of a frozen backbone: its BatchNorms normalise with, and keep, their running statistics."""
    for name, module in model.named_modules():
        if name in names:
            module.eval()


def _freeze_backbone(model: nn.Module) -> torch.utils.hooks.RemovableHandle:
    """No gradients for the backbone, and its BatchNorms in eval mode at every forward (`fit` sets train mode)."""
    backbone = backbone_parameter_names(model)
    for name, p in model.named_parameters():
        p.requires_grad_(name not in backbone)
    patterns = _matcher_patterns(model)
    norms = frozenset(
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and any(p.match(n + ".") for p in patterns)
    )
    return model.register_forward_pre_hook(functools.partial(_eval_batchnorms, names=norms))


# --- data ---------------------------------------------------------------------------------------------------------
def data_classes(data: str | PathLike[str]) -> list[str]:
    """The class names of fine-tuning data (their order is the new head's)."""
    if str(data) == "digits":
        return [str(i) for i in range(10)]
    from torchvision.datasets.folder import find_classes

    root = Path(data)
    if not root.is_dir():
        raise NotFoundError(f"no data at {root}: DATA is 'digits' or a folder of class folders (or train/ val/)")
    train = root / "train" if (root / "train").is_dir() else root
    try:
        return find_classes(str(train))[0]
    except FileNotFoundError as e:
        raise NotFoundError(f"{train} holds no class folders ({e}); expected {train}/CLASS/IMAGE") from e


def finetune_data(
    data: str | PathLike[str],
    model_cfg: dict[str, Any],
    size: int,
    in_chans: int = 3,
    style: str = "tf",
    val_fraction: float = 0.25,
    split_seed: int = 0,
) -> tuple[Dataset, Dataset, list[str]]:
    """``(train, val, classes)``: the digits at ``size`` with ``in_chans`` channels, or an image folder with the
    ImageNet training augmentation and the model's eval transform (``style`` "tf" or "timm") at ``size``."""
    if str(data) == "digits":
        train, val = datasets.digits(val_fraction, split_seed, size=size, channels=in_chans)
        return train, val, data_classes(data)
    if in_chans != 3:
        raise DataError(f"image folders are RGB; the model takes {in_chans} channels: build it with in_chans=3")
    classes = data_classes(data)
    root = Path(data)
    mean, std = model_cfg.get("mean", datasets.ZOO_MEAN), model_cfg.get("std", datasets.ZOO_STD)
    train_tf = datasets.imagenet_train_transform(size, mean, std)
    eval_tf = datasets.eval_transform(model_cfg, style, size)
    if (root / "train").is_dir() and (root / "val").is_dir():
        train, val = datasets.image_folder(root / "train", train_tf), datasets.image_folder(root / "val", eval_tf)
        if val.classes != train.classes:
            raise DataError(f"{root}/val has other classes than {root}/train; both need the same class folders")
        return train, val, classes
    folder = root / "train" if (root / "train").is_dir() else root
    train, val = datasets.image_folder(folder, train_tf), datasets.image_folder(folder, eval_tf)
    train_idx, val_idx = datasets.stratified_split(train.targets, val_fraction, split_seed)
    if not train_idx or not val_idx:
        raise DataError(f"{folder} has too few images to split {val_fraction:.0%} off for validation")
    _logger.info("%s: no val/ folder; %d of %d images split off for validation", folder, len(val_idx), len(train))
    return Subset(train, train_idx), Subset(val, val_idx), classes


# --- fine-tuning --------------------------------------------------------------------------------------------------
@dataclass
class FinetuneResult:
    """What `finetune` returns. ``model`` holds the best epoch's weights, in eval mode."""

    model: nn.Module
    fit: FitResult
    weights: str  # where the starting weights came from (or why they are random)
    classes: list[str]
    export_dir: Path
    stopped_early: bool

    def summary(self) -> dict[str, Any]:
        f = self.fit
        return dict(
            export=str(self.export_dir), weights=self.weights, classes=len(self.classes), epochs=len(f.history),
            stopped_early=self.stopped_early, best_epoch=f.best_epoch, best_val_acc=f.best_val_acc,
            final_val_acc=f.final_val_acc, seconds=round(f.seconds, 1),
        )  # fmt: skip


def _early_stop(patience: int | None, history: list[dict[str, float]]) -> Callable[[dict[str, float]], bool]:
    """An ``on_epoch`` callback: True once the scored validation accuracy has not improved for ``patience`` epochs
    (scored as `fit` scores its best epoch)."""
    best: dict[str, float] = {"score": -1.0, "epoch": 0}

    def on_epoch(record: dict[str, float]) -> bool:
        score = scored_accuracy(record)
        if score > best["score"]:
            best.update(score=score, epoch=record["epoch"])
        return patience is not None and record["epoch"] - best["epoch"] >= patience

    for record in history:
        on_epoch(record)
    return on_epoch


def finetune(
    name: str | PathLike[str],
    data: str | PathLike[str],
    out_dir: str | PathLike[str],
    *,
    config: TrainConfig = FINETUNE_CONFIG,
    pretrained: bool = True,
    weights: str | PathLike[str] | None = None,
    cache_dir: str | PathLike[str] | None = None,
    freeze_backbone: bool = False,
    backbone_lr_scale: float = 1.0,
    patience: int | None = None,
    img_size: int | None = None,
    eval_style: str = "tf",
    val_fraction: float = 0.25,
    split_seed: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    progress: bool = False,
    quiet: bool = False,
    compile_backend: str | None = None,
    **model_kwargs: Any,
) -> FinetuneResult:
    """Fine-tune ``name`` (see `zoo.load_model`; random initialisation only with ``pretrained=False``) on ``data``
    with a new head, select the best validation epoch, and export it to ``out_dir/model/``.

    Args:
        config: the `train.fit` settings (default `FINETUNE_CONFIG`).
        freeze_backbone: train the head only; the backbone's BatchNorms keep their running statistics.
        backbone_lr_scale: the backbone trains at this fraction of the scheduled learning rate (1: no difference).
        patience: stop after this many epochs without a better validation accuracy (None: run all epochs).
        img_size: the training and evaluation input size (default: the model's).
        eval_style: validation preprocessing of image folders, "tf" (crop 0.875, bilinear) or "timm".
        val_fraction, split_seed: the fixed per-class split of data without a ``val/`` folder (and of the digits).
        resume, overwrite: continue the run in ``out_dir`` from its last checkpoint, or replace the earlier run
            there (its checkpoint, metrics, best weights and export); a folder with outputs needs one of them.
        progress, quiet: `train.fit`'s (a step bar; no epoch lines).
        compile_backend: torch.compile the model's forward in place with this backend (its state dict is unchanged).
        model_kwargs: more `create_model` arguments (``num_cells``, ``filters``, ``in_chans``, ``genotype``, ...).

    Raises `TrainingError` when training diverges; nothing non-finite is exported.
    """
    if freeze_backbone and backbone_lr_scale != 1.0:
        raise ConfigError("freeze_backbone and backbone_lr_scale exclude each other: a frozen backbone does not train")
    if not 0 <= backbone_lr_scale <= 1:
        raise ConfigError(f"backbone_lr_scale must be in [0, 1], got {backbone_lr_scale}")
    if patience is not None and patience < 1:
        raise ConfigError(f"patience must be >= 1 epoch or None, got {patience}")
    out = Path(out_dir)
    classes = data_classes(data)
    if img_size is not None:
        model_kwargs["img_size"] = img_size
    with claim(out, resume=resume, overwrite=overwrite, outputs=(*OUTPUTS, EXPORT_FOLDER)):
        torch.manual_seed(config.seed)  # the new head's initialisation follows the seed
        model, source = load_model(
            name, pretrained=pretrained, weights=weights, cache_dir=cache_dir, num_classes=len(classes),
            **model_kwargs,
        )  # fmt: skip
        if compile_backend:
            model.compile(backend=compile_backend)
        cfg = dict(model.pretrained_cfg)
        size = img_size or int(cfg["input_size"][-1])
        train, val, _ = finetune_data(data, cfg, size, model.in_chans, eval_style, val_fraction, split_seed)
        hook = _freeze_backbone(model) if freeze_backbone else None
        history = _history(out) if resume else []
        result = fit(
            model, train, val, config, out, resume=resume, device=device, num_workers=num_workers,
            progress=progress, quiet=quiet, on_epoch=_early_stop(patience, history),
            param_groups=_param_groups(model, backbone_lr_scale),
        )  # fmt: skip
        if hook is not None:
            hook.remove()
            model.requires_grad_(True)
        model.load_state_dict(read_state_dict(out / BEST))
        crop_pct, interpolation = (1.0, "bilinear") if str(data) == "digits" else datasets.eval_crop(cfg, eval_style)
        data_config = dict(input_size=(model.in_chans, size, size), crop_pct=crop_pct, interpolation=interpolation)
        what = f"{data} ({len(classes)} classes) from {source}"
        export = out / EXPORT_FOLDER
        model.eval()
        if distributed.is_main():  # one writer among data-parallel replicas
            _export(model, export, what, result, classes, data_config)
    stopped = len(result.history) < config.epochs
    return FinetuneResult(model, result, source, classes, export, stopped)


def _export(
    model: nn.Module, folder: Path, what: str, result: FitResult, classes: list[str], data_config: dict[str, Any]
) -> Path:
    """The best epoch's model as the zoo's Hub folder, described by what it was fine-tuned on and how well."""
    description = (
        f"fine-tuned on {what}: best validation top-1 {100 * result.best_val_acc:.2f} % at epoch {result.best_epoch}"
    )
    return save_finetuned(model, folder, classes=classes, data_config=data_config, description=description)


def _param_groups(model: nn.Module, backbone_lr_scale: float) -> list[dict[str, Any]] | None:
    """`fit`'s parameter groups: the backbone at ``backbone_lr_scale`` x the lr, the head at the lr (None: one
    group, when the scale is 1)."""
    if backbone_lr_scale == 1.0:
        return None
    backbone = backbone_parameter_names(model)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        dict(params=[p for n, p in named if n in backbone], lr_scale=backbone_lr_scale),
        dict(params=[p for n, p in named if n not in backbone]),
    ]


def _history(out: Path) -> list[dict[str, float]]:
    """The epochs a run in ``out`` has recorded (its metrics.jsonl), for the early stop of a resumed run."""
    metrics = out / METRICS
    try:
        return [json.loads(line) for line in metrics.read_text().splitlines() if line] if metrics.is_file() else []
    except ValueError as e:  # torn, or not text: resuming would lose its early-stop history
        raise RunError(f"{metrics} is not a metrics file ({e}); restore it, or start afresh (--overwrite)") from None


def _per_channel(values: Sequence[float], channels: int) -> tuple[float, ...]:
    values = tuple(values)
    return values if len(values) == channels else (sum(values) / len(values),) * channels


def save_finetuned(
    model: nn.Module,
    folder: str | PathLike[str],
    *,
    classes: Sequence[str] | None = None,
    data_config: dict[str, Any] | None = None,
    description: str = "",
) -> Path:
    """Write the zoo's Hub folder (`weights.hub_folder.save_hub_folder`: ``model.safetensors``, timm's
    ``config.json``, ``genotype.json``) into ``folder``, so ``publish`` and ``create_model`` read it as it is.

    ``data_config`` (timm's keys: input_size, crop_pct, interpolation, mean, std) records the preprocessing
    (default: the model's pretrained cfg, at the model's input channels); ``classes`` become ``label_names``.
    A model with a non-finite weight is refused (`TrainingError`) and nothing is written.
    """
    check_weights(model, "the weights to export")
    cfg, c = model.pretrained_cfg, model.in_chans
    pretrained_cfg = {
        "input_size": (c, *cfg["input_size"][1:]),
        "mean": _per_channel(cfg.get("mean", datasets.ZOO_MEAN), c),
        "std": _per_channel(cfg.get("std", datasets.ZOO_STD), c),
        **(data_config or {}),
        **({"description": description} if description else {}),
    }
    metadata = {"architecture": cfg["architecture"], "source": description or "nasnet-zoo finetune"}
    labels = list(classes) if classes is not None else None
    model_args = MODELS[cfg["architecture"]].hub_model_args(model)
    save_hub_folder(model, folder, metadata, pretrained_cfg=pretrained_cfg, label_names=labels, model_args=model_args)
    return Path(folder)
