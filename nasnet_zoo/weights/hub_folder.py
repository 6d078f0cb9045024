"""The zoo's Hub folder, written and pushed: a folder that ``timm.create_model("hf-hub:ORG/NAME", pretrained=True)``
loads after ``import nasnet_zoo`` (`load` reads it; a `Weights` value calls the layout ``"zoo"``).

* ``model.safetensors``: the model's tensors in the zoo's layout, without the aux head (no released file has one
  and the loader expects none), with string metadata: ``architecture``, ``source``, for published weights
  ``source_hash`` (``"md5:…"``, ``"sha256:…"`` or ``"git:<commit>"``), and whatever else the caller records;
* ``config.json``: timm's format, written by timm's own `save_for_hf`: ``architecture``, ``num_classes``,
  ``num_features``, ``model_args`` (what the builder needs beyond the name: ``num_cells``, ``filters``, ..., as
  timm recorded them, and what the caller adds, e.g. a searched ``genotype`` as JSON) and ``pretrained_cfg``
  (preprocessing);
* ``genotype.json``: the model's cells in the zoo's genotype format (`Genotype.load` reads it);
* ``README.md``: the model card, when one is given.

`save_hub_folder` builds the folder beside its destination and moves it in only when complete.
`push_hub_folder` creates the repo and uploads the folder with huggingface_hub (``create_repo``,
``upload_folder``) and returns the commit it made, which pins the repo in the zoo table.
"""

from __future__ import annotations

import copy
import os
import re
import tempfile
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import CommitInfo, HfApi
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError
from timm.models import save_for_hf
from torch import nn

from ..errors import ConfigError
from .common import WeightsError, save_safetensors
from .sources import HUB_FILENAME, unreachable

HUB_FILES = (HUB_FILENAME, "config.json", "genotype.json", "README.md")
REQUIRED_METADATA = ("architecture", "source")


def save_hub_folder(
    model: nn.Module,
    out: str | PathLike[str],
    metadata: dict[str, str],
    card: str | None = None,
    pretrained_cfg: dict[str, Any] | None = None,
    label_names: list[str] | None = None,
    model_args: dict[str, Any] | None = None,
) -> list[Path]:
    """Write ``model`` (a `NASNet`) as a Hub folder (see the module docstring); return the files written.

    ``metadata`` must name ``architecture`` and ``source``. ``pretrained_cfg`` entries override the model's own
    in ``config.json`` (e.g. ``description``, preprocessing); ``label_names`` (default: the model's own, e.g. a
    fine-tuning export's) name the outputs; ``model_args`` go into ``config.json``'s (the builder arguments timm
    cannot serialise itself, e.g. a generic row's genotype). ``out`` may exist if it holds nothing but a previous
    publish's files, which are replaced; nothing is written when any step fails.
    """
    out = Path(out)
    missing = [k for k in REQUIRED_METADATA if not metadata.get(k)]
    if missing:
        raise ConfigError(f"metadata must name {', '.join(REQUIRED_METADATA)}; missing {', '.join(missing)}")
    if out.exists() and not out.is_dir():
        raise WeightsError(f"{out} is a file; publish into a folder")
    others = sorted(p.name for p in out.iterdir() if p.name not in HUB_FILES) if out.is_dir() else []
    if others:
        raise WeightsError(
            f"{out} holds files a publish does not write ({', '.join(others[:5])}); use a new or empty folder"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as tmp:
        staging = Path(tmp)
        config: dict[str, Any] = {"pretrained_cfg": pretrained_cfg or {}}
        names = label_names if label_names is not None else model.pretrained_cfg.get("label_names")
        if names:
            if len(names) != model.num_classes:
                raise ConfigError(f"{len(names)} label names for a model with {model.num_classes} outputs")
            config["label_names"] = list(names)
        if not all(t.is_contiguous() for t in model.state_dict().values()):  # channels_last: safetensors refuses
            model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
        save_for_hf(model, staging, model_config=config, model_args=model_args or {}, safe_serialization=True)
        tensors = {k: v for k, v in model.state_dict().items() if not k.startswith("aux_head.")}
        save_safetensors(tensors, staging / HUB_FILENAME, metadata={"format": "pt", **metadata})
        model.genotype.save(staging / "genotype.json")
        if card is not None:
            (staging / "README.md").write_text(card)
        out.mkdir(exist_ok=True)
        for name in HUB_FILES:
            (out / name).unlink(missing_ok=True)
        written = []
        for path in sorted(staging.iterdir()):
            os.replace(path, out / path.name)
            written.append(out / path.name)
    return written


def push_hub_folder(
    folder: str | PathLike[str],
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
) -> CommitInfo:
    """Create ``repo_id`` (if new) and upload a folder written by `save_hub_folder`; return the commit.

    ``revision``: a branch, created from ``main`` when it does not exist (default ``main``). The token is
    huggingface_hub's (``hf auth login`` or ``HF_TOKEN``) unless given.
    """
    folder = Path(folder)
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise WeightsError(f"a Hub repo id is 'ORG/NAME', got {repo_id!r}")
    missing = [n for n in (HUB_FILENAME, "config.json", "README.md") if not (folder / n).is_file()]
    if missing:
        raise WeightsError(f"{folder} is not a published folder (no {', '.join(missing)}): run `nasnet-zoo publish`")
    if hf_constants.HF_HUB_OFFLINE:
        raise WeightsError(f"cannot push to {repo_id}: offline mode is on (HF_HUB_OFFLINE=1); unset it to push")
    if reason := unreachable(hf_constants.ENDPOINT):
        raise WeightsError(f"cannot push to {repo_id}: the Hub cannot be reached ({reason}); connect and try again")
    api = HfApi(token=token, library_name="nasnet-zoo")
    try:
        url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        if revision not in (None, "main"):
            api.create_branch(url.repo_id, branch=revision, exist_ok=True)
        return api.upload_folder(
            repo_id=url.repo_id,
            folder_path=folder,
            revision=revision,
            allow_patterns=list(HUB_FILES),
            commit_message=commit_message or f"nasnet-zoo publish: {folder.name}",
        )
    except LocalTokenNotFoundError as e:
        raise WeightsError(f"cannot push to {repo_id}: not logged in; run `hf auth login` or set HF_TOKEN") from e
    except (HfHubHTTPError, OSError) as e:
        raise WeightsError(
            f"pushing {folder} to {repo_id} failed ({e}); check that your token may write to "
            f"{repo_id.split('/')[0]} and try again (the upload is one commit: nothing was half-pushed)"
        ) from e
