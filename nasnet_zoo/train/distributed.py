"""Data parallelism on torch.distributed: the replicas of one run, what they share, and how they start and stop.

Public API::

    Replicas                            this process's place in the run (rank, world_size, local_rank, device)
    setup(device=None) -> Replicas      join the process group torchrun describes (NCCL on CUDA, gloo on CPU)
    rank(), world_size(), is_main()     of the current process group (0, 1, True without one)
    data_parallel(model, replicas)      DistributedDataParallel on several replicas, the model itself on one
    all_sum(*tensors), from_main(f)     sums over the replicas; f() on rank 0, its result sent to all
    gather_rng(state), replica_rng(checkpoint, rank)   every replica's RNG states into and out of a checkpoint
    TrainShards(n, batch_size, seed, rank, world_size)   each replica's part of every batch of one global order
    SeededExamples(dataset, seed)       augmentation seeded by (seed, epoch, example): the same on any replica
    EvalShards(n, batch_size, rank, world_size)          whole evaluation batches, dealt out round robin
    reduce_eval(rows, shards, width)    exact evaluation totals from every replica's per-batch sums
    convert_sync_batchnorm(model)       BatchNorms that normalise over the global batch (CPU and CUDA)
    average_bn_statistics(model)        make per-replica BN running statistics the replicas' mean
                                        (these two live in `batchnorm`, importable from here)

Semantics:

* One global order. Epoch ``e``'s training order is ``randperm(n)`` drawn from ``derive_seed(seed, e)``,
  whatever the number of replicas; global batch ``i`` is positions ``i*B .. (i+1)*B`` of it and replica ``r`` of
  ``W`` takes the ``r``-th of its ``W`` equal slices (``B / W`` examples). One process (``W = 1``) takes the whole
  batch, so one process and ``W`` replicas see the same examples at every step.
* Gradients are averaged over the replicas (DDP), so one update is the mean over the global batch, as one
  process with batch ``B`` computes it. BatchNorm is per replica by default (each normalises with its own
  ``B / W`` examples, as TensorFlow's synchronous replicas did); `convert_sync_batchnorm` makes it global. With
  per-replica BN the running statistics are averaged over the replicas after every step
  (`average_bn_statistics`): every replica, and so its EMA, holds the same weights; the running mean then
  tracks the global batch's mean, as one process's would, and the running variance leaves out the spread of
  the replicas' batch means.
* Evaluation batches (``E`` examples, in order) go to replicas round robin, are never padded, and each
  replica's per-batch sums are gathered by batch number and added with ``math.fsum``: every example counts
  once and the totals are bit for bit those of one process with the same ``E``.
* Failure in bounded time: the process group has a timeout (``NASNET_ZOO_DIST_TIMEOUT`` seconds, default 600)
  after which a collective that waits for a lost replica raises; torchrun (``--max-restarts 0``) ends the other
  replicas as soon as one exits with an error or is killed, and names it (`launch` runs torchrun for one machine).
"""

from __future__ import annotations

import datetime
import inspect
import math
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, Sampler

from ..errors import ConfigError
from ..runtime import derive_seed
from .batchnorm import average_bn_statistics as average_bn_statistics  # re-exported: part of this API
from .batchnorm import convert_sync_batchnorm as convert_sync_batchnorm

TIMEOUT_ENV = "NASNET_ZOO_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
T = TypeVar("T")
_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


# --- the process group --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Replicas:
    """This process's place among the run's replicas; ``world_size == 1`` is a plain one-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        """True on the one replica that writes files and prints (rank 0)."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True when there is more than one replica (and so a process group to talk through)."""
        return self.world_size > 1


def under_torchrun() -> bool:
    """True when torchrun (or another launcher that sets its variables) started this process."""
    return all(k in os.environ for k in _TORCHRUN_ENV)


def rank() -> int:
    """This process's rank: in the process group, or as torchrun numbered it before the group is joined."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ["RANK"]) if under_torchrun() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0 and in a process without a process group: the one that writes."""
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def timeout() -> datetime.timedelta:
    """The process group's timeout: ``NASNET_ZOO_DIST_TIMEOUT`` seconds (default 600)."""
    text = os.environ.get(TIMEOUT_ENV, "")
    try:
        seconds = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ConfigError(f"{TIMEOUT_ENV}={text!r} is not a number of seconds") from None
    return datetime.timedelta(seconds=seconds)


def setup(device: str | torch.device | None = None) -> Replicas:
    """The replicas of this run. Joins the process group torchrun's variables describe (once per process;
    NCCL for CUDA, gloo otherwise), or uses one the caller initialised, or returns one replica. On CUDA each
    replica takes ``cuda:LOCAL_RANK`` unless ``device`` names an index."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    initialised = dist.is_available() and dist.is_initialized()
    if not initialised and not (under_torchrun() and int(os.environ["WORLD_SIZE"]) > 1):
        return Replicas(device=device)
    local = int(os.environ.get("LOCAL_RANK", 0))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not initialised:
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, timeout=timeout(), **kwargs)
    return Replicas(dist.get_rank(), dist.get_world_size(), local, device)


def replica_seed(seed: int, rank: int) -> int:
    """The seed of replica ``rank``'s own random draws (dropout, drop path): ``seed`` itself on rank 0, so one
    process draws as it always did."""
    return seed if rank == 0 else derive_seed(seed, 1_000_000 + rank)


def per_replica_batch(batch_size: int, replicas: Replicas) -> int:
    """``batch_size / world_size``; a global batch that does not split evenly is a `ConfigError`."""
    if batch_size % replicas.world_size:
        raise ConfigError(
            f"the global batch {batch_size} does not split over {replicas.world_size} replicas: choose a batch "
            f"size that is a multiple of {replicas.world_size} (or another number of replicas)"
        )
    return batch_size // replicas.world_size


# --- who sees which examples --------------------------------------------------------------------------------------
def global_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """Epoch ``epoch``'s order of ``n`` training examples: a function of (seed, epoch) only."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, epoch)))


class TrainShards(Sampler[list[int]]):
    """A batch sampler: this replica's slice of every full global batch of `global_order` (the last partial
    batch is dropped, as one process drops it; with fewer examples than one batch, the one short batch).
    ``keyed`` yields ``(epoch, index)`` keys for `SeededExamples` instead of indices."""

    def __init__(
        self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, keyed: bool = False
    ) -> None:
        if batch_size % world_size:
            raise ConfigError(f"batch {batch_size} does not split over {world_size} replicas")
        self.n, self.batch_size, self.seed, self.rank, self.world_size = n, batch_size, seed, rank, world_size
        self.keyed, self.epoch = keyed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.batch_size if self.n >= self.batch_size else int(self.n > 0)

    def positions(self, batch: int) -> slice:
        """The positions of global batch ``batch`` in the order that this replica takes."""
        size = min(self.batch_size, self.n)
        part = size // self.world_size
        start = batch * size + self.rank * part
        return slice(start, start + part)

    def __iter__(self) -> Iterator[list[int]]:
        order = global_order(self.n, self.seed, self.epoch)
        for i in range(len(self)):
            batch = order[self.positions(i)].tolist()
            yield [(self.epoch, k) for k in batch] if self.keyed else batch


class SeededExamples(Dataset):
    """A training dataset read by ``(epoch, index)`` keys: example ``index`` is loaded with torch's and Python's
    random generators seeded from (seed, epoch, index), so its augmentation in an epoch is the same whatever the
    DataLoader workers, the number of replicas or a resume (the caller's generators are left as they were)."""

    def __init__(self, data: Dataset, seed: int) -> None:
        self.data, self.seed = data, seed

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        seed = derive_seed(derive_seed(self.seed, epoch), index) % 2**63
        state = random.getstate()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random.seed(seed)
            try:
                return self.data[index]
            finally:
                random.setstate(state)


class EvalShards(Sampler[list[int]]):
    """A batch sampler: the evaluation batches ``j = rank, rank + W, ...`` of ``range(n)`` in batches of
    ``batch_size`` (the last one short); no example is repeated to even out the replicas."""

    def __init__(self, n: int, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.batch_size, self.rank, self.world_size = n, batch_size, rank, world_size
        self.total = math.ceil(n / batch_size)
        self.batches = list(range(rank, self.total, world_size))  # the global numbers of this replica's batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        for j in self.batches:
            yield list(range(j * self.batch_size, min((j + 1) * self.batch_size, self.n)))


def reduce_eval(rows: Sequence[torch.Tensor], shards: EvalShards, width: int) -> list[float]:
    """Totals over every evaluation example: ``rows[k]`` holds this replica's ``width`` sums (e.g. loss,
    correct, count) of its ``k``-th batch. The rows of all replicas are placed by global batch number (each is
    written by exactly one replica), summed across replicas (adding zeros: exact) and added up per column with
    ``math.fsum``, so the result does not depend on the number of replicas."""
    if len(rows) != len(shards):
        raise ValueError(f"{len(rows)} rows for {len(shards)} evaluation batches")
    device = rows[0].device if rows else _collective_device()
    table = torch.zeros(shards.total, width, dtype=torch.float64, device=device)
    if rows:
        table[shards.batches] = torch.stack([r.to(device, torch.float64) for r in rows])
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(table)
    return [math.fsum(column) for column in table.cpu().T.tolist()]


def _collective_device() -> torch.device:
    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_sum(*values: torch.Tensor) -> list[torch.Tensor]:
    """Each tensor summed over the replicas (returned as float64 copies, on one device; the inputs, which may be
    on different devices, are unchanged)."""
    device = _collective_device() if world_size() > 1 else values[0].device
    flat = torch.stack([v.detach().to(device, torch.float64).reshape(()) for v in values])
    if world_size() > 1:
        dist.all_reduce(flat)
    return list(flat.unbind())


def from_main(compute: Callable[[], T]) -> T:
    """``compute()`` on the main replica, its result sent to the others (one process: just ``compute()``). An
    error raised there ends that replica, and torchrun the rest."""
    if world_size() < 2:
        return compute()
    box = [compute() if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def gather_rng(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Every replica's random generator states, by rank (the same list on each)."""
    if world_size() < 2:
        return [state]
    states: list[Any] = [None] * world_size()
    dist.all_gather_object(states, state)
    return states


def replica_rng(checkpoint: dict[str, Any], rank: int) -> dict[str, Any] | None:
    """Replica ``rank``'s generator states in a checkpoint (``rng`` for rank 0, ``replica_rng`` for the others);
    None for a rank that the checkpoint's run did not have (resumed on more replicas)."""
    if rank == 0:
        return checkpoint["rng"]
    others = checkpoint.get("replica_rng") or []
    return others[rank - 1] if rank - 1 < len(others) else None


def data_parallel(model: nn.Module, replicas: Replicas) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel when there are several replicas (rank 0's weights and
    buffers are broadcast to the others at once), else ``model`` itself. BN buffers are not broadcast at every
    forward: `average_bn_statistics` keeps them equal after each step."""
    if not replicas.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [replicas.device.index] if replicas.device.type == "cuda" else None
    params = inspect.signature(DistributedDataParallel).parameters
    no_sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}
    return DistributedDataParallel(model, device_ids=ids, **no_sync)
