"""`NASNet(genotype, config)`: stems, cell stacking, aux head, classifier, and the timm model interface.

The macro layout follows TF-slim's ``_build_nasnet_base``:

* ImageNet stem: 3x3 stride-2 VALID conv (32 x stem_multiplier filters) + BN, then two reduction cells
  ``cell_stem_0`` / ``cell_stem_1`` at F/4 and F/2 filters. CIFAR stem: 3x3 SAME conv + BN, no stem cells.
* ``num_cells`` normal cells ``cell_0..``; reduction cells ``reduction_cell_k`` go before normal cell
  ``int(k / 3 * num_cells)`` (k = 1, 2) and double the filters.
* Each cell reads the previous output and the one before it; with ``skip_reduction_layer_input`` the normal
  cell right after a reduction reads the output from before the reduction's own input instead.
* Head: ReLU -> global average pool -> dropout -> linear. Aux head (training only) on the ReLU of the normal
  cell just before the second reduction.

In training mode with ``aux_head=True`` the forward pass returns `NASNetOutput(logits, aux_logits)`; it
returns a plain logits tensor otherwise, so timm and torchvision code see an ordinary classifier.

The forward signatures hold real types (no postponed annotations in this module): torch.fx copies the root
forward's annotations into the code of a traced graph, and TorchScript cannot read them back as strings.
"""

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from timm.models._features import feature_take_indices
from torch import nn
from torch.utils.checkpoint import checkpoint

from .cell import Cell
from .errors import ConfigError
from .genotype import NASNET_A, Genotype
from .init import init_conv, init_head, make_head
from .ops import ConvBN, SameConv2d
from .sizing import memory_bound, refuse_oversized


@dataclass(frozen=True)
class MacroConfig:
    """Everything about the network that is not the cell (TF-slim's ``*_config()`` hparams)."""

    stem: str  # "imagenet" or "cifar"
    num_cells: int  # normal cells in total (3 N)
    filters: int  # num_conv_filters; the final width is 24 x filters for NASNet-A
    stem_multiplier: float
    skip_reduction_layer_input: bool
    drop_path_keep_prob: float
    dense_dropout_keep_prob: float
    bn_eps: float
    bn_decay: float  # TF's moving-average decay; PyTorch momentum = 1 - decay
    num_reduction_layers: int = 2
    filter_scaling_rate: float = 2.0

    def __post_init__(self) -> None:
        if self.stem not in ("imagenet", "cifar"):
            raise ConfigError(f"stem must be 'imagenet' or 'cifar', got {self.stem!r}")
        if self.num_cells < 1 or self.filters < 2 or self.filters % 2:
            raise ConfigError(
                f"a NASNet needs at least 1 cell and an even number of filters >= 2 "
                f"(got {self.num_cells} cells, {self.filters} filters); try --num-cells 6 --filters 32"
            )
        first = int(self.filters / self.filter_scaling_rate**2)
        if self.stem == "imagenet" and first < 1:
            raise ConfigError(
                f"the ImageNet stem's first cell has filters / {self.filter_scaling_rate**2:g} = {first} filters (got "
                f"{self.filters} filters): use at least 8 (--filters)"
            )

    @property
    def reduction_indices(self) -> list[int]:
        """Normal-cell indices that a reduction cell precedes: ``int(k / (R + 1) * num_cells)``."""
        r = self.num_reduction_layers
        return [int(k / (r + 1) * self.num_cells) for k in range(1, r + 1)]


class NASNetOutput(NamedTuple):
    """What a training-mode forward returns when the aux head is on."""

    logits: torch.Tensor
    aux_logits: torch.Tensor


@dataclass(frozen=True)
class _Layer:
    """One cell of the plan: its module name, genotype cell, and where its second input comes from."""

    name: str
    reduction: bool
    filters: int
    prev: int  # offset into the list of outputs (-2: the output before the input, -3: one further back)


def _stem(config: MacroConfig, in_chans: int, norm: Any) -> ConvBN:
    """ImageNet: a 3x3 stride-2 VALID conv of 32 x stem multiplier; CIFAR: a 3x3 SAME conv of filters x multiplier."""
    if config.stem == "imagenet":
        c_stem = int(32 * config.stem_multiplier)
        return ConvBN(nn.Conv2d(in_chans, c_stem, 3, stride=2, bias=False), norm(c_stem))
    c_stem = int(config.filters * config.stem_multiplier)
    return ConvBN(SameConv2d(in_chans, c_stem, 3), norm(c_stem))


def _plan(config: MacroConfig) -> list[_Layer]:
    """The cells in forward order: ImageNet's two stem cells, then N normal cells per stage with a reduction cell
    before each later stage, the filters scaled by the filter scaling rate at each reduction."""
    plan: list[_Layer] = []
    rate = config.filter_scaling_rate
    if config.stem == "imagenet":
        for i in range(2):
            plan.append(_Layer(f"cell_stem_{i}", True, int(config.filters / rate ** (2 - i)), -2))
    scaling = 1.0
    reduction_at = config.reduction_indices
    for n in range(config.num_cells):
        prev = -2
        if n in reduction_at:
            scaling *= rate
            plan.append(_Layer(f"reduction_cell_{reduction_at.index(n)}", True, int(config.filters * scaling), -2))
            prev = -3 if config.skip_reduction_layer_input else -2
        plan.append(_Layer(f"cell_{n}", False, int(config.filters * scaling), prev))
    return plan


class AuxHead(nn.Module):
    """avg pool 5x5/3 VALID -> 1x1 conv 128 -> BN -> ReLU -> conv 768 (kernel = remaining size) -> BN -> ReLU -> FC."""

    def __init__(self, c_in: int, num_classes: int, feat_size: int, norm: Any) -> None:
        super().__init__()
        k = (feat_size - 5) // 3 + 1
        if k < 1:
            raise ConfigError(
                f"the aux head needs a feature map of at least 5x5, got {feat_size}x{feat_size}: build the model for a "
                "larger input (img_size, --img-size) or without the aux head (aux_head=False)"
            )
        self.kernel_size = k
        self.proj = nn.Conv2d(c_in, 128, 1, bias=False)
        self.bn0 = norm(128)
        self.conv = nn.Conv2d(128, 768, k, bias=False)
        self.bn1 = norm(768)
        self.fc = nn.Linear(768, num_classes) if num_classes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(x, 5, 3)
        if x.shape[-1] != self.kernel_size or x.shape[-2] != self.kernel_size:
            raise ConfigError(
                f"the aux head was built for a {self.kernel_size}x{self.kernel_size} map after pooling and got "
                f"{tuple(x.shape[-2:])}: create the model with img_size set to the training input size"
            )
        x = F.relu(self.bn0(self.proj(x)))
        x = F.relu(self.bn1(self.conv(x)))
        return self.fc(x.flatten(1))


class NASNet(nn.Module):
    """A NASNet built from a genotype and a macro config, with timm's model interface.

    Args:
        genotype: the normal and reduction cells.
        config: the macro layout (`MacroConfig`), e.g. ``zoo.CONFIGS["mobile"]``.
        num_classes: classifier outputs; 0 for a headless feature extractor.
        in_chans: input channels.
        img_size: training input size; sizes the aux head only (any size works for inference).
        drop_rate: dropout before the classifier (default ``1 - config.dense_dropout_keep_prob``).
        drop_path_rate: maximum ScheduledDropPath probability (default ``1 - config.drop_path_keep_prob``).
        aux_head: build the auxiliary classifier (used in training mode only).
        global_pool: timm pool type for the head.
        channels_last: run the activations in channels_last memory format (the input is converted at the stem and
            every layer follows): the fast layout for CPU and GPU convolutions. The parameters keep PyTorch's
            standard layout, so state dicts save anywhere (safetensors needs contiguous tensors); the training
            loop can put them in channels_last too (`TrainConfig.channels_last`).
    """

    def __init__(
        self,
        genotype: Genotype = NASNET_A,
        config: MacroConfig | None = None,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        drop_rate: float | None = None,
        drop_path_rate: float | None = None,
        aux_head: bool = False,
        global_pool: str = "avg",
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        if config is None:
            raise ConfigError("NASNet needs a MacroConfig; use nasnet_zoo.create_model for the zoo's layouts")
        refuse_oversized(  # before anything is allocated: a clear error, not the allocator's or the OOM killer
            memory_bound(genotype, config, num_classes, in_chans, img_size, aux_head),
            partial(
                NASNet, genotype, config, num_classes, in_chans, img_size, aux_head=aux_head, global_pool=global_pool
            ),
            f"a NASNet of {config.num_cells} cells and {config.filters} filters",
        )
        self.genotype, self.config = genotype, config
        self.num_classes, self.in_chans = num_classes, in_chans
        self.drop_rate = 1 - config.dense_dropout_keep_prob if drop_rate is None else drop_rate
        self.drop_path_rate = 1 - config.drop_path_keep_prob if drop_path_rate is None else drop_path_rate
        self.grad_checkpointing = False
        norm = partial(nn.BatchNorm2d, eps=config.bn_eps, momentum=1 - config.bn_decay)

        imagenet = config.stem == "imagenet"
        self.stem = _stem(config, in_chans, norm)
        c_stem = self.stem.bn.num_features
        plan, reduction_at = _plan(config), config.reduction_indices

        # --- build the cells, tracking width, stride and size of every output -------------------------------
        chans: list[int | None] = [None, c_stem]  # None: "no input two cells back", as in TF's cell_outputs
        strides = [0, 2 if imagenet else 1]
        size = (img_size - 3) // 2 + 1 if imagenet else img_size
        self.layer_names = [layer.name for layer in plan]
        self._prev = [layer.prev for layer in plan]
        self._max_drop = [self.drop_path_rate * (i + 1) / len(plan) for i in range(len(plan))]
        # Feature levels: the stem, then the last cell at each resolution (ImageNet also taps cell_stem_0).
        level_ends = {f"cell_{n - 1}" for n in [*reduction_at, config.num_cells]} | (
            {"cell_stem_0"} if imagenet else set()
        )
        self.feature_info = [dict(num_chs=c_stem, reduction=strides[-1], module="stem")]
        self._feature_layers = [-1]  # plan index after which each level is taken (-1: the stem)
        aux_cell = f"cell_{reduction_at[1] - 1}" if len(reduction_at) >= 2 else None
        self.aux_head: AuxHead | None = None
        self._aux_after = -1
        for i, layer in enumerate(plan):
            c_prev = chans[layer.prev] if len(chans) >= -layer.prev else None
            prev_reduced = c_prev is not None and strides[layer.prev] != strides[-1]
            g = genotype.reduction if layer.reduction else genotype.normal
            cell = Cell(g, chans[-1], c_prev, prev_reduced, layer.filters, layer.reduction, norm)
            self.add_module(layer.name, cell)
            chans.append(cell.out_channels)
            strides.append(strides[-1] * (2 if layer.reduction else 1))
            size = -(-size // 2) if layer.reduction else size
            if layer.name in level_ends:
                self.feature_info.append(dict(num_chs=cell.out_channels, reduction=strides[-1], module=layer.name))
                self._feature_layers.append(i)
            if aux_head and layer.name == aux_cell and num_classes:
                self.aux_head = AuxHead(cell.out_channels, num_classes, size, norm)
                self._aux_after = i

        # A level's map is the ReLU of its output, computed by the ReLU module that reads it first (the next cell's
        # pre0, or the final ReLU): timm's hook and FX extractors tap that module, so every feature_cls agrees.
        self.final_act = nn.ReLU()
        for info in self.feature_info:
            i = self.layer_names.index(info["module"]) if info["module"] in self.layer_names else -1
            info["module"] = f"{plan[i + 1].name}.pre0.act" if i + 1 < len(plan) else "final_act"
        self.num_features = self.head_hidden_size = chans[-1]
        self.global_pool, self.head_drop, self.classifier = make_head(
            self.num_features, num_classes, global_pool, self.drop_rate
        )
        self.register_buffer("drop_path_progress", torch.zeros(()), persistent=False)
        self._init_weights()
        self.channels_last = channels_last

    # --- initialisation: see `init_conv` and `init_head` ------------------------------------------------------
    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                init_conv(m)
        for m in (self.classifier, self.aux_head.fc if self.aux_head is not None else None):
            if isinstance(m, nn.Linear):
                init_head(m)

    # --- ScheduledDropPath ----------------------------------------------------------------------------------
    def set_drop_path_progress(self, progress: float) -> None:
        """Fraction of training done (step / total steps); drop path ramps up linearly and stays at 1."""
        self.drop_path_progress.fill_(min(max(float(progress), 0.0), 1.0))

    def _keep_prob(self, i: int) -> torch.Tensor | None:
        if not self.training or self._max_drop[i] == 0:
            return None
        return 1 - self._max_drop[i] * self.drop_path_progress

    # --- forward ------------------------------------------------------------------------------------------
    def _run(
        self, x: torch.Tensor, take: list[int] | None = None, stop: int | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
        """Run the stem and the cells up to plan index ``stop`` (None: all; -1: none); return the ReLU of the last
        output, the (ReLU'd) feature levels in ``take``, and the aux head's input."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.grad_checkpointing and self.training and not torch.jit.is_scripting():
            x = _checkpoint(self.stem, x)
        else:
            x = self.stem(x)
        if self.channels_last:  # a 1-channel input is both layouts at once, and the stem's output follows NCHW
            x = x.contiguous(memory_format=torch.channels_last)
        feats: list[torch.Tensor] = []
        if take is not None and 0 in take:
            feats.append(F.relu(x))
        outs: list[torch.Tensor | None] = [None, x]
        aux_in: torch.Tensor | None = None
        level, i = 1, 0
        for cell in self.children():  # the cells in plan order (a loop TorchScript unrolls: no break in it)
            if hasattr(cell, "blocks"):  # a Cell (TorchScript's isinstance tells only one Cell type)
                if stop is None or i <= stop:
                    prev = outs[self._prev[i]] if len(outs) >= -self._prev[i] else None
                    keep = self._keep_prob(i)
                    if self.grad_checkpointing and self.training and not torch.jit.is_scripting():
                        x = _checkpoint(cell, x, prev, keep)
                    else:
                        x = cell(x, prev, keep)
                    outs = [outs[-2], outs[-1], x]
                    if level < len(self._feature_layers) and i == self._feature_layers[level]:
                        if take is not None and level in take:
                            feats.append(F.relu(x))
                        level += 1
                    if i == self._aux_after and self.training:
                        aux_in = F.relu(x)
                i += 1
        return self.final_act(x), feats, aux_in

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and cells, then the final ReLU: the map the head pools."""
        return self._run(x)[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | NASNetOutput:
        x, _, aux_in = self._run(x)
        logits = self.forward_head(x)
        if self.aux_head is not None and aux_in is not None:
            return NASNetOutput(logits, self.aux_head(aux_in))
        return logits

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's feature API: the ReLU'd output of each level in `feature_info` (stem, then per resolution).

        ``norm`` is accepted for interface compatibility; NASNet has no final norm layer.
        """
        if output_fmt != "NCHW":
            raise ConfigError(f"only NCHW output is supported, got {output_fmt!r}")
        take, max_index = feature_take_indices(len(self.feature_info), indices)
        stop = self._feature_layers[max_index] if (stop_early or intermediates_only) else None
        x, feats, _ = self._run(x, list(take), stop)
        if intermediates_only:
            return feats
        return x, feats

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the cells after the last level in ``indices`` (and the head); returns the kept indices."""
        take, max_index = feature_take_indices(len(self.feature_info), indices)
        last = self._feature_layers[max_index]
        for name in self.layer_names[last + 1 :]:
            delattr(self, name)
        self.layer_names = self.layer_names[: last + 1]
        self.aux_head = None
        if last + 1 < len(self._prev) or prune_head:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
            self.reset_classifier(0, "")
        return take

    # --- timm interface -----------------------------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        pool_type = self.global_pool.pool_type if global_pool is None else global_pool
        p = next(self.parameters())
        self.global_pool, _, self.classifier = make_head(self.num_features, num_classes, pool_type)
        self.global_pool.to(p.device)
        self.classifier.to(p.device, p.dtype)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the stem and each cell in the backward pass instead of storing their activations."""
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Layer groups for layer-wise lr decay / freezing: the stem (with the stem cells), then one group per
        normal cell, each reduction cell joining the normal cell it precedes."""
        reductions = [(rf"^reduction_cell_{k}\.", (n,)) for k, n in enumerate(self.config.reduction_indices)]
        return dict(stem=r"^stem\.|^cell_stem_\d+\.", blocks=[(r"^cell_(\d+)\.", None), *reductions])

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Parameter names to exempt from weight decay: none (TF-slim decays every conv and FC weight and no
        BN parameter; BN parameters are excluded by timm's optimizer factory on its own, being 1-d)."""
        return set()


def _checkpoint(module: nn.Module, *args: Any) -> torch.Tensor:
    """``module(*args)`` under gradient checkpointing, its recomputation leaving the BN statistics alone: the
    forward updates them once, as without checkpointing (a plain recompute would update them a second time)."""
    return checkpoint(module, *args, use_reentrant=False, context_fn=lambda: (nullcontext(), _bn_stats_kept(module)))


@contextmanager
def _bn_stats_kept(module: nn.Module) -> Iterator[None]:
    """BN layers in ``module`` normalise with the batch statistics as in training but leave running statistics
    and batch counts as they were (momentum 0 keeps the running averages exactly)."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    kept = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, count) in zip(bns, kept, strict=True):
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)
