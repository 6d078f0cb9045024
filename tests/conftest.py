"""Shared test helpers. Tests run on CPU with 2 threads so timings and numerics match CI; on a machine with a
CUDA device, the tests parametrized over `tests.helpers.DEVICES` run there too, in full fp32 (no TF32) with
deterministic cuDNN kernels, so that the same tolerances hold."""

from __future__ import annotations

import pytest
import torch

from nasnet_zoo.runtime import torch_threads as num_threads

torch.set_num_threads(2)
if torch.cuda.is_available():
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False


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
