"""The configurations the benchmark compares: ours and the peers, each in the layouts people run them in.

A `Config` builds its model and a matching input. The peers are timm's ``nasnetalarge`` and Cadene's
``pretrainedmodels`` ports (the ``peers`` extra); both compute the same function as ours (same architecture,
tests/peers/test_timm_cadene.py), so every row of one model shares one mult-add count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

import nasnet_zoo

#: model -> (zoo name, input size)
MODELS = {"mobile": ("nasnet_a_mobile", 224), "large": ("nasnet_a_large", 331)}


@dataclass(frozen=True)
class Config:
    impl: str  # "ours", "timm" or "cadene"
    model: str  # "mobile" or "large"
    channels_last: bool = True
    compiled: bool = False
    grad_ckpt: bool = False

    @property
    def label(self) -> str:
        name = {"ours": "ours", "timm": "timm nasnetalarge", "cadene": "Cadene"}[self.impl]
        if self.impl == "ours":
            name += "" if self.channels_last else " (NCHW)"
        elif self.channels_last:
            name += " + channels_last"
        if self.compiled:
            name += " + torch.compile"
        if self.grad_ckpt:
            name += " + grad checkpointing"
        return name

    @property
    def peer(self) -> bool:
        return self.impl != "ours"

    def build(self, device: torch.device) -> nn.Module:
        """The model, on ``device``, with random weights (speed does not depend on them); the same weights for
        every configuration of one implementation, so their outputs can be compared."""
        torch.manual_seed(0)
        if self.impl == "ours":
            # Our default layout is channels_last. Drop path off: the peers have none, so training compares
            # the same work (it is on by default for large, and costs a mask per op).
            name = MODELS[self.model][0]
            m = nasnet_zoo.create_model(name, channels_last=self.channels_last, drop_path_rate=0.0)
        elif self.impl == "timm":
            import timm

            m = timm.create_model("nasnetalarge")
        else:
            from pretrainedmodels.models.nasnet import NASNetALarge
            from pretrainedmodels.models.nasnet_mobile import NASNetAMobile

            m = (NASNetAMobile if self.model == "mobile" else NASNetALarge)(num_classes=1000)
        if self.peer and self.channels_last:
            m = m.to(memory_format=torch.channels_last)
        if self.grad_ckpt:
            m.set_grad_checkpointing()
        m = m.to(device)
        if self.compiled:  # ours only: the inference seam (BN folded, channels_last), compiled by inductor
            from nasnet_zoo.fast import optimize_for_inference

            return torch.compile(optimize_for_inference(m), dynamic=False)
        return m

    def input(self, batch: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
        """A batch as a user would pass it: NCHW for ours (the model takes either), channels_last for a peer run
        in channels_last (it needs it)."""
        size = MODELS[self.model][1]
        x = torch.randn(batch, 3, size, size, generator=generator).to(device)
        return x.contiguous(memory_format=torch.channels_last) if self.peer and self.channels_last else x


def eval_configs(model: str, compiled: bool = True) -> list[Config]:
    ours = [Config("ours", model, channels_last=False), Config("ours", model)]
    if compiled:
        ours.append(Config("ours", model, compiled=True))
    peers = (["timm"] if model == "large" else []) + ["cadene"]
    return ours + [Config(p, model, channels_last=cl) for p in peers for cl in (False, True)]


def train_configs(model: str) -> list[Config]:
    return [
        Config("ours", model),
        Config("ours", model, grad_ckpt=True),
        Config("cadene", model, channels_last=False),
        Config("cadene", model, channels_last=True),
    ]
