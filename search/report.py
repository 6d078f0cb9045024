"""What a search leaves in its ``--out`` folder, rebuilt from the journals at any time.

``DIR/<algo>-seed<S>/journal.jsonl`` holds one line per finished child of each run. From all runs in DIR:

* ``best.json``: the best child's genotype (`Genotype.load` reads it; the zoo's builders build it),
* ``topk.json``: the k best distinct children (hash, reward, run, genotype),
* ``search.png``: reward against children for every run, coloured by algorithm (best so far, moving mean),
* ``summary.md``: one row per run (children, failures, draws of cells trained already, best, top-5 mean, speed).

A run's journal holds each cell once (the loop never trains a cell twice), and the top-k merges runs by
canonical hash, so every count and ranking here is over distinct cells; failed children (reward ``null``)
count as children but never as rewards. Rewards are search-time proxy accuracies; `retrain` trains the top-k
longer, picks the final cell on validation and reports it on the held-out test split.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from nasnet_zoo.errors import RunError
from nasnet_zoo.files import atomic_write
from nasnet_zoo.genotype import Genotype
from nasnet_zoo.table import format_table

JOURNAL = "journal.jsonl"


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a journal (a last line torn by a crash mid-write is not a finished child). Never
    writes: reports read the journals of runs that may be running."""
    raw = path.read_bytes() if path.exists() else b""
    return parse_journal(raw[: raw.rfind(b"\n") + 1], path)


def parse_journal(data: bytes, path: Path) -> list[dict[str, Any]]:
    records = []
    for n, line in enumerate(data.splitlines(), 1):
        try:
            records.append(json.loads(line))
        except (ValueError, UnicodeDecodeError) as e:
            why = f"{path}:{n} is not a JSON line ({e})"
            raise RunError(f"{why}; the journal is damaged: restore it from a backup") from None
    return records


def load_runs(out: Path) -> dict[str, list[dict[str, Any]]]:
    """Every run's journal under ``out``, by run name (``<algo>-seed<S>``)."""
    return {p.parent.name: read_journal(p) for p in sorted(Path(out).glob(f"*/{JOURNAL}"))}


def top_k(runs: dict[str, list[dict[str, Any]]], k: int) -> list[dict[str, Any]]:
    """The ``k`` best distinct children (by canonical hash) over all runs, best first."""
    best: dict[str, dict[str, Any]] = {}
    for name, records in runs.items():
        for r in records:
            if r["reward"] is not None and (r["hash"] not in best or r["reward"] > best[r["hash"]]["reward"]):
                best[r["hash"]] = {"hash": r["hash"], "reward": r["reward"], "run": name, "genotype": r["genotype"]}
    return sorted(best.values(), key=lambda r: -r["reward"])[:k]


def summary_rows(runs: dict[str, list[dict[str, Any]]]) -> list[tuple[Any, ...]]:
    rows = []
    for name, records in runs.items():
        rewards = np.array([r["reward"] for r in records if r["reward"] is not None])
        top5 = np.sort(rewards)[-5:].mean() if len(rewards) else float("nan")
        minutes = max((r["elapsed"] for r in records), default=0.0) / 60
        rows.append(
            (
                name,
                len(records),
                sum(r["error"] is not None for r in records),
                sum(r["resampled"] for r in records),
                f"{rewards.max():.4f}" if len(rewards) else "-",
                f"{top5:.4f}",
                f"{rewards[-max(1, len(rewards) // 5) :].mean():.4f}" if len(rewards) else "-",
                f"{minutes:.1f}",
                f"{len(records) / minutes:.1f}" if minutes else "-",
            )
        )
    return rows


SUMMARY_HEADERS = ["run", "children", "failed", "resampled", "best", "top-5 mean", "last 20% mean", "minutes",
                   "per min"]  # fmt: skip


def plot(runs: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """Reward against children: best so far (left) and the mean of the last 50 children (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    colors: dict[str, str] = {}
    for name, records in runs.items():
        algo = name.rsplit("-seed", 1)[0]
        color = colors.setdefault(algo, f"C{len(colors)}")
        reward = np.array([np.nan if r["reward"] is None else r["reward"] for r in records])
        if not len(reward):
            continue
        x = np.arange(1, len(reward) + 1)
        label = algo if algo not in {lbl.get_label() for lbl in left.lines} else None
        left.plot(x, np.fmax.accumulate(np.nan_to_num(reward, nan=-np.inf)), color=color, label=label, lw=1.2)
        window, ok = min(50, len(reward)), ~np.isnan(reward)
        sums = np.convolve(np.where(ok, reward, 0.0), np.ones(window), mode="valid")
        counts = np.convolve(ok.astype(float), np.ones(window), mode="valid")
        with np.errstate(invalid="ignore", divide="ignore"):
            right.plot(x[window - 1 :], sums / counts, color=color, lw=1.0, alpha=0.8)
    left.set(xlabel="children", ylabel="reward (search proxy)", title="best so far")
    right.set(xlabel="children", title="mean of the last 50 children (failed ones left out)")
    left.legend()
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)
    return path


def write_outputs(out: Path, k: int = 10) -> str:
    """(Re)write best.json, topk.json, search.png and summary.md under ``out``; return the summary table."""
    out = Path(out)
    runs = load_runs(out)
    best = top_k(runs, k)
    if best:
        Genotype.from_dict(best[0]["genotype"]).save(out / "best.json")
        atomic_write(out / "topk.json", json.dumps(best, indent=1) + "\n")
        plot(runs, out / "search.png")
    table = format_table(summary_rows(runs), SUMMARY_HEADERS)
    atomic_write(
        out / "summary.md",
        "# Search summary\n\nRewards are search-time proxy accuracies of briefly trained children, not final "
        "accuracies.\n\n" + table + "\n",
    )
    return table
