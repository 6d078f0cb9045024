"""Loading pretrained weights into a zoo model: timm's pretrained machinery, with the zoo's sources and checks.

A zoo builder resolves its pretrained cfg with `resolve` (the one tag resolution: an unknown tag fails naming
the row's tags) and, for ``pretrained=True``, calls `load_pretrained`, so ``nasnet_zoo.create_model`` and
``timm.create_model`` take the same path:

1. make the weight file local and check it before anything is loaded (`sources`): the tag's `Weights` (Hub, or
   Keras converted against a template model), any other Hub id, a ``local-dir:`` folder's
   ``model.safetensors``, or the caller's ``file`` (its safetensors header, or a weights-only unpickle of a
   ``.pth``). A caller's file says how many classes it has: its classifier gives the pretrained cfg's
   ``num_classes`` unless ``pretrained_cfg_overlay`` states it, so ``num_classes`` builds the model as for
   any timm weights (the file's head when they agree, a new head otherwise);
2. build with timm's `build_model_with_cfg` from that file, `filter_state_dict` as the filter (timm/Cadene keys
   renamed, every key and shape checked against the model); timm then adapts the stem to ``in_chans`` and gives
   a new head for another ``num_classes``, as for any timm model. ``model.pretrained_cfg["file"]`` is then the
   file that was read.

Every failure raises `WeightsError` (`WeightsUnavailableError` when nothing is wrong but the weights cannot be
had) naming the model, the tag, the file and what to do.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from timm.models import PretrainedCfg, resolve_pretrained_cfg
from torch import nn

from .common import WeightsError, WeightsUnavailableError, check_state_dict, expected_tensors, read_state_dict
from .convert_timm import rename_timm
from .sources import HUB_FILENAME, StrPath, Weights, check_safetensors, fetch_hub, split_hub_id

_logger = logging.getLogger(__name__)

Builder = Callable[..., nn.Module]


def resolve(
    name: str,
    tags: Mapping[str, Weights],
    pretrained_cfg: str | dict[str, Any] | PretrainedCfg | None = None,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
) -> PretrainedCfg:
    """timm's pretrained cfg for ``name`` (a tag, a cfg, an overlay); an unknown tag fails naming ``tags``."""
    try:
        return resolve_pretrained_cfg(name, pretrained_cfg, pretrained_cfg_overlay)
    except RuntimeError as e:  # timm: "Invalid pretrained tag (x) for y."
        raise WeightsError(
            f"{name} has no pretrained tag {pretrained_cfg!r}; its tags: {', '.join(tags) or 'none'}. "
            "See `nasnet-zoo list`."
        ) from e


def load_pretrained(
    build: Builder,
    cfg: PretrainedCfg,
    tags: Mapping[str, Weights],
    template: Callable[[], nn.Module],
    *,
    overlay: dict[str, Any] | None = None,
    cache_dir: StrPath | None = None,
) -> nn.Module:
    """Fetch and check the weights of the resolved ``cfg``, then build with them (see the module docstring).

    ``build(pretrained, **load)`` calls timm's `build_model_with_cfg`; ``tags`` are the row's released weights;
    ``template()`` builds the row's model (on the meta device) for conversions; ``overlay`` is the caller's
    ``pretrained_cfg_overlay``, as given.
    """
    label = f"{cfg.architecture}.{cfg.tag}" if cfg.tag else str(cfg.architecture)
    path, source, classes = _local_file(cfg, label, tags.get(cfg.tag or ""), template, cache_dir)
    if path is not None:
        if classes is not None and "num_classes" not in (overlay or {}):  # a caller's file says what it holds
            cfg = dataclasses.replace(cfg, num_classes=classes)
        cfg = dataclasses.replace(cfg, file=str(path), source=None)
        _logger.info("%s: reading the weights from %s", label, path)
    fit = functools.partial(filter_state_dict, what=f"{label} ({source})")
    return build(True, pretrained_cfg=cfg, cache_dir=cache_dir, pretrained_filter_fn=fit)


def _local_file(
    cfg: PretrainedCfg,
    label: str,
    weights: Weights | None,
    template: Callable[[], nn.Module],
    cache_dir: StrPath | None,
) -> tuple[Path | None, str, int | None]:
    """The checked local weight file of ``cfg`` (None: timm reads the in-memory state dict given), the source in
    words, and for a caller's file the classes its classifier has."""
    if cfg.state_dict is not None:
        return None, "an in-memory state dict", None
    if cfg.source == "local-dir":
        path = Path(cfg.file) / HUB_FILENAME
        if not path.is_file():
            raise WeightsError(f"{label}: {cfg.file} has no {HUB_FILENAME}: it is not a folder in the zoo's Hub layout")
        check_safetensors(path, label)
        return path, str(path), None
    if cfg.file:
        path = Path(cfg.file)
        return path, str(path), _file_classes(label, path)
    if weights is not None and weights.is_source_of(cfg):
        path = weights.fetch(label, template, cache_dir)
        return path, f"{weights.filename} of {weights.hf_hub_id or weights.url}, read from {path}", None
    if cfg.hf_hub_id:
        filename = cfg.hf_hub_filename or HUB_FILENAME
        path = fetch_hub(label, *split_hub_id(cfg.hf_hub_id), filename, cache_dir)
        return path, f"{filename} of {cfg.hf_hub_id}", None
    if cfg.url:
        raise WeightsError(
            f"{label}: {cfg.url} is no source the zoo can check (it has no recorded hash): download it, check it, and "
            "pass it as a file (pretrained_cfg_overlay=dict(file=...)), or name a Hub repo pinned to a revision"
        )
    raise WeightsUnavailableError(
        f"{label} has no released weights. Train it (`nasnet-zoo train`), load your own file "
        "(pretrained_cfg_overlay=dict(file='weights.safetensors'); --weights FILE), or build it from random "
        "initialisation on purpose (pretrained=False; --no-pretrained)."
    )


def _file_classes(label: str, path: Path) -> int:
    """Check a caller's weight file (a safetensors header, or a weights-only unpickle of anything else) and return
    the classes its classifier has (0: none; the timm layout's 1001 count as 1000)."""
    if not path.is_file():
        raise WeightsError(f"{label}: no weight file at {path}")
    if path.suffix == ".h5":
        raise WeightsError(
            f"{label}: {path} is a Keras file; convert it first: nasnet-zoo convert keras {path} --model "
            f"{label.split('.')[0]} -o {path.with_suffix('.safetensors')}"
        )
    heads = ("classifier.weight", "last_linear.weight")
    if path.suffix == ".safetensors":
        check_safetensors(path, label, fix="convert or download it again")
        with safe_open(str(path), "pt") as f:
            shapes = {k: f.get_slice(k).get_shape() for k in heads if k in set(f.keys())}
    else:  # read here, so that a refusal is ours to explain
        shapes = {k: v.shape for k, v in read_state_dict(path).items() if k in heads}
    rows = int(next(iter(shapes.values()), [0])[0])
    return 1000 if rows == 1001 and "last_linear.weight" in shapes else rows


# --- fitting a state dict to the model (timm's pretrained_filter_fn) ------------------------------------------
def filter_state_dict(
    state_dict: dict[str, torch.Tensor], model: nn.Module, what: str | None = None
) -> dict[str, torch.Tensor]:
    """timm's ``pretrained_filter_fn``: rename a timm/Cadene state dict, check every key and shape.

    The weights are expected with the pretrained cfg's classes and input channels (timm adapts both afterwards);
    a stem that already has the model's input channels is taken as it is, as timm does. The aux head is in no
    released file: it keeps its initialisation. A head of another size is logged.
    """
    cfg = model.pretrained_cfg
    what = what or str(cfg.get("architecture"))
    if "conv0.conv.weight" in state_dict:  # timm / Cadene layout
        state_dict = rename_timm(state_dict, model.layer_names, what)
    n = cfg.get("num_classes", model.num_classes)
    in_chans = (cfg.get("input_size") or (3,))[0]
    stem, file_stem = model.state_dict().get("stem.conv.weight"), state_dict.get("stem.conv.weight")
    if stem is not None and file_stem is not None and file_stem.shape == stem.shape:
        in_chans = stem.shape[1]
    head = state_dict.get("classifier.weight")
    if head is None and n and "classifier.bias" not in state_dict:
        raise WeightsError(
            f"{what}: the file has no classifier and its pretrained cfg says {n} classes: set num_classes=0 in "
            "pretrained_cfg_overlay, or leave it out (a file's own count is taken); the model's num_classes then "
            "gets a new head"
        )
    if head is not None and head.shape[0] != n:
        raise WeightsError(
            f"{what}: the file classifies {head.shape[0]} classes and its pretrained cfg says {n}: set num_classes="
            f"{head.shape[0]} in pretrained_cfg_overlay, or leave it out (a file's own count is taken); the model's "
            "num_classes then picks the file's head or a new one"
        )
    sd = check_state_dict(state_dict, expected_tensors(model, n, in_chans), what)
    aux = {k: v for k, v in model.state_dict().items() if k.startswith("aux_head.") and k not in sd}
    if aux:
        _logger.info("%s: the file has no aux head; the aux head keeps its initialisation", what)
    if model.num_classes != n:
        _logger.info(
            "%s: the weights classify %d classes; the model's %d-class head is newly initialised, not loaded",
            what, n, model.num_classes,
        )  # fmt: skip
    return {**sd, **aux}
