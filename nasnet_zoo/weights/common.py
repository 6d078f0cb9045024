"""Reading, checking and writing state dicts (safetensors by default; pickles only with weights_only)."""

from __future__ import annotations

import hashlib
from os import PathLike
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import WeightsError, WeightsUnavailableError
from ..files import atomic_write

__all__ = [
    "WeightsError",
    "WeightsUnavailableError",
    "check_state_dict",
    "file_digest",
    "read_state_dict",
    "save_safetensors",
]


def read_state_dict(path: str | PathLike[str]) -> dict[str, torch.Tensor]:
    """Load ``.safetensors`` or a PyTorch pickle (``weights_only=True``); unwrap ``state_dict``/``model``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no weight file at {path}")
    try:
        if path.suffix == ".safetensors":
            sd = load_file(path)
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, RuntimeError, OSError, EOFError, ValueError) as e:
        raise WeightsError(
            f"{path} is not a readable weight file ({type(e).__name__}: {e}); it may be truncated or corrupt: "
            "delete it and download or convert it again"
        ) from e
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return sd


def check_state_dict(
    state_dict: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], what: str
) -> dict[str, torch.Tensor]:
    """Return ``state_dict`` if it has exactly the keys and shapes of ``expected``; raise `WeightsError`.

    BN ``num_batches_tracked`` counters are optional (some exports drop them) and are filled with zeros.
    """
    sd = dict(state_dict)
    for k, v in expected.items():
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = torch.zeros_like(v, device="cpu")
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{len(items)} {label}: {', '.join(items[:5])}{more}")
        raise WeightsError(
            f"{what} does not fit the model: {'; '.join(parts)}. Check that the file is for this model and "
            "size (and num_classes), or convert it with `nasnet-zoo convert`."
        )
    return sd


def save_safetensors(
    state_dict: dict[str, torch.Tensor], path: str | PathLike[str], metadata: dict[str, str] | None = None
) -> Path:
    """Write contiguous tensors atomically: a temporary file of this writer's own, renamed into place (removed
    if writing fails), so readers and concurrent writers never see a partial file."""
    tensors = {k: v.detach().contiguous() for k, v in state_dict.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def file_digest(path: str | PathLike[str], algorithm: str = "sha256") -> str:
    """The hex digest of a file, read in 1 MiB chunks (md5 for Keras's published hashes, sha256 otherwise)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
