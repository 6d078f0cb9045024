"""The report of `benchmarks.compare`: one row per search run, per-algorithm summaries, significance tests on the
best cells' test accuracy, a markdown table and the best-so-far PNG (pure functions of the journals).

Tests between two algorithms run over seeds: Welch's t-test and the Mann-Whitney U test (unpaired), and, since
one seed trains every algorithm's best cell with the same stand-alone seed, the paired t-test and the Wilcoxon
signed-rank test on the per-seed differences. With a handful of seeds they have little power: the smallest
p-value a rank test can give at all is reported beside it (3 seeds: 0.1 for Mann-Whitney, 0.25 for Wilcoxon).
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as st

from nasnet_zoo.files import atomic_write
from nasnet_zoo.table import format_table

REFERENCE = "NASNet-A"


def best_so_far(records: list[dict[str, Any]]) -> list[float | None]:
    """The best reward after each child (failed children keep the best so far; None before the first success)."""
    out: list[float | None] = []
    best = None
    for r in records:
        if r["reward"] is not None and (best is None or r["reward"] > best):
            best = r["reward"]
        out.append(best)
    return out


def _f(x: Any) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def _mean_std(values: list[float]) -> dict[str, Any]:
    v = np.array(values, dtype=float)
    return dict(n=len(v), mean=_f(v.mean()) if len(v) else None, std=_f(v.std(ddof=1)) if len(v) > 1 else None,
                min=_f(v.min()) if len(v) else None, max=_f(v.max()) if len(v) else None)  # fmt: skip


def significance(a: dict[int, float], b: dict[int, float]) -> dict[str, Any]:
    """Tests of ``a`` against ``b`` (test accuracy by seed); None where a test is undefined (too few, no spread)."""
    xa, xb = list(a.values()), list(b.values())
    out: dict[str, Any] = dict(n_a=len(xa), n_b=len(xb), mean_difference=None, welch_t=None, welch_p=None,
                               mannwhitney_u=None, mannwhitney_p=None, mannwhitney_min_p=None)  # fmt: skip
    if xa and xb:
        out["mean_difference"] = float(np.mean(xa) - np.mean(xb))
        u = st.mannwhitneyu(xa, xb, alternative="two-sided")
        out.update(mannwhitney_u=_f(u.statistic), mannwhitney_p=_f(u.pvalue),
                   mannwhitney_min_p=min(1.0, 2 / math.comb(len(xa) + len(xb), len(xa))))  # fmt: skip
    if len(xa) > 1 and len(xb) > 1 and (np.ptp(xa) > 0 or np.ptp(xb) > 0):
        with warnings.catch_warnings():  # identical samples: scipy warns of precision loss, the p is still 1
            warnings.simplefilter("ignore", RuntimeWarning)
            t = st.ttest_ind(xa, xb, equal_var=False)
        out.update(welch_t=_f(t.statistic), welch_p=_f(t.pvalue))
    seeds = sorted(set(a) & set(b))
    d = np.array([a[s] - b[s] for s in seeds])
    paired: dict[str, Any] = dict(n=len(seeds), mean_difference=_f(d.mean()) if len(d) else None,
                                  wins=int(np.sum(d > 0)), losses=int(np.sum(d < 0)), t=None, t_p=None,
                                  wilcoxon_p=None,
                                  wilcoxon_min_p=min(1.0, 2 / 2 ** len(d)) if len(d) else None)  # fmt: skip
    if len(d) > 1 and np.ptp(d) > 0:
        t = st.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds])
        paired.update(t=_f(t.statistic), t_p=_f(t.pvalue))
    if len(d) and np.any(d != 0):
        paired["wilcoxon_p"] = _f(st.wilcoxon(d).pvalue)
    out["paired"] = paired
    return out


def _scores(cells: list[dict[str, Any]], done: dict[tuple[str, int], dict[str, Any]]) -> list[float]:
    """The finished stand-alone scores of one cell's runs (a failed or missing run is left out)."""
    lines = [done.get((c["hash"], c["seed"])) for c in cells]
    return [line["score"] for line in lines if line is not None and line.get("score") is not None]


def _score(cells: list[dict[str, Any]], done: dict[tuple[str, int], dict[str, Any]]) -> float | None:
    """One cell's stand-alone score: the mean of its finished runs (None: none finished)."""
    scores = _scores(cells, done)
    return float(np.mean(scores)) if scores else None


def summarize(meta: dict[str, Any], runs: dict[str, list[dict[str, Any]]], todo: list[dict[str, Any]],
              done: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    """compare-<preset>.json: ``meta``, one row per run, per-algorithm summaries, NASNet-A, and the tests."""
    budget = meta["budget"]
    by_label: dict[str, list[dict[str, Any]]] = {}
    for c in todo:  # a run's best cell (or NASNet-A@seed), once per stand-alone seed
        by_label.setdefault(c["label"], []).append(c)
    rows = []
    for seed in meta["seeds"]:
        for algo in meta["algorithms"]:
            name = f"{algo}-seed{seed}"
            records = runs[name][:budget]
            curve = best_so_far(records)
            cells = by_label.get(name, [])
            cell = cells[0] if cells else None
            rows.append(dict(run=name, algorithm=algo, seed=seed, children=len(records),
                             failed=sum(r["reward"] is None for r in records),
                             resampled=sum(r["resampled"] for r in records), best_proxy=curve[-1] if curve else None,
                             best_hash=None if cell is None else cell["hash"], test=_score(cells, done),
                             test_by_standalone_seed=_scores(cells, done),
                             standalone_seeds=[c["seed"] for c in cells],
                             child_seconds=float(np.mean([r["seconds"] for r in records])) if records else None,
                             curve=curve, genotype=None if cell is None else cell["genotype"]))  # fmt: skip
    ref_by_seed = {s: _score(by_label.get(f"{REFERENCE}@{s}", []), done) for s in meta["seeds"]}
    tests = {a: {r["seed"]: r["test"] for r in rows if r["algorithm"] == a and r["test"] is not None}
             for a in meta["algorithms"]}  # fmt: skip
    algorithms = {}
    for a in meta["algorithms"]:
        mine = [r for r in rows if r["algorithm"] == a]
        algorithms[a] = dict(best_proxy=_mean_std([r["best_proxy"] for r in mine if r["best_proxy"] is not None]),
                             test=_mean_std(list(tests[a].values())), test_by_seed=tests[a],
                             distinct_best_cells=len({r["best_hash"] for r in mine if r["best_hash"]}))  # fmt: skip
    ref = {s: v for s, v in ref_by_seed.items() if v is not None}
    pairs = {f"{a} vs {b}": significance(tests[a], tests[b]) for a, b in itertools.combinations(meta["algorithms"], 2)}
    pairs.update({f"{a} vs {REFERENCE}": significance(tests[a], ref) for a in meta["algorithms"]})
    seconds = [r["child_seconds"] for r in rows if r["child_seconds"] is not None]
    alone = [d["seconds"] for d in done.values()]
    measured = dict(proxy_seconds_mean=float(np.mean(seconds)) if seconds else None,
                    standalone_seconds_mean=float(np.mean(alone)) if alone else None)  # fmt: skip
    return {**meta, "measured": measured, "algorithms": algorithms,
            "reference": dict(label=REFERENCE, test=_mean_std(list(ref.values())), test_by_seed=ref),
            "significance": pairs, "rows": rows}  # fmt: skip


def _pm(s: dict[str, Any], digits: int = 4) -> str:
    if s["mean"] is None:
        return "-"
    return f"{s['mean']:.{digits}f}" + ("" if s["std"] is None else f" ± {s['std']:.{digits}f}")


def _p(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _n_seeds(result: dict[str, Any]) -> int:
    """Stand-alone runs per cell (older results map each search seed to one seed, not to a list)."""
    seeds = next(iter(result["standalone_seeds"].values()), [])
    return len(seeds) if isinstance(seeds, list) else 1


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    est, meas = result.get("estimate"), result["measured"]
    lines = [
        f"# Search algorithms at equal budget on `{result['preset']}`: the paper's Fig. 6 at laptop scale\n",
        f"`{result['command']}`\n",
        f"{m['date']}, {m['cpu']} ({m['cpus']} CPUs), torch {m['torch']}; load average "
        f"{result['load_average_before'][0]:.1f} before, {result['load_average_after'][0]:.1f} after; "
        f"{result['wall_seconds'] / 60:.1f} min of wall time in this session, {result['workers']} workers "
        f"({result['backend']}).\n",
        f"Each run trains {result['budget']} distinct children (the search's proxy reward: validation accuracy). "
        f"Its best child by that reward is trained stand-alone ({result['standalone_epochs']} epochs; the preset's "
        f"retrain setting unless --epochs says otherwise) under {_n_seeds(result)} seed(s) and scored by the mean "
        "on the held-out test split, which no search reads; NASNet-A is trained the same way with each search "
        "seed's stand-alone seeds (the same seeds train every algorithm's cell: runs are paired by seed). The "
        "best-by-proxy of a random sample is the `random` rows.\n",
    ]
    if est is not None:
        lines.append(f"Planned from {est['source']}: {est['proxy_seconds']:.1f} s per proxy child, "
                     f"{est['standalone_seconds']:.1f} s per stand-alone cell, {est['total_seconds'] / 60:.0f} min "
                     f"in all; measured here: {_p(meas['proxy_seconds_mean'])} s and "
                     f"{_p(meas['standalone_seconds_mean'])} s.\n")  # fmt: skip
    lines += [f"Note: {n}\n" for n in result.get("notes", [])]
    rows = [(a, s["best_proxy"]["n"], _pm(s["best_proxy"]), _pm(s["test"]),
             ", ".join(f"{v:.4f}" for _, v in sorted(s["test_by_seed"].items())), s["distinct_best_cells"])
            for a, s in result["algorithms"].items()]  # fmt: skip
    ref = result["reference"]
    rows.append((REFERENCE, ref["test"]["n"], "-", _pm(ref["test"]),
                 ", ".join(f"{v:.4f}" for _, v in sorted(ref["test_by_seed"].items())), 1))  # fmt: skip
    lines += ["## By algorithm (mean ± std over seeds)\n",
              format_table(rows, ["algorithm", "runs", "best proxy reward", "test acc. of the best cell",
                                  "test by seed", "distinct best cells"]) + "\n"]  # fmt: skip
    runs = [(r["run"], r["children"], r["failed"], r["resampled"], _p(r["best_proxy"]),
             (r["best_hash"] or "-")[:12], _p(r["test"]), _p(r["child_seconds"])) for r in result["rows"]]  # fmt: skip
    lines += ["## By run\n", format_table(runs, ["run", "children", "failed", "resampled", "best proxy",
                                                 "best cell", "test acc.", "s per child"]) + "\n"]  # fmt: skip
    tests = []
    for k, s in result["significance"].items():
        q = s["paired"]
        tests.append((k, _p(s["mean_difference"]), _p(s["welch_p"]),
                      f"{_p(s['mannwhitney_p'])} (exact min {_p(s['mannwhitney_min_p'])})", _p(q["mean_difference"]),
                      f"{q['wins']}-{q['losses']}", _p(q["t_p"]),
                      f"{_p(q['wilcoxon_p'])} (exact min {_p(q['wilcoxon_min_p'])})"))  # fmt: skip
    lines += ["## Significance of the test-accuracy differences (two-sided)\n",
              format_table(tests, ["comparison", "mean diff.", "Welch p", "Mann-Whitney p", "paired diff.",
                                   "wins-losses", "paired t p", "Wilcoxon p"]) + "\n",
              f"With {len(result['seeds'])} seeds these tests have little power: a rank test cannot go below the "
              "smallest p its exact form can give (shown beside it; with ties scipy uses a normal approximation), "
              "and a t-test on so few seeds leans on normality it cannot check. A "
              "difference that is not significant here is not evidence of no difference.\n"]  # fmt: skip
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> Path:
    """Best-so-far proxy reward per algorithm (mean, min-max band over seeds) and the best cells' test accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw=dict(width_ratios=[2, 1]))
    for i, algo in enumerate(result["algorithms"]):
        curves = [r["curve"] for r in result["rows"] if r["algorithm"] == algo and r["curve"]]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        y = np.array([[np.nan if v is None else v for v in c[:n]] for c in curves], dtype=float)
        x = np.arange(1, n + 1)
        with np.errstate(all="ignore"):
            left.plot(
                x, np.nanmean(y, axis=0), color=f"C{i}", label=f"{algo} ({len(curves)} seeds)", drawstyle="steps-post"
            )
            left.fill_between(x, np.nanmin(y, axis=0), np.nanmax(y, axis=0), color=f"C{i}", alpha=0.2, step="post")
        tests = [r["test"] for r in result["rows"] if r["algorithm"] == algo and r["test"] is not None]
        right.scatter([i] * len(tests), tests, color=f"C{i}")
        if tests:
            right.hlines(np.mean(tests), i - 0.3, i + 0.3, color=f"C{i}")
    ref = list(result["reference"]["test_by_seed"].values())
    if ref:
        right.axhline(np.mean(ref), color="k", ls="--", lw=1, label=f"{REFERENCE} (mean of {len(ref)})")
        right.legend(fontsize=8)
    left.set(xlabel="children trained", ylabel="best proxy reward so far", title="search (band: min-max over seeds)")
    right.set_xticks(range(len(result["algorithms"])), list(result["algorithms"]))
    right.set(ylabel="test accuracy", title="best cell, stand-alone")
    left.legend()
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return path


def write(result: dict[str, Any], folder: Path, stem: str) -> list[Path]:
    """``folder/stem.{json,md,png}``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.{ext}" for ext in ("json", "md", "png")]
    atomic_write(paths[0], json.dumps(result, indent=1) + "\n")
    atomic_write(paths[1], markdown(result))
    plot(result, paths[2])
    return paths
