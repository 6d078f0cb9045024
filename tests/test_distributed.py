"""distributed.py in one process: the shards of one global order, exact evaluation totals, global BatchNorm,
the torchrun command. The runs on two gloo replicas are in test_distributed_runs.py."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from torch import nn

from nasnet_zoo.errors import ConfigError
from nasnet_zoo.train import distributed, launch
from nasnet_zoo.train.distributed import EvalShards, TrainShards, convert_sync_batchnorm, global_order, reduce_eval


@pytest.mark.parametrize("world", [2, 4])
def test_replicas_share_each_global_batch_of_one_order(world):
    n, batch = 103, 16
    one = list(TrainShards(n, batch, seed=7))
    shards = [TrainShards(n, batch, seed=7, rank=r, world_size=world) for r in range(world)]
    assert all(len(s) == len(one) == n // batch for s in shards)
    for i, whole in enumerate(one):
        parts = [list(s)[i] for s in shards]
        assert [k for p in parts for k in p] == whole  # replica r holds the r-th slice of global batch i
        assert all(len(p) == batch // world for p in parts)
    everything = [k for s in shards for b in s for k in b]
    assert len(everything) == len(set(everything)) == (n // batch) * batch  # disjoint; only the tail is dropped


def test_global_order_depends_on_seed_and_epoch_only():
    s = TrainShards(50, 10, seed=3, rank=1, world_size=2)
    first = list(s)
    s.set_epoch(1)
    assert list(s) != first
    s.set_epoch(0)
    assert list(s) == first
    assert torch.equal(global_order(50, 3, 1), global_order(50, 3, 1))
    assert not torch.equal(global_order(50, 3, 1), global_order(50, 4, 1))


def test_a_batch_that_does_not_split_is_refused():
    with pytest.raises(ConfigError, match="multiple of 3"):
        distributed.per_replica_batch(32, distributed.Replicas(world_size=3))
    with pytest.raises(ConfigError, match="does not split"):
        TrainShards(100, 10, 0, rank=0, world_size=3)


@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_evaluation_shards_count_every_example_once(world):
    n, batch = 21, 4  # 6 batches, the last of 1 example; with 8 replicas two get none
    shards = [EvalShards(n, batch, r, world) for r in range(world)]
    seen = [k for s in shards for b in s for k in b]
    assert sorted(seen) == list(range(n))
    assert sorted(j for s in shards for j in s.batches) == list(range(math.ceil(n / batch)))


def test_reduce_eval_adds_the_batches_exactly_in_one_process():
    shards = EvalShards(10, 3)
    rows = [torch.tensor([0.1 * (j + 1), j, 3.0], dtype=torch.float64) for j in range(len(shards))]
    loss, correct, count = reduce_eval(rows, shards, 3)
    assert loss == math.fsum(0.1 * (j + 1) for j in range(4)) and correct == 6 and count == 12
    with pytest.raises(ValueError, match="rows"):
        reduce_eval(rows[:2], shards, 3)


def test_global_batchnorm_is_batchnorm_on_one_replica():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Sequential(nn.BatchNorm2d(4)))
    net[1].weight.data.uniform_(0.5, 1.5)
    net[3][0].weight.requires_grad_(False)
    ref = __import__("copy").deepcopy(net)
    convert_sync_batchnorm(net)
    assert type(net[1]).__name__ == "_GlobalBatchNorm" and type(net[3][0]).__name__ == "_GlobalBatchNorm"
    assert not net[3][0].weight.requires_grad
    assert net.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn(8, 2, 6, 6)
    torch.testing.assert_close(net(x), ref(x), rtol=0, atol=0)
    torch.testing.assert_close(net.state_dict(), ref.state_dict(), rtol=0, atol=0)


def test_torchrun_command_runs_one_machine_without_restarts():
    cmd = launch.torchrun_command(["-m", "nasnet_zoo.cli", "train", "cifar10"], 8)
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--standalone" in cmd and "--nproc-per-node=8" in cmd and "--max-restarts=0" in cmd
    assert cmd[-4:] == ["-m", "nasnet_zoo.cli", "train", "cifar10"]
    with pytest.raises(ConfigError):
        launch.torchrun_command(["x.py"], 0)


def test_one_process_is_one_replica(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    r = distributed.setup("cpu")
    assert (r.rank, r.world_size, r.main, r.active) == (0, 1, True, False)
    assert distributed.replica_seed(5, 0) == 5 and distributed.replica_seed(5, 1) != 5
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "12.5")
    assert distributed.timeout().total_seconds() == 12.5
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "soon")
    with pytest.raises(ConfigError, match="seconds"):
        distributed.timeout()


def test_recipes_state_their_published_topology():
    from nasnet_zoo.train import RECIPES

    topology = {name: r.topology for name, r in RECIPES.items()}
    assert topology == {"cifar10": "1 x 32", "imagenet-mobile": "50 x 32", "imagenet-large": "100 x 16"}
    for r in RECIPES.values():  # on the published number of replicas each takes the published batch
        per_replica = distributed.per_replica_batch(r.config.batch_size, distributed.Replicas(world_size=r.replicas))
        assert per_replica == r.replica_batch
