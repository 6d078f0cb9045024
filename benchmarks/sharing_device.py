"""``python -m benchmarks.sharing_device``: a weight-sharing preset measured by running it on one device (a GPU).

    python -m benchmarks.sharing_device --preset cifar10-ws --random-data --minutes 2 --out DIR

1. **steps**: `benchmarks.sharing.steps` on the device: a supernet training step and a reward beside the
   stand-alone child's step and forward, same genotypes and minibatches (what sharing costs per minibatch there).
2. **run**: the preset's own PPO search (`sharing.run_sharing`, its data, its checkpoints) for ``--minutes``,
   then resumed from its checkpoint for ``--resume-minutes`` more on the same device: shared steps per second,
   training epochs per hour (an epoch: the training split once, in the preset's batches), rewards per second,
   the shares of the wall time, and the whole preset's run extrapolated from these rates (its shared steps, its
   rewarded children, its derive step's ``final`` cells on the whole validation split).

``--random-data`` writes random images in CIFAR-10's format (`nasnet_zoo.data.write_random_cifar10`) for a
machine without the dataset: the rates are those of the real preset (same shapes, same loader), the rewards are
chance. Results: ``--results``/``sharing-<device>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shlex
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from nasnet_zoo.search import sharing
from nasnet_zoo.search.loop import PRESETS, SearchConfig

from benchmarks import sharing as sharing_bench
from benchmarks.measure import load_note
from nasnet_zoo.data import write_random_cifar10
from nasnet_zoo.runtime import torch_threads
from nasnet_zoo.table import format_table

RESULTS = Path(__file__).resolve().parent / "results"
SHARES = ("share_shared", "share_reward", "share_controller", "share_disk", "share_loading")


def run(preset: str, task: Any, device: str, minutes: float, resume_minutes: float, out: Path) -> dict[str, Any]:
    """Section 2: the preset's search for ``minutes``, resumed for ``resume_minutes``; its rates and the whole
    run extrapolated from them."""
    config = SearchConfig(preset=preset, algo="ppo", out=out, task=task, max_minutes=minutes)
    first = sharing.run_sharing(config, device=device)
    timing_path = out / sharing.run_name(config) / "search" / "timing.json"
    before = json.loads(timing_path.read_text())
    resumed = sharing.run_sharing(dataclasses.replace(config, resume=True, max_minutes=minutes + resume_minutes),
                                  device=device)  # fmt: skip
    t = json.loads(timing_path.read_text())
    cfg, p = sharing.SHARING[preset], PRESETS[preset]
    reward_s = t["reward"] / t["children"] if t["children"] else None  # None: the time ran out before a reward
    per_step_wall = (t["elapsed"] - t["reward"]) / t["shared_steps"]  # loading, controller, checkpoints included
    steps_per_epoch = task.train_size // task.batch_size if hasattr(task, "train_size") else None
    total_steps = cfg.uniform_steps + math.ceil(p.budget / cfg.children) * cfg.shared_steps
    val_batches = math.ceil(getattr(task, "val_size", cfg.reward_batch_size) / cfg.reward_batch_size)
    whole = None
    if reward_s is not None:
        whole = total_steps * per_step_wall + (p.budget + cfg.final * val_batches / cfg.reward_batches) * reward_s
    return dict(
        minutes=minutes, resume_minutes=resume_minutes, shared_steps=t["shared_steps"], children=t["children"],
        resumed_from_steps=before["shared_steps"], resumed_from_children=before["children"],
        journal_lines=len(resumed.records), first_run_lines=len(first.records),
        elapsed=t["elapsed"], seconds_per_shared_step=t["shared"] / t["shared_steps"],
        wall_seconds_per_shared_step=per_step_wall,
        shared_steps_per_second=1 / per_step_wall, seconds_per_reward=reward_s,
        epochs_per_hour=None if steps_per_epoch is None else 3600 / (per_step_wall * steps_per_epoch),
        share_shared=t["shared"] / t["elapsed"], share_reward=t["reward"] / t["elapsed"],
        share_controller=t["controller"] / t["elapsed"],
        share_disk=t["disk"] / t["elapsed"],
        share_loading=1 - (t["shared"] + t["reward"] + t["controller"] + t["disk"]) / t["elapsed"],
        preset_shared_steps=total_steps, preset_children=p.budget, preset_final=cfg.final,
        preset_hours=None if whole is None else whole / 3600, rewards=[r["reward"] for r in resumed.records[-5:]],
    )  # fmt: skip


def _fmt(value: float | None, fmt: Any) -> str:
    return "-" if value is None else fmt(value)


def report(results: dict[str, Any]) -> str:
    m, s, r = results["machine"], results["steps"], results["run"]
    rows = [
        ("supernet step (s)", f"{s['shared_step']:.4f}"), ("stand-alone child step (s)", f"{s['child_step']:.4f}"),
        ("supernet / child step", f"{s['shared_over_child_step']:.2f}"),
        ("reward, one minibatch (s)", f"{s['reward']:.4f}"),
        ("child forward (s)", f"{s['child_forward']:.4f}"),
        ("reward / child forward", f"{s['reward_over_child_forward']:.2f}"),
        ("shared steps per second in the run (loading, controller, checkpoints included)",
         f"{r['shared_steps_per_second']:.1f}"),
        ("training epochs per hour", _fmt(r["epochs_per_hour"], lambda v: f"{v:.1f}")),
        ("rewards per second", _fmt(r["seconds_per_reward"], lambda v: f"{1 / v:.1f}")),
        ("wall time: shared steps / rewards / controller / checkpoints and journal / the rest (loading)",
         " / ".join(f"{r[k]:.0%}" for k in SHARES)),
        (f"the whole preset ({r['preset_shared_steps']:,} steps, {r['preset_children']:,} rewards, "
         f"{r['preset_final']} final cells), hours", _fmt(r["preset_hours"], lambda v: f"{v:.2f}")),
    ]  # fmt: skip
    return (
        f"# {results['preset']} on {m['device_name']}\n\n`{results['command']}`, {results['date']}, torch "
        f"{m['torch']}, {m['load']}. Data: {results['data']}.\n\n"
        f"Steps: median of {s['genotypes']} random genotypes, batch {s['train_batch']} (reward batch "
        f"{s['reward_batch']}). Run: PPO for {r['minutes']:g} min, stopped and resumed from its checkpoint for "
        f"{r['resume_minutes']:g} min more ({r['resumed_from_steps']} -> {r['shared_steps']} shared steps, "
        f"{r['resumed_from_children']} -> {r['children']} rewarded children).\n\n"
        + format_table(rows, ["measure", "value"])
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sharing_device", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cifar10-ws", choices=sorted(sharing.SHARING))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--data-dir", help="cifar10 presets: a folder holding cifar-10-batches-py")
    p.add_argument("--random-data", action="store_true", help="cifar10 presets: random images in its format")
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--resume-minutes", type=float, default=0.5)
    p.add_argument("--genotypes", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the steps section on a CPU")
    p.add_argument("--out", type=Path, help="run folder (default: a temporary one)")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    command = "python -m benchmarks.sharing_device " + shlex.join(sys.argv[1:] if argv is None else argv)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        task, data = PRESETS[args.preset].task, "the preset's own"
        if hasattr(task, "data_dir"):
            data_dir, data = args.data_dir, f"CIFAR-10 from {args.data_dir}"
            if args.random_data:
                data_dir, data = tmp, "random images in CIFAR-10's format (rates only; rewards are chance)"
                write_random_cifar10(tmp)
            task = dataclasses.replace(task, data_dir=data_dir, check_md5=not args.random_data)
        with torch_threads(args.threads):  # the run sets the preset's own threads
            steps = sharing_bench.steps(args.preset, args.genotypes, device=args.device, task=task)
        print(json.dumps(steps, indent=1), flush=True)
        runs = run(args.preset, task, args.device, args.minutes, args.resume_minutes, args.out or Path(tmp) / "run")
        print(json.dumps(runs, indent=1), flush=True)
    dev = torch.device(args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine()
    results = dict(
        preset=args.preset, command=command, date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        data=data, steps=steps, run=runs,
        machine=dict(device=args.device, device_name=name, torch=torch.__version__, cpus=os.cpu_count(),
                     load=load_note(load_before, os.getloadavg()[0])),
    )  # fmt: skip
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / f"sharing-{dev.type}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    stem.with_suffix(".md").write_text(report(results))
    print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
