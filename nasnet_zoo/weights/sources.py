"""Where released weights come from: the `Weights` value, and fetching, checking and caching its file.

A `Weights` value names one released file and answers for itself: its Hub repo and pinned revision, or its URL
and md5; the page it came from; how it is pinned; the hash a published copy records; where it is cached.
`Weights.fetch` makes the file local and checks it before anything is loaded:

* Hub weights (``timm`` and ``zoo`` layouts): ``hf_hub_download`` at the pinned revision (huggingface_hub's
  cache, ``cache_dir``, ``HF_HUB_OFFLINE``); a file downloaded now is hashed against the sha256 the Hub lists for
  it (its Git LFS object id, the name of its blob in the cache). `fetch_hub` does the same for any Hub file;
* Keras weights: the cached conversion when there is one; otherwise the ``.h5`` is downloaded into a temporary
  folder, checked against Keras's md5, converted against a template model (`convert_keras`) and written
  atomically as safetensors in ``cache_dir/nasnet_zoo`` (default torch.hub's ``checkpoints/nasnet_zoo``). The
  ``.h5`` and any partial file are deleted whatever happens, and a failure leaves no folder it created.

Every safetensors file is checked on use: its header must parse and cover the whole file (a truncated or garbage
file fails). The full check, every byte against a recorded sha256 (a Hub blob's name; a conversion's
``tensors_sha256`` metadata), runs on fresh downloads, with ``verify=True`` and when ``NASNET_ZOO_VERIFY=1``.
A source that cannot be reached fails at once: one connection attempt of a few seconds, not minutes of retries.
This module takes models as arguments and never imports the zoo table.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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
from safetensors.torch import load_file
from torch import nn

from ..errors import ConfigError
from .common import WeightsError, WeightsUnavailableError, file_digest, tensors_digest

_logger = logging.getLogger(__name__)

HUB_FILENAME = "model.safetensors"
FORMATS = ("timm", "zoo", "keras")
VERIFY_ENV = "NASNET_ZOO_VERIFY"
CONNECT_SECONDS = 3.0
#: A download folder untouched this long belongs to a process that was killed (a live one is far quicker).
STALE_DOWNLOAD_SECONDS = 24 * 3600
StrPath = str | PathLike[str]


def split_hub_id(hf_hub_id: str) -> tuple[str, str | None]:
    """``"org/name@rev"`` -> ``("org/name", "rev")``; no ``@``: revision None (the default branch)."""
    repo, _, revision = hf_hub_id.partition("@")
    return repo, revision or None


def verify_requested(verify: bool | None = None) -> bool:
    """Whether to hash cached files in full: ``verify`` when given, else ``NASNET_ZOO_VERIFY=1``."""
    return os.environ.get(VERIFY_ENV, "") not in ("", "0") if verify is None else verify


@dataclass(frozen=True)
class Weights:
    """One set of released weights: where the file is, its layout, the hash that pins it, what it reportedly
    scores. Its properties answer the questions callers ask (``repo``, ``revision``, ``source_url``, ``pin``,
    ``source_hash``); `fetch` and `cached` make and find its local file.

    ``format`` names the file's layout, and so how it loads:

    * ``"timm"``: a timm/Cadene NASNet state dict on the Hub, renamed into the zoo's layout at load time;
    * ``"zoo"``: the zoo's own layout on the Hub (safetensors + timm ``config.json``, as ``nasnet-zoo publish``
      writes it): publishing under an organisation means changing ``hf_hub_id`` in the table, not code;
    * ``"keras"``: a Keras ``.h5`` at ``url``, downloaded once, checked against ``md5`` (the hash Keras
      publishes), converted and cached as safetensors; later loads read only the cache.

    Hub ids are pinned: ``"org/name@<40-hex commit>"``.
    """

    format: str
    hf_hub_id: str | None = None
    url: str | None = None
    md5: str | None = None
    top1: float | None = None  # ImageNet-1k accuracy (%) as reported by `reported_by`
    top5: float | None = None
    reported_by: str = ""
    origin: str = ""  # how these weights were produced
    cfg: dict[str, Any] = field(default_factory=dict)  # timm pretrained-cfg overrides (preprocessing, ...)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"weights format must be one of {FORMATS}, got {self.format!r}")
        if self.format == "keras":
            if not self.url or not re.fullmatch(r"[0-9a-f]{32}", self.md5 or ""):
                raise ConfigError("keras weights need a url and the md5 Keras publishes for it")
        elif not re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", self.hf_hub_id or ""):
            raise ConfigError(f"pin Hub weights to a commit: 'org/name@<40-hex sha>', got {self.hf_hub_id!r}")

    @property
    def on_hub(self) -> bool:
        return self.hf_hub_id is not None

    @property
    def repo(self) -> str | None:
        """The Hub repo (``org/name``), None for a URL source."""
        return split_hub_id(self.hf_hub_id)[0] if self.hf_hub_id else None

    @property
    def revision(self) -> str | None:
        """The Hub commit the weights are pinned to, None for a URL source."""
        return split_hub_id(self.hf_hub_id)[1] if self.hf_hub_id else None

    @property
    def filename(self) -> str:
        """The source file's name: the ``.h5`` of a Keras URL, the Hub repo's safetensors file."""
        return Path(urlparse(self.url).path).name if self.url else HUB_FILENAME

    @property
    def source_url(self) -> str:
        """Where people find the source: the ``.h5`` URL, or the Hub repo's page."""
        return self.url or f"https://huggingface.co/{self.repo}"

    @property
    def source_name(self) -> str:
        """The source in a few words: ``NASNet-mobile.h5`` or ``timm/nasnetalarge.tf_in1k``."""
        return self.repo or self.filename

    @property
    def pin(self) -> str:
        """How the source is pinned, for people: ``md5 <hex>`` or ``revision <commit>``."""
        return f"revision {self.revision}" if self.on_hub else f"md5 {self.md5}"

    @property
    def source_hash(self) -> str:
        """The pin as a published copy records it: ``md5:<hex>`` or ``git:<commit>``."""
        return f"git:{self.revision}" if self.on_hub else f"md5:{self.md5}"

    def timm_cfg(self) -> dict[str, Any]:
        """The entries timm's pretrained cfg takes from these weights (a Keras ``url`` that timm never reads)."""
        source = {"hf_hub_id": self.hf_hub_id} if self.on_hub else {"url": self.url}
        return {**source, "origin_url": self.source_url, "description": self.origin, **self.cfg}

    def is_source_of(self, cfg: Any) -> bool:
        """Whether a resolved pretrained cfg (without a ``file``) still loads these weights: no overlay named
        another Hub repo."""
        return cfg.hf_hub_id == self.hf_hub_id

    def cache_file(self, label: str, cache_dir: StrPath | None = None) -> Path:
        """A Keras source's cached conversion; the md5 is in the name, so a new source converts anew."""
        return cache_root(cache_dir) / f"{label}-{self.md5[:8]}.safetensors"

    def cached(self, label: str, cache_dir: StrPath | None = None, verify: bool | None = None) -> Path | None:
        """The checked local file when it is cached, else None; never touches the network. A cached file that
        fails its check (header and size; every byte with ``verify``) raises `WeightsError` saying what to do."""
        if self.on_hub:
            hit = try_to_load_from_cache(self.repo, HUB_FILENAME, cache_dir=cache_dir, revision=self.revision)
            path = Path(hit) if isinstance(hit, str) else None
        else:
            path = self.cache_file(label, cache_dir)
            path = path if path.is_file() else None
        if path is not None:
            check_safetensors(path, label, verify_requested(verify))
        return path

    def fetch(
        self,
        label: str,
        template: Callable[[], nn.Module],
        cache_dir: StrPath | None = None,
        verify: bool | None = None,
    ) -> Path:
        """The checked local file, downloaded (and for Keras converted against ``template()``) when not cached.
        ``label`` (``model.tag``) names the weights in messages and the cached conversion."""
        if self.on_hub:
            return fetch_hub(label, self.repo, self.revision, HUB_FILENAME, cache_dir, verify)
        return self._fetch_keras(label, template, cache_dir, verify)

    def _fetch_keras(
        self, label: str, template: Callable[[], nn.Module], cache_dir: StrPath | None, verify: bool | None
    ) -> Path:
        from .convert_keras import convert_keras_file

        cached = self.cached(label, cache_dir, verify)
        if cached is not None:
            return cached
        target = self.cache_file(label, cache_dir)
        model = label.split(".")[0]
        by_hand = (
            f"download {self.url} by hand, check its md5 is {self.md5}, and run "
            f"`nasnet-zoo convert keras {self.filename} --model {model} -o {target}`"
        )
        if _offline():
            raise WeightsUnavailableError(
                f"{label}: {self.filename} has not been downloaded and converted yet (no {target}) and offline mode "
                "is on (HF_HUB_OFFLINE=1). Connect once with HF_HUB_OFFLINE unset (later loads work offline), or "
                f"{by_hand}."
            )
        _require_reachable(self.url, f"{label}: {self.url}", f"connect and try again, or {by_hand}")
        with new_folders(target.parent) as folder:
            _remove_stale_downloads(folder)
            with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as tmp:
                h5 = Path(tmp) / self.filename
                _logger.info("%s: downloading %s", label, self.url)
                try:
                    torch.hub.download_url_to_file(self.url, str(h5), progress=True)
                except OSError as e:  # urllib's URLError and HTTPError: only an HTTP status means the file is wrong
                    error = WeightsError if isinstance(e, HTTPError) else WeightsUnavailableError
                    raise error(f"{label}: downloading {self.url} failed ({e}); try again, or {by_hand}") from e
                md5 = file_digest(h5, "md5")
                if md5 != self.md5:
                    raise WeightsError(
                        f"{label}: {self.url} arrived with md5 {md5}, not the {self.md5} Keras publishes: the download "
                        f"is corrupt or the file has changed; nothing was cached. Try again; if it persists, {by_hand}."
                    )
                meta = {"url": self.url, "md5": md5, "tag": label.partition(".")[2]}
                try:
                    convert_keras_file(h5, template(), target, metadata=meta)
                except WeightsError as e:
                    raise WeightsError(f"{label}: {self.url} (md5 ok) did not convert: {e}") from e
        _logger.info("%s: converted and cached as %s", label, target)
        return target


# --- where things are cached ---------------------------------------------------------------------------------
def cache_root(cache_dir: StrPath | None = None) -> Path:
    """Folder of the zoo's converted weights: ``cache_dir/nasnet_zoo``, default torch.hub's checkpoints folder."""
    return Path(cache_dir) / "nasnet_zoo" if cache_dir else Path(torch.hub.get_dir()) / "checkpoints" / "nasnet_zoo"


@contextmanager
def new_folders(folder: Path) -> Iterator[Path]:
    """Create ``folder`` (and missing parents); if the block fails, remove the ones created here that are empty."""
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except BaseException:
        for p in created:  # innermost first
            try:
                p.rmdir()
            except OSError:
                break
        raise


def _remove_stale_downloads(folder: Path) -> None:
    """Delete ``.download-*`` folders a killed download left behind (a clean exit removes its own)."""
    for stale in folder.glob(".download-*"):
        if stale.is_dir() and time.time() - stale.stat().st_mtime > STALE_DOWNLOAD_SECONDS:
            _logger.info("removing %s, left by an interrupted download", stale)
            shutil.rmtree(stale, ignore_errors=True)


# --- the network --------------------------------------------------------------------------------------------------
def _offline() -> bool:
    return bool(hf_constants.HF_HUB_OFFLINE)


def unreachable(url: str, timeout: float = CONNECT_SECONDS) -> str | None:
    """Why ``url``'s host (or the proxy the environment names for it) takes no connection, or None when it does."""
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if proxy and host and not urllib.request.proxy_bypass(host):
        via = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        host, port = via.hostname, via.port or 80
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        return f"{host}:{port}: {e.strerror or e}"
    return None


def _require_reachable(url: str, what: str, fix: str) -> None:
    reason = unreachable(url)
    if reason is not None:
        raise WeightsUnavailableError(f"{what} cannot be reached ({reason}): {fix}")


# --- checking files -------------------------------------------------------------------------------------------------
def check_safetensors(path: Path, what: str, full: bool = False, fix: str | None = None) -> None:
    """The header must parse and cover the whole file; with ``full``, every byte against the sha256 recorded for it
    where there is one (a Hub blob's name: the Hub's LFS object id; a conversion's ``tensors_sha256`` metadata)."""
    fix = fix or f"delete {path.resolve()} and load again to download it anew"
    try:
        with safe_open(str(path), "pt") as f:
            recorded = (f.metadata() or {}).get("tensors_sha256")
    except (SafetensorError, OSError) as e:
        raise WeightsError(
            f"{what}: {path} is not a readable safetensors file ({e}); it is truncated or corrupt: {fix}"
        ) from e
    if not full:
        return
    blob = path.resolve()
    if re.fullmatch(r"[0-9a-f]{64}", blob.name):
        digest, expected, by = file_digest(blob), blob.name, "the Hub lists for it"
    elif recorded:
        digest, expected, by = tensors_digest(load_file(path)), recorded, "recorded when it was converted"
    else:  # a file stored in git itself, or a cache without symlinks: the header check is all there is
        _logger.info("%s: %s records no sha256; only its header and size were checked", what, path)
        return
    if digest != expected:
        raise WeightsError(f"{what}: {path} hashes to sha256 {digest}, not the {expected} {by}: it is corrupt: {fix}")


def fetch_hub(
    what: str,
    repo: str,
    revision: str | None,
    filename: str = HUB_FILENAME,
    cache_dir: StrPath | None = None,
    verify: bool | None = None,
) -> Path:
    """``hf_hub_download`` one file of a Hub repo at ``revision`` and check it (safetensors files: header and size
    always; every byte against the Hub's sha256 when downloaded now, or with ``verify``)."""
    where = f"{filename} of https://huggingface.co/{repo}" + (f" at revision {revision}" if revision else "")
    if filename.endswith((".bin", ".pth", ".pt")):
        raise WeightsError(f"{what}: {where}: the zoo loads Hub weights from safetensors files only")
    fresh = not isinstance(try_to_load_from_cache(repo, filename, cache_dir=cache_dir, revision=revision), str)
    cache = Path(cache_dir or hf_constants.HF_HUB_CACHE)
    if fresh and not _offline():
        fix = "connect and try again, or set HF_HUB_OFFLINE=1 to use only what is cached"
        _require_reachable(hf_constants.ENDPOINT, f"{what}: {where} is not in the Hub cache {cache} and the Hub", fix)
    try:
        with new_folders(cache):
            path = Path(hf_hub_download(repo, filename, revision=revision, cache_dir=cache_dir))
    except LocalEntryNotFoundError as e:
        reason = "offline mode is on (HF_HUB_OFFLINE=1)" if _offline() else "the Hub cannot be reached"
        raise WeightsUnavailableError(
            f"{what}: {where} is not in the Hub cache {cache} and {reason}. Connect once with HF_HUB_OFFLINE unset "
            "to download it (later loads work offline), or pass the cache_dir that holds it."
        ) from e
    except EntryNotFoundError as e:
        raise WeightsError(f"{what}: {where} does not exist; check the Hub id and revision") from e
    except (HfHubHTTPError, OSError) as e:
        raise WeightsError(f"{what}: downloading {where} failed ({e}); check the connection and try again") from e
    if not filename.endswith(".safetensors"):
        return path
    if not fresh:
        check_safetensors(path, what, verify_requested(verify))
        return path
    try:
        check_safetensors(path, what, True, "the download was corrupted on the way and is deleted; load again")
    except WeightsError:  # a download of our own that failed its check: it goes
        path.resolve().unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        raise
    return path
