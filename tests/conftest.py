"""Shared test helpers. Tests run on CPU with 2 threads so timings and numerics match CI."""

from __future__ import annotations

import pytest
import torch

from nasnet_zoo.runtime import torch_threads as num_threads

torch.set_num_threads(2)


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def measurements():
    """Numbers that model cards state: checked against nasnet_zoo/measurements.json (see tests/measurements.py)."""
    from tests.measurements import Measurements

    m = Measurements()
    yield m
    m.save()


@pytest.fixture
def one_thread():
    """Tiny models train fastest on one thread (and far faster than on two when the cores are shared)."""
    with num_threads(1):
        yield
