"""State dicts: reading (safetensors, or a pickle with ``weights_only=True``), checking against a model, hashing,
writing (safetensors, atomically)."""

from __future__ import annotations

import hashlib
import pickle
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
    "architecture",
    "check_state_dict",
    "expected_tensors",
    "file_digest",
    "read_state_dict",
    "refusal_reason",
    "save_safetensors",
    "tensors_digest",
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
    except pickle.UnpicklingError as e:
        raise WeightsError(
            f"{path} is not a plain state dict: a weights-only load refused it ({refusal_reason(e)}). It is corrupt, "
            "or it holds Python objects besides tensors, which the zoo never unpickles: save its tensors alone (a "
            "state dict, or safetensors) where it was made"
        ) from None
    except (SafetensorError, RuntimeError, OSError, EOFError, ValueError) as e:
        raise WeightsError(
            f"{path} is not a readable weight file ({type(e).__name__}: {refusal_reason(e)}); it may be truncated or "
            "corrupt: delete it and download or convert it again"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return sd


def refusal_reason(error: Exception) -> str:
    """What a reader (``torch.load(weights_only=True)``, safetensors) refused, in one line, without torch's advice
    to unpickle the file unsafely (``weights_only=False``): for messages about files that cannot be loaded."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reasons = [line for line in lines if "weights_only" not in line and not line.startswith(("Check the", "Please"))]
    return reasons[-1].rstrip(".") if reasons else type(error).__name__


def architecture(model: torch.nn.Module) -> str:
    """The zoo name a model was built as (its timm pretrained cfg's ``architecture``), for messages and metadata."""
    return (getattr(model, "pretrained_cfg", None) or {}).get("architecture") or type(model).__name__


def expected_tensors(
    model: torch.nn.Module, num_classes: int | None = None, in_chans: int | None = None
) -> dict[str, torch.Tensor]:
    """``model``'s tensors as a weight file for it holds them: no aux head, a classifier of ``num_classes`` rows
    (default the model's; 0: none) and a stem of ``in_chans`` input channels (default the model's); a tensor that
    differs from the model's is an empty one on the meta device, for its shape."""
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith("aux_head.")}
    stem = expected.get("stem.conv.weight")
    if stem is not None and in_chans is not None and stem.shape[1] != in_chans:
        expected["stem.conv.weight"] = torch.empty(stem.shape[0], in_chans, *stem.shape[2:], device="meta")
    if num_classes is not None and num_classes != model.num_classes:
        expected.pop("classifier.weight", None)
        expected.pop("classifier.bias", None)
        if num_classes:
            expected["classifier.weight"] = torch.empty(num_classes, model.num_features, device="meta")
            expected["classifier.bias"] = torch.empty(num_classes, device="meta")
    return expected


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


def tensors_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict's names, dtypes, shapes and bytes, in name order: what a file's tensors hash to,
    however the file lays them out (recorded as ``tensors_sha256`` in a conversion's metadata)."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()
