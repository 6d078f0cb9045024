"""The supernet of a weight-sharing run: built for a task's child layout, its tensors packed flat for the run's
checkpoint (``state.pt``) and unpacked, and loaded back from a run folder as its last checkpoint holds it."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import torch

from nasnet_zoo.errors import RunError
from nasnet_zoo.genotype import NASNET_A

from .presets import task_from_dict
from .runfolder import RunFolder
from .space import NUM_BLOCKS
from .supernet import Supernet

__all__ = ["build_supernet", "load_supernet", "pack", "unpack"]


def build_supernet(task: Any, num_blocks: int = NUM_BLOCKS, filters: int | None = None) -> Supernet:
    """The supernet of the task's child layout (its macro config, classes and input channels)."""
    with torch.device("meta"):
        child = task.build(NASNET_A)
    config = child.config if filters is None else dataclasses.replace(child.config, filters=filters)
    return Supernet(config, child.num_classes, child.in_chans, num_blocks)


def load_supernet(run: Path) -> tuple[Supernet, Any]:
    """The supernet of a weight-sharing run folder (``OUT/<algo>-ws-seed<S>``) as its last checkpoint holds it,
    and the run's task."""
    meta = json.loads((Path(run) / "search" / "run.json").read_text())
    state = RunFolder(Path(run) / "search").load_state()
    if state is None:
        raise RunError(f"{run}/search holds no state.pt")
    task = task_from_dict(meta["task"])
    supernet = build_supernet(task, meta["num_blocks"], meta["sharing"].get("filters"))
    supernet.load_state_dict(unpack(state["supernet"]))
    return supernet, task


def pack(tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Many tensors as one flat tensor per dtype (a supernet has tens of thousands: pickling each is slow)."""
    names, shapes, flat = list(tensors), [list(t.shape) for t in tensors.values()], {}
    for dtype in sorted({str(t.dtype) for t in tensors.values()}):
        flat[dtype] = torch.cat([t.detach().reshape(-1).cpu() for t in tensors.values() if str(t.dtype) == dtype])
    return {"names": names, "shapes": shapes, "dtypes": [str(t.dtype) for t in tensors.values()], "flat": flat}


def unpack(packed: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The inverse of `pack`."""
    offsets = dict.fromkeys(packed["flat"], 0)
    out = {}
    for name, shape, dtype in zip(packed["names"], packed["shapes"], packed["dtypes"], strict=True):
        n = math.prod(shape)
        out[name] = packed["flat"][dtype][offsets[dtype] : offsets[dtype] + n].view(shape)
        offsets[dtype] += n
    return out
