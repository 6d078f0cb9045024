"""BatchNorm across data-parallel replicas: a BatchNorm that normalises over the global batch on any device
(`convert_sync_batchnorm`), and the per-replica BatchNorms' running statistics kept equal on every replica
(`average_bn_statistics`). `distributed` describes when each applies; both are importable from there."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["average_bn_statistics", "convert_sync_batchnorm"]


def _world_size() -> int:
    """`distributed.world_size` (which imports this module, so it cannot be imported from there)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _AllReduce(torch.autograd.Function):
    """A sum over the replicas that autograd differentiates (the gradient is summed over them too)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class _GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the whole global batch on any device (torch's SyncBatchNorm runs on GPUs only): the batch
    mean and variance are summed over the replicas with an all_reduce that autograd differentiates. Same
    parameters, buffers and state_dict keys as the BatchNorm it replaces; one replica: plain BatchNorm."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {x.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _world_size() > 1):
            return super().forward(x)
        dims, c = [0, *range(2, x.dim())], x.shape[1]
        sums = _AllReduce.apply(torch.cat([x.sum(dims), x.new_tensor([float(x.numel() // c)])]))
        mean, count = sums[:c] / sums[c], sums[c]
        shape = [1, -1] + [1] * (x.dim() - 2)
        centred = x - mean.reshape(shape)
        var = _AllReduce.apply((centred * centred).sum(dims)) / count
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * (count / (count - 1).clamp(min=1))
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), m)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), m)
        y = centred * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            y = y * self.weight.reshape(shape) + self.bias.reshape(shape)
        return y


def convert_sync_batchnorm(model: nn.Module, device: torch.device | None = None) -> nn.Module:
    """Every BatchNorm of ``model`` normalising over the global batch: torch's SyncBatchNorm on CUDA, the
    equivalent `_GlobalBatchNorm` elsewhere. Returns the model (the root itself may be replaced)."""
    if device is not None and device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if isinstance(model, nn.modules.batchnorm._BatchNorm) and not isinstance(model, _GlobalBatchNorm):
        new = _GlobalBatchNorm(model.num_features, model.eps, model.momentum, model.affine, model.track_running_stats)
        new.load_state_dict(model.state_dict())
        new.train(model.training)
        for p, q in zip(new.parameters(), model.parameters(), strict=True):
            p.requires_grad_(q.requires_grad)
        return new
    for name, child in model.named_children():
        setattr(model, name, convert_sync_batchnorm(child, device))
    return model


def _per_replica_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    kinds = (nn.SyncBatchNorm, _GlobalBatchNorm)
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        and not isinstance(m, kinds)
        and m.training
        and m.running_mean is not None
    ]


@torch.no_grad()
def average_bn_statistics(model: nn.Module) -> None:
    """Set the running mean and variance of each per-replica BatchNorm that trained this step to the mean over
    the replicas (BatchNorms in eval mode and global ones are the same on every replica already)."""
    if _world_size() < 2:
        return
    stats = [t for m in _per_replica_norms(model) for t in (m.running_mean, m.running_var)]
    if not stats:
        return
    flat = torch.cat([t.reshape(-1).to(torch.float64) for t in stats])
    dist.all_reduce(flat)
    flat /= _world_size()
    for t, v in zip(stats, flat.split([t.numel() for t in stats]), strict=True):
        t.copy_(v.reshape(t.shape))
