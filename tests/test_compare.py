"""benchmarks.compare at smoke size: the synthetic task (its stand-alone score is the noise-free reward, so every
number of the report can be checked against what it must be), budget 2 and 3, one and two seeds."""

from __future__ import annotations

import dataclasses
import json

import pytest
from nasnet_zoo.search import report
from nasnet_zoo.search.report import read_journal
from nasnet_zoo.search.space import canonical_hash
from nasnet_zoo.search.tasks import SyntheticTask
from scipy import stats as st

from benchmarks.compare import STANDALONE, CompareConfig, run_compare, standalone_seed
from benchmarks.compare_report import best_so_far, significance
from nasnet_zoo.errors import ConfigError
from nasnet_zoo.genotype import NASNET_A, Genotype
from tests.search_testing import Misleading, test_reads

ALGOS = ["ppo", "random", "evolution"]


def config(tmp_path, budget=2, seeds=(0,), **kw):
    return CompareConfig(preset="synthetic", budget=budget, seeds=list(seeds), algorithms=ALGOS, workers=1,
                         backend="serial", out=tmp_path / "runs", results=tmp_path / "results",
                         command="test", **kw)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class SeedNoisy(SyntheticTask):
    """A stand-alone score that moves with the training seed, by a known amount."""

    def test_accuracy(self, genotype: Genotype, seed: int) -> float:
        return self.expected_reward(genotype) + (seed % 7) / 1000


@pytest.fixture
def no_search_png(monkeypatch):
    """Each search run redraws its folder's search.png (a second of matplotlib apiece); not what is tested here."""
    monkeypatch.setattr(report, "plot", lambda runs, path: path)


def test_compare_writes_consistent_outputs_and_resumes(tmp_path, no_search_png):
    result = run_compare(config(tmp_path))
    paths = [tmp_path / "results" / f"compare-synthetic.{ext}" for ext in ("json", "md", "png")]
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(paths[0].read_text())["budget"] == 2
    task = SyntheticTask()
    assert len(result["rows"]) == 3
    for row in result["rows"]:
        records = read_journal(tmp_path / "runs" / row["run"] / "journal.jsonl")
        assert row["children"] == len(records) == 2
        assert row["best_proxy"] == max(r["reward"] for r in records) == row["curve"][-1]
        best = max(records, key=lambda r: r["reward"])
        assert row["best_hash"] == best["hash"] == canonical_hash(Genotype.from_dict(row["genotype"]))
        # stand-alone = the noise-free reward of the chosen cell: the right cell was trained and scored on test
        assert row["test"] == pytest.approx(task.expected_reward(Genotype.from_dict(best["genotype"])))
        assert row["standalone_seeds"] == [standalone_seed(0)]
    assert result["reference"]["test_by_seed"] == {0: pytest.approx(task.expected_reward(NASNET_A))}
    for algo, s in result["algorithms"].items():
        assert s["test"]["mean"] == pytest.approx(next(r["test"] for r in result["rows"] if r["algorithm"] == algo))
    assert result["significance"]["ppo vs random"]["paired"]["n"] == 1
    assert "| ppo-seed0 " in paths[1].read_text() and "never mutates" in paths[1].read_text()

    lines = (tmp_path / "runs" / STANDALONE).read_text().splitlines()
    assert len(lines) == len({(json.loads(x)["hash"], json.loads(x)["seed"]) for x in lines}) <= 4
    again = run_compare(config(tmp_path))  # the same command: nothing is trained again
    assert (tmp_path / "runs" / STANDALONE).read_text().splitlines() == lines
    assert [r["test"] for r in again["rows"]] == [r["test"] for r in result["rows"]]

    longer = run_compare(config(tmp_path, budget=3, seeds=(0, 1)))  # a larger budget and a new seed continue it
    assert [r["children"] for r in longer["rows"]] == [3] * 6
    assert longer["rows"][0]["curve"][:2] == result["rows"][0]["curve"]
    assert longer["significance"]["ppo vs random"]["paired"]["n"] == 2


def test_several_standalone_seeds_score_each_cell_by_their_mean(tmp_path, no_search_png):
    result = run_compare(config(tmp_path, seeds=(0, 1), standalone_seeds=3, task=SeedNoisy()))
    seeds = {s: [standalone_seed(s, r) for r in range(3)] for s in (0, 1)}
    assert len({x for v in seeds.values() for x in v}) == 6  # every stand-alone run its own seed
    noise = {s: sum(x % 7 for x in v) / 3000 for s, v in seeds.items()}
    task = SyntheticTask()
    for row in result["rows"]:
        genotype = Genotype.from_dict(row["genotype"])
        assert row["standalone_seeds"] == seeds[row["seed"]]
        assert row["test_by_standalone_seed"] == pytest.approx(
            [task.expected_reward(genotype) + x % 7 / 1000 for x in seeds[row["seed"]]])  # fmt: skip
        assert row["test"] == pytest.approx(task.expected_reward(genotype) + noise[row["seed"]])
    ref = result["reference"]["test_by_seed"]
    assert ref == {s: pytest.approx(task.expected_reward(NASNET_A) + noise[s]) for s in (0, 1)}
    lines = [json.loads(x) for x in (tmp_path / "runs" / STANDALONE).read_text().splitlines()]
    assert len(lines) == len({(x["hash"], x["seed"]) for x in lines}) and {x["seed"] for x in lines} == {
        x for v in seeds.values() for x in v}  # fmt: skip


def test_the_best_cell_is_chosen_on_validation_and_only_it_is_tested(tmp_path, no_search_png):
    test_reads.clear()
    c = config(tmp_path, budget=6)
    c.task = Misleading()
    result = run_compare(c)
    chosen = {canonical_hash(NASNET_A)}
    for row in result["rows"]:
        records = read_journal(tmp_path / "runs" / row["run"] / "journal.jsonl")
        best = max(records, key=lambda r: r["reward"])  # the best on validation, the worst on test among them
        assert row["best_hash"] == best["hash"] and row["test"] == pytest.approx(1.0 - best["reward"])
        assert row["test"] == min(1.0 - r["reward"] for r in records)
        chosen.add(best["hash"])
    assert sorted(test_reads) == sorted(chosen)  # the test split: once per chosen cell, never by a search


def test_significance_matches_scipy():
    a, b = {0: 0.50, 1: 0.61, 2: 0.72}, {0: 0.40, 1: 0.45, 2: 0.48}
    s = significance(a, b)
    assert s["welch_p"] == pytest.approx(st.ttest_ind(list(a.values()), list(b.values()), equal_var=False).pvalue)
    assert s["mannwhitney_p"] == pytest.approx(0.1) and s["mannwhitney_min_p"] == pytest.approx(0.1)
    assert s["paired"]["wins"] == 3 and s["paired"]["wilcoxon_min_p"] == pytest.approx(0.25)
    assert s["paired"]["t_p"] == pytest.approx(st.ttest_rel(list(a.values()), list(b.values())).pvalue)
    assert significance({0: 0.5}, {0: 0.5})["paired"]["wilcoxon_p"] is None  # no difference: no test


def test_best_so_far_carries_over_failures():
    rewards = [None, 0.2, None, 0.1, 0.3]
    assert best_so_far([{"reward": r} for r in rewards]) == [None, 0.2, 0.2, 0.2, 0.3]


@pytest.mark.parametrize(
    "change",
    [dict(algorithms=["sgd"]), dict(seeds=[0, 0]), dict(budget=0), dict(seeds=[5000]), dict(standalone_seeds=0)],
)
def test_bad_settings_are_config_errors(tmp_path, change):
    with pytest.raises(ConfigError):
        CompareConfig(**{**dict(preset="synthetic", out=tmp_path), **change})
