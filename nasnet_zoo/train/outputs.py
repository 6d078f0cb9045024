"""What a run shows of itself besides its checkpoint: ``metrics.jsonl`` (one line per epoch), ``curves.png``
(loss, accuracy, learning rate) and the one-line summary of an epoch that `fit` prints."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from ..files import atomic_write

METRICS, CURVES, BEST = "metrics.jsonl", "curves.png", "best.safetensors"
TIME_KEYS = ("seconds", "images_per_s")  # the only metrics that differ between identical runs


def write_metrics(folder: Path, history: list[dict[str, float]]) -> None:
    """``metrics.jsonl`` with one line per epoch of ``history`` (a resumed run starts from its checkpoint's)."""
    atomic_write(folder / METRICS, "".join(json.dumps(h) + "\n" for h in history))


def append_metrics(folder: Path, record: dict[str, float]) -> None:
    """One more epoch's line in ``metrics.jsonl``."""
    with open(folder / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")


def epoch_line(record: dict[str, float], epochs: int) -> str:
    """``epoch 3/10 lr=0.01 train_loss=0.52 ...``: an epoch's record in one line."""
    shown = {k: f"{v:.4g}" for k, v in record.items() if k not in ("epoch", "step", *TIME_KEYS)}
    return f"epoch {record['epoch']}/{epochs} " + " ".join(f"{k}={v}" for k, v in shown.items())


def plot_curves(history: list[dict[str, float]], path: Path) -> None:
    """Loss, accuracy and learning rate per epoch, as a PNG at ``path`` (nothing, with a warning, without
    matplotlib)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - matplotlib comes with the search extra
        warnings.warn("matplotlib is not installed, so no curves.png: pip install matplotlib", stacklevel=3)
        return
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    panels = (
        ("loss", ("train_loss", "val_loss", "ema_val_loss")),
        ("accuracy", ("train_acc", "val_acc", "ema_val_acc")),
    )
    for ax, (title, keys) in zip(fig.subplots(1, 3)[:2], panels, strict=False):
        for key in keys:
            if key in history[-1]:
                ax.plot(epochs, [h[key] for h in history], marker="." if len(epochs) < 30 else None, label=key)
        ax.set(title=title, xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    ax = fig.axes[2]
    ax.plot(epochs, [h["lr"] for h in history])
    ax.set(title="learning rate (last step of epoch)", xlabel="epoch")
    ax.grid(alpha=0.3)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100))
