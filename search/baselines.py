"""The baselines a search must beat at equal budget and seeds: random search and regularized evolution.

* `RandomSearch` is random search exactly as the paper defines it (Sec. 4.4): every one of the 50
  decisions drawn uniformly from its options, i.e. the controller's softmaxes replaced by uniform ones.
* `RegularizedEvolution` is AmoebaNet's aging evolution (Real et al., 2019) in the same space: a population
  of the `population` most recent trained children; each new child mutates one decision of the best of
  `sample` members drawn from it; children are random until the population is full (with parallel workers,
  every child proposed while it is not). A failed child (``reward=None``) has no fitness: it never joins the
  population, so it ages no member out.

The search loop draws again instead of training a cell twice, so the population holds distinct cells and
random search samples without replacement. Both speak the protocol of `ppo.PolicyGradient` (propose, observe,
reseed, state_dict, load_state_dict).
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

from nasnet_zoo.errors import ConfigError

from .space import NUM_BLOCKS, Proposal, decisions, sample_uniform


def _rng_state(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _set_rng_state(rng: random.Random, state: list[Any]) -> None:
    version, internal, gauss = state
    rng.setstate((version, tuple(internal), gauss))


class RandomSearch:
    version = 0

    def __init__(self, seed: int, num_blocks: int = NUM_BLOCKS) -> None:
        self.rng = random.Random(seed)
        self.num_blocks = num_blocks

    def propose(self) -> Proposal:
        return Proposal(tuple(sample_uniform(self.rng, self.num_blocks)))

    def observe(self, proposal: Proposal, reward: float | None) -> None:
        pass

    def reseed(self, seed: int) -> None:
        self.rng.seed(seed)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": _rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _set_rng_state(self.rng, state["rng"])


class RegularizedEvolution:
    version = 0

    def __init__(self, seed: int, population: int = 100, sample: int = 25, num_blocks: int = NUM_BLOCKS) -> None:
        if not 1 <= sample <= population:
            raise ConfigError(f"need 1 <= sample <= population, got sample={sample}, population={population}")
        self.rng = random.Random(seed)
        self.spec = decisions(num_blocks)
        self.num_blocks = num_blocks
        self.size, self.sample = population, sample
        self.population: deque[tuple[tuple[int, ...], float]] = deque(maxlen=population)

    def propose(self) -> Proposal:
        if len(self.population) < self.size:
            return Proposal(tuple(sample_uniform(self.rng, self.num_blocks)))
        contenders = self.rng.sample(list(self.population), min(self.sample, len(self.population)))
        parent = max(contenders, key=lambda member: member[1])[0]
        return Proposal(self.mutate(parent))

    def mutate(self, actions: tuple[int, ...]) -> tuple[int, ...]:
        """Change one decision (an input, an op or a combine) to another of its options."""
        child = list(actions)
        i = self.rng.randrange(len(child))
        child[i] = (child[i] + self.rng.randrange(1, self.spec[i].num_choices)) % self.spec[i].num_choices
        return tuple(child)

    def observe(self, proposal: Proposal, reward: float | None) -> None:
        if reward is not None:
            self.population.append((tuple(proposal.actions), reward))  # the oldest member ages out

    def reseed(self, seed: int) -> None:
        self.rng.seed(seed)

    def state_dict(self) -> dict[str, Any]:
        members = [[list(a), r] for a, r in self.population]
        return {"rng": _rng_state(self.rng), "population": members}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _set_rng_state(self.rng, state["rng"])
        self.population = deque(((tuple(a), r) for a, r in state["population"]), maxlen=self.size)
