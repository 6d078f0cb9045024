"""Datasets and transforms.

* `digits`: the bundled real proxy task, scikit-learn's 1,797 handwritten 8x8 digits (needs scikit-learn, the
  ``search`` extra; nothing is downloaded).
* `cifar10`: CIFAR-10 from a local folder in torchvision's on-disk format (download only when asked);
  `write_random_cifar10` writes random images in that format (tests, throughput benchmarks).
* `image_folder`: any ``root/CLASS/IMAGE`` folder, optionally labelled through a class map (`read_class_map`).
* `stratified_split`: a fixed per-class train/validation split (digits, and folders without a ``val/``).
* Transforms: the paper's CIFAR augmentation (crop 32 from 40, flip, Cutout 16), ImageNet training
  augmentation, and evaluation preprocessing from a model's pretrained cfg in the TF release's style (central
  crop 0.875, TF's bilinear resize) or timm's (crop 0.911, bicubic).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset
from torchvision.transforms import v2

from .errors import ConfigError, DataError, NotFoundError

ZOO_MEAN = ZOO_STD = (0.5, 0.5, 0.5)  # the TF release's inputs in [-1, 1]


def digits(
    val_fraction: float = 0.25, seed: int = 0, size: int = 8, channels: int = 1
) -> tuple[TensorDataset, TensorDataset]:
    """scikit-learn's digits as ``(train, val)`` tensor datasets, split per class with a fixed seed.

    Pixels are scaled to [-1, 1] (the zoo's mean = std = 0.5 convention); ``size`` resizes bilinearly and
    ``channels = 3`` repeats the grey channel for models built for RGB.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0  # values are 0..16
    y = torch.tensor(data.target, dtype=torch.long)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    if channels != 1:
        x = x.repeat(1, channels, 1, 1)
    train, val = stratified_split(data.target, val_fraction, seed)
    return TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val])


def stratified_split(labels: Sequence[int] | np.ndarray, val_fraction: float, seed: int = 0) -> tuple[list, list]:
    """``(train_indices, val_indices)``, sorted: ``round(n_c * val_fraction)`` examples of each class ``c`` go to
    validation, drawn with a generator seeded by ``seed``, so the split is fixed."""
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    is_val = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        is_val[rng.choice(idx, size=round(len(idx) * val_fraction), replace=False)] = True
    return np.flatnonzero(~is_val).tolist(), np.flatnonzero(is_val).tolist()


# --- CIFAR-10 from torchvision's on-disk format -----------------------------------------------------------------
class ImageTensorDataset(Dataset):
    """Images held in one uint8 tensor ``(N, C, H, W)`` with integer labels; ``transform`` maps one image tensor."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        classes: list[str],
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if images.ndim != 4 or len(images) != len(labels):
            raise ConfigError(f"need images (N, C, H, W) and N labels, got {tuple(images.shape)} and {len(labels)}")
        self.images, self.labels, self.classes, self.transform = images, labels, classes, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i]
        return (self.transform(x) if self.transform is not None else x), int(self.labels[i])


class _ArrayUnpickler(pickle.Unpickler):
    """Builds numpy arrays, lists, dicts, strings and numbers, nothing else: CIFAR's batches are pickles."""

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch holds only arrays")
        return super().find_class(module, name)


def _read_batch(path: Path, md5: str | None) -> dict[str, Any]:
    if not path.is_file():
        raise NotFoundError(f"CIFAR-10 file missing: {path}; the folder is incomplete, download it again")
    raw = path.read_bytes()
    if md5 is not None and hashlib.md5(raw).hexdigest() != md5:
        raise DataError(
            f"{path} is not the CIFAR-10 release's file (md5 mismatch): it may be truncated; delete the folder and "
            "download again (a copy you wrote yourself in this format reads with cifar10(..., check_md5=False))"
        )
    return _ArrayUnpickler(io.BytesIO(raw), encoding="latin1").load()


def cifar10(
    root: str | Path,
    train: bool = True,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    download: bool = False,
    check_md5: bool = True,
) -> ImageTensorDataset:
    """CIFAR-10 from ``root/cifar-10-batches-py``, torchvision's on-disk format (the release's python pickles).

    The pickles are read by an unpickler that builds arrays and nothing else, after their md5 is checked
    against the release's (``check_md5=False`` reads a copy you wrote yourself). ``download=True`` fetches the
    release (163 MB, md5-checked) when the folder is absent; it needs a network. ``transform`` maps a uint8
    (3, 32, 32) tensor; by default images become floats in [-1, 1] (the zoo's mean = std = 0.5).
    """
    from torchvision.datasets import CIFAR10  # the release's file names and checksums

    root = Path(root)
    folder = root / CIFAR10.base_folder
    if not folder.is_dir():
        if not download:
            raise NotFoundError(
                f"no CIFAR-10 at {folder}: point at the folder that holds torchvision's {CIFAR10.base_folder}/, "
                "or pass download=True (nasnet-zoo train ... --download) when online"
            )
        _download_cifar10(root)
    files = CIFAR10.train_list if train else CIFAR10.test_list
    batches = [_read_batch(folder / name, md5 if check_md5 else None) for name, md5 in files]
    meta = _read_batch(folder / CIFAR10.meta["filename"], CIFAR10.meta["md5"] if check_md5 else None)
    images = np.concatenate([b["data"] for b in batches]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([b["labels"] for b in batches])
    classes = [str(c) for c in meta[CIFAR10.meta["key"]]]
    return ImageTensorDataset(
        torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)),
        torch.from_numpy(labels.astype(np.int64)),
        classes,
        normalize() if transform is None else transform,
    )


def write_random_cifar10(root: str | Path, per_batch: int = 10_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random images and labels in the CIFAR-10 release's format (``root/cifar-10-batches-py/``: five training
    batches and a test batch of ``per_batch`` images each), read by `cifar10` with ``check_md5=False``: for tests
    and throughput benchmarks on machines without the dataset (nothing in it can be learnt). Returns the training
    images (N, 3, 32, 32) and labels."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    train_x, train_y = [], []
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, per_batch)]
        entry = {"batch_label": name, "labels": y, "data": x, "filenames": [f"{i}.png" for i in range(per_batch)]}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
        if name != "test_batch":
            train_x.append(x)
            train_y += y
    meta = {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": per_batch}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return np.concatenate(train_x).reshape(-1, 3, 32, 32), np.array(train_y)


def _download_cifar10(root: Path) -> None:
    """Download and extract the release into ``root``; on failure leave nothing behind that was not there."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import download_and_extract_archive

    created = [p for p in (root, *root.parents) if not p.exists()]
    staging = root / f".download-{os.getpid()}"
    try:
        download_and_extract_archive(CIFAR10.url, str(staging), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5)
        os.replace(staging / CIFAR10.base_folder, root / CIFAR10.base_folder)
    except (OSError, RuntimeError) as e:  # urllib's errors are OSErrors; torchvision raises RuntimeError on md5
        raise DataError(
            f"downloading CIFAR-10 from {CIFAR10.url} failed ({e}); check the connection and try again, or "
            f"download and extract it by hand into {root}"
        ) from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        for p in created:  # deepest first: the folders this call made, if they stayed empty
            with contextlib.suppress(OSError):
                p.rmdir()


def _load_image(path: str) -> Any:
    """An image of an image folder as RGB, or an error naming the file (PIL's errors name none)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except OSError as e:  # unreadable, truncated or not an image
        raise DataError(f"{path} is not a readable image ({e}): replace or remove it") from None


def image_folder(
    root: str | Path, transform: Callable[[Any], torch.Tensor] | None = None, class_map: Sequence[str] | None = None
) -> Dataset:
    """Any ``root/CLASS/IMAGE`` folder (torchvision's ImageFolder): classes sorted by name, labels 0..C-1.

    ``class_map`` lists class names in the model's output order (label ``i`` is ``class_map[i]``); every folder
    must be in it, and it may hold classes that have no folder (a validation subset). ``classes`` is then the map.
    """
    from torchvision.datasets import ImageFolder

    root = Path(root)
    if not root.is_dir():
        raise NotFoundError(f"no image folder at {root}: expected {root}/CLASS_NAME/IMAGE files")
    try:
        ds = ImageFolder(str(root), transform=transform, loader=_load_image)
    except FileNotFoundError as e:
        raise NotFoundError(f"{root} holds no class folders with images ({e}); expected {root}/CLASS/IMAGE") from e
    if class_map is None:
        return ds
    index = {name: i for i, name in enumerate(class_map)}
    unknown = [c for c in ds.classes if c not in index]
    if unknown:
        more = f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise DataError(
            f"{len(unknown)} class folders of {root} are not in the class map: {', '.join(unknown[:5])}{more}; "
            "the map must name every folder (one class per line, in the model's output order)"
        )
    ds.samples = [(path, index[ds.classes[label]]) for path, label in ds.samples]
    ds.imgs, ds.targets = ds.samples, [label for _, label in ds.samples]
    ds.classes, ds.class_to_idx = list(class_map), index
    return ds


def read_class_map(path: str | Path) -> list[str]:
    """Class names in output order from a text file (one per line, timm's format) or JSON (a list, or an object
    mapping each name to its index 0..C-1)."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"no class map file at {path}")
    try:
        text = path.read_text()
        raw = json.loads(text) if path.suffix == ".json" else None
    except ValueError as e:  # not UTF-8 text (UnicodeDecodeError), or not JSON
        raise DataError(f"{path} is not a class map ({e}): one class folder name per line, or JSON") from None
    if path.suffix == ".json":
        if not isinstance(raw, dict | list):
            raise DataError(f"{path}: a JSON class map is a list of names or an object mapping names to indices")
        if isinstance(raw, dict):
            if sorted(v for v in raw.values() if isinstance(v, int)) != list(range(len(raw))):
                raise DataError(f"{path}: a JSON class map object must map names to the indices 0..{len(raw) - 1}")
            raw = sorted(raw, key=raw.__getitem__)
        names = [str(n) for n in raw]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names or len(set(names)) != len(names):
        raise DataError(f"{path}: a class map needs at least one class and no name twice")
    return names


# --- transforms -------------------------------------------------------------------------------------------------
def normalize(mean: Sequence[float] = ZOO_MEAN, std: Sequence[float] = ZOO_STD) -> Callable[[Any], torch.Tensor]:
    """A PIL image or uint8 tensor to a normalised float tensor, no resizing."""
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


class Cutout:
    """Cutout (DeVries & Taylor, 2017): zero a ``size`` x ``size`` square, clipped at the border, centred on a
    uniformly drawn pixel of a (C, H, W) tensor. Applied after normalisation, so the square is the mean colour."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        y0, x0 = max(cy - self.size // 2, 0), max(cx - self.size // 2, 0)
        y1, x1 = min(cy - self.size // 2 + self.size, h), min(cx - self.size // 2 + self.size, w)
        x = x.clone()
        x[..., y0:y1, x0:x1] = 0
        return x

    def __repr__(self) -> str:
        return f"Cutout(size={self.size})"


def cifar_train_transform(
    cutout: int = 16, size: int = 32, padding: int = 4, mean: Sequence[float] = ZOO_MEAN, std: Sequence[float] = ZOO_STD
) -> Callable[[Any], torch.Tensor]:
    """The paper's CIFAR augmentation: a random 32x32 crop of the image zero-padded to 40x40, a random
    horizontal flip, normalisation, then Cutout (``cutout=0``: none)."""
    steps = [
        v2.ToImage(),
        v2.RandomCrop(size, padding=padding),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean, std),
    ]
    return v2.Compose(steps + ([Cutout(cutout)] if cutout else []))


def imagenet_train_transform(
    size: int, mean: Sequence[float] = ZOO_MEAN, std: Sequence[float] = ZOO_STD
) -> Callable[[Any], torch.Tensor]:
    """ImageNet training augmentation after TF-slim's inception preprocessing (which trained the releases): a
    random crop of 5-100 % of the area at aspect 3/4-4/3 resized bilinearly, a flip, brightness and saturation
    jitter (its "fast" colour distortion)."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(size, scale=(0.05, 1.0), ratio=(3 / 4, 4 / 3), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=32 / 255, saturation=0.5),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )


def tf_central_crop(x: torch.Tensor, fraction: float) -> torch.Tensor:
    """``tf.image.central_crop``: keep the central ``fraction`` of each side (offsets rounded down, as TF does)."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"central crop fraction must be in (0, 1], got {fraction}")
    h, w = x.shape[-2:]
    top, left = int((h - h * fraction) / 2), int((w - w * fraction) / 2)
    return x[..., top : h - top, left : w - left]


def tf_resize_bilinear(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """TF1's ``resize_bilinear(align_corners=False)``, which the release evaluated with: output pixel ``i`` reads
    input position ``i * in / out`` (no half-pixel offset, no antialiasing), clamped at the last pixel."""
    out_h, out_w = (size, size) if isinstance(size, int) else size
    x = x.float()
    for dim, n_out in ((-2, out_h), (-1, out_w)):
        n_in = x.shape[dim]
        pos = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
        lo = pos.floor().long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        frac = (pos - lo).to(x.dtype)
        shape = [1] * x.ndim
        shape[dim] = n_out
        a, b = x.index_select(dim, lo), x.index_select(dim, hi)
        x = a + (b - a) * frac.view(shape)
    return x


class _TFCropResize:
    def __init__(self, fraction: float, size: int) -> None:
        self.fraction, self.size = fraction, size

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return tf_resize_bilinear(tf_central_crop(x.as_subclass(torch.Tensor), self.fraction), self.size)

    def __repr__(self) -> str:
        return f"TFCentralCropResize(fraction={self.fraction}, size={self.size}, bilinear (TF1 legacy))"


#: Evaluation styles: (crop fraction, interpolation). "tf": the release's; "timm": timm's nasnetalarge cfg.
EVAL_STYLES = {"tf": (0.875, "bilinear"), "timm": (0.911, "bicubic")}


def eval_crop(cfg: dict[str, Any], style: str = "tf", crop_pct: float | None = None) -> tuple[float, str]:
    """``(crop fraction, interpolation)`` of an eval style for a model's pretrained cfg: ``"tf"``: the cfg's
    ``crop_pct`` (0.875 for the zoo's ImageNet models, 1.0 for CIFAR), bilinear; ``"timm"``: 0.911, bicubic."""
    if style not in EVAL_STYLES:
        raise ConfigError(f"unknown eval style {style!r}; choose one of {', '.join(EVAL_STYLES)}")
    pct, interpolation = EVAL_STYLES[style]
    if style == "tf":
        pct = cfg.get("crop_pct") or pct
    return crop_pct or pct, interpolation


def eval_transform(
    model_or_cfg: Any, style: str = "tf", size: int | None = None, crop_pct: float | None = None
) -> Callable[[Any], torch.Tensor]:
    """Evaluation preprocessing from a model's pretrained cfg (input size, mean, std).

    ``style="tf"``: the TF release's: central crop of ``crop_pct`` (default: the cfg's, 0.875 for the zoo's
    ImageNet models, 1.0 for CIFAR) of each side, then TF1's bilinear resize to a square (aspect not kept).
    ``style="timm"``: timm's: resize the short side to ``size / 0.911`` (bicubic), centre crop ``size``.
    """
    cfg = getattr(model_or_cfg, "pretrained_cfg", model_or_cfg)
    cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else cfg  # a timm PretrainedCfg
    size = size or int(cfg["input_size"][-1])
    mean, std = tuple(cfg.get("mean", ZOO_MEAN)), tuple(cfg.get("std", ZOO_STD))
    pct, interpolation = eval_crop(cfg, style, crop_pct)
    if style == "timm":
        from timm.data import create_transform

        return create_transform(
            input_size=(3, size, size), interpolation=interpolation, crop_pct=pct, mean=mean, std=std
        )
    return v2.Compose(
        [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), _TFCropResize(pct, size), v2.Normalize(mean, std)]
    )
