"""A NASNet too large for the memory at hand is refused before any of it is allocated (nasnet_zoo/sizing.py): the
cheap bound never undercounts, the exact count runs only when the bound does not settle it, and the CLI prints
one line instead of torch's allocation error."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
import torch

from nasnet_zoo import MacroConfig, NASNet, cli, create_model, network, sizing
from nasnet_zoo.errors import ConfigError
from nasnet_zoo.genotype import OPS, Cell, Genotype
from nasnet_zoo.ops import make_op
from nasnet_zoo.zoo import CIFAR, LARGE, MOBILE, MODELS

TINY = dict(num_cells=3, filters=8, in_chans=1, num_classes=10, img_size=8)


def _tensors(module: torch.nn.Module) -> int:
    return sum(t.numel() for t in [*module.parameters(), *module.buffers()])


@pytest.mark.parametrize("op", OPS)
def test_the_bound_of_every_op_covers_its_tensors(op: str) -> None:
    for c_in, c_out, stride in [(8, 8, 1), (8, 8, 2), (24, 8, 1), (6, 16, 2), (32, 16, 1)]:
        with torch.device("meta"):
            module = make_op(op, c_in, c_out, stride, torch.nn.BatchNorm2d)
        assert sizing.op_bound(op, c_in, c_out) >= _tensors(module), (op, c_in, c_out, stride)


def _random_genotype(rng: random.Random) -> Genotype:
    def cell() -> Cell:
        ops = [rng.choice(OPS) for _ in range(10)]
        inputs = [rng.randrange(2 + b // 2) for b in range(10)]
        combine = [rng.choice(["add", "concat"]) for _ in range(5)]
        concat = sorted(rng.sample(range(7), rng.randint(1, 4)))
        return Cell.from_lists(ops, inputs, concat, combine)

    return Genotype(cell(), cell())


def _exact(genotype: Genotype, config: MacroConfig, **kw) -> int:
    return sizing.exact_bytes(lambda: NASNet(genotype, config, **kw))


@pytest.mark.parametrize("name", list(MODELS))
def test_the_bound_is_above_and_near_each_zoo_model(name: str) -> None:
    m = MODELS[name]
    for aux in (False, True):
        exact = _exact(m.genotype, m.config, num_classes=m.num_classes, img_size=m.input_size, aux_head=aux)
        bound = sizing.memory_bound(m.genotype, m.config, m.num_classes, 3, m.input_size, aux)
        assert exact <= bound <= 1.5 * exact, (name, aux, exact, bound)  # near: the exact count is rarely needed


def test_the_bound_is_above_random_cells_and_layouts() -> None:
    rng = random.Random(0)
    for _ in range(12):
        genotype = _random_genotype(rng)
        config = dataclasses.replace(
            rng.choice([CIFAR, MOBILE, LARGE]), num_cells=rng.choice([1, 2, 3, 6]), filters=rng.choice([8, 16, 32]),
            skip_reduction_layer_input=rng.random() < 0.5,
        )  # fmt: skip
        kw = dict(num_classes=rng.choice([0, 10]), in_chans=rng.choice([1, 3]), img_size=128)
        aux = rng.random() < 0.5
        exact = _exact(genotype, config, aux_head=aux, global_pool="catavgmax", **kw)
        assert sizing.memory_bound(genotype, config, aux_head=aux, **kw) >= exact, (genotype, config, kw)


def test_a_network_larger_than_the_free_memory_is_refused_before_it_is_built(monkeypatch) -> None:
    exact = sizing.exact_bytes(lambda: create_model("nasnet_cifar", **TINY))
    counted = []
    monkeypatch.setattr(sizing, "exact_bytes", lambda build: counted.append(1) or exact)
    monkeypatch.setattr(sizing, "available_memory", lambda device: exact - 1)
    message = r"a NASNet of 3 cells and 8 filters needs 0\.\d MiB .* than the 0\.\d MiB free on cpu: build it smaller"
    with pytest.raises(ConfigError, match=message + r" \(fewer filters or cells: --filters, --num-cells\)"):
        create_model("nasnet_cifar", **TINY)
    assert counted == [1]
    monkeypatch.setattr(sizing, "available_memory", lambda device: exact)  # the bound is above: the exact count
    assert create_model("nasnet_cifar", **TINY).num_classes == 10 and counted == [1, 1]
    monkeypatch.setattr(sizing, "available_memory", lambda device: 10 * exact)  # the bound settles it
    create_model("nasnet_cifar", **TINY)
    monkeypatch.setattr(sizing, "available_memory", lambda device: None)  # unknown: nothing refused
    create_model("nasnet_cifar", **TINY)
    assert counted == [1, 1]
    with torch.device("meta"):  # nothing allocated: nothing to refuse
        monkeypatch.setattr(sizing, "available_memory", lambda device: 0)
        create_model("nasnet_cifar", **TINY)


def test_a_million_filters_is_a_config_error_not_an_allocation() -> None:
    with pytest.raises(ConfigError, match=r"a NASNet of 18 cells and 1000000 filters needs [0-9,]+\.\d GiB"):
        create_model("nasnet_cifar", filters=1_000_000)
    with pytest.raises(ConfigError, match="a NASNet of 12 cells and 100000 filters needs"):
        create_model("nasnet_a_mobile", filters=100_000)


def test_an_allocation_error_at_build_is_a_config_error(monkeypatch) -> None:
    def allocator(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: you "
                           "tried to allocate 4000000000000 bytes.")  # fmt: skip

    monkeypatch.setattr(sizing, "available_memory", lambda device: None)  # not readable here: torch's error comes
    monkeypatch.setattr(network, "Cell", allocator)
    with pytest.raises(ConfigError, match=r"nasnet_cifar with 3 cells and 8 filters does not fit in memory \(.*"
                       r"DefaultCPUAllocator.*\): build it smaller"):  # fmt: skip
        create_model("nasnet_cifar", **TINY)


def test_the_cli_refuses_a_million_filters_in_one_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "ft"
    argv = ["finetune", "nasnet_cifar", "digits", "--no-pretrained", "--filters", "1000000", "--out", str(out)]
    assert cli.main([*argv, "--workers", "0", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: a NASNet of 18 cells and 1000000 filters needs ") and err.count("\n") == 1, err
    assert "Traceback" not in err and not any(out.glob("*"))


def test_the_free_memory_is_read_on_linux() -> None:
    free = sizing.available_memory(torch.device("cpu"))
    if Path("/proc/meminfo").is_file():
        assert free is not None and 0 < free < 2**50
    assert sizing.available_memory(torch.device("meta")) is None
