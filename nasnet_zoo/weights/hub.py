"""Loading pretrained weights: resolve a tag, fetch and check its file, cache conversions, fit it to the model.

`load_pretrained` is the zoo's pretrained loader (`zoo.set_pretrained_loader`, run when ``nasnet_zoo`` is
imported), so ``nasnet_zoo.create_model(name, pretrained=True)`` and ``timm.create_model(name,
pretrained=True)`` take the same path:

1. resolve timm's pretrained cfg (tag, ``pretrained_cfg``, ``pretrained_cfg_overlay``); an unknown tag fails;
2. make the weight file local and check it, before anything is loaded:

   * Hub weights (``timm``/``zoo`` formats, or any ``hf_hub_id``): ``hf_hub_download`` at the pinned revision
     (huggingface_hub's cache, ``cache_dir`` and ``HF_HUB_OFFLINE``); a file downloaded now is checked against
     the sha256 the Hub lists for it (its LFS object id), and every file's safetensors header against its size,
     which catches truncation;
   * Keras weights: the cached conversion when there is one, and nothing else is read; otherwise the ``.h5``
     is downloaded into a temporary folder inside the cache, checked against Keras's md5, converted and written
     atomically as safetensors (``cache_dir/nasnet_zoo``, default torch.hub's ``checkpoints/nasnet_zoo``,
     where timm keeps URL downloads); the ``.h5`` and any partial file are deleted whatever happens;
   * a ``file`` given by the caller: checked likewise;

3. build with timm's `build_model_with_cfg`, `filter_state_dict` as the filter (timm/Cadene keys renamed,
   everything checked against the model); timm then adapts the stem to ``in_chans`` and drops the classifier
   for another ``num_classes``, as for any timm model.

Every failure raises `WeightsError` naming the model, the tag, the file and what to do.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlparse

import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download, try_to_load_from_cache
from huggingface_hub.utils import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError
from safetensors import SafetensorError, safe_open
from timm.models import PretrainedCfg, resolve_pretrained_cfg

from .. import zoo
from ..network import NASNet
from ..zoo import MODELS, Weights
from .common import WeightsError, WeightsUnavailableError, check_state_dict, file_digest
from .convert_timm import rename_timm

_logger = logging.getLogger(__name__)

HUB_FILENAME = "model.safetensors"


# --- where things are cached ---------------------------------------------------------------------------------
def cache_root(cache_dir: str | PathLike[str] | None = None) -> Path:
    """Folder of the zoo's converted weights: ``cache_dir/nasnet_zoo``, default torch.hub's checkpoints folder."""
    return Path(cache_dir) / "nasnet_zoo" if cache_dir else Path(torch.hub.get_dir()) / "checkpoints" / "nasnet_zoo"


def keras_cache_file(name: str, tag: str, weights: Weights, cache_dir: str | PathLike[str] | None = None) -> Path:
    """The cached conversion of a Keras tag; the source's md5 is in the name, so a new source converts anew."""
    return cache_root(cache_dir) / f"{name}.{tag}-{weights.md5[:8]}.safetensors"


def cached_file(name: str, tag: str, cache_dir: str | PathLike[str] | None = None) -> Path | None:
    """The local file of a tag when it is cached, else None; never touches the network."""
    w = MODELS[name].pretrained[tag]
    if w.format == "keras":
        path = keras_cache_file(name, tag, w, cache_dir)
        return path if path.is_file() else None
    repo, _, revision = w.hf_hub_id.partition("@")
    hit = try_to_load_from_cache(repo, HUB_FILENAME, cache_dir=cache_dir, revision=revision or None)
    return Path(hit) if isinstance(hit, str) else None


def describe_weights(name: str, cache_dir: str | PathLike[str] | None = None) -> list[dict[str, Any]]:
    """One row per tag of ``name`` (the default first): format, source, hash, reported accuracy, cache state."""
    rows = []
    for tag, w in MODELS[name].pretrained.items():
        cached = cached_file(name, tag, cache_dir)
        fields = ("format", "hf_hub_id", "url", "md5", "top1", "top5", "reported_by", "origin")
        rows.append(dict(tag=tag, **{k: getattr(w, k) for k in fields}, cached=str(cached) if cached else None))
    return rows


# --- fetching and checking files -------------------------------------------------------------------------------
def _check_safetensors(path: Path, what: str, fix: str) -> None:
    """The header must parse and cover the whole file: catches truncated and garbage files cheaply."""
    try:
        with safe_open(str(path), "pt"):
            pass
    except (SafetensorError, OSError) as e:
        raise WeightsError(
            f"{what}: {path} is not a readable safetensors file ({e}); it is truncated or corrupt: {fix}"
        ) from e


def _offline() -> bool:
    return bool(hf_constants.HF_HUB_OFFLINE)


def fetch_hub(what: str, hf_hub_id: str, filename: str, cache_dir: str | PathLike[str] | None) -> Path:
    """``hf_hub_download`` a safetensors file at the id's pinned revision, and check it."""
    repo, _, revision = hf_hub_id.partition("@")
    where = f"{filename} of https://huggingface.co/{repo}" + (f" at revision {revision}" if revision else "")
    if not filename.endswith(".safetensors"):
        raise WeightsError(f"{what}: {where}: the zoo loads Hub weights from safetensors files only")
    fresh = not isinstance(try_to_load_from_cache(repo, filename, cache_dir=cache_dir, revision=revision or None), str)
    try:
        path = Path(hf_hub_download(repo, filename, revision=revision or None, cache_dir=cache_dir))
    except LocalEntryNotFoundError as e:
        cache = cache_dir or hf_constants.HF_HUB_CACHE
        reason = "offline mode is on (HF_HUB_OFFLINE=1)" if _offline() else "the Hub cannot be reached"
        raise WeightsUnavailableError(
            f"{what}: {where} is not in the Hub cache {cache} and {reason}. Connect once with HF_HUB_OFFLINE unset "
            "to download it (later loads work offline), or pass the cache_dir that holds it."
        ) from e
    except EntryNotFoundError as e:
        raise WeightsError(f"{what}: {where} does not exist; check the tag's hf_hub_id in the zoo table") from e
    except (HfHubHTTPError, OSError) as e:
        raise WeightsError(f"{what}: downloading {where} failed ({e}); check the connection and try again") from e
    if fresh:
        _check_sha256(path, what, where)
    _check_safetensors(path, what, f"delete {path.resolve()} and load again to download it anew")
    return path


def _check_sha256(path: Path, what: str, where: str) -> None:
    """A file just downloaded must hash to the sha256 the Hub lists for it at the pinned revision: a large file's
    Git LFS object id, which huggingface_hub's cache uses as the name of the blob the snapshot links to. A file
    stored in git itself, or a cache without symlinks, names no sha256 (the safetensors check still runs)."""
    blob = path.resolve()
    if re.fullmatch(r"[0-9a-f]{64}", blob.name) is None:
        return
    digest = file_digest(blob)
    if digest != blob.name:
        blob.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        raise WeightsError(
            f"{what}: {where} arrived with sha256 {digest}, not the {blob.name} the Hub lists for it: the download "
            "was corrupted on the way and is deleted; load again to download it anew"
        )


def fetch_keras(name: str, tag: str, weights: Weights, cache_dir: str | PathLike[str] | None = None) -> Path:
    """The cached safetensors conversion of a Keras tag, downloading, checking and converting it the first time."""
    from .convert_keras import convert_keras_file

    what = f"{name}.{tag}"
    target = keras_cache_file(name, tag, weights, cache_dir)
    h5_name = Path(urlparse(weights.url).path).name
    by_hand = (
        f"download {weights.url} by hand, check its md5 is {weights.md5}, and run "
        f"`nasnet-zoo convert keras {h5_name} --model {name} -o {target}`"
    )
    if target.is_file():
        _check_safetensors(target, what, f"delete {target} and load again to download and convert it anew")
        return target
    if _offline():
        raise WeightsUnavailableError(
            f"{what}: {h5_name} has not been downloaded and converted yet (no {target}) and offline mode is on "
            f"(HF_HUB_OFFLINE=1). Connect once with HF_HUB_OFFLINE unset (later loads work offline), or {by_hand}."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_downloads(target.parent)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as tmp:
        h5 = Path(tmp) / h5_name
        _logger.info("%s: downloading %s", what, weights.url)
        try:
            torch.hub.download_url_to_file(weights.url, str(h5), progress=True)
        except OSError as e:  # urllib's URLError and HTTPError are OSErrors; only an HTTP status means the file
            error = WeightsError if isinstance(e, HTTPError) else WeightsUnavailableError  # is wrong, not absent
            raise error(f"{what}: downloading {weights.url} failed ({e}); try again, or {by_hand}") from e
        md5 = file_digest(h5, "md5")
        if md5 != weights.md5:
            raise WeightsError(
                f"{what}: {weights.url} arrived with md5 {md5}, not the {weights.md5} Keras publishes: the download "
                f"is corrupt or the file has changed; nothing was cached. Try again; if it persists, {by_hand}."
            )
        try:
            convert_keras_file(h5, name, target, metadata={"url": weights.url, "md5": md5, "tag": tag})
        except WeightsError as e:
            raise WeightsError(f"{what}: {weights.url} (md5 ok) did not convert: {e}") from e
    _logger.info("%s: converted and cached as %s", what, target)
    return target


#: A download folder untouched this long belongs to a process that was killed (a live one is far quicker).
STALE_DOWNLOAD_SECONDS = 24 * 3600


def _remove_stale_downloads(folder: Path) -> None:
    """Delete ``.download-*`` folders a killed download left behind (a clean exit removes its own)."""
    for stale in folder.glob(".download-*"):
        if stale.is_dir() and time.time() - stale.stat().st_mtime > STALE_DOWNLOAD_SECONDS:
            _logger.info("removing %s, left by an interrupted download", stale)
            shutil.rmtree(stale, ignore_errors=True)


def _check_file(what: str, name: str, file: str) -> None:
    path = Path(file)
    if not path.is_file():
        raise WeightsError(f"{what}: no weight file at {path}")
    if path.suffix == ".h5":
        raise WeightsError(
            f"{what}: {path} is a Keras file; convert it first: nasnet-zoo convert keras {path} --model {name} "
            f"-o {path.with_suffix('.safetensors')}"
        )
    if path.suffix == ".safetensors":
        _check_safetensors(path, what, "convert or download it again")


# --- fitting a state dict to the model (timm's pretrained_filter_fn) ------------------------------------------
def _describe(cfg: dict[str, Any]) -> str:
    """``model.tag (file)`` for messages, from a model's resolved pretrained cfg."""
    arch, tag = cfg.get("architecture", "?"), cfg.get("tag")
    if cfg.get("state_dict") is not None:
        src = "an in-memory state dict"
    elif cfg.get("file"):
        src = str(cfg["file"])
    elif cfg.get("hf_hub_id"):
        src = f"{cfg.get('hf_hub_filename') or HUB_FILENAME} of {cfg['hf_hub_id']}"
    else:
        src = str(cfg.get("url"))
    return f"{arch}.{tag} ({src})" if tag else f"{arch} ({src})"


def _expected(model: NASNet, cfg: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's tensors as the weights should have them: before timm adapts the stem and the head (a stem
    that already has the model's input channels is taken as it is, as timm does)."""
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith("aux_head.")}
    stem = expected.get("stem.conv.weight")
    in_chans = (cfg.get("input_size") or (3,))[0]
    file_stem = state_dict.get("stem.conv.weight")
    if file_stem is not None and stem is not None and file_stem.shape == stem.shape:
        in_chans = stem.shape[1]
    if stem is not None and stem.shape[1] != in_chans:
        expected["stem.conv.weight"] = torch.empty(stem.shape[0], in_chans, *stem.shape[2:], device="meta")
    expected.pop("classifier.weight", None)
    expected.pop("classifier.bias", None)
    if n := cfg.get("num_classes", model.num_classes):
        expected["classifier.weight"] = torch.empty(n, model.num_features, device="meta")
        expected["classifier.bias"] = torch.empty(n, device="meta")
    return expected


def filter_state_dict(state_dict: dict[str, torch.Tensor], model: NASNet) -> dict[str, torch.Tensor]:
    """timm's ``pretrained_filter_fn``: rename a timm/Cadene state dict, check every key and shape.

    The aux head is not in any released file: it keeps its initialisation. A head of another size is logged.
    """
    cfg = model.pretrained_cfg
    what = _describe(cfg)
    if "conv0.conv.weight" in state_dict:  # timm / Cadene layout
        state_dict = rename_timm(state_dict, model.layer_names, what)
    sd = check_state_dict(state_dict, _expected(model, cfg, state_dict), what)
    aux = {k: v for k, v in model.state_dict().items() if k.startswith("aux_head.") and k not in sd}
    if aux:
        _logger.info("%s: the file has no aux head; the aux head keeps its initialisation", what)
    n = cfg.get("num_classes", model.num_classes)
    if model.num_classes != n:
        _logger.info(
            "%s: the weights classify %d classes; the model's %d-class head is newly initialised, not loaded",
            what, n, model.num_classes,
        )  # fmt: skip
    return {**sd, **aux}


# --- the loader --------------------------------------------------------------------------------------------------
def _resolve(name: str, source: dict[str, Any]) -> PretrainedCfg:
    requested = source.get("pretrained_cfg")
    try:
        return resolve_pretrained_cfg(name, requested, source.get("pretrained_cfg_overlay"))
    except RuntimeError as e:  # timm: "Invalid pretrained tag (x) for y."
        tags = ", ".join(MODELS[name].pretrained) or "none"
        raise WeightsError(
            f"{name} has no pretrained tag {requested!r}; its tags: {tags}. See `nasnet-zoo list`."
        ) from e


def load_pretrained(build: Callable[..., NASNet], name: str, source: dict[str, Any]) -> NASNet:
    """The zoo's pretrained loader (see the module docstring): fetch and check, then timm's loading."""
    cache_dir = source.get("cache_dir")
    cfg = _resolve(name, source)
    what = f"{name}.{cfg.tag}" if cfg.tag else name
    weights = MODELS[name].pretrained.get(cfg.tag or "")
    if cfg.state_dict is not None or cfg.source == "local-dir":
        pass  # timm reads them; the filter checks them
    elif cfg.file:
        _check_file(what, name, cfg.file)
    elif cfg.hf_hub_id:
        fetch_hub(what, cfg.hf_hub_id, cfg.hf_hub_filename or HUB_FILENAME, cache_dir)
    elif weights is not None and weights.format == "keras":
        cfg = dataclasses.replace(cfg, file=str(fetch_keras(name, cfg.tag, weights, cache_dir)))
    elif not cfg.url:
        tags = ", ".join(MODELS[name].pretrained) or "none"
        raise WeightsUnavailableError(
            f"{name} has no released weights (tags: {tags}). Train it (`nasnet-zoo train`), or load your own file "
            "with pretrained_cfg_overlay=dict(file='weights.safetensors')."
        )
    return build(True, pretrained_cfg=cfg, cache_dir=cache_dir, pretrained_filter_fn=filter_state_dict)


zoo.set_pretrained_loader(load_pretrained)
