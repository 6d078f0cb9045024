"""The controller RNN and its policy updates (search/controller.py, search/ppo.py, search/baselines.py)."""

from __future__ import annotations

import math

import pytest
import torch
from nasnet_zoo.search.baselines import RandomSearch, RegularizedEvolution
from nasnet_zoo.search.controller import Controller
from nasnet_zoo.search.ppo import PolicyConfig, PolicyGradient
from nasnet_zoo.search.space import Proposal, decisions, decode


def test_architecture_and_init() -> None:
    c = Controller(seed=0)
    assert c.lstm.hidden_size == 100 and c.lstm.num_layers == 1
    assert {k: h.out_features for k, h in c.heads.items()} == {"input": 6, "op": 13, "combine": 2}
    flat = torch.cat([p.flatten() for p in c.parameters()])
    assert flat.abs().max() <= 0.1
    assert flat.std().item() == pytest.approx(0.2 / math.sqrt(12), rel=0.02)  # uniform on [-0.1, 0.1]
    assert torch.equal(Controller(seed=0).lstm.weight_hh_l0, c.lstm.weight_hh_l0)
    assert not torch.equal(Controller(seed=1).lstm.weight_hh_l0, c.lstm.weight_hh_l0)


def test_sample_shapes_and_masking() -> None:
    c = Controller(seed=0)
    s = c.sample(500, torch.Generator().manual_seed(0))
    assert s.actions.shape == (500, 50) and s.log_probs.shape == (500, 50)
    assert bool((s.log_probs <= 0).all())
    for t, d in enumerate(decisions()):
        seen = set(s.actions[:, t].tolist())
        assert seen == set(range(d.num_choices)), (t, d)  # every allowed option occurs, nothing else
    decode(s.actions[0].tolist())


def test_recomputed_log_probs_equal_the_stored_ones() -> None:
    c = Controller(seed=0)
    s = c.sample(32, torch.Generator().manual_seed(1))
    log_probs, entropy = c.log_probs(s.actions)
    torch.testing.assert_close(log_probs, s.log_probs, rtol=0, atol=2e-6)
    assert log_probs.requires_grad
    limits = torch.tensor([math.log(d.num_choices) for d in decisions()])
    assert bool((entropy > 0).all()) and bool((entropy <= limits + 1e-5).all())
    # near-uniform at init: an input of block 0 has 2 options, so its entropy is close to log 2
    assert abs(entropy[:, 0].mean().item() - math.log(2)) < 0.01


def test_evaluate_rejects_out_of_range_actions() -> None:
    c = Controller(seed=0)
    a = c.sample(1).actions.clone()
    a[0, 0] = 2
    with pytest.raises(ValueError, match="outside its decision's range"):
        c.log_probs(a)
    with pytest.raises(ValueError, match=r"shape \(batch, 50\)"):
        c.log_probs(a[:, :10])


def test_paper_settings() -> None:
    p = PolicyConfig()
    assert (p.method, p.lr, p.entropy_weight, p.baseline_decay, p.batch_size) == ("ppo", 0.00035, 1e-5, 0.95, 20)
    assert (p.clip, p.hidden, p.init_range) == (0.2, 100, 0.1)
    with pytest.raises(ValueError, match="unknown policy update"):
        PolicyConfig(method="a2c")


@pytest.mark.parametrize("method", ["ppo", "reinforce"])
def test_updates_favour_rewarded_sequences(method: str) -> None:
    """Reward 1 for a normal cell whose first op is identity, 0 otherwise: its probability must rise."""
    pg = PolicyGradient(PolicyConfig(method=method, lr=0.01), seed=0)
    first_op = decisions()[2]
    assert first_op.kind == "op"

    def p_identity() -> float:
        return pg.controller.sample(2000, torch.Generator().manual_seed(5)).actions[:, 2].eq(0).float().mean().item()

    before = p_identity()
    for _ in range(400):
        p = pg.propose()
        pg.observe(p, float(p.actions[2] == 0))
    assert pg.version == 20
    assert p_identity() > before + 0.15


def test_baseline_is_an_ema_of_rewards() -> None:
    pg = PolicyGradient(PolicyConfig(), seed=0)
    rewards = [0.5, 0.7, 0.6, 0.9]
    for r in rewards:
        pg.observe(pg.propose(), r)
    expected = rewards[0]
    for r in rewards[1:]:
        expected = 0.95 * expected + 0.05 * r
    assert pg.baseline == pytest.approx(expected)
    assert [adv for _, _, adv in pg.buffer][1] == pytest.approx(0.7 - 0.5)


@pytest.mark.parametrize("method", ["ppo", "reinforce"])
def test_a_failed_child_is_penalised_without_moving_the_baseline(method: str) -> None:
    pg = PolicyGradient(PolicyConfig(method=method), seed=0)
    pg.observe(pg.propose(), None)  # nothing trained yet: nothing to compare with
    assert pg.baseline is None and pg.buffer[-1][2] == 0.0
    for r in (0.6, 0.5, 0.8):
        pg.observe(pg.propose(), r)
    baseline = pg.baseline
    pg.observe(pg.propose(), None)
    assert pg.baseline == baseline  # a failure is not a reward of 0
    assert pg.buffer[-1][2] == pytest.approx(0.5 - baseline)  # the advantage of the worst child trained so far
    assert len(pg.buffer) == 5  # it counts towards the batch of 20


def test_ppo_uses_the_log_prob_stored_at_sampling() -> None:
    """A child sampled before an update keeps its old log-probability (rewards arrive asynchronously)."""
    pg = PolicyGradient(PolicyConfig(lr=0.01), seed=0)
    late = pg.propose()
    for _ in range(20):
        pg.observe(pg.propose(), 1.0)
    assert pg.version == 1 and late.policy_version == 0
    now = pg.controller.log_probs(torch.tensor([late.actions]))[0].sum().item()
    assert now != pytest.approx(late.log_prob, abs=1e-4)  # the policy moved on; the stored value is kept
    pg.observe(late, 0.5)
    assert pg.buffer[-1][1] == late.log_prob


@pytest.mark.parametrize("make", [lambda: PolicyGradient(PolicyConfig(), 3), lambda: RandomSearch(3),
                                  lambda: RegularizedEvolution(3, population=5, sample=2)])  # fmt: skip
def test_state_dict_round_trip_continues_identically(make: object) -> None:
    a = make()
    for i in range(27):
        a.observe(a.propose(), None if i % 5 == 3 else i / 27)
    b = make()
    b.load_state_dict(a.state_dict())
    for i in range(30):
        pa, pb = a.propose(), b.propose()
        assert pa == pb
        a.observe(pa, (i % 7) / 7)
        b.observe(pb, (i % 7) / 7)


def test_evolution_mutates_one_decision_of_a_tournament_winner() -> None:
    evo = RegularizedEvolution(0, population=4, sample=4)
    first = [evo.propose() for _ in range(4)]
    for i, p in enumerate(first):
        evo.observe(p, float(i))  # the last is the best
    child = evo.propose()
    diff = [i for i, (x, y) in enumerate(zip(child.actions, first[-1].actions, strict=True)) if x != y]
    assert len(diff) == 1
    decode(list(child.actions))
    evo.observe(Proposal(child.actions), 10.0)
    assert len(evo.population) == 4 and evo.population[0][0] == first[1].actions  # the oldest aged out


def test_evolution_keeps_failed_children_out_of_the_population() -> None:
    evo = RegularizedEvolution(0, population=3, sample=3)
    first = [evo.propose() for _ in range(3)]
    for p, reward in zip(first, (0.5, None, 0.7), strict=True):
        evo.observe(p, reward)
    assert [a for a, _ in evo.population] == [first[0].actions, first[2].actions]
    child = evo.propose()  # two members of three: still random, not a mutation of one of them

    def distance(x: tuple[int, ...], y: tuple[int, ...]) -> int:
        return sum(a != b for a, b in zip(x, y, strict=True))

    assert min(distance(child.actions, a) for a, _ in evo.population) > 1
    evo.observe(child, 0.1)
    mutant = evo.propose()  # full: the best of the tournament, mutated once
    assert distance(mutant.actions, first[2].actions) == 1
