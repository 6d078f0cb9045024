"""Shared test helpers. Tests run on CPU with 2 threads so timings and numerics match CI."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(0)
