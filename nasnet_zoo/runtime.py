"""The process's torch settings, set for a block of code and restored after it: intra-op threads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch on ``n`` intra-op threads inside the block. Tiny models (the search's controller and children)
    run fastest on one: more threads only add synchronisation (100x slower on a busy 2-core machine) and take
    cores from other workers."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def derive_seed(seed: int, index: int) -> int:
    """The seed of the ``index``-th draw of a run seeded ``seed`` (an epoch's shuffle, a search's child): distinct
    for every (seed, index) pair a run meets, and the same on every machine."""
    return seed * 1_000_003 + index
