"""``python -m benchmarks.compare_ws``: weight sharing against the stand-alone search at equal wall time, on the
laptop proxy -- PPO with shared weights (PPO-WS), random search with shared weights (RS-WS), and the stand-alone
PPO and random searches, their best cells retrained stand-alone and scored on the held-out test split.

    python -m benchmarks.compare_ws --seeds 0 1 2 --out compare-ws

Per seed, in this order:

1. **Weight sharing**: PPO-WS and RS-WS, each the weight-sharing search itself (`sharing.run_sharing`, preset
   ``--ws-preset``, its whole budget or ``--ws-budget`` children, run folders ``OUT/ws/<algo>-ws-seed<S>``). The
   longer of the two wall times (its ``timing.json``: shared steps, rewards, controller, derive step) is the
   seed's budget ``T``.
2. **Stand-alone**: the stand-alone PPO and random searches of ``--preset`` (``OUT/alone/<algo>-seed<S>``, the
   preset's workers), each stopped after ``T`` of wall time (``--minutes`` fixes ``T`` instead). The longer WS
   run sets ``T``, so the stand-alone searches get at least the compute of either WS run.
3. **Retrain**: each run's cell chosen on validation (WS: the best of its derive step, scored with the final
   shared weights on the whole validation split; stand-alone: its best reward) and NASNet-A are trained as
   `benchmarks.compare` trains them (the preset's retrain epochs, the seed's stand-alone seed, the same
   `compare.run_standalone`, lines in ``OUT/standalone.jsonl``) and scored on the test split.

Report: ``--results``/``compare-ws-<preset>.json`` and ``.md``: per arm the test accuracy by seed, its mean and
std, the wall minutes, and `compare_report.significance` of PPO-WS against each other arm. Resumable: a rerun
continues every run from its folder and trains only the missing stand-alone cells. ``--prior PATH`` (repeatable)
adds the seeds of an earlier result JSON (another session's; each seed is self-contained: its own wall-time budget
on its own machine) to the table and the tests; its command and machine are kept beside this run's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from nasnet_zoo.search import sharing
from nasnet_zoo.search.evaluators import BACKENDS
from nasnet_zoo.search.loop import PRESETS, SearchConfig, make_run_evaluator, run_search
from nasnet_zoo.search.report import read_journal
from nasnet_zoo.search.runfolder import RUN
from nasnet_zoo.search.space import canonical_hash

from benchmarks import compare_report
from benchmarks.compare import REFERENCE, CompareConfig, best_record, machine, run_standalone, standalone_seed
from nasnet_zoo.errors import ConfigError, NasnetZooError
from nasnet_zoo.files import RunLock, atomic_write
from nasnet_zoo.genotype import NASNET_A
from nasnet_zoo.table import format_table

RESULTS = Path(__file__).resolve().parent / "results"
WS_ALGOS, ALONE_ALGOS = ("ppo", "random"), ("ppo", "random")
ARMS = ("ppo-ws", "random-ws", "ppo", "random")
HUGE = 1_000_000  # the stand-alone searches' budget: the wall time stops them


def ws_run(preset: str, algo: str, seed: int, out: Path, budget: int | None, task: Any) -> tuple[dict | None, float]:
    """One weight-sharing run (continued if its folder exists): its best derive-step cell and its wall seconds."""
    folder = out / "ws" / f"{algo}-ws-seed{seed}"
    config = SearchConfig(preset=preset, algo=algo, seed=seed, budget=budget, out=out / "ws", task=task,
                          resume=(folder / "search").is_dir())  # fmt: skip
    sharing.run_sharing(config, device="cpu")
    timing = json.loads((folder / "search" / "timing.json").read_text())
    finals = read_journal(folder / "journal.jsonl")
    return best_record(finals, len(finals)), float(timing["elapsed"])


def alone_run(
    preset: str, algo: str, seed: int, out: Path, seconds: float, task: Any, evaluator: Any
) -> tuple[dict | None, float]:
    """One stand-alone search stopped after ``seconds`` (summed over resumes): its best cell by reward and its
    wall seconds (every session of it, so a rerun that finds it finished reports the time it took)."""
    folder = out / "alone" / f"{algo}-seed{seed}"
    config = SearchConfig(preset=preset, algo=algo, seed=seed, budget=HUGE, out=out / "alone", task=task,
                          max_minutes=seconds / 60, resume=(folder / RUN).exists())  # fmt: skip
    result = run_search(config, evaluator)
    records = read_journal(folder / "journal.jsonl")
    return best_record(records, len(records)), result.elapsed_seconds


def run(args: argparse.Namespace, ws_task: Any = None, alone_task: Any = None) -> dict[str, Any]:
    """The comparison (see the module docstring); ``ws_task``/``alone_task`` replace the presets' tasks (tests)."""
    prior = [load_prior(path, args) for path in args.prior]  # checked before anything runs
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    compare = CompareConfig(preset=args.preset, seeds=args.seeds, algorithms=list(ALONE_ALGOS), out=out,
                            standalone_epochs=args.epochs, task=alone_task, backend=args.backend)  # fmt: skip
    task, epochs, workers, backend = compare.resolved()
    rows, todo = [], []
    with RunLock(out):
        evaluator = make_run_evaluator(backend, task, workers, None, 0.0)
        try:
            for seed in args.seeds:
                best, wall = {}, {}
                for algo in WS_ALGOS:
                    best[f"{algo}-ws"], wall[f"{algo}-ws"] = ws_run(args.ws_preset, algo, seed, out, args.ws_budget,
                                                                    ws_task)  # fmt: skip
                seconds = 60 * args.minutes if args.minutes else max(wall.values())
                for algo in ALONE_ALGOS:
                    best[algo], wall[algo] = alone_run(args.preset, algo, seed, out, seconds, alone_task, evaluator)
                todo.append(dict(label=REFERENCE, arm=REFERENCE, seed=standalone_seed(seed), search_seed=seed,
                                 hash=canonical_hash(NASNET_A), genotype=NASNET_A.to_dict()))  # fmt: skip
                for arm in ARMS:
                    if best[arm] is not None:
                        todo.append(dict(label=f"{arm}-seed{seed}", arm=arm, seed=standalone_seed(seed),
                                         search_seed=seed, hash=best[arm]["hash"], genotype=best[arm]["genotype"],
                                         reward=best[arm]["reward"]))  # fmt: skip
                    rows.append(dict(arm=arm, seed=seed, wall_seconds=wall[arm], budget_seconds=seconds))
                print(f"seed {seed}: wall {', '.join(f'{k} {v / 60:.1f} min' for k, v in wall.items())}", flush=True)
            done = run_standalone(compare, evaluator, todo)
        finally:
            evaluator.close()
    return summarize(args, rows, todo, done, epochs, prior)


def load_prior(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """An earlier result JSON whose seeds join this run's: same presets, none of this run's seeds."""
    try:
        prior = json.loads(Path(path).read_text())
        presets, seeds = (prior["preset"], prior["ws_preset"]), {int(s) for s in prior["seeds"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"--prior {path}: not a compare_ws result JSON ({e})") from None
    if presets != (args.preset, args.ws_preset):
        raise ConfigError(f"--prior {path} compared presets {presets}, this run {(args.preset, args.ws_preset)}")
    if seeds & set(args.seeds):
        raise ConfigError(f"--prior {path} already has seeds {sorted(seeds & set(args.seeds))}: drop them from --seeds")
    return prior


def summarize(args: argparse.Namespace, rows: list[dict], todo: list[dict], done: dict, epochs: int,
              prior: list[dict[str, Any]] = ()) -> dict[str, Any]:  # fmt: skip
    """Test accuracy per arm and seed (``prior``'s seeds too), means, and PPO-WS against each other arm."""
    scores: dict[str, dict[int, float]] = {arm: {} for arm in (*ARMS, REFERENCE)}
    for c in todo:
        line = done.get((c["hash"], c["seed"]))
        if line is not None:
            scores[c["arm"]][c["search_seed"]] = line["score"]
    for r in rows:
        r["test"] = scores[r["arm"]].get(r["seed"])
    for earlier in prior:
        for arm, s in earlier["arms"].items():
            scores[arm].update({int(seed): v for seed, v in s["by_seed"].items()})
        rows, todo = [*earlier["runs"], *rows], [*earlier["cells"], *todo]
    scores = {arm: dict(sorted(s.items())) for arm, s in scores.items()}
    arms = {arm: dict(_mean_std(list(s.values())), by_seed=s) for arm, s in scores.items()}
    tests = {other: compare_report.significance(scores["ppo-ws"], scores[other]) for other in (*ARMS[1:], REFERENCE)}
    command = "python -m benchmarks.compare_ws " + " ".join(args.argv)
    earlier = [dict(command=e["command"], machine=e["machine"], seeds=e["seeds"]) for e in prior]
    return dict(command=command, preset=args.preset, ws_preset=args.ws_preset, seeds=sorted(scores["ppo-ws"]),
                standalone_epochs=epochs, machine=machine(), earlier=earlier, runs=rows, arms=arms, ppo_ws_vs=tests,
                cells=todo)  # fmt: skip


def _mean_std(values: list[float]) -> dict[str, Any]:
    mean = statistics.mean(values) if values else None
    return dict(n=len(values), mean=mean, std=statistics.stdev(values) if len(values) > 1 else None)


def _p(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def markdown(result: dict[str, Any]) -> str:
    rows = []
    for arm, s in result["arms"].items():
        minutes = ", ".join(f"{r['wall_seconds'] / 60:.1f}" for r in sorted(result["runs"], key=lambda r: r["seed"])
                            if r["arm"] == arm)  # fmt: skip
        by_seed = ", ".join(f"{v:.3f}" for _, v in sorted(s["by_seed"].items()))
        mean = "-" if s["mean"] is None else f"{s['mean']:.4f} ± {s['std'] or 0:.4f}"
        rows.append((arm, mean, by_seed, minutes or "-"))
    tests = [(f"ppo-ws vs {k}", _p(v["welch_p"]), _p(v["mannwhitney_p"]))
             for k, v in result["ppo_ws_vs"].items()]  # fmt: skip
    earlier = "".join(f"\n\nSeeds {', '.join(map(str, e['seeds']))} from `{e['command']}` ({e['machine']['cpu']}, "
                      f"{e['machine']['date']})" for e in result.get("earlier", []))  # fmt: skip
    return (f"# Weight sharing vs stand-alone search at equal wall time ({result['preset']})\n\n`{result['command']}`"
            f" ({result['machine']['cpu']}, {result['machine']['date']}){earlier}"
            f"\n\n{format_table(rows, ['arm', 'test acc (mean ± std)', 'by seed', 'search minutes by seed'])}\n\n"
            f"{format_table(tests, ['', 'Welch p', 'Mann-Whitney p'])}\n")  # fmt: skip


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare_ws", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="laptop", choices=list(PRESETS), help="the stand-alone search's preset")
    p.add_argument("--ws-preset", default="laptop-ws", choices=sorted(sharing.SHARING))
    p.add_argument("--ws-budget", type=int, help="rewarded children per WS run (default: the preset's)")
    p.add_argument("--minutes", type=float, help="the stand-alone searches' wall time (default: the WS runs')")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, help="stand-alone training epochs (default: the preset's retrain)")
    p.add_argument("--backend", choices=list(BACKENDS), help="the stand-alone evaluator (default: the preset's)")
    p.add_argument("--out", type=Path, required=True, help="folder of the runs; rerun to resume")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--prior", type=Path, action="append", default=[],
                   help="an earlier result JSON whose seeds join the table (repeatable)")  # fmt: skip
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        result = run(args)
    except NasnetZooError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    write(result, args.results)
    print("\n" + markdown(result))
    return 0


def write(result: dict[str, Any], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"compare-ws-{result['preset']}"
    atomic_write(stem.with_suffix(".json"), json.dumps(result, indent=1, default=str) + "\n")
    atomic_write(stem.with_suffix(".md"), markdown(result))


if __name__ == "__main__":
    raise SystemExit(main())
