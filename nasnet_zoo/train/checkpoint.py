"""The checkpoint ``last.pt`` a run can be resumed from, bit-exactly on CPU: model, optimiser, EMA, the RNG
states of torch, CUDA, numpy and ``random``, and the run's progress; loading it checks that it belongs to the
same settings and data."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, RunError
from ..files import atomic_write
from ..weights.common import refusal_reason
from .config import UNSCORED, TrainConfig

CHECKPOINT = "last.pt"
FORMAT = "nasnet-zoo-train-1"
KEYS = {
    "config",
    "steps_per_epoch",
    "epoch",
    "step",
    "history",
    "best_acc",
    "best_epoch",
    "model",
    "optimizer",
    "ema",
    "rng",
}


def seed_everything(seed: int) -> None:
    """Seed ``random``, numpy and torch (every device) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The RNG states of torch, CUDA, numpy and ``random``, as tensors and plain values (``weights_only`` loads)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return dict(
        torch=torch.get_rng_state(),
        cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        numpy=dict(kind=kind, keys=torch.from_numpy(keys.astype(np.int64)), pos=pos, has_gauss=has_gauss, gauss=gauss),
        python=random.getstate(),
    )


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned (CUDA's only on as many devices as it was saved from)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    s = state["numpy"]
    np.random.set_state((s["kind"], s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["gauss"]))
    random.setstate(state["python"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically and durably (a resume relies on it)."""
    atomic_write(path, lambda tmp: torch.save({"format": FORMAT, **state}, tmp), durable=True)


def load_checkpoint(path: Path, config: TrainConfig, steps_per_epoch: int) -> dict[str, Any]:
    """The checkpoint at ``path``, after checking it was written with ``config`` and as many steps per epoch.
    A file that cannot be one (torn, corrupt, or holding objects that need code to load) is `RunError`, without
    torch's advice to load it unsafely; other settings or data are `ConfigError`."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torn, corrupt, or holding objects that need code to load: never retried unsafely
        raise RunError(
            f"{path} is not a readable training checkpoint ({type(e).__name__}: {refusal_reason(e)}); restore it, or "
            "start afresh with overwrite=True (--overwrite)"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or not set(state) >= KEYS:
        raise RunError(
            f"{path} is not a training checkpoint of this version; restore it, or start afresh with overwrite=True "
            "(--overwrite)"
        )
    saved = state["config"]
    current = {k: v for k, v in dataclasses.asdict(config).items() if k not in UNSCORED}
    diff = {k: (saved.get(k), v) for k, v in current.items() if saved.get(k) != v}
    if diff:
        changes = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
        raise ConfigError(f"{path} was written with another TrainConfig ({changes}); resume with the same settings")
    if state["steps_per_epoch"] != steps_per_epoch:
        raise ConfigError(
            f"{path} was written with {state['steps_per_epoch']} steps per epoch, the data now gives "
            f"{steps_per_epoch}: resume with the same training data and batch size"
        )
    return state
