"""``nasnet-zoo predict``: classify images with a pretrained zoo model and its own preprocessing (timm data config)."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from timm.data import ImageNetInfo, create_transform, resolve_model_data_config

from .errors import DataError
from .zoo import create_model


def predict(
    model_name: str,
    images: Sequence[str | PathLike[str]],
    top: int = 5,
    cache_dir: str | PathLike[str] | None = None,
    *,
    amp: bool = False,
    channels_last: bool = False,
    compile_backend: str | None = None,
) -> list[dict[str, Any]]:
    """Top-``top`` classes of each image: ``[{"image", "top": [{"index", "label", "probability"}, ...]}]``.

    ``model_name`` may carry a tag (``nasnet_a_large.keras_in1k``). Images are resized, center-cropped and
    normalised as the weights' pretrained cfg says (``crop_pct``, ``interpolation``, ``mean``, ``std``);
    1000-class models get ImageNet-1k class names (timm ships them). ``amp`` runs the forward under bf16
    autocast, ``channels_last`` puts the weights in that layout too, ``compile_backend`` compiles the model.
    """
    pictures = []
    for path in images:  # read them all first: a bad path fails before any weights are fetched
        try:
            with Image.open(path) as img:
                pictures.append((Path(path), img.convert("RGB")))
        except (OSError, UnidentifiedImageError) as e:
            raise DataError(f"{path} is not a readable image ({e})") from e
    model = create_model(model_name, pretrained=True, cache_dir=cache_dir).eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if compile_backend:
        model.compile(backend=compile_backend)
    transform = create_transform(**resolve_model_data_config(model), is_training=False)
    names = ImageNetInfo() if model.num_classes == 1000 else None
    results = []
    for path, img in pictures:
        x = transform(img).unsqueeze(0)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            probs = model(x).float().softmax(-1)[0]
        p, idx = probs.topk(min(top, probs.numel()))
        top_k = [
            dict(
                index=int(i),
                label=names.index_to_description(int(i)) if names else str(int(i)),
                probability=float(q),
            )
            for q, i in zip(p, idx, strict=True)
        ]
        results.append(dict(image=str(path), top=top_k))
    return results
