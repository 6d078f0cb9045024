"""``nasnet-zoo demo``: the zoo measured against the paper, then a cell search end to end on bundled data.

1. Every zoo model built and measured beside the paper's parameters and mult-adds.
2. A short RL search (the paper's controller and PPO) on the ``cpu-digits`` smoke preset: real children
   trained on scikit-learn's 8x8 digits by two worker processes.
3. The best cell it found, built with the zoo's builder and trained longer beside NASNet-A, and a table.

What it shows is the machinery end to end (controller, PPO, worker processes, journal, outputs, the zoo building
a searched cell), in a few minutes. It does not show that the search finds better cells: the digits reward
barely tells cells apart (Kendall tau with longer training about 0), and 24 children make one policy update.
The default ``laptop`` preset is the proxy for that question, and what it can show is measured
(benchmarks/results/fidelity-laptop-seed*.md, compare-laptop.md; `SEARCH_CAVEAT`).

Top layer, beside ``cli.py``: it may import everything, and only the CLI imports it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from .genotype import NASNET_A, Genotype
from .search.evaluators import Job, make_evaluator, run_all
from .search.loop import PRESETS, SearchConfig, run_search
from .table import format_table
from .zoo import MODELS, measure

SEARCH_CAVEAT = (
    "To ask whether the search finds better cells, use the default laptop preset (16x16 drawn shapes, a held-out "
    "test split): `nasnet-zoo search --out runs/search` and `nasnet-zoo retrain runs/search`, against `--algo "
    "random` and `--algo evolution` at the same budget and seeds (`python -m benchmarks.compare`). Its measured "
    "fidelity (`nasnet-zoo fidelity`, 30 random cells + NASNet-A, cell seeds 1 and 2, 3 stand-alone seeds per "
    "cell): Kendall tau 0.47 and 0.68 between its reward and 4-epoch stand-alone test accuracy, so it separates "
    "good cells from bad; one reward's seed-to-seed noise is 0.55-0.77 times the spread between cells, so it "
    "cannot rank close cells. NASNet-A ranks 4th and 2nd of 31 stand-alone there. At 5 seeds x 20 children, PPO's "
    "best cells tested 0.029 higher than random search's (4 of 5 seeds; paired t p = 0.22): not significant at "
    "laptop budgets."
)


def _fmt_m(x: float | None, unit: float = 1e6) -> str:
    return "-" if x is None else f"{x / unit:.2f}"


def zoo_table() -> str:
    rows = []
    for name, m in MODELS.items():
        if m.generic:
            continue
        r = measure(name)
        p = m.paper
        rows.append(
            (
                name,
                m.title,
                p.row if p else "-",
                m.input_size,
                _fmt_m(r["params_with_bn_stats"]),
                p.params_m if p else "-",
                _fmt_m(r["mult_adds"]),
                p.mult_adds_m if p and p.mult_adds_m else "-",
            )
        )
    headers = ["model", "built", "paper row", "size", "params M", "paper", "mult-adds M", "paper"]
    return format_table(rows, headers)


def run_demo(seed: int = 0, budget: int = 24, workers: int = 2, final_epochs: int = 10) -> int:
    torch.manual_seed(seed)
    print("NASNet zoo, measured beside the paper (params include BN statistics, as the paper counts):\n")
    print(zoo_table())

    task = PRESETS["cpu-digits"].task
    out = Path(tempfile.mkdtemp(prefix="nasnet-zoo-demo-"))
    n_train, n_val = len(task.split("train")), len(task.split("validation"))
    print(
        f"\nA short cell search: the paper's controller (LSTM, PPO) proposes {budget} children; each is the CIFAR "
        f"layout with N = {task.num_cells // 3}, F = {task.filters}, trained {task.epochs} epochs on {n_train:,} "
        f"digits by {workers} worker processes and rewarded with its accuracy on {n_val} held-out digits.\n"
    )
    result = run_search(
        SearchConfig(preset="cpu-digits", algo="ppo", seed=seed, budget=budget, workers=workers, out=out),
        progress=True,
    )
    trained = [r for r in result.records if r["reward"] is not None]
    best = result.best
    assert best is not None, "every child of the demo search failed"
    print(
        f"\n{len(result.records)} children in {result.wall_seconds:.0f} s ({len(trained)} trained), controller "
        f"{100 * result.controller_seconds / result.wall_seconds:.1f} % of the time; search rewards "
        f"{min(r['reward'] for r in trained):.3f} .. {best['reward']:.3f}. Files: {out}"
    )

    searched = Genotype.load(out / "best.json")
    longer = task.longer(final_epochs)
    print(f"\nThe best cell and NASNet-A, each built with the zoo's builder and trained {final_epochs} epochs:\n")
    cells = [(f"searched {best['hash']}", searched, f"{best['reward']:.3f}"), ("NASNet-A", NASNET_A, "-")]
    evaluator = make_evaluator("process", longer, workers)
    try:
        outcomes = run_all(evaluator, [Job(i, genotype, seed) for i, (_, genotype, _) in enumerate(cells)])
    finally:
        evaluator.close()
    rows = []
    for i, (label, genotype, reward) in enumerate(cells):
        o = outcomes[i]
        params = sum(p.numel() for p in longer.build(genotype).parameters())
        accuracy = f"{o.reward:.3f}" if o.reward is not None else f"failed: {o.error}"
        rows.append((label, f"{params / 1e3:.0f}k", reward, accuracy, f"{o.seconds:.0f}"))
    headers = ["cell", "params", f"search reward ({task.epochs} ep)", f"accuracy ({final_epochs} ep)", "seconds"]
    print(format_table(rows, headers))
    print(
        f"\nAccuracies are on the {n_val} held-out digits the search rewarded, which favours the searched cell; with "
        f"{budget} children the controller has made {budget // PRESETS['cpu-digits'].policy.batch_size} policy "
        "update(s), and cpu-digits is a smoke preset whose reward barely tells cells apart: this shows the "
        "machinery, not the paper's result.\n" + SEARCH_CAVEAT
    )
    print(f"searched genotype: {searched.to_json(indent=None)}")
    return 0
