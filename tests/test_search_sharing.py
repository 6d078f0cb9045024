"""Weight-sharing search: the stand-alone search's algorithms and files, a resume that loses nothing."""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil

import pytest
import torch
from nasnet_zoo.search import ppo, report, sharing
from nasnet_zoo.search.loop import SearchConfig
from nasnet_zoo.search.shared_training import SharingConfig, Stream, score, task_data
from nasnet_zoo.search.space import random_genotype
from nasnet_zoo.search.tasks import DigitsTask

from nasnet_zoo.errors import ConfigError
from nasnet_zoo.genotype import NASNET_A, Genotype
from nasnet_zoo.runtime import torch_threads
from tests.helpers import DEVICES

TASK = DigitsTask(filters=4, batch_size=32)  # a small supernet: 3 cells of F = 4
TINY = SharingConfig(shared_steps=3, children=3, reward_batch_size=40, final=2)
KEYS = ("child", "hash", "reward", "actions", "policy_version", "log_prob", "phase", "step")


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(sharing.SHARING, "digits-ws", TINY)


@pytest.fixture(scope="module", params=DEVICES)
def straight(tmp_path_factory, request):
    """An uninterrupted run on each device: its folder, its journal lines and the device."""
    out, kept = tmp_path_factory.mktemp("straight"), sharing.SHARING["digits-ws"]
    sharing.SHARING["digits-ws"] = TINY
    try:
        with torch_threads(1):
            _run(out, device=request.param)
    finally:
        sharing.SHARING["digits-ws"] = kept
    return out, _lines(out), request.param


def _run(out, resume=False, algo="ppo", budget=7, device="cpu"):
    config = SearchConfig(preset="digits-ws", algo=algo, budget=budget, out=out, resume=resume, task=TASK)
    return sharing.run_sharing(config, device=device)


def _lines(out, algo="ppo"):
    run = out / f"{algo}-ws-seed0"
    search = report.read_journal(run / "search" / report.JOURNAL)
    final = report.read_journal(run / report.JOURNAL)
    return [{k: r[k] for k in KEYS} for r in search + final]


def test_a_run_leaves_the_search_outputs_that_retrain_reads(straight):
    tmp_path = straight[0]
    search = report.read_journal(tmp_path / "ppo-ws-seed0" / "search" / report.JOURNAL)
    assert [r["child"] for r in search] == list(range(7)) and {r["phase"] for r in search} == {"search"}
    assert len({r["hash"] for r in search}) == 7  # distinct cells, as the stand-alone search
    finals = report.read_journal(tmp_path / "ppo-ws-seed0" / report.JOURNAL)
    assert len(finals) == 2 and {r["phase"] for r in finals} == {"final"}
    assert len({r["hash"] for r in finals}) == 2  # distinct cells of the final policy (rewarded in the search or not)
    for name in ("best.json", "topk.json", "search.png", "summary.md"):
        assert (tmp_path / name).is_file()
    best = max(finals, key=lambda r: r["reward"])
    assert Genotype.load(tmp_path / "best.json") == Genotype.from_dict(best["genotype"])  # ranked on the final weights
    assert json.loads((tmp_path / "ppo-ws-seed0" / "run.json").read_text())["task"]["class"] == "DigitsTask"
    timing = json.loads((tmp_path / "ppo-ws-seed0" / "search" / "timing.json").read_text())
    assert timing["controller"] > 0 and timing["disk"] > 0 and timing["shared_steps"] == 9  # 3 rounds of 3 steps


def test_a_converged_policy_still_derives_its_cell(tmp_path, tiny, monkeypatch, one_thread):
    """A policy that proposes one cell only: the search stops (converged), and the derive step scores that cell,
    although the search rewarded it already, rather than deriving nothing."""
    real, fixed = sharing._Run.propose, []

    def one_cell(self):
        if not fixed:
            fixed.append(real(self))
        return fixed[0]

    monkeypatch.setattr(sharing._Run, "propose", one_cell)
    result = _run(tmp_path, algo="random")
    search = report.read_journal(tmp_path / "random-ws-seed0" / "search" / report.JOURNAL)
    finals = report.read_journal(tmp_path / "random-ws-seed0" / report.JOURNAL)
    assert len(search) == 1 and [r["hash"] for r in finals] == [search[0]["hash"]]
    assert Genotype.load(tmp_path / "best.json") == Genotype.from_dict(search[0]["genotype"])
    assert any("converged" in n for n in result.notes) and any("1 distinct cells" in n for n in result.notes)


def test_a_finished_run_opened_again_keeps_its_time(straight, tiny, tmp_path, one_thread):
    """Resuming a finished run does nothing, and its timing keeps the derive step's time (it is checkpointed)."""
    shutil.copytree(straight[0], tmp_path / "again")
    timing = tmp_path / "again" / "ppo-ws-seed0" / "search" / "timing.json"
    before = json.loads(timing.read_text())
    _run(tmp_path / "again", resume=True, device=straight[2])
    assert _lines(tmp_path / "again") == straight[1]
    assert json.loads(timing.read_text())["elapsed"] >= before["elapsed"]


class Stop(Exception):
    """Stands for the process dying (kill -9 leaves the disk as it is at that moment)."""


@pytest.mark.parametrize("where,at", [("reward", 5), ("reward", 9), ("shared", 5)],
                         ids=["mid-round", "in-the-derive-step", "in-shared-steps"])  # fmt: skip
def test_resume_after_an_interruption_loses_nothing_and_repeats_nothing(tmp_path, tiny, monkeypatch, one_thread,
                                                                        straight, where, at):  # fmt: skip
    _, expected, device = straight

    name = {"reward": "score", "shared": "shared_step"}[where]
    real, calls = getattr(sharing, name), []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            raise Stop
        return real(*args, **kwargs)

    monkeypatch.setattr(sharing, name, dying)
    with pytest.raises(Stop):
        _run(tmp_path / "cut", device=device)
    monkeypatch.setattr(sharing, name, real)
    journaled = len(_lines(tmp_path / "cut"))
    assert 0 < journaled < len(expected)
    journal = tmp_path / "cut" / "ppo-ws-seed0" / "search" / report.JOURNAL
    before = journal.read_bytes()
    with journal.open("ab") as f:
        f.write(b'{"child": 99, "hash": "torn by the cr')  # a line torn by a crash mid-write

    rewarded = []
    monkeypatch.setattr(sharing, "score", lambda *a, **k: rewarded.append(1) or score(*a, **k))
    _run(tmp_path / "cut", resume=True, device=device)
    assert _lines(tmp_path / "cut") == expected  # the same children, rewards and policy, child for child
    assert journal.read_bytes().startswith(before)  # nothing journaled was dropped or rewritten
    assert len(rewarded) == len(expected) - journaled  # and nothing rewarded twice


def test_a_run_stopped_by_its_time_budget_checkpoints_there_and_resumes_to_the_uninterrupted_run(
    tmp_path, tiny, one_thread, straight, monkeypatch
):
    """``max_minutes`` stops between two steps or children; the stop is checkpointed with the time spent, so a
    resume continues from there (nothing redone) and ends where an uninterrupted run ends."""
    _, expected, device = straight
    config = SearchConfig(preset="digits-ws", budget=7, out=tmp_path, task=TASK, max_minutes=0.05 / 60)
    sharing.run_sharing(config, device=device)
    timing = json.loads((tmp_path / "ppo-ws-seed0" / "search" / "timing.json").read_text())
    assert timing["elapsed"] >= 0.05 and timing["shared_steps"] + timing["children"] > 0
    assert len(_lines(tmp_path)) < len(expected)
    steps, real = [], sharing.shared_step
    monkeypatch.setattr(sharing, "shared_step", lambda *a, **k: steps.append(1) or real(*a, **k))
    sharing.run_sharing(dataclasses.replace(config, resume=True, max_minutes=60), device=device)
    assert _lines(tmp_path) == expected
    assert timing["shared_steps"] + len(steps) == 9  # no step done twice


def test_rs_ws_samples_uniformly_and_reinforce_uses_the_same_controller(tmp_path, tiny, one_thread):
    _run(tmp_path, algo="random", budget=3)
    _run(tmp_path, algo="reinforce", budget=3)
    assert {p.parent.name for p in tmp_path.glob(f"*/{report.JOURNAL}")} == {"random-ws-seed0", "reinforce-ws-seed0"}
    run = sharing._Run(SearchConfig(preset="digits-ws", algo="ppo", task=TASK), 5, torch.device("cpu"))
    assert isinstance(run.algorithm, ppo.PolicyGradient)  # the stand-alone search's PPO and controller


@pytest.mark.parametrize("bn", ["batch", "recalibrate", "running"])
def test_a_reward_leaves_the_supernet_as_it_was(bn, one_thread):
    net = sharing.build_supernet(TASK)
    train, val = task_data(TASK)
    g = random_genotype(0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    calibrate = Stream(train, 32, 0, torch.device("cpu")).sample(2, 0)
    acc = score(net, g, Stream(val, 40, 0, torch.device("cpu")).sample(1, 0), bn, calibrate)
    assert 0 <= acc <= 1 and net.training
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_stream_gives_the_batch_of_any_step_without_replaying_the_ones_before():
    train, _ = task_data(TASK)
    a, b = Stream(train, 32, 0, torch.device("cpu")), Stream(train, 32, 0, torch.device("cpu"))
    seq = [a.batch(s)[1] for s in range(50)]
    assert torch.equal(b.batch(47)[1], seq[47]) and not torch.equal(seq[0], seq[a.per_epoch])  # reshuffled per epoch


WARM = SharingConfig(shared_steps=3, children=3, reward_batch_size=40, final=2, uniform_steps=4, lr=0.5, lr_warmup=2,
                     filters=2)  # fmt: skip


def test_uniform_warm_up_lr_warm_up_and_a_narrower_supernet(tmp_path, monkeypatch, one_thread):
    """Uniform steps come before the first children and leave the controller alone; the lr warms up to the
    configured peak, then decays; a narrower supernet trains and reloads from its run folder."""
    monkeypatch.setitem(sharing.SHARING, "digits-ws", WARM)
    lrs, genotypes = [], []
    real = sharing.shared_step

    def recording(net, opt, genotype, x, y, lr, *rest):
        lrs.append(lr)
        genotypes.append(genotype)
        return real(net, opt, genotype, x, y, lr, *rest)

    monkeypatch.setattr(sharing, "shared_step", recording)
    proposals = []
    real_propose = sharing._Run.propose
    monkeypatch.setattr(sharing._Run, "propose", lambda self: proposals.append(1) or real_propose(self))
    _run(tmp_path, budget=6)  # 4 uniform steps, then 2 rounds of 3 steps and 3 children
    search = report.read_journal(tmp_path / "ppo-ws-seed0" / "search" / report.JOURNAL)
    assert [r["step"] for r in search] == [7, 7, 7, 10, 10, 10]  # the first children after 4 + 3 steps
    assert len(lrs) == 10 and lrs[:3] == [0.25, 0.5, 0.5] and all(a > b for a, b in itertools.pairwise(lrs[2:]))
    assert len(proposals) == 6 + 6 + 2  # shared steps after the warm-up, children, final cells: none before
    uniform = [sharing.random_genotype(sharing.derive_seed(0, s) + (1 << 42)) for s in range(4)]
    assert genotypes[:4] == uniform
    net, task = sharing.load_supernet(tmp_path / "ppo-ws-seed0")
    assert net.plan[0].filters == 2 and task == TASK and task.filters == 4  # the journaled children stay the task's


def test_resume_inside_the_uniform_warm_up_loses_nothing(tmp_path, monkeypatch, one_thread):
    monkeypatch.setitem(sharing.SHARING, "digits-ws", WARM)
    _run(tmp_path / "straight", budget=6)
    expected = _lines(tmp_path / "straight")
    real, calls = sharing.shared_step, []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise Stop
        return real(*args, **kwargs)

    monkeypatch.setattr(sharing, "shared_step", dying)
    with pytest.raises(Stop):
        _run(tmp_path / "cut", budget=6)
    monkeypatch.setattr(sharing, "shared_step", real)
    _run(tmp_path / "cut", budget=6, resume=True)
    assert _lines(tmp_path / "cut") == expected


@pytest.mark.parametrize("device", DEVICES)
def test_adam_trains_the_shared_weights_and_its_moments_survive_a_resume(tmp_path, monkeypatch, one_thread, device):
    """With ``optimizer="adam"`` a resumed run ends with the very weights of an uninterrupted one (Adam's moments
    and step counts are checkpointed, not restarted)."""
    monkeypatch.setitem(sharing.SHARING, "digits-ws", dataclasses.replace(TINY, optimizer="adam", lr=0.01))
    _run(tmp_path / "straight", device=device)
    real, calls = sharing.shared_step, []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:  # in the second round: the checkpoint holds three steps' moments
            raise Stop
        return real(*args, **kwargs)

    monkeypatch.setattr(sharing, "shared_step", dying)
    with pytest.raises(Stop):
        _run(tmp_path / "cut", device=device)
    monkeypatch.setattr(sharing, "shared_step", real)
    _run(tmp_path / "cut", resume=True, device=device)
    assert _lines(tmp_path / "cut") == _lines(tmp_path / "straight")
    straight, _ = sharing.load_supernet(tmp_path / "straight" / "ppo-ws-seed0")
    cut, _ = sharing.load_supernet(tmp_path / "cut" / "ppo-ws-seed0")
    pairs = zip(straight.state_dict().values(), cut.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


def test_an_optimizer_other_than_sgd_needs_its_own_lr():
    with pytest.raises(ConfigError, match="needs an lr"):
        SharingConfig(optimizer="adam")
    with pytest.raises(ConfigError, match="unknown optimizer"):
        SharingConfig(optimizer="lamb", lr=0.1)


@pytest.mark.parametrize("algo", ["ppo", "random"])
def test_the_benchmark_scores_a_fidelity_measurements_cells_on_the_trained_supernet(algo, tmp_path, tiny, one_thread):
    from benchmarks import sharing as bench

    cells = [NASNET_A, random_genotype(1), random_genotype(2)]
    rows = [{"cell": i, "genotype": g.to_dict(), "standalone_test": 0.5 + 0.1 * i} for i, g in enumerate(cells)]
    rows.append({"cell": 3, "genotype": random_genotype(3).to_dict(), "standalone_test": None})  # failed: left out
    results = tmp_path / "fidelity.json"
    results.write_text(json.dumps({"cells": 3, "rows": rows}))
    assert bench.main(["--preset", "digits-ws", "--budget", "3", "--algo", algo, "--fidelity", str(results), "--out",
                       str(tmp_path / "out")]) == 0  # fmt: skip
    out = json.loads((tmp_path / "out" / "sharing.json").read_text())
    assert set(out) >= {"run", "fidelity"} and "steps" not in out  # --fidelity: the run and its fidelity only
    f = out["fidelity"]
    assert f["cells"] == 3 and f["standalone"] == [0.5, 0.6, 0.7] and all(0 <= r <= 1 for r in f["rewards"])
    assert -1 <= f["kendall_tau"] <= 1 or f["kendall_tau"] != f["kendall_tau"]  # NaN when the rewards all tie
    assert f["mean_accuracy"] == pytest.approx(sum(f["rewards"]) / 3) and f["max_accuracy"] == max(f["rewards"])
    journal = report.read_journal(tmp_path / "out" / "run-digits-ws" / f"{algo}-ws-seed0" / "search" / report.JOURNAL)
    assert f["last_search_rewards"] == pytest.approx(sum(r["reward"] for r in journal) / 3)  # the run's own 3 children
    assert out["run"]["algo"] == algo and "Kendall tau" in (tmp_path / "out" / "sharing.md").read_text()
