"""``python -m benchmarks.sharing_tune``: short weight-sharing runs of one preset under different switches, each
scored by what the shared weights have learnt.

A try trains the preset's supernet as the search does (`sharing._Run`: its rounds of shared steps and rewarded
children, PPO by default) for about ``--minutes`` of this process's CPU time (on one thread, the wall time of an
idle core; a machine shared with other work stretches the wall time, not this): the budget of rewarded children
is sized from a timing of a few steps and rewards first, so the cosine lr schedule ends when the time does (no
derive step).
Then the trained supernet scores the cells of a fidelity measurement (``--fidelity``: 30 uniformly random cells
and NASNet-A) on the whole validation split: their mean accuracy (what the shared weights have learnt, for
children the controller did not pick) and Kendall tau against their stand-alone test accuracies. ``--switches``
also scores them under every reward setting (BN statistics per batch, re-estimated, running; one, four or all
validation minibatches) on the last try's weights.

Each ``--try`` is ``name:key=value,key=value`` over `SharingConfig`'s fields, applied to the preset's. Results
go to ``--out`` (``sharing-tune.json`` and ``.md``). One torch thread unless ``--threads``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from nasnet_zoo.search import sharing
from nasnet_zoo.search.loop import SearchConfig
from nasnet_zoo.search.shared_training import SharingConfig, score
from nasnet_zoo.search.space import NUM_BLOCKS, random_genotype

from nasnet_zoo.genotype import Genotype
from nasnet_zoo.runtime import derive_seed, torch_threads
from nasnet_zoo.table import format_table

from .sharing import RESULTS, standalone_scores
from .tries import parse_try


def _seconds_per_round(run: Any, probe: int = 4) -> tuple[float, float, float]:
    """Seconds of one round, a shared step and a reward: ``probe`` of each timed on a scratch supernet."""
    from nasnet_zoo.search.shared_training import shared_step

    s, task = run.sharing, run.task
    net = sharing.build_supernet(task, NUM_BLOCKS, s.filters)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=task.momentum)
    t = time.process_time()
    for i in range(probe):
        x, y = run.train.batch(i)
        shared_step(net, opt, random_genotype(i), x, y, 0.01, task.weight_decay, s.clip_grad_norm)
    step = (time.process_time() - t) / probe
    t = time.process_time()
    for i in range(probe):
        run.reward(i, random_genotype(i), run.val.sample(s.reward_batches, i))
    reward = (time.process_time() - t) / probe
    run.seconds["reward"] = 0.0
    return s.shared_steps * step + s.children * reward, step, reward


def one_try(preset: str, config: SharingConfig, minutes: float, cells: list[dict[str, Any]], algo: str = "ppo",
            seed: int = 0) -> tuple[dict[str, Any], Any]:  # fmt: skip
    """Train for about ``minutes``, then score ``cells`` on the whole validation split; (row, the run)."""
    kept = sharing.SHARING[preset]
    sharing.SHARING[preset] = config
    try:
        probe = sharing._Run(SearchConfig(preset=preset, algo=algo, seed=seed), NUM_BLOCKS, torch.device("cpu"))
        per_round, step_s, reward_s = _seconds_per_round(probe)
        warm = config.uniform_steps * step_s
        rounds = max(1, math.floor((minutes * 60 - warm) / per_round))
        budget = rounds * config.children
        run = sharing._Run(SearchConfig(preset=preset, algo=algo, seed=seed, budget=budget), NUM_BLOCKS,
                           torch.device("cpu"))  # fmt: skip
    finally:
        sharing.SHARING[preset] = kept
    start, wall = time.process_time(), time.perf_counter()
    clock = lambda: time.process_time() - start  # noqa: E731
    deadline = 1.5 * minutes * 60
    while run.next_child < run.budget and run.shared_steps(deadline, clock):
        if not run.children(deadline, clock, lambda line: None):
            break
        run.round += 1
    train_seconds, train_wall = clock(), time.perf_counter() - wall
    t = time.process_time()
    rewards = evaluate(run, cells, config.bn)
    eval_seconds = time.process_time() - t
    from scipy.stats import kendalltau

    standalone = [c["standalone"] for c in cells]
    tau, p = kendalltau(rewards, standalone)
    late = [r["reward"] for r in run.records[-config.children :] if r["reward"] is not None]
    row = dict(config=dataclasses.asdict(config), shared_steps=run.step, children=len(run.records),
               train_seconds=train_seconds, train_wall_seconds=train_wall, eval_seconds=eval_seconds,
               seconds_per_step=step_s, seconds_per_reward=reward_s, mean_cell_accuracy=sum(rewards) / len(rewards),
               max_cell_accuracy=max(rewards), last_round_reward=sum(late) / max(len(late), 1), kendall_tau=tau,
               p_value=p, rewards=rewards)  # fmt: skip
    return row, run


def evaluate(run: Any, cells: list[dict[str, Any]], bn: str, batches: int | None = None) -> list[float]:
    """Each cell's accuracy on the whole validation split (``batches``: that many reward minibatches instead)."""
    s, out = run.sharing, []
    for i, c in enumerate(cells):
        calibrate = ()
        if bn == "recalibrate":
            calibrate = run.train.sample(s.recalibrate_batches, derive_seed(8, i))
        data = run.val.all() if batches is None else run.val.sample(batches, derive_seed(7, i))
        out.append(score(run.supernet, Genotype.from_dict(c["genotype"]), data, bn, calibrate))
    return out


def switches(run: Any, cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Kendall tau of the cells' rewards vs stand-alone under every BN mode and number of reward minibatches."""
    from scipy.stats import kendalltau

    standalone, rows = [c["standalone"] for c in cells], []
    for bn in ("batch", "recalibrate", "running"):
        for n in (1, 4, None):
            t = time.process_time()
            rewards = evaluate(run, cells, bn, n)
            tau, p = kendalltau(rewards, standalone)
            rows.append(dict(bn=bn, reward_batches="all" if n is None else n, kendall_tau=tau, p_value=p,
                             mean_accuracy=sum(rewards) / len(rewards),
                             seconds_per_reward=(time.process_time() - t) / len(cells)))  # fmt: skip
            print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sharing_tune", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="laptop-ws", choices=sorted(sharing.SHARING))
    p.add_argument("--fidelity", type=Path, required=True, help="a fidelity measurement's results JSON")
    p.add_argument("--try", dest="tries", action="append", default=[], help="name:key=value,... (repeatable)")
    p.add_argument("--minutes", type=float, default=2.0, help="training wall time per try")
    p.add_argument("--switches", action="store_true", help="score every reward setting on the last try's weights")
    p.add_argument("--cells", type=int, help="score only the first N cells (a smoke test)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    cells = standalone_scores(json.loads(args.fidelity.read_text()))[: args.cells]
    command = "python -m benchmarks.sharing_tune " + shlex.join(sys.argv[1:] if argv is None else argv)
    rows, run = [], None
    with torch_threads(args.threads):
        for text in args.tries or ["preset:"]:
            name, config = parse_try(text, sharing.SHARING[args.preset])
            row, run = one_try(args.preset, dataclasses.replace(config, threads=args.threads), args.minutes, cells)
            rows.append({"name": name, **row})
            print(json.dumps({k: v for k, v in rows[-1].items() if k not in ("rewards", "config")}), flush=True)
        table = switches(run, cells) if args.switches else []
    result = dict(command=command, date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  load_average=os.getloadavg(), tries=rows, switches=table)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sharing-tune.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "sharing-tune.md").write_text(report(result))
    print(report(result))
    return 0


def report(result: dict[str, Any]) -> str:
    rows = [(r["name"], f"{r['train_seconds']:.0f}", r["shared_steps"], r["children"],
             f"{r['mean_cell_accuracy']:.3f}", f"{r['max_cell_accuracy']:.3f}", f"{r['last_round_reward']:.3f}",
             f"{r['kendall_tau']:.3f}") for r in result["tries"]]  # fmt: skip
    lines = [f"# Weight-sharing tries\n\n`{result['command']}`, {result['date']}\n",
             format_table(rows, ["try", "train CPU s", "shared steps", "children", "mean cell acc", "best cell acc",
                                 "last-round reward", "tau vs stand-alone"]) + "\n"]  # fmt: skip
    if result["switches"]:
        rows = [(r["bn"], r["reward_batches"], f"{r['mean_accuracy']:.3f}", f"{r['kendall_tau']:.3f}",
                 f"{1000 * r['seconds_per_reward']:.0f}") for r in result["switches"]]  # fmt: skip
        lines.append("## Reward settings on the last try's weights\n")
        lines.append(format_table(rows, ["BN", "minibatches", "mean acc", "tau", "ms per reward"]) + "\n")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
