"""Must show: on `synthetic`, PPO (the paper's settings) beats random search at equal budget over several seeds."""

from __future__ import annotations

import numpy as np
from nasnet_zoo.search.loop import PRESETS, SearchConfig, run_search
from scipy.stats import mannwhitneyu

SEEDS = range(5)


def _top5(algo: str, seed: int, budget: int) -> float:
    result = run_search(SearchConfig(preset="synthetic", algo=algo, seed=seed, budget=budget))
    assert len(result.records) == budget
    rewards = np.array([r["reward"] for r in result.records])
    return float(np.sort(rewards)[-5:].mean())


def test_ppo_beats_random_search_at_equal_budget() -> None:
    budget = PRESETS["synthetic"].budget
    assert budget == 2000
    ppo = [_top5("ppo", s, budget) for s in SEEDS]
    rand = [_top5("random", s, budget) for s in SEEDS]
    test = mannwhitneyu(ppo, rand, alternative="greater")
    print(f"top-5 mean reward, PPO {np.round(ppo, 3)} vs random {np.round(rand, 3)}: U = {test.statistic}, "
          f"one-sided p = {test.pvalue:.4f}")  # fmt: skip
    assert test.pvalue < 0.05
    assert np.mean(ppo) > np.mean(rand) + 0.03


def test_evolution_is_random_search_until_its_population_is_full() -> None:
    """Why the laptop comparison leaves evolution out at a budget of 20: with the laptop preset's population of
    20, its first 20 proposals are random search's at the same seed; the 21st is a mutation of the population."""
    from nasnet_zoo.search.presets import make_algorithm

    preset = PRESETS["laptop"]
    for seed in range(3):
        rs, re = make_algorithm("random", seed, preset), make_algorithm("evolution", seed, preset)
        for i in range(preset.population + 1):
            a, b = rs.propose(), re.propose()
            assert (a.actions == b.actions) == (i < preset.population), (seed, i)
            rs.observe(a, 0.1 * (i % 7))
            re.observe(b, 0.1 * (i % 7))
