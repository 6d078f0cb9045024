"""The paper's named training runs: `Recipe`, `RECIPES` ("cifar10", "imagenet-mobile", "imagenet-large") and
`run_recipe`, which builds the model and the data of one and trains it with `fit`.

Each recipe states its published topology, ``replicas x replica_batch`` synchronous replicas (ImageNet mobile
50 x 32, large 100 x 16; CIFAR-10 one of 32), whose product is ``config.batch_size``, the global batch. Run under
torchrun on that many replicas, a recipe is the published run unchanged; on another number that divides the
global batch, the update (global batch, lr, schedule) is the same and only BatchNorm sees another per-replica
batch; ``batch_size=`` rescales the update itself (`TrainConfig.scaled`).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from . import distributed
from .config import TrainConfig
from .loop import FitResult, fit
from .run_folder import claim

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """One of the paper's training runs: the model, its data, its training-time model settings and the loop's
    `TrainConfig`. Every recipe trains with the aux head on (TF-slim's ``use_aux_head=1``)."""

    name: str
    model: str  # the zoo model it trains by default
    dataset: str  # "cifar10" (torchvision's folder) or "imagenet" (an ImageFolder with train/ and val/)
    config: TrainConfig
    drop_path_keep: float  # ScheduledDropPath keep probability reached at the end of training
    dropout_keep: float  # before the classifier
    cutout: int = 0  # CIFAR: side of the Cutout square
    notes: str = ""
    replicas: int = 1  # the published topology: synchronous replicas ...
    replica_batch: int = 0  # ... of this batch each (0: config.batch_size); replicas x replica_batch = batch_size

    def __post_init__(self) -> None:
        if self.replicas * (self.replica_batch or self.config.batch_size // self.replicas) != self.config.batch_size:
            raise ConfigError(f"recipe {self.name}: {self.replicas} x {self.replica_batch} is not its batch")

    @property
    def topology(self) -> str:
        """``"50 x 32"``: replicas x per-replica batch, as published."""
        return f"{self.replicas} x {self.replica_batch or self.config.batch_size // self.replicas}"


_IMAGENET = TrainConfig(
    optimizer="rmsprop", momentum=0.9, rmsprop_decay=0.9, rmsprop_eps=1.0, schedule="exponential", lr_decay=0.97,
    lr_decay_epochs=2.4, label_smoothing=0.1, aux_weight=0.4, clip_grad_norm=10.0, ema_decay=0.9999,
    batch_size=1600, epochs=312,
)  # fmt: skip
_IMAGENET_NOTES = (
    "TF-slim's notes train with sync SGD over {r} replicas of batch {b} at 'learning rate {lr} * {r}': one "
    "update averages {r} x {b} = 1600 examples at lr {total}. Use .scaled(B) (CLI --batch-size) for one device: "
    "lr scales linearly ({lr} at batch {b}). 312 epochs = TF-slim's total_training_steps 250,000 x 1600 / "
    "1,281,167 (for CIFAR that field is exactly 600 epochs x 50,000 / 32, the training length)."
)

#: The paper's recipes (its training details; TF-slim nasnet.py's training notes and arg scopes).
RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe(
            "cifar10", "nasnet_a_cifar", "cifar10",
            TrainConfig(epochs=600, batch_size=32, optimizer="sgd", lr=0.025, momentum=0.9, weight_decay=5e-4,
                        schedule="cosine", aux_weight=0.4, clip_grad_norm=5.0),
            drop_path_keep=0.6, dropout_keep=1.0, cutout=16,
            notes="Crop 32 from 40 (zero padding 4), flip, Cutout 16: the paper's '+ cutout' rows.",
            replicas=1, replica_batch=32,
        ),
        Recipe(
            "imagenet-mobile", "nasnet_a_mobile", "imagenet",
            dataclasses.replace(_IMAGENET, lr=0.04 * 50, weight_decay=4e-5),
            drop_path_keep=1.0, dropout_keep=0.5,
            notes=_IMAGENET_NOTES.format(r=50, b=32, lr=0.04, total=2.0),
            replicas=50, replica_batch=32,
        ),
        Recipe(
            "imagenet-large", "nasnet_a_large", "imagenet",
            dataclasses.replace(_IMAGENET, lr=0.015 * 100, weight_decay=5e-5),
            drop_path_keep=0.7, dropout_keep=0.5,
            notes=_IMAGENET_NOTES.format(r=100, b=16, lr=0.015, total=1.5),
            replicas=100, replica_batch=16,
        ),
    ]
}  # fmt: skip


def _recipe_data(
    recipe: Recipe, data_dir: str | Path, model_cfg: dict[str, Any], download: bool = False
) -> tuple[Dataset, Dataset, int]:
    """``(train, val, num_classes)`` for a recipe: CIFAR-10's train/test split from torchvision's folder, or an
    ImageFolder's ``train/`` and ``val/`` with the training augmentation and the TF release's eval transform."""
    from .. import data

    size, mean, std = int(model_cfg["input_size"][-1]), model_cfg["mean"], model_cfg["std"]
    if recipe.dataset == "cifar10":
        augment = data.cifar_train_transform(recipe.cutout, size, mean=mean, std=std)
        train = data.cifar10(data_dir, True, augment, download)
        val = data.cifar10(data_dir, False, data.eval_transform(model_cfg, "tf"))
        return train, val, len(train.classes)
    root = Path(data_dir)
    train = data.image_folder(root / "train", data.imagenet_train_transform(size, mean, std))
    val = data.image_folder(root / "val", data.eval_transform(model_cfg, "tf"))
    if val.classes != train.classes:
        raise DataError(f"{root}/val has other classes than {root}/train; both need the same class folders")
    return train, val, len(train.classes)


def _check_topology(recipe: Recipe, config: TrainConfig, replicas: distributed.Replicas) -> None:
    """Say how this run's replicas relate to the published topology (a batch that does not split: an error)."""
    per_replica = distributed.per_replica_batch(config.batch_size, replicas)
    here = f"{replicas.world_size} x {per_replica}"
    if not replicas.main:
        return
    if here == recipe.topology:
        _logger.info("%s: the published topology, %s replicas x batch", recipe.name, here)
    else:
        _logger.info(
            "%s: %s replicas x batch (published: %s); global batch %d, lr %.4g", recipe.name, here,
            recipe.topology, config.batch_size, config.lr,
        )  # fmt: skip


def run_recipe(
    name: str,
    data_dir: str | Path,
    *,
    model: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    download: bool = False,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    progress: bool = False,
    quiet: bool = False,
    config_changes: dict[str, Any] | None = None,
    compile_backend: str | None = None,
    **model_kwargs: Any,
) -> FitResult:
    """Run a named recipe end to end: build the model (aux head, the recipe's dropout and drop path), load the
    data, `fit`. ``batch_size`` (the global batch) rescales the recipe with `TrainConfig.scaled`; ``model_kwargs``
    go to `create_model` (e.g. ``genotype=``, ``num_cells=``, ``filters=``, ``img_size=``); ``resume``,
    ``overwrite``, ``progress`` and ``quiet`` are `fit`'s. Under torchrun the global batch is shared by the
    replicas (see the module docstring). ``config_changes`` are `TrainConfig` fields to change (``precision``,
    ``channels_last``, ...); ``compile_backend`` torch.compiles the model's forward in place."""
    from timm.models import get_pretrained_cfg

    from ..zoo import create_model

    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    config = recipe.config if batch_size is None else recipe.config.scaled(batch_size)
    config = config if epochs is None else dataclasses.replace(config, epochs=epochs)
    config = dataclasses.replace(config, **(config_changes or {}))
    _check_topology(recipe, config, distributed.setup(device))
    out = Path(out_dir) if out_dir is not None else None
    with claim(out, resume=resume, overwrite=overwrite):  # before the data load, which can take long
        model = model or recipe.model
        pretrained_cfg = get_pretrained_cfg(model)
        if pretrained_cfg is None:
            raise ConfigError(f"unknown model {model!r}; see `nasnet-zoo list`")
        cfg = pretrained_cfg.to_dict()
        if "img_size" in model_kwargs:
            cfg["input_size"] = (3, model_kwargs["img_size"], model_kwargs["img_size"])
        train, val, num_classes = _recipe_data(recipe, data_dir, cfg, download)
        torch.manual_seed(config.seed)  # the initial weights, too, follow the seed
        net = create_model(
            model,
            aux_head=True,
            drop_path_rate=1 - recipe.drop_path_keep,
            drop_rate=1 - recipe.dropout_keep,
            **{"num_classes": num_classes, **model_kwargs},
        )
        if compile_backend:
            net.compile(backend=compile_backend)
        return fit(
            net, train, val, config, out, resume=resume, device=device, num_workers=num_workers,
            progress=progress, quiet=quiet,
        )  # fmt: skip
