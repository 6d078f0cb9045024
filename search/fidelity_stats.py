"""The statistics of a proxy-fidelity measurement, its markdown table and its scatter plot (pure functions).

Given per cell S proxy scores (``proxy``, cells x S) and T >= 1 stand-alone test scores (``standalone``, cells x
T, or one per cell); the stand-alone score of a cell is the mean of its T:

* ``noise_std``: the proxy's seed-to-seed std, pooled over cells (root of the mean within-cell variance);
* ``between_std``: the std of the cells' mean proxy scores; ``true_between_std`` removes the noise the S-seed
  mean still carries (``sqrt(var(means) - noise^2 / S)``, 0 when negative);
* ``reliability``: the share of one proxy run's variance that is the cell (``true^2 / (true^2 + noise^2)``, the
  intraclass correlation); ``reliability_of_mean`` the same for the S-seed mean;
* Kendall tau and Spearman rho between the mean proxy and the stand-alone score, with p-values and percentile
  bootstrap intervals over cells;
* ``top_k_overlap``: the share of the proxy's top quarter that is also the stand-alone top quarter (and what
  chance alone would give);
* the reference cell's (NASNet-A's) rank under the proxy and stand-alone (1 = best);
* Kendall tau of the proxy and of the stand-alone score with parameters and with mult-adds: is the proxy only
  measuring size?
* with T >= 2, the same noise, spread and reliability of the stand-alone score (``standalone_noise_std``, ...):
  how well the yardstick itself ranks the cells.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as st

from nasnet_zoo.files import atomic_write

BOOTSTRAP = 2000


def _rank(x: np.ndarray, i: int) -> int:
    """1 + how many score strictly higher than x[i]."""
    return int(1 + np.sum(x > x[i]))


def _corr(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    tau, p_tau = st.kendalltau(a, b)
    rho, p_rho = st.spearmanr(a, b)
    return dict(kendall_tau=float(tau), kendall_p=float(p_tau), spearman=float(rho), spearman_p=float(p_rho))


def _bootstrap(a: np.ndarray, b: np.ndarray, seed: int) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    taus, rhos = [], []
    for _ in range(BOOTSTRAP):
        i = rng.integers(len(a), size=len(a))
        if np.ptp(a[i]) == 0 or np.ptp(b[i]) == 0:
            continue
        taus.append(st.kendalltau(a[i], b[i])[0])
        rhos.append(st.spearmanr(a[i], b[i])[0])
    ci = lambda v: [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))]  # noqa: E731
    return dict(kendall_tau_ci95=ci(taus), spearman_ci95=ci(rhos))


def _spread(scores: np.ndarray) -> dict[str, float]:
    """Seed noise, spread between cells and reliability of a (cells, repeats) score with repeats >= 2."""
    s = scores.shape[1]
    mean = scores.mean(axis=1)
    noise = float(np.sqrt(np.mean(scores.var(axis=1, ddof=1))))
    between = float(mean.std(ddof=1))
    true_var = max(0.0, between**2 - noise**2 / s)
    return dict(noise_std=noise, between_std=between, true_between_std=float(np.sqrt(true_var)),
                noise_to_between=noise / between if between else float("inf"),
                reliability=true_var / (true_var + noise**2) if true_var + noise**2 else 0.0,
                reliability_of_mean=true_var / between**2 if between else 0.0)  # fmt: skip


def fidelity_stats(
    proxy: np.ndarray,
    standalone: np.ndarray,
    params: np.ndarray | None = None,
    mult_adds: np.ndarray | None = None,
    reference: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """See the module docstring. ``proxy`` is (cells, S) with S >= 2; ``reference`` indexes NASNet-A's row."""
    proxy, repeats = np.asarray(proxy, dtype=float), np.asarray(standalone, dtype=float)
    repeats = repeats.reshape(len(repeats), -1)
    n, s = proxy.shape
    mean, standalone = proxy.mean(axis=1), repeats.mean(axis=1)
    k = max(1, round(n / 4))
    top_proxy, top_alone = set(np.argsort(-mean)[:k]), set(np.argsort(-standalone)[:k])
    out: dict[str, Any] = dict(
        cells=n, seeds=s, **_spread(proxy), standalone_seeds=repeats.shape[1],
        **({f"standalone_{name}": v for name, v in _spread(repeats).items()} if repeats.shape[1] > 1 else {}),
        proxy_vs_standalone={**_corr(mean, standalone), **_bootstrap(mean, standalone, seed)},
        seed_vs_seed_kendall_tau=float(st.kendalltau(proxy[:, 0], proxy[:, 1])[0]),
        top_k=k, top_k_overlap=len(top_proxy & top_alone) / k, top_k_overlap_by_chance=k / n,
        standalone_mean=float(standalone.mean()), standalone_std=float(standalone.std(ddof=1)),
        proxy_mean=float(mean.mean()),
    )  # fmt: skip
    if reference is not None:
        out["reference_rank"] = dict(proxy=_rank(mean, reference), standalone=_rank(standalone, reference), of=n)
    for name, size in (("params", params), ("mult_adds", mult_adds)):
        if size is not None:
            out[f"{name}_kendall_tau"] = dict(proxy=float(st.kendalltau(mean, size)[0]),
                                              standalone=float(st.kendalltau(standalone, size)[0]))  # fmt: skip
    return out


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    """fidelity.md: the statistics, then one row per cell, best stand-alone first."""
    s = result["stats"]
    lines = [f"# Proxy fidelity: preset `{result['preset']}`, cell seed {result['seed']}", ""]
    lines.append(f"{result['cells']} uniformly random cells + NASNet-A; proxy scored under {result['seeds']} seeds; "
                 f"stand-alone: {result['standalone_epochs']} epochs under {result.get('standalone_seeds', 1)} "
                 "seed(s) (their mean is the cell's score), scored on the held-out test split. "
                 f"{result['cells_complete']} cells complete, {result['failed_evaluations']} evaluations failed. "
                 f"Mean seconds per proxy child {_f(result['proxy_seconds_mean'], 1)}, per stand-alone child "
                 f"{_f(result['standalone_seconds_mean'], 1)} (one torch thread each).")  # fmt: skip
    lines.append("")
    if s is not None:
        c = s["proxy_vs_standalone"]
        ref = s.get("reference_rank")
        rows = [
            ("Kendall tau, proxy vs stand-alone", f"{c['kendall_tau']:.3f} (p = {c['kendall_p']:.2g}), 95 % CI "
             f"[{c['kendall_tau_ci95'][0]:.3f}, {c['kendall_tau_ci95'][1]:.3f}]"),
            ("Spearman rho", f"{c['spearman']:.3f} (p = {c['spearman_p']:.2g}), 95 % CI "
             f"[{c['spearman_ci95'][0]:.3f}, {c['spearman_ci95'][1]:.3f}]"),
            ("proxy noise std (seed to seed)", _f(s["noise_std"], 4)),
            ("between-cell std (of the mean proxy)", f"{s['between_std']:.4f} (noise removed: "
             f"{s['true_between_std']:.4f})"),
            ("noise / between-cell std", _f(s["noise_to_between"])),
            ("reliability (one run; of the mean)", f"{s['reliability']:.3f}; {s['reliability_of_mean']:.3f}"),
            ("Kendall tau, proxy seed 0 vs seed 1", _f(s["seed_vs_seed_kendall_tau"])),
            (f"top-{s['top_k']} overlap (chance)", f"{s['top_k_overlap']:.2f} ({s['top_k_overlap_by_chance']:.2f})"),
            ("NASNet-A's rank, proxy / stand-alone", "-" if ref is None else
             f"{ref['proxy']} / {ref['standalone']} of {ref['of']}"),
            ("stand-alone test accuracy, mean (std)", f"{s['standalone_mean']:.4f} ({s['standalone_std']:.4f})"),
        ]  # fmt: skip
        if "standalone_noise_std" in s:
            rows += [
                ("stand-alone noise std (seed to seed)", _f(s["standalone_noise_std"], 4)),
                ("stand-alone noise / between-cell std", _f(s["standalone_noise_to_between"])),
                ("stand-alone reliability (one run; of the mean)",
                 f"{s['standalone_reliability']:.3f}; {s['standalone_reliability_of_mean']:.3f}"),
            ]  # fmt: skip
        for name in ("params", "mult_adds"):
            if f"{name}_kendall_tau" in s:
                t = s[f"{name}_kendall_tau"]
                rows.append(
                    (f"Kendall tau with {name}: proxy / stand-alone", f"{t['proxy']:.3f} / {t['standalone']:.3f}")
                )
        lines += ["| statistic | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows] + [""]
    lines += [
        "| cell | hash | proxy (per seed) | stand-alone test (per seed) | params k | mult-adds M |",
        "|---|---|---|---|---|---|",
    ]
    order = sorted(result["rows"], key=lambda r: -1 if r["standalone_test"] is None else -r["standalone_test"])
    for r in order:
        proxy = ", ".join(_f(p) for p in r["proxy"])
        alone = r.get("standalone", [r["standalone_test"]])
        alone = _f(r["standalone_test"]) + (f" ({', '.join(_f(a) for a in alone)})" if len(alone) > 1 else "")
        params = "-" if r["params"] is None else f"{r['params'] / 1e3:.0f}"
        madds = "-" if r["mult_adds"] is None else f"{r['mult_adds'] / 1e6:.2f}"
        lines.append(f"| {r['label']} | {r['hash']} | {proxy} | {alone} | {params} | {madds} |")
    return "\n".join(lines) + "\n"


def scatter(result: dict[str, Any], path: Path) -> Path | None:
    """fidelity.png: mean proxy (bars: the seeds' range) against stand-alone test, NASNet-A marked; and both
    against parameters."""
    rows = [r for r in result["rows"] if r["standalone_test"] is not None and None not in r["proxy"]]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    proxy = np.array([r["proxy"] for r in rows])
    alone = np.array([r["standalone_test"] for r in rows])
    mean = proxy.mean(1)
    ref = [i for i, r in enumerate(rows) if r["label"] == "NASNet-A"]
    with_size = rows[0]["params"] is not None
    fig, axes = plt.subplots(1, 2 if with_size else 1, figsize=(11 if with_size else 5.5, 4.2), squeeze=False)
    ax = axes[0, 0]
    ax.errorbar(mean, alone, xerr=[mean - proxy.min(1), proxy.max(1) - mean], fmt="o", ms=4, alpha=0.7, lw=0.8)
    if ref:
        ax.plot(mean[ref], alone[ref], "r*", ms=14, label="NASNet-A")
        ax.legend(loc="lower right")
    s = result["stats"]
    tau = "" if s is None else f", Kendall tau {s['proxy_vs_standalone']['kendall_tau']:.2f}"
    ax.set(xlabel=f"proxy reward (mean of {result['seeds']} seeds; bars: range)",
           ylabel=f"stand-alone test accuracy ({result['standalone_epochs']} epochs, "
                  f"mean of {result.get('standalone_seeds', 1)})",
           title=f"{result['preset']}, cell seed {result['seed']}{tau}")  # fmt: skip
    ax.grid(alpha=0.3)
    if with_size:
        ax = axes[0, 1]
        params = np.array([r["params"] for r in rows]) / 1e3
        ax.scatter(params, mean, s=14, label="proxy (mean)")
        ax.scatter(params, alone, s=14, marker="s", label="stand-alone test")
        ax.set(xlabel="parameters (k)", ylabel="accuracy", title="against size", xscale="log")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path
