"""Proxy fidelity: does the search's reward rank cells as stand-alone training on held-out data does?

`run_fidelity` draws ``cells`` uniformly random cells from ``seed`` plus NASNet-A (`fidelity_cells`), scores
each with the preset's proxy (the search's reward) under ``seeds`` training seeds, and trains each stand-alone
(the preset's retrain epochs, `Task.longer`) under ``standalone_seeds`` seeds and scores it on the task's
held-out test split (``test_accuracy``), which the search never reads; a cell's stand-alone score is the mean
over its seeds (a single stand-alone run is itself noisy, and its noise bounds any proxy's rank correlation).
Every evaluation runs on the search's evaluators (serial, process, Ray) through one picklable task
(`FidelityTask`).

``OUT/`` holds ``run.json`` (what was asked; a resume refuses another), ``journal.jsonl`` (one line per finished
evaluation, fsynced; a rerun with the same arguments trains only what is missing), ``fidelity.json`` (the
statistics of `fidelity_stats` and one row per cell: its proxy scores, stand-alone test score, parameters and
mult-adds), ``fidelity.md`` and ``fidelity.png``. One process at a time holds ``OUT`` (`RunLock`).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from nasnet_zoo.errors import ConfigError, RunError
from nasnet_zoo.files import RunLock, atomic_write
from nasnet_zoo.genotype import NASNET_A, Genotype
from nasnet_zoo.runtime import derive_seed

from .evaluators import Job, Outcome, Task, run_all
from .fidelity_stats import fidelity_stats, markdown, scatter
from .loop import PRESETS, make_run_evaluator, task_dict
from .runfolder import RUN, Journal
from .space import NUM_BLOCKS, canonical_hash, decode, sample_uniform

JOURNAL, RESULT = "journal.jsonl", "fidelity.json"
PROXY, STANDALONE = "proxy", "standalone"
METHODS = {PROXY: "reward", STANDALONE: "test_accuracy"}  # kind -> the FidelityTask method that scores it
MAX_SEED = 2**32 - 1  # numpy's np.random.seed, which `nasnet_zoo.train.fit` calls with the child's seed
SEED_STRIDE = derive_seed(1, 0) - derive_seed(0, 0)


def fidelity_cells(seed: int, k: int, num_blocks: int = NUM_BLOCKS) -> list[tuple[str, Genotype]]:
    """NASNet-A, then ``k`` uniformly random cells of distinct canonical hash (the paper's random search draws
    them so), as ``(label, genotype)``; the same list for the same ``seed`` on every machine."""
    rng = random.Random(seed)
    out, seen = [("NASNet-A", NASNET_A)], {canonical_hash(NASNET_A)}
    while len(out) < k + 1:
        genotype = decode(sample_uniform(rng, num_blocks), num_blocks)
        if canonical_hash(genotype) not in seen:
            seen.add(canonical_hash(genotype))
            out.append((f"random-{seed}-{len(out) - 1}", genotype))
    return out


@dataclass(frozen=True)
class FidelityTask:
    """One task for one evaluator: ``reward`` is the proxy's, ``test_accuracy`` the stand-alone child's score on
    the held-out test split (``standalone`` is the proxy task trained longer)."""

    proxy: Any
    standalone: Any

    def reward(self, genotype: Genotype, seed: int) -> float:
        return self.proxy.reward(genotype, seed)

    def test_accuracy(self, genotype: Genotype, seed: int) -> float:
        return self.standalone.test_accuracy(genotype, seed)


@dataclass
class FidelityConfig:
    """One measurement; ``None`` takes the preset's value. ``task`` replaces the preset's task (tests)."""

    preset: str = "laptop"
    cells: int = 30  # random cells besides NASNet-A
    seeds: int = 2  # proxy runs per cell
    standalone_seeds: int = 1  # stand-alone runs per cell
    seed: int = 0  # draws the cells; the training seeds derive from it
    out: Path = Path("fidelity")
    workers: int | None = None
    backend: str | None = None
    standalone_epochs: int | None = None
    ray_address: str | None = None
    task: Task | None = None

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; use one of {sorted(PRESETS)}")
        if self.standalone_seeds < 1 or self.standalone_seeds > 100:
            raise ConfigError(f"standalone_seeds must be from 1 to 100, got {self.standalone_seeds}")
        if self.cells < 2 or self.seeds < 2:
            raise ConfigError(
                f"need at least 2 cells and 2 seeds (noise needs repeats), got {self.cells}, {self.seeds}"
            )
        if self.cells >= 1000 or self.seeds > 100:  # _seed keeps cells and repeats apart below these
            raise ConfigError(f"at most 999 cells and 100 seeds, got {self.cells}, {self.seeds}")
        last = self.standalone_seeds - 1
        highest = _seed(self.seed, STANDALONE, last, self.cells)  # the largest training seed of the measurement
        if self.seed < 0 or highest > MAX_SEED:
            top = (MAX_SEED - _seed(0, STANDALONE, last, self.cells)) // SEED_STRIDE  # derive_seed is linear in seed
            raise ConfigError(f"--seed {self.seed} gives training seeds up to {highest}, outside numpy's seed range "
                              f"(0 to 2**32 - 1, which fit seeds); use a seed from 0 to {top}")  # fmt: skip

    def resolved(self) -> tuple[FidelityTask, int, int, str]:
        p = PRESETS[self.preset]
        proxy = self.task or p.task
        epochs = self.standalone_epochs or p.retrain_epochs
        if not callable(getattr(proxy, "test_accuracy", None)):
            raise ConfigError(f"the {type(proxy).__name__} task has no held-out test split (test_accuracy); "
                              "fidelity needs one to score the stand-alone cells")  # fmt: skip
        return FidelityTask(proxy, proxy.longer(epochs)), epochs, self.workers or p.workers, self.backend or p.backend


def _seed(seed: int, kind: str, repeat: int, cell: int) -> int:
    """The training seed of one evaluation: its own for every cell and repeat, as every child of a search has."""
    return derive_seed(seed, (repeat if kind == PROXY else 100 + repeat) * 1000 + cell)


def plan(config: FidelityConfig) -> list[dict[str, Any]]:
    """Every evaluation of the measurement in the order they are submitted: cell by cell (its proxy runs, then its
    stand-alone child), so a measurement stopped early holds complete cells, a uniform sample of the draw."""
    out = []
    for i, (label, genotype) in enumerate(fidelity_cells(config.seed, config.cells)):
        for kind, repeats in ((PROXY, config.seeds), (STANDALONE, config.standalone_seeds)):
            for r in range(repeats):
                out.append(dict(cell=i, label=label, hash=canonical_hash(genotype), kind=kind, repeat=r,
                                seed=_seed(config.seed, kind, r, i), genotype=genotype))  # fmt: skip
    return out


def _key(e: dict[str, Any]) -> tuple[str, str, int]:
    return e["hash"], e["kind"], e["repeat"]


def run_fidelity(config: FidelityConfig, progress: bool = False) -> dict[str, Any]:
    """Run (or continue) the measurement in ``config.out`` and write its outputs; return fidelity.json's dict."""
    task, epochs, workers, backend = config.resolved()
    out = Path(config.out)
    meta = {"preset": config.preset, "cells": config.cells, "seeds": config.seeds, "seed": config.seed,
            "standalone_epochs": epochs, "task": task_dict(task.proxy)}  # fmt: skip
    if config.standalone_seeds > 1:  # absent for one, so a measurement from before the option still resumes
        meta["standalone_seeds"] = config.standalone_seeds
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out):
        _check_meta(out / RUN, meta)
        journal = Journal(out / JOURNAL)
        lines, complete, size = journal.read()
        journal.continue_after(complete, size)  # a line torn by a crash is cut off; that evaluation runs again
        done = {_key(r): r for r in lines if r["score"] is not None}  # a failed evaluation runs again
        todo = [e for e in plan(config) if _key(e) not in done]
        failed: list[dict[str, Any]] = []
        if todo:
            _evaluate(config, task, workers, backend, todo, journal, done, failed, progress)
        result = summarize(config, meta, done, failed)
        atomic_write(out / RESULT, json.dumps(result, indent=1) + "\n")
        atomic_write(out / "fidelity.md", markdown(result))
        scatter(result, out / "fidelity.png")
    return result


def measure(config: FidelityConfig, results: Path | None = None, command: str | None = None) -> dict[str, Any]:
    """``nasnet-zoo fidelity`` and ``python -m benchmarks.fidelity``: run (or continue) the measurement with a
    progress bar and print its table; with ``results``, also write its JSON, markdown and PNG there as
    ``fidelity-<preset>-seed<seed>.*`` (the committed form), stamped with ``command``, the date, CPU and load."""
    result = run_fidelity(config, progress=True)
    out = Path(config.out)
    print(markdown(result))
    if result["failed_evaluations"]:
        print(f"note: {result['failed_evaluations']} evaluations failed; first error: {result['errors'][0]}")
    files = [out / RESULT, out / "fidelity.md", out / "fidelity.png"]
    if results is not None:
        stem = Path(results) / f"fidelity-{config.preset}-seed{config.seed}"
        stamped = {**result, "command": command, "machine": machine()}
        stamp = (f"`{command}`; " if command else "") + ", ".join(f"{k} {v}" for k, v in stamped["machine"].items())
        text = markdown(result).split("\n", 2)
        files = [atomic_write(stem.with_suffix(".json"), json.dumps(stamped, indent=1) + "\n"),
                 atomic_write(stem.with_suffix(".md"), "\n".join([text[0], "", stamp, *text[1:]])),
                 atomic_write(stem.with_suffix(".png"), (out / "fidelity.png").read_bytes())]  # fmt: skip
    print("files: " + ", ".join(map(str, files)))
    return result


def machine() -> dict[str, Any]:
    """Where a measurement ran: the date, the CPU model, its cores and the load average."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]  # fmt: skip
        cpu = names[0] if names else cpu
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu, "cpus": os.cpu_count(),
            "load average": f"{load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f}"}  # fmt: skip


def _check_meta(path: Path, meta: dict[str, Any]) -> None:
    if not path.exists():
        atomic_write(path, json.dumps(meta, indent=1) + "\n", durable=True)
        return
    old = json.loads(path.read_text())
    if old != json.loads(json.dumps(meta)):
        diff = {k: (old.get(k), v) for k, v in meta.items() if old.get(k) != json.loads(json.dumps(v))}
        raise RunError(f"{path.parent} holds another fidelity measurement (was, now): {diff}; use another --out")


def _evaluate(config: FidelityConfig, task: FidelityTask, workers: int, backend: str, todo: list[dict[str, Any]],
              journal: Journal, done: dict[tuple[str, str, int], dict[str, Any]], failed: list[dict[str, Any]],
              progress: bool) -> None:  # fmt: skip
    evaluator = make_run_evaluator(backend, task, workers, config.ray_address, 0.0)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"fidelity of {config.preset}", unit="evaluation")

    def finished(o: Outcome) -> None:
        e = todo[o.id]
        line = {k: v for k, v in e.items() if k != "genotype"}
        line.update(score=o.reward, error=o.error, seconds=round(o.seconds, 3), worker=o.worker, time=time.time())
        journal.append(line)
        if o.reward is not None:
            done[_key(e)] = line
        else:
            failed.append(line)
        if bar is not None:
            bar.update(1)

    jobs = [Job(i, e["genotype"], e["seed"], METHODS[e["kind"]]) for i, e in enumerate(todo)]
    try:
        run_all(evaluator, jobs, finished)
    finally:
        evaluator.close()
        if bar is not None:
            bar.close()


def complexity(task: Any, genotype: Genotype) -> tuple[int | None, int | None]:
    """Parameters and mult-adds of the task's child network for ``genotype`` (None for a task without one)."""
    build, shape = getattr(task, "build", None), getattr(task, "input_shape", None)
    if build is None or shape is None:
        return None, None
    from nasnet_zoo.complexity import count_mult_adds, count_params

    model = build(genotype)
    return count_params(model), count_mult_adds(model, shape[1], shape[0])


def summarize(
    config: FidelityConfig, meta: dict[str, Any], done: dict[tuple[str, str, int], dict[str, Any]], errors: list[dict]
) -> dict[str, Any]:
    """fidelity.json: the settings, one row per cell, and `fidelity_stats` over the cells fully scored;
    ``errors`` are this session's failed evaluations (a rerun tries them again)."""
    task, _, _, _ = config.resolved()
    rows = []
    for i, (label, genotype) in enumerate(fidelity_cells(config.seed, config.cells)):
        h = canonical_hash(genotype)
        proxy = [done.get((h, PROXY, r), {}).get("score") for r in range(config.seeds)]
        alone = [done.get((h, STANDALONE, r), {}).get("score") for r in range(config.standalone_seeds)]
        standalone = None if None in alone else float(np.mean(alone))
        params, mult_adds = complexity(task.proxy, genotype)
        seconds = {k: [d["seconds"] for (hh, kk, _), d in done.items() if hh == h and kk == k] for k in METHODS}
        rows.append(dict(cell=i, label=label, hash=h, proxy=proxy, standalone=alone, standalone_test=standalone,
                         params=params, mult_adds=mult_adds, proxy_seconds=seconds[PROXY],
                         standalone_seconds=seconds[STANDALONE], genotype=genotype.to_dict()))  # fmt: skip
    complete = [r for r in rows if r["standalone_test"] is not None and None not in r["proxy"]]
    stats = None
    if len(complete) >= 3:
        stats = fidelity_stats(
            np.array([r["proxy"] for r in complete]), np.array([r["standalone"] for r in complete]),
            params=_column(complete, "params"), mult_adds=_column(complete, "mult_adds"),
            reference=next((j for j, r in enumerate(complete) if r["label"] == "NASNet-A"), None), seed=config.seed,
        )  # fmt: skip
    secs = {k: [s for r in rows for s in r[f"{k}_seconds"]] for k in METHODS}
    timing = {f"{k}_seconds_mean": float(np.mean(v)) if v else None for k, v in secs.items()}
    return {**meta, "standalone_seeds": config.standalone_seeds, "cells_complete": len(complete),
            "failed_evaluations": len(errors), "errors": [e["error"] for e in errors][:10], **timing, "stats": stats,
            "rows": rows}  # fmt: skip


def _column(rows: list[dict[str, Any]], key: str) -> np.ndarray | None:
    values = [r[key] for r in rows]
    return None if None in values else np.array(values, dtype=float)


def read_standalone(path: Path) -> dict[str, float]:
    """Stand-alone test scores by canonical hash from a fidelity.json (or the folder holding one)."""
    path = Path(path)
    result = json.loads((path / RESULT if path.is_dir() else path).read_text())
    return {r["hash"]: r["standalone_test"] for r in result["rows"] if r["standalone_test"] is not None}
