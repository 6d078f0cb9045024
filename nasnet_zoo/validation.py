"""Validation on an image folder: top-1 / top-5 accuracy and cross-entropy of a model with its own evaluation
preprocessing, the class of each folder taken from a class map, the model's ``label_names`` or ImageNet's
synsets.

Public API::

    validate(model, root, *, class_map=None, style="tf", ...) -> dict   top-1 / top-5 on an image folder
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import data as datasets
from .errors import DataError, NotFoundError
from .train import evaluate

__all__ = ["validate"]


def _class_map(model: nn.Module, root: Path, class_map: str | PathLike[str] | Sequence[str] | None) -> list[str]:
    """Class names in the model's output order: the given map, the model's ``label_names``, ImageNet's synsets for
    a 1000-class model on synset folders, or else the sorted folders when they are as many as the outputs."""
    from torchvision.datasets.folder import find_classes

    if not root.is_dir():
        raise NotFoundError(f"no image folder at {root}: expected {root}/CLASS/IMAGE files")
    folders = find_classes(str(root))[0]
    if class_map is not None:
        names = datasets.read_class_map(class_map) if isinstance(class_map, str | PathLike) else list(class_map)
    elif model.pretrained_cfg.get("label_names"):
        names = list(model.pretrained_cfg["label_names"])
    elif model.num_classes == 1000 and set(folders) <= set(synsets := _imagenet_synsets()):
        names = synsets
    elif len(folders) == model.num_classes:
        names = folders
    else:
        raise DataError(
            f"{root} has {len(folders)} class folders and the model {model.num_classes} outputs: say which output "
            "each folder is with a class map (class_map=, --class-map FILE: one folder name per line, in output order)"
        )
    if len(names) != model.num_classes:
        raise DataError(f"the class map names {len(names)} classes and the model has {model.num_classes} outputs")
    return names


def _imagenet_synsets() -> list[str]:
    from timm.data import ImageNetInfo

    return list(ImageNetInfo().label_names())


def validate(
    model: nn.Module,
    root: str | PathLike[str],
    *,
    class_map: str | PathLike[str] | Sequence[str] | None = None,
    style: str = "tf",
    img_size: int | None = None,
    crop_pct: float | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    progress: bool = False,
    precision: str = "auto",
) -> dict[str, Any]:
    """Top-1 / top-5 accuracy (percent) and mean cross-entropy of ``model`` on the image folder ``root`` (an
    ImageNet-val-style folder of synset folders, or any ``root/CLASS/IMAGE`` folder with a class map), with the
    model's own evaluation preprocessing in the TF release's style (``"tf"``) or timm's (``"timm"``).
    ``precision`` is `train.evaluate`'s ("auto": bf16 autocast on CUDA, fp32 on CPU; "bf16"; "fp32")."""
    root = Path(root)
    if model.in_chans != 3:
        raise DataError(f"image folders are RGB and the model takes {model.in_chans} channels")
    names = _class_map(model, root, class_map)
    transform = datasets.eval_transform(model, style, img_size, crop_pct)
    ds = datasets.image_folder(root, transform, class_map=names)
    t0 = time.perf_counter()
    m = evaluate(
        model, ds, batch_size=batch_size, device=device, precision=precision, num_workers=num_workers,
        progress=progress,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    size = img_size or int(model.pretrained_cfg["input_size"][-1])
    pct, interpolation = datasets.eval_crop(model.pretrained_cfg, style, crop_pct)
    return dict(
        data=str(root), images=m["n"], classes=len(set(ds.targets)), top1=100 * m["acc1"], top5=100 * m["acc5"],
        loss=m["loss"], style=style, input_size=size, crop_pct=pct, interpolation=interpolation, precision=precision,
        seconds=round(seconds, 2), images_per_s=round(m["n"] / seconds, 1),
    )  # fmt: skip
