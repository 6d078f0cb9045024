"""Weight-sharing search: the stand-alone search's algorithms and files, a resume that loses nothing."""

from __future__ import annotations

import json

import pytest
import torch
from nasnet_zoo.search import ppo, report, sharing
from nasnet_zoo.search.loop import SearchConfig
from nasnet_zoo.search.shared_training import SharingConfig, Stream, score, task_data
from nasnet_zoo.search.space import random_genotype
from nasnet_zoo.search.tasks import DigitsTask

from nasnet_zoo.genotype import Genotype
from nasnet_zoo.runtime import torch_threads

TASK = DigitsTask(filters=4, batch_size=32)  # a small supernet: 3 cells of F = 4
TINY = SharingConfig(shared_steps=3, children=3, reward_batch_size=40, final=2)
KEYS = ("child", "hash", "reward", "actions", "policy_version", "log_prob", "phase", "step")


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(sharing.SHARING, "digits-ws", TINY)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted run: its folder and its journal lines."""
    out, kept = tmp_path_factory.mktemp("straight"), sharing.SHARING["digits-ws"]
    sharing.SHARING["digits-ws"] = TINY
    try:
        with torch_threads(1):
            _run(out)
    finally:
        sharing.SHARING["digits-ws"] = kept
    return out, _lines(out)


def _run(out, resume=False, algo="ppo", budget=7):
    config = SearchConfig(preset="digits-ws", algo=algo, budget=budget, out=out, resume=resume, task=TASK)
    return sharing.run_sharing(config, device="cpu")


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
    assert not {r["hash"] for r in finals} & {r["hash"] for r in search}
    for name in ("best.json", "topk.json", "search.png", "summary.md"):
        assert (tmp_path / name).is_file()
    best = max(finals, key=lambda r: r["reward"])
    assert Genotype.load(tmp_path / "best.json") == Genotype.from_dict(best["genotype"])  # ranked on the final weights
    assert json.loads((tmp_path / "ppo-ws-seed0" / "run.json").read_text())["task"]["class"] == "DigitsTask"
    timing = json.loads((tmp_path / "ppo-ws-seed0" / "search" / "timing.json").read_text())
    assert timing["controller"] > 0 and timing["shared_steps"] == 9  # 3 rounds of 3 steps


class Stop(Exception):
    """Stands for the process dying (kill -9 leaves the disk as it is at that moment)."""


@pytest.mark.parametrize("where,at", [("reward", 5), ("reward", 9), ("shared", 5)],
                         ids=["mid-round", "in-the-derive-step", "in-shared-steps"])  # fmt: skip
def test_resume_after_an_interruption_loses_nothing_and_repeats_nothing(tmp_path, tiny, monkeypatch, one_thread,
                                                                        straight, where, at):  # fmt: skip
    expected = straight[1]

    name = {"reward": "score", "shared": "shared_step"}[where]
    real, calls = getattr(sharing, name), []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            raise Stop
        return real(*args, **kwargs)

    monkeypatch.setattr(sharing, name, dying)
    with pytest.raises(Stop):
        _run(tmp_path / "cut")
    monkeypatch.setattr(sharing, name, real)
    journaled = len(_lines(tmp_path / "cut"))
    assert 0 < journaled < len(expected)
    journal = tmp_path / "cut" / "ppo-ws-seed0" / "search" / report.JOURNAL
    before = journal.read_bytes()
    with journal.open("ab") as f:
        f.write(b'{"child": 99, "hash": "torn by the cr')  # a line torn by a crash mid-write

    rewarded = []
    monkeypatch.setattr(sharing, "score", lambda *a, **k: rewarded.append(1) or score(*a, **k))
    _run(tmp_path / "cut", resume=True)
    assert _lines(tmp_path / "cut") == expected  # the same children, rewards and policy, child for child
    assert journal.read_bytes().startswith(before)  # nothing journaled was dropped or rewritten
    assert len(rewarded) == len(expected) - journaled  # and nothing rewarded twice


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
