"""A task shared by the search tests: it counts every read of its held-out test split."""

from __future__ import annotations

from dataclasses import dataclass

from nasnet_zoo.search.space import canonical_hash
from nasnet_zoo.search.tasks import SyntheticTask

from nasnet_zoo.genotype import Genotype

test_reads: list[str] = []  # the hash of every cell whose test accuracy was read; clear it before use


@dataclass(frozen=True)
class Misleading:
    """Synthetic, except that its held-out test split ranks cells the other way round from validation."""

    def reward(self, genotype: Genotype, seed: int) -> float:
        return SyntheticTask(noise=0.0).reward(genotype, seed)

    def test_accuracy(self, genotype: Genotype, seed: int) -> float:
        test_reads.append(canonical_hash(genotype))
        return 1.0 - SyntheticTask().expected_reward(genotype)

    def longer(self, epochs: int) -> Misleading:
        return self
