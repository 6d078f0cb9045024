"""``python -m benchmarks.compare``: the paper's Fig. 6 at laptop scale -- PPO, random search and regularized
evolution at equal budget and seeds, their best cells retrained stand-alone and scored on the held-out test split.

    python -m benchmarks.compare --preset laptop --budget 24 --seeds 0 1 2 --algorithms ppo random evolution \\
        --workers 2 --out compare

1. **Search**: every (algorithm, seed) run is the search loop itself (`loop.run_search`, the same journal, run
   folder ``OUT/<algo>-seed<S>/`` and outputs as ``nasnet-zoo search``), ``--budget`` distinct children each,
   seed by seed (so a comparison stopped early holds complete seeds). All runs share one evaluator.
2. **Stand-alone**: each run's best child by search reward -- the proxy's accuracy on the validation split, so the
   cell is chosen on validation -- is trained with the preset's retrain setting (`Task.longer`) and scored on the
   task's held-out test split, which no search reads. NASNet-A is trained the same way for reference. The
   stand-alone training seeds depend only on the search seed, so runs of one seed are paired: the same seeds
   train every algorithm's cell and NASNet-A. ``--standalone-seeds N`` trains each N times and scores it by the
   mean (one stand-alone run's seed noise is about two thirds of the spread between cells on ``laptop``:
   benchmarks/results/fidelity-laptop-seed*.md). The best-by-proxy of a random stand-alone sample is the
   ``random`` runs.
3. **Report** (`benchmarks.compare_report`): best-so-far proxy reward curves per algorithm (mean and min-max
   over seeds) in one PNG, a markdown table and a JSON (``--results``, default
   ``benchmarks/results/compare-<preset>.*``) with the command, CPU model, date and load, per-run test accuracy
   of the best cell, and Welch t, Mann-Whitney and paired-by-seed tests between algorithms on it.

Resumable: a rerun of the same command continues every search run from its journal (a larger ``--budget``
extends them) and trains only the stand-alone cells missing from ``OUT/standalone.jsonl`` (one line per finished
evaluation). One process at a time holds ``OUT`` (`RunLock`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasnet_zoo.search.evaluators import BACKENDS, Evaluator, Job, Outcome, Task, run_all
from nasnet_zoo.search.fidelity import FidelityTask
from nasnet_zoo.search.fidelity import machine as fidelity_machine
from nasnet_zoo.search.loop import ALGORITHMS, PRESETS, SearchConfig, make_run_evaluator, run_search
from nasnet_zoo.search.report import read_journal
from nasnet_zoo.search.runfolder import RUN, Journal
from nasnet_zoo.search.space import canonical_hash

from benchmarks import compare_report
from nasnet_zoo.errors import ConfigError, NasnetZooError
from nasnet_zoo.files import RunLock
from nasnet_zoo.genotype import NASNET_A, Genotype
from nasnet_zoo.runtime import derive_seed

RESULTS = Path(__file__).resolve().parent / "results"
FIDELITY = RESULTS / "fidelity-laptop-seed1.json"  # where the time estimate reads seconds per child
STANDALONE = "standalone.jsonl"
STANDALONE_INDEX = 999_983  # derive_seed(seed, this - r): stand-alone seed r, apart from every child's of a search
MAX_STANDALONE_SEEDS = 100
REFERENCE = "NASNet-A"
MAX_SEED = 2**32 - 1  # np.random.seed's range


@dataclass
class CompareConfig:
    """One comparison; ``None`` takes the preset's value. ``task`` replaces the preset's task (tests)."""

    preset: str = "laptop"
    budget: int = 24
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    algorithms: list[str] = field(default_factory=lambda: ["ppo", "random", "evolution"])
    workers: int | None = None
    backend: str | None = None
    out: Path = Path("compare")
    results: Path = RESULTS
    standalone_epochs: int | None = None
    standalone_seeds: int = 1  # stand-alone runs per cell; its score is their mean
    task: Task | None = None
    command: str = ""

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; use one of {sorted(PRESETS)}")
        unknown = [a for a in self.algorithms if a not in ALGORITHMS]
        if unknown or not self.algorithms:
            raise ConfigError(f"unknown algorithm(s) {unknown}; use some of {list(ALGORITHMS)}")
        if self.backend is not None and self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}; use one of {BACKENDS}")
        if self.budget < 1 or (self.workers is not None and self.workers < 1):
            raise ConfigError(f"budget and workers must be at least 1, got {self.budget}, {self.workers}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ConfigError(f"seeds must be distinct non-negative integers, got {self.seeds}")
        if not 1 <= self.standalone_seeds <= MAX_STANDALONE_SEEDS:
            raise ConfigError(f"standalone_seeds must be from 1 to {MAX_STANDALONE_SEEDS}, got {self.standalone_seeds}")
        if standalone_seed(max(self.seeds)) > MAX_SEED:  # fit seeds numpy with it
            top = (MAX_SEED - STANDALONE_INDEX) // (derive_seed(1, 0) - derive_seed(0, 0))
            raise ConfigError(f"seed {max(self.seeds)} gives training seeds outside numpy's seed range "
                              f"(0 to 2**32 - 1); use seeds from 0 to {top}")  # fmt: skip
        if len(set(self.algorithms)) != len(self.algorithms):
            raise ConfigError(f"each algorithm once, got {self.algorithms}")

    def resolved(self) -> tuple[FidelityTask, int, int, str]:
        """The task (proxy and stand-alone), the stand-alone epochs, workers and backend."""
        p = PRESETS[self.preset]
        proxy = self.task or p.task
        epochs = self.standalone_epochs or p.retrain_epochs
        if not callable(getattr(proxy, "test_accuracy", None)):
            raise ConfigError(f"the {type(proxy).__name__} task has no held-out test split (test_accuracy); the "
                              "comparison scores the best cells there")  # fmt: skip
        return FidelityTask(proxy, proxy.longer(epochs)), epochs, self.workers or p.workers, self.backend or p.backend

    @property
    def runs(self) -> list[tuple[str, int]]:
        """(algorithm, seed) in the order they run: seed by seed."""
        return [(a, s) for s in self.seeds for a in self.algorithms]


def standalone_seed(seed: int, repeat: int = 0) -> int:
    """Stand-alone training seed ``repeat`` of every cell of search seed ``seed`` (the same for every algorithm)."""
    return derive_seed(seed, STANDALONE_INDEX - repeat)


def estimate(config: CompareConfig, fidelity: Path = FIDELITY) -> dict[str, Any] | None:
    """Wall seconds the comparison should take, from a fidelity measurement's seconds per child (same preset)."""
    if not fidelity.is_file():
        return None
    measured = json.loads(fidelity.read_text())
    if measured.get("preset") != config.preset or config.task is not None:
        return None
    _, epochs, workers, _ = config.resolved()
    proxy_s = measured["proxy_seconds_mean"]
    alone_s = measured["standalone_seconds_mean"] * epochs / measured["standalone_epochs"]  # epochs dominate it
    children = config.budget * len(config.runs)
    standalone = (len(config.runs) + len(config.seeds)) * config.standalone_seeds  # best cells, NASNet-A per seed
    search_s, alone_total = children * proxy_s / workers, -(-standalone // workers) * alone_s
    return dict(source=str(fidelity.name), proxy_seconds=proxy_s, standalone_seconds=alone_s, workers=workers,
                children=children, standalone_cells=standalone, search_seconds=search_s,
                standalone_seconds_total=alone_total, total_seconds=search_s + alone_total)  # fmt: skip


def notes(config: CompareConfig) -> list[str]:
    """What the budget lets each algorithm do, for the reader of the report."""
    p, out = PRESETS[config.preset], []
    if "evolution" in config.algorithms:
        if config.budget <= p.population:
            out.append(f"at budget {config.budget} regularized evolution (population {p.population}) never "
                       "mutates: every child is a uniform draw, the same draws as random search's for the same "
                       "seed")  # fmt: skip
        else:
            out.append(f"regularized evolution's first {p.population} children (its population; more with parallel "
                       "workers) are uniform draws, the same as random search's for the same seed; only the "
                       f"remaining ~{config.budget - p.population} are mutations")  # fmt: skip
    if {"ppo", "reinforce"} & set(config.algorithms):
        updates = config.budget // p.policy.batch_size
        out.append(f"the controller updates once per {p.policy.batch_size} children: {updates} update(s) per run "
                   "at this budget")  # fmt: skip
    return out


def run_searches(config: CompareConfig, evaluator: Evaluator) -> dict[str, list[dict[str, Any]]]:
    """Run (or continue) every search run; its journal's records by run name."""
    out = {}
    for algo, seed in config.runs:
        folder = Path(config.out) / f"{algo}-seed{seed}"
        search = SearchConfig(preset=config.preset, algo=algo, seed=seed, budget=config.budget, out=Path(config.out),
                              resume=(folder / RUN).exists(), task=config.task)  # fmt: skip
        t = time.perf_counter()
        result = run_search(search, evaluator)
        best = "-" if result.best is None else f"{result.best['reward']:.4f}"
        print(f"{algo} seed {seed}: {len(result.records)} children, best proxy {best} "
              f"({time.perf_counter() - t:.0f} s)", flush=True)  # fmt: skip
        for note in result.notes:
            print(f"  note: {note}", flush=True)
        out[f"{algo}-seed{seed}"] = read_journal(folder / "journal.jsonl")
    return out


def best_record(records: list[dict[str, Any]], budget: int) -> dict[str, Any] | None:
    """The run's best child among its first ``budget`` (by search reward, the validation split; first on ties)."""
    done = [r for r in records[:budget] if r["reward"] is not None]
    return max(done, key=lambda r: r["reward"]) if done else None


def candidates(config: CompareConfig, runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The stand-alone evaluations: each run's best cell and NASNet-A, at each of its seed's stand-alone seeds."""
    out = []
    for seed in config.seeds:
        cells = [(f"{REFERENCE}@{seed}", canonical_hash(NASNET_A), NASNET_A.to_dict())]
        for algo in config.algorithms:
            best = best_record(runs[f"{algo}-seed{seed}"], config.budget)
            if best is not None:
                cells.append((f"{algo}-seed{seed}", best["hash"], best["genotype"]))
        out += [dict(label=label, hash=h, seed=standalone_seed(seed, r), genotype=genotype)
                for label, h, genotype in cells for r in range(config.standalone_seeds)]  # fmt: skip
    return out


def run_standalone(
    config: CompareConfig, evaluator: Evaluator, todo: list[dict[str, Any]]
) -> dict[tuple[str, int], dict[str, Any]]:
    """Train the stand-alone cells not yet in ``OUT/standalone.jsonl``; every finished line by (hash, seed)."""
    journal = Journal(Path(config.out) / STANDALONE)
    lines, complete, size = journal.read()
    journal.continue_after(complete, size)
    done = {(r["hash"], r["seed"]): r for r in lines if r["score"] is not None}  # a failed one is tried again
    unique: dict[tuple[str, int], dict[str, Any]] = {}
    for c in todo:
        if (c["hash"], c["seed"]) not in done:
            unique.setdefault((c["hash"], c["seed"]), c)  # a cell that two runs found trains once
    jobs = [
        Job(i, Genotype.from_dict(c["genotype"]), c["seed"], "test_accuracy") for i, c in enumerate(unique.values())
    ]
    items = list(unique.values())

    def finished(o: Outcome) -> None:
        c = items[o.id]
        line = dict(hash=c["hash"], seed=c["seed"], label=c["label"], score=o.reward, error=o.error,
                    seconds=round(o.seconds, 3), worker=o.worker, time=time.time())  # fmt: skip
        journal.append(line)
        if o.reward is not None:
            done[c["hash"], c["seed"]] = line
        score = f"failed: {o.error}" if o.reward is None else f"{o.reward:.4f}"
        print(f"stand-alone {c['label']} ({c['hash'][:10]}): {score} ({o.seconds:.0f} s)", flush=True)

    if jobs:
        run_all(evaluator, jobs, finished)
    return done


def machine() -> dict[str, Any]:
    """What the numbers ran on: the fidelity measurement's stamp (date, CPU model, cores, load), platform, torch."""
    import torch

    return {**fidelity_machine(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__}  # fmt: skip


def run_compare(config: CompareConfig, evaluator: Evaluator | None = None) -> dict[str, Any]:
    """Run (or continue) the comparison and write its report; return the report's dict (see the module docstring)."""
    task, epochs, workers, backend = config.resolved()
    guess = estimate(config)
    if guess is not None:
        print(f"estimate: {guess['children']} children x {guess['proxy_seconds']:.1f} s + "
              f"{guess['standalone_cells']} stand-alone x {guess['standalone_seconds']:.1f} s on {workers} workers "
              f"= {guess['total_seconds'] / 60:.0f} min (from {guess['source']}; more on a loaded machine)",
              flush=True)  # fmt: skip
    load_before, t0 = os.getloadavg(), time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out):
        owned = evaluator is None
        if evaluator is None:
            evaluator = make_run_evaluator(backend, task, workers, None, 0.0)
        try:
            runs = run_searches(config, evaluator)
            todo = candidates(config, runs)
            done = run_standalone(config, evaluator, todo)
        finally:
            if owned:
                evaluator.close()
        meta = dict(command=config.command, preset=config.preset, budget=config.budget, seeds=config.seeds,
                    algorithms=config.algorithms, workers=workers, backend=backend, standalone_epochs=epochs,
                    standalone_seeds={s: [standalone_seed(s, r) for r in range(config.standalone_seeds)]
                                      for s in config.seeds},
                    out=str(out), machine=machine(),
                    load_average_before=list(load_before),
                    load_average_after=list(os.getloadavg()), wall_seconds=time.perf_counter() - t0,
                    estimate=guess, notes=notes(config))  # fmt: skip
        result = compare_report.summarize(meta, runs, todo, done)
        compare_report.write(result, Path(config.results), f"compare-{config.preset}")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="laptop", choices=list(PRESETS))
    p.add_argument("--budget", type=int, default=24, help="children per run, each a distinct cell (default 24)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--algorithms", nargs="+", default=["ppo", "random", "evolution"], choices=list(ALGORITHMS))
    p.add_argument("--workers", type=int, help="children in flight (default: the preset's)")
    p.add_argument("--backend", choices=list(BACKENDS), help="default: the preset's")
    p.add_argument("--epochs", type=int, help="stand-alone training epochs (default: the preset's retrain)")
    p.add_argument("--standalone-seeds", type=int, default=1, help="stand-alone runs per cell, scored by their mean")
    p.add_argument("--out", type=Path, required=True, help="folder of the search runs; rerun to resume")
    p.add_argument("--results", type=Path, default=RESULTS, help="folder for compare-<preset>.{json,md,png}")
    args = p.parse_args(argv)
    command = "python -m benchmarks.compare " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        config = CompareConfig(preset=args.preset, budget=args.budget, seeds=args.seeds, algorithms=args.algorithms,
                               workers=args.workers, backend=args.backend, out=args.out, results=args.results,
                               standalone_epochs=args.epochs, standalone_seeds=args.standalone_seeds,
                               command=command)  # fmt: skip
        result = run_compare(config)
    except NasnetZooError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("\n" + compare_report.markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
