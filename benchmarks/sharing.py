"""``python -m benchmarks.sharing``: the weight-sharing search's speed on CPU, where its wall time goes, its
fidelity, and what the one-GPU CIFAR-10 preset is expected to cost.

1. **steps**: on ``--genotypes`` random genotypes of the preset's child layout, a supernet training step and a
   reward forward beside the stand-alone child's training step and forward on the same genotype and minibatch
   (timed round-robin, medians): what sharing costs per minibatch over a plain network.
2. **run**: a PPO search of the preset (``--algo``: REINFORCE or RS-WS instead; ``--budget`` rewarded children),
   from its ``timing.json``: shared steps per second, children per second, and the shares of the wall time in
   shared steps, rewards and the controller (sampling, policy updates).
3. **fidelity** (``--fidelity PATH``, a fidelity measurement's results JSON): the supernet trained by (2) scores
   each of its cells on the whole validation split; Kendall tau against their stand-alone accuracies.
4. **cifar10-ws estimate**: mult-adds of random children of the cifar10-ws layout (F = 20, 6 + 2 cells, 32x32),
   the supernet's CPU step time at a small batch and its per-step overhead (a 1-image 8x8 batch: no arithmetic to
   speak of), and from these the preset's arithmetic and its expected time on one GPU at assumed sustained rates.
   An estimate from FLOP counts and measured CPU overheads, not a GPU measurement.

Results: ``benchmarks/results/sharing.json`` and ``sharing.md``. One torch thread (``--threads``); on a shared
machine absolute times move with the load, the ratios within one run are the result. With ``--fidelity`` and
no ``--sections`` the run and its fidelity are what runs.

Tries (`benchmarks.sharing_tune`, laptop-ws, PPO, one thread, ~1.5-1.8 CPU-minutes of training each on a 2-core
EPYC at load ~9; results/sharing-tune.json): mean accuracy of the fidelity measurement's 31 cells (30 random +
NASNet-A) on the whole validation split with the trained shared weights (chance 0.10), Kendall tau vs their
stand-alone test accuracies, CPU seconds per shared step (batch 32) and per reward (128 images).

=================================================  =====  ========  ========  =====  ======  ========
try                                                steps  children  mean acc  tau    s/step  s/reward
=================================================  =====  ========  ========  =====  ======  ========
base: 50 steps : 20 children per round, lr 0.1     500    200       0.106     0.04   0.163   0.103
150 uniform steps first, then 150 : 20             750    80        0.109     0.14   0.129   0.094
the same, lr 0.3 (50 warm-up steps)                750    80        0.100     -0.19  0.113   0.075
the same, lr 0.03                                  450    40        0.103     -0.06  0.172   0.115
the same as the second, lr 0.1, supernet F = 4     450    40        0.103     0.00   0.147   0.095
=================================================  =====  ========  ========  =====  ======  ========

(The last two got fewer steps: the timing probe that sizes a try's budget ran slower under the load.) None of them
learns: every mean is within 0.01 of chance and no tau is significant (|tau| < 0.2, p > 0.1 with 31 cells). At ~10
trained edges of ~400 per cell position, 500-750 steps give each edge 10-20 updates; a fixed genotype needs ~60
steps to leave chance on this task. A narrower supernet steps no faster (per-op overhead dominates at F = 8 on
16x16) and a higher or lower lr does not help. BN statistics per batch vs re-estimated, and one vs four vs all
reward minibatches, on the F = 4 try's weights (results/sharing-tune.md): tau between -0.02 and 0.22, none
significant, at 66-810 ms per reward; on weights at chance they cannot be told apart, so laptop-ws keeps the
cheapest, ENAS's (per-batch statistics, one minibatch of 128). laptop-ws takes the second row's settings, scaled to
its 20 minutes (about 8x the steps): see its comment in `search.sharing.SHARING`.

All of these tries trained the shared weights with SGD. laptop-ws now trains them with Adam at lr 1e-3, and they
learn (results/sharing.md; why, in the README's "Weight-sharing search"); the switches measured again on those
trained weights are in results/sharing-switches.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from nasnet_zoo.search import sharing
from nasnet_zoo.search.loop import PRESETS, SearchConfig
from nasnet_zoo.search.report import JOURNAL, read_journal
from nasnet_zoo.search.shared_training import Stream, score, shared_step, task_data
from nasnet_zoo.search.space import random_genotype

from benchmarks.measure import load_note, sync
from nasnet_zoo.complexity import count_mult_adds
from nasnet_zoo.genotype import Genotype
from nasnet_zoo.runtime import derive_seed, torch_threads
from nasnet_zoo.table import format_table

RESULTS = Path(__file__).resolve().parent / "results"
GPU_TFLOPS = (5.0, 10.0, 20.0)  # assumed sustained fp32/TF32 rates of small-channel convs on one modern GPU


def _median_time(fn: Any, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def steps(preset: str, genotypes: int, rounds: int = 3, device: str = "cpu", task: Any = None) -> dict[str, Any]:
    """Section 1: supernet vs stand-alone, per minibatch, on the same genotypes and batches (``task``: the preset's
    unless given, e.g. with a data folder)."""
    task = task or PRESETS[preset].task
    train, val = task_data(task)
    dev = torch.device(device)
    x, y = Stream(train, task.batch_size, 0, dev).batch(0)
    xv, yv = Stream(val, sharing.SHARING[preset].reward_batch_size, 0, dev).batch(0)
    supernet = sharing.build_supernet(task, filters=sharing.SHARING[preset].filters).to(dev)
    optimizer = torch.optim.SGD(supernet.parameters(), lr=task.lr, momentum=task.momentum)
    rows = [_time_genotype(task, supernet, optimizer, random_genotype(1000 + i), (x, y), (xv, yv), rounds)
            for i in range(genotypes)]  # fmt: skip
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    return dict(
        preset=preset, device=device, genotypes=genotypes, train_batch=task.batch_size, reward_batch=len(yv), **med,
        shared_over_child_step=med["shared_step"] / med["child_step"],
        reward_over_child_forward=med["reward"] / med["child_forward"],
        supernet_parameters=sum(p.numel() for p in supernet.parameters()),
    )  # fmt: skip


def _time_genotype(
    task: Any, supernet: Any, optimizer: Any, g: Genotype, train: tuple, val: tuple, rounds: int
) -> dict[str, float]:
    """Median seconds of a shared step, a reward, and the stand-alone child's step and forward, round-robin, on
    the device the batches are on (each call waits for the device)."""
    (x, y), (xv, yv) = train, val
    child = task.build(g).to(x.device)
    child_opt = torch.optim.SGD(child.parameters(), lr=task.lr, momentum=task.momentum)

    def child_step() -> None:
        child.train()
        loss = F.cross_entropy(child(x), y)
        child_opt.zero_grad()
        loss.backward()
        child_opt.step()
        sync(x.device)

    def child_forward() -> None:
        child.eval()
        with torch.no_grad():
            child(xv)
        sync(x.device)

    fns = {
        "shared_step": lambda: shared_step(supernet, optimizer, g, x, y, task.lr, task.weight_decay, 5.0),
        "child_step": child_step,
        "reward": lambda: score(supernet, g, [(xv, yv)], "batch"),
        "child_forward": child_forward,
    }
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def run(preset: str, budget: int, out: Path, seed: int = 0, algo: str = "ppo") -> dict[str, Any]:
    """Section 2: one search of the preset (PPO unless ``algo``); the split of its wall time."""
    result = sharing.run_sharing(SearchConfig(preset=preset, algo=algo, seed=seed, budget=budget, out=out),
                                 device="cpu")  # fmt: skip
    folder = out / f"{algo}-ws-seed{seed}"
    timing = json.loads((folder / "search" / "timing.json").read_text())
    elapsed = timing["elapsed"]
    finals = [r["reward"] for r in result.records if r.get("phase") == "final" and r["reward"] is not None]
    return dict(
        preset=preset, algo=algo, budget=budget, seed=seed, wall_seconds=elapsed, shared_steps=timing["shared_steps"],
        shared_steps_per_second=timing["shared_steps"] / timing["shared"],
        children_per_second=timing["children"] / timing["reward"],
        share_shared=timing["shared"] / elapsed, share_reward=timing["reward"] / elapsed,
        share_controller=timing["controller"] / elapsed, best_final_reward=max(finals, default=None),
        run_dir=str(folder),
    )  # fmt: skip


LAST = 100  # the run's last rewards, beside the fidelity cells' accuracy


def fidelity(run_dir: Path, results: Path) -> dict[str, Any]:
    """Section 3: the trained supernet's reward of a fidelity measurement's cells vs their stand-alone scores."""
    from scipy.stats import kendalltau, spearmanr

    supernet, task = sharing.load_supernet(run_dir)
    _, val = task_data(task)
    stream = Stream(val, 256, 0, torch.device("cpu"))
    cells = standalone_scores(json.loads(Path(results).read_text()))
    cfg = json.loads((Path(run_dir) / "search" / "run.json").read_text())["sharing"]
    train_stream = Stream(task_data(task)[0], task.batch_size, 0, torch.device("cpu"))
    rewards = []
    for i, c in enumerate(cells):  # as the derive step scores a cell (BN statistics re-estimated if the run does)
        calibrate = ()
        if cfg["bn"] == "recalibrate":
            calibrate = train_stream.sample(cfg["recalibrate_batches"], derive_seed(8, i))
        rewards.append(score(supernet, Genotype.from_dict(c["genotype"]), stream.all(), cfg["bn"], calibrate))
    standalone = [c["standalone"] for c in cells]
    tau, p = kendalltau(rewards, standalone)
    rho, _ = spearmanr(rewards, standalone)
    last = read_journal(Path(run_dir) / "search" / JOURNAL)[-LAST:]
    searched = [r["reward"] for r in last if r["reward"] is not None]
    return dict(results=str(results), cells=len(cells), kendall_tau=tau, p_value=p, spearman=rho,
                mean_accuracy=statistics.mean(rewards), max_accuracy=max(rewards),
                last_search_rewards=statistics.mean(searched) if searched else None,
                rewards=rewards, standalone=standalone)  # fmt: skip


def switches(run_dir: Path, results: Path, batches: tuple[int, ...] = (1, 4)) -> list[dict[str, Any]]:
    """The reward switches on one trained supernet: Kendall tau vs the stand-alone scores of a fidelity
    measurement's cells for every BN mode and number of reward minibatches (and the whole validation split)."""
    from scipy.stats import kendalltau

    supernet, task = sharing.load_supernet(run_dir)
    train, val = task_data(task)
    cfg = json.loads((Path(run_dir) / "search" / "run.json").read_text())["sharing"]
    cells = standalone_scores(json.loads(Path(results).read_text()))
    standalone = [c["standalone"] for c in cells]
    val_stream = Stream(val, cfg["reward_batch_size"], 0, torch.device("cpu"))
    train_stream = Stream(train, task.batch_size, 0, torch.device("cpu"))
    rows = []
    for bn in ("batch", "recalibrate", "running"):
        for n in (*batches, None):
            rewards, t = [], time.perf_counter()
            for i, c in enumerate(cells):
                data = val_stream.all() if n is None else val_stream.sample(n, derive_seed(7, i))
                calibrate = (
                    train_stream.sample(cfg["recalibrate_batches"], derive_seed(8, i)) if bn == "recalibrate" else ()
                )
                rewards.append(score(supernet, Genotype.from_dict(c["genotype"]), data, bn, calibrate))
            tau, p = kendalltau(rewards, standalone)
            rows.append(dict(bn=bn, reward_batches="all" if n is None else n, kendall_tau=tau, p_value=p,
                             seconds_per_reward=(time.perf_counter() - t) / len(cells)))  # fmt: skip
            print(rows[-1], flush=True)
    return rows


def standalone_scores(data: Any) -> list[dict[str, Any]]:
    """Cells and stand-alone accuracies from a fidelity results JSON (`search.fidelity`'s ``rows``, or a list or a
    ``cells`` list): entries with a genotype and a stand-alone score (``standalone_test``, the mean over the
    stand-alone seeds, else ``standalone``, ``test`` or ``test_accuracy``; a list is averaged); a cell without
    one (its stand-alone runs failed) is left out."""
    cells = data
    if isinstance(data, dict):
        cells = data["rows"] if isinstance(data.get("rows"), list) else data["cells"]
    out = []
    for c in cells:
        score_key = next((k for k in ("standalone_test", "standalone", "test", "test_accuracy") if k in c), None)
        score = None if score_key is None else c[score_key]
        if isinstance(score, list):
            score = statistics.mean(score) if score else None
        if score is None:
            continue
        out.append({"genotype": c["genotype"], "standalone": float(score)})
    return out


def cifar_estimate(genotypes: int, cpu_batch: int = 8, rounds: int = 2) -> dict[str, Any]:
    """Section 4: the cifar10-ws preset's arithmetic and its expected time on one GPU."""
    preset, cfg = PRESETS["cifar10-ws"], sharing.SHARING["cifar10-ws"]
    task = preset.task
    macs = statistics.mean(count_mult_adds(task.build(random_genotype(2000 + i)), 32) for i in range(genotypes))
    supernet = sharing.build_supernet(task)
    optimizer = torch.optim.SGD(supernet.parameters(), lr=task.lr, momentum=task.momentum)
    step_s, tiny_s = [], []
    for i in range(genotypes):
        g = random_genotype(2000 + i)
        for batch, size, out in ((cpu_batch, 32, step_s), (1, 8, tiny_s)):
            x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
            fn = lambda: shared_step(supernet, optimizer, g, x, y, task.lr, task.weight_decay, 5.0)  # noqa: E731,B023
            fn()
            out.append(_median_time(fn, rounds))
    step_flops = 3 * 2 * macs * task.batch_size  # forward + backward (about twice the forward)
    per_epoch = cfg.shared_steps
    epochs = preset.budget // cfg.children
    train_flops = epochs * per_epoch * step_flops
    reward_flops = preset.budget * 2 * macs * cfg.reward_batch_size + cfg.final * 2 * macs * task.val_size
    overhead = statistics.median(tiny_s)  # per step, nearly all framework work: a floor on any device
    cpu_step = statistics.median(step_s)
    hours = {}
    for tflops in GPU_TFLOPS:
        train_h = epochs * per_epoch * (overhead + step_flops / (tflops * 1e12)) / 3600
        reward_h = preset.budget * (overhead / 3 + 2 * macs * cfg.reward_batch_size / (tflops * 1e12)) / 3600
        hours[f"{tflops:g}"] = train_h + reward_h
    return dict(
        child_mult_adds=macs, step_flops=step_flops, shared_steps=epochs * per_epoch, epochs=epochs,
        train_flops=train_flops, reward_flops=reward_flops, cpu_step_seconds=cpu_step, cpu_batch=cpu_batch,
        cpu_gflops=3 * 2 * macs * cpu_batch / cpu_step / 1e9, overhead_seconds=overhead,
        overhead_hours=(epochs * per_epoch + preset.budget / 3) * overhead / 3600,
        gpu_hours_at_tflops=hours, supernet_parameters=sum(p.numel() for p in supernet.parameters()),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sharing", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="digits-ws", choices=sorted(sharing.SHARING))
    p.add_argument("--sections", nargs="+", choices=["steps", "run", "fidelity", "switches", "estimate"],
                   help="default: steps run estimate, and with --fidelity run fidelity")  # fmt: skip
    p.add_argument("--genotypes", type=int, default=5)
    p.add_argument("--budget", type=int, help="rewarded children of the run (default: the preset's)")
    p.add_argument("--algo", default="ppo", choices=["ppo", "reinforce", "random"], help="the run's algorithm")
    p.add_argument("--seed", type=int, default=0, help="the run's seed (its supernet's weights, batches, policy)")
    p.add_argument("--run-dir", type=Path, help="fidelity without run: a finished run folder OUT/ppo-ws-seed0")
    p.add_argument("--fidelity", type=Path, help="a fidelity measurement's results JSON")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.sections is None:
        args.sections = ["run", "fidelity"] if args.fidelity else ["steps", "run", "estimate"]
    if {"fidelity", "switches"} & set(args.sections) and args.fidelity is None:
        p.error("the fidelity and switches sections need --fidelity PATH")
    if {"fidelity", "switches"} & set(args.sections) and "run" not in args.sections and args.run_dir is None:
        p.error("the fidelity and switches sections need a run: add the run section or --run-dir")
    command = "python -m benchmarks.sharing " + shlex.join(sys.argv[1:] if argv is None else argv)
    results: dict[str, Any] = {}
    load_before = os.getloadavg()
    with torch_threads(args.threads), tempfile.TemporaryDirectory() as tmp:
        if "steps" in args.sections:
            results["steps"] = steps(args.preset, args.genotypes)
            print(json.dumps(results["steps"], indent=1), flush=True)
        run_dir = args.run_dir
        if "run" in args.sections:
            keep = args.out / f"run-{args.preset}"
            out = keep if args.fidelity else Path(tmp)
            results["run"] = run(args.preset, args.budget or PRESETS[args.preset].budget, out, args.seed, args.algo)
            run_dir = Path(results["run"]["run_dir"])
            print(json.dumps(results["run"], indent=1), flush=True)
        if "fidelity" in args.sections:
            results["fidelity"] = fidelity(run_dir, args.fidelity)
            print(json.dumps({k: v for k, v in results["fidelity"].items() if k not in ("rewards", "standalone")}))
        if "switches" in args.sections:
            results["switches"] = switches(run_dir, args.fidelity)
        if "estimate" in args.sections:
            results["estimate"] = cifar_estimate(args.genotypes)
            print(json.dumps(results["estimate"], indent=1), flush=True)
    machine = dict(cpus=os.cpu_count(), processor=platform.processor() or platform.machine(),
                   platform=platform.platform(), torch=torch.__version__, threads=args.threads,
                   load_average_before=load_before, load_average_after=os.getloadavg(),
                   date=datetime.now(timezone.utc).isoformat(timespec="seconds"))  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sharing.json").write_text(
        json.dumps(dict(command=command, machine=machine, **results), indent=1) + "\n"
    )
    (args.out / "sharing.md").write_text(report(command, machine, results))
    print(report(command, machine, results))
    return 0


def _f3(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def report(command: str, machine: dict[str, Any], results: dict[str, Any]) -> str:
    load = machine["load_average_before"][0], machine["load_average_after"][0]
    lines = [
        f"# Weight-sharing search\n\n`{command}`, {machine['date']}, {machine['processor']}, {machine['cpus']} CPUs, "
        f"{machine['threads']} torch thread(s), {load_note(*load)}.\n"
    ]
    if "steps" in results:
        s = results["steps"]
        rows = [("training step", f"{1000 * s['shared_step']:.0f}", f"{1000 * s['child_step']:.0f}",
                 f"{s['shared_over_child_step']:.2f}"),
                ("reward / eval forward", f"{1000 * s['reward']:.0f}", f"{1000 * s['child_forward']:.0f}",
                 f"{s['reward_over_child_forward']:.2f}")]  # fmt: skip
        lines.append(f"## Supernet vs stand-alone child ({s['preset']}, median over {s['genotypes']} random "
                     f"genotypes, train batch {s['train_batch']}, reward batch {s['reward_batch']}; supernet "
                     f"{s['supernet_parameters'] / 1e6:.2f} M parameters)\n")  # fmt: skip
        lines.append(format_table(rows, ["", "supernet ms", "stand-alone ms", "ratio"]) + "\n")
    if "run" in results:
        r = results["run"]
        algo = {"ppo": "PPO", "reinforce": "REINFORCE", "random": "RS-WS"}[r.get("algo", "ppo")]
        lines.append(f"## A {algo} search of {r['preset']} ({r['budget']} rewarded children)\n")
        lines.append(format_table([(f"{r['wall_seconds'] / 60:.1f}", r["shared_steps"],
                                    f"{r['shared_steps_per_second']:.2f}", f"{r['children_per_second']:.2f}",
                                    f"{100 * r['share_shared']:.1f} %", f"{100 * r['share_reward']:.1f} %",
                                    f"{100 * r['share_controller']:.2f} %", _f3(r["best_final_reward"]))],
                                  ["minutes", "shared steps", "steps/s", "children/s", "shared", "rewards",
                                   "controller", "best final reward"]) + "\n")  # fmt: skip
    if "fidelity" in results:
        f = results["fidelity"]
        lines.append(
            f"## Fidelity: supernet reward vs stand-alone accuracy ({f['cells']} cells of {f['results']})\n\n"
            f"Kendall tau {f['kendall_tau']:.3f} (p = {f['p_value']:.3g}), Spearman {f['spearman']:.3f}. What the "
            f"shared weights learnt: these cells' accuracy on the whole validation split, mean "
            f"{f['mean_accuracy']:.3f}, best {f['max_accuracy']:.3f} (chance: 1 / classes); the run's last {LAST} "
            f"rewards (its own cells, one minibatch each), mean {_f3(f['last_search_rewards'])}.\n"
        )
    if "switches" in results:
        rows = [(r["bn"], r["reward_batches"], f"{r['kendall_tau']:.3f}", f"{r['p_value']:.3g}",
                 f"{1000 * r['seconds_per_reward']:.0f}") for r in results["switches"]]  # fmt: skip
        lines.append("## Reward switches on the trained supernet: Kendall tau vs stand-alone\n")
        lines.append(format_table(rows, ["BN statistics", "reward minibatches", "tau", "p", "ms per reward"]) + "\n")
    if "estimate" in results:
        e = results["estimate"]
        hours = ", ".join(f"{h:.1f} h at {t} TFLOP/s" for t, h in e["gpu_hours_at_tflops"].items())
        lines.append(
            "## cifar10-ws on one GPU: an estimate\n\n"
            f"A random child of the layout: {e['child_mult_adds'] / 1e6:.0f} M mult-adds per 32x32 image; "
            f"a shared step (batch 160) {e['step_flops'] / 1e9:.0f} GFLOP; "
            f"{e['shared_steps']} steps ({e['epochs']} epochs): {e['train_flops'] / 1e15:.0f} PFLOP, rewards "
            f"{e['reward_flops'] / 1e15:.1f} PFLOP. Supernet {e['supernet_parameters'] / 1e6:.1f} M parameters. "
            f"Measured here: a step at batch {e['cpu_batch']} takes {e['cpu_step_seconds']:.2f} s "
            f"({e['cpu_gflops']:.1f} GFLOP/s), a 1-image 8x8 step {1000 * e['overhead_seconds']:.0f} ms (framework "
            f"overhead, {e['overhead_hours']:.1f} h over the run if a GPU pays it too). Expected: {hours}.\n"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
