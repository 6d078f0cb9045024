"""The fidelity measurement's statistics on data with a known answer, its resume, its seed range, and the one
function behind ``nasnet-zoo fidelity`` and ``python -m benchmarks.fidelity``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from nasnet_zoo.search import fidelity, tasks
from nasnet_zoo.search import fidelity_stats as fidelity_stats_module
from nasnet_zoo.search.fidelity import JOURNAL, FidelityConfig, plan, run_fidelity
from nasnet_zoo.search.fidelity_stats import fidelity_stats

from benchmarks.fidelity import main as benchmark_main
from nasnet_zoo.errors import ConfigError, RunError
from nasnet_zoo.train.checkpoint import seed_everything


def known(n: int = 400, seeds: int = 4, between: float = 0.05, noise: float = 0.02, alone: float = 0.01, seed=0):
    """Cells of true quality q ~ N(0, between); proxy = q + N(0, noise) per seed; stand-alone = q + N(0, alone)."""
    rng = np.random.default_rng(seed)
    q = rng.normal(0.0, between, n)
    return q, q[:, None] + rng.normal(0.0, noise, (n, seeds)), q + rng.normal(0.0, alone, n)


@pytest.fixture(autouse=True)
def short_bootstrap(monkeypatch):
    monkeypatch.setattr(fidelity_stats_module, "BOOTSTRAP", 200)  # its interval is not what these tests check


def test_stats_recover_a_known_noise_spread_and_rank_agreement():
    between, noise, alone, seeds = 0.05, 0.02, 0.01, 4
    q, proxy, standalone = known(between=between, noise=noise, alone=alone, seeds=seeds)
    s = fidelity_stats(proxy, standalone, params=np.exp(q), reference=int(np.argmax(q)))
    assert s["noise_std"] == pytest.approx(noise, rel=0.05)
    assert s["true_between_std"] == pytest.approx(between, rel=0.1)
    assert s["between_std"] == pytest.approx(math.sqrt(between**2 + noise**2 / seeds), rel=0.1)
    assert s["noise_to_between"] == pytest.approx(noise / math.sqrt(between**2 + noise**2 / seeds), rel=0.1)
    assert s["reliability"] == pytest.approx(between**2 / (between**2 + noise**2), abs=0.04)
    # bivariate normal: tau = 2/pi asin(rho), rho between the S-seed mean and the stand-alone score
    rho = between**2 / math.sqrt((between**2 + noise**2 / seeds) * (between**2 + alone**2))
    c = s["proxy_vs_standalone"]
    assert c["kendall_tau"] == pytest.approx(2 / math.pi * math.asin(rho), abs=0.04)
    assert c["kendall_tau_ci95"][0] < c["kendall_tau"] < c["kendall_tau_ci95"][1]
    assert s["reference_rank"]["standalone"] <= 3 and s["reference_rank"]["of"] == 400
    # "size" that is the quality itself: the stand-alone score follows it as closely as it follows q
    assert s["params_kendall_tau"]["standalone"] == pytest.approx(2 / math.pi * math.asin(
        between / math.sqrt(between**2 + alone**2)), abs=0.04)  # fmt: skip


def test_stats_score_a_cell_by_the_mean_of_its_standalone_seeds_and_measure_their_noise():
    between, noise, alone, seeds, repeats = 0.05, 0.02, 0.04, 2, 3
    q, proxy, _ = known(between=between, noise=noise, seeds=seeds)
    standalone = q[:, None] + np.random.default_rng(7).normal(0.0, alone, (len(q), repeats))
    s = fidelity_stats(proxy, standalone)
    assert s["standalone_seeds"] == repeats and s["standalone_noise_std"] == pytest.approx(alone, rel=0.06)
    assert s["standalone_reliability"] == pytest.approx(between**2 / (between**2 + alone**2), abs=0.05)
    rho = between**2 / math.sqrt((between**2 + noise**2 / seeds) * (between**2 + alone**2 / repeats))
    assert s["proxy_vs_standalone"]["kendall_tau"] == pytest.approx(2 / math.pi * math.asin(rho), abs=0.04)
    one = fidelity_stats(proxy, standalone[:, 0])  # one seed: a noisier yardstick, and no noise of its own
    assert one["proxy_vs_standalone"]["kendall_tau"] < s["proxy_vs_standalone"]["kendall_tau"] - 0.05
    assert one["standalone_seeds"] == 1 and "standalone_noise_std" not in one


def test_stats_of_pure_noise_find_nothing():
    rng = np.random.default_rng(1)
    proxy = rng.normal(0.5, 0.02, (300, 2))  # no cell differs from another
    s = fidelity_stats(proxy, rng.normal(0.5, 0.05, 300))
    assert s["true_between_std"] < 0.005 and s["reliability"] < 0.05
    assert s["noise_to_between"] == pytest.approx(math.sqrt(2), rel=0.1)  # the mean of 2 seeds: noise / sqrt 2
    assert abs(s["proxy_vs_standalone"]["kendall_tau"]) < 0.08


def test_stats_exact_on_two_seeds():
    proxy = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]])  # every cell's two runs differ by 0.1
    s = fidelity_stats(proxy, np.array([0.2, 0.1, 0.4, 0.3]), reference=0)
    assert s["noise_std"] == pytest.approx(0.1 / math.sqrt(2))
    assert s["seed_vs_seed_kendall_tau"] == pytest.approx(1.0)
    assert s["proxy_vs_standalone"]["kendall_tau"] == pytest.approx(2 / 6)  # 4 concordant, 2 discordant pairs
    assert s["reference_rank"] == dict(proxy=4, standalone=3, of=4)


def config(tmp_path: Path, **kw) -> FidelityConfig:
    return FidelityConfig(**{**dict(preset="synthetic", cells=4, seeds=2, seed=3, out=tmp_path / "f", workers=1,
                                    backend="serial"), **kw})  # fmt: skip


def test_a_rerun_evaluates_only_what_the_journal_lacks(tmp_path, monkeypatch):
    calls: list[tuple[str, int]] = []
    for method in ("reward", "test_accuracy"):
        real = getattr(tasks.SyntheticTask, method)
        counted = lambda self, g, seed, _m=method, _r=real: calls.append((_m, seed)) or _r(self, g, seed)  # noqa: E731
        monkeypatch.setattr(tasks.SyntheticTask, method, counted)
    first = run_fidelity(config(tmp_path))
    every = len(plan(config(tmp_path)))
    assert len(calls) == every == 5 * 3 and first["cells_complete"] == 5
    journal = tmp_path / "f" / JOURNAL
    lines = journal.read_text().splitlines()
    failed = {**json.loads(lines[5]), "score": None, "error": "boom"}  # a failed evaluation is tried again
    journal.write_text("\n".join([*lines[:5], json.dumps(failed)]) + "\n" + lines[6][:20])  # and a torn last line
    calls.clear()
    again = run_fidelity(config(tmp_path))
    assert len(calls) == every - 5
    assert {s for _, s in calls} == {e["seed"] for e in plan(config(tmp_path))[5:]}
    timeless = lambda rows: [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]  # noqa: E731
    assert again["stats"] == first["stats"] and timeless(again["rows"]) == timeless(first["rows"])
    calls.clear()
    run_fidelity(config(tmp_path))
    assert calls == []


def test_several_standalone_seeds_each_train_once_and_their_mean_scores_the_cell(tmp_path):
    result = run_fidelity(config(tmp_path, standalone_seeds=3))
    lines = [json.loads(line) for line in (tmp_path / "f" / JOURNAL).read_text().splitlines()]
    alone = [e for e in lines if e["kind"] == fidelity.STANDALONE]
    assert len(alone) == 5 * 3 and len({e["seed"] for e in lines}) == len(lines)  # every run its own seed
    for row in result["rows"]:
        scores = [e["score"] for e in alone if e["hash"] == row["hash"]]
        assert row["standalone"] == scores and row["standalone_test"] == pytest.approx(np.mean(scores))
    assert result["standalone_seeds"] == 3 and result["stats"]["standalone_seeds"] == 3
    assert "stand-alone noise std" in fidelity_stats_module.markdown(result)
    with pytest.raises(RunError, match="another fidelity measurement"):  # a resume refuses other settings
        run_fidelity(config(tmp_path, standalone_seeds=2))
    with pytest.raises(ConfigError, match="standalone_seeds"):
        config(tmp_path, standalone_seeds=0)


def test_cell_seeds_outside_numpys_seed_range_are_refused():
    cells = 30
    top = (fidelity.MAX_SEED - fidelity._seed(0, fidelity.STANDALONE, 0, cells)) // fidelity.SEED_STRIDE
    FidelityConfig(seed=top, cells=cells)
    highest = max(e["seed"] for e in plan(FidelityConfig(seed=top, cells=cells)))
    seed_everything(highest)  # what fit does with a child's seed: the largest one still works
    for bad in (top + 1, -1):
        with pytest.raises(ConfigError, match="numpy's seed range"):
            FidelityConfig(seed=bad, cells=cells)
    assert (
        max(e["seed"] for e in plan(FidelityConfig(seed=top, cells=cells))) + fidelity.SEED_STRIDE > fidelity.MAX_SEED
    )
    with pytest.raises(ValueError):  # the bound is numpy's own: one past it fails where fit seeds
        seed_everything(fidelity.MAX_SEED + 1)


def test_the_benchmark_is_the_cli_command_writing_to_results(tmp_path, capsys):
    argv = ["--preset", "synthetic", "--cells", "3", "--seeds", "2", "--seed", "5", "--workers", "1", "--backend",
            "serial", "--out", str(tmp_path / "run"), "--results", str(tmp_path / "results")]  # fmt: skip
    assert benchmark_main(argv) == 0
    stem = tmp_path / "results" / "fidelity-synthetic-seed5"
    result = json.loads(stem.with_suffix(".json").read_text())
    assert result["command"] == "python -m benchmarks.fidelity " + " ".join(argv) and result["cells_complete"] == 4
    assert result["rows"] == json.loads((tmp_path / "run" / "fidelity.json").read_text())["rows"]
    md = stem.with_suffix(".md").read_text()
    assert md.startswith("# Proxy fidelity: preset `synthetic`, cell seed 5") and "`python -m benchmarks" in md
    assert stem.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert benchmark_main([*argv[:6], "--seed", "99999", *argv[8:]]) == 1
    assert "numpy's seed range" in capsys.readouterr().err
