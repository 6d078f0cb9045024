"""The op vocabulary as modules, with TensorFlow "SAME" padding at every input size.

TF pads a strided op asymmetrically when the input size needs it: the extra row/column goes at the bottom/
right (e.g. a 3x3 stride-2 op on an even size pads 0 before and 1 after). Average pooling divides by the
number of real pixels and max pooling pads with -inf. `SameConv2d` and `SamePool2d` reproduce that exactly
for any input size; pooling needs no copy (the odd pixel is the extra window of ``ceil_mode``).

Every builder in `OP_BUILDERS` has the signature ``(c_in, c_out, stride, norm) -> nn.Module`` and maps
``c_in`` channels to ``c_out`` channels (pools add a 1x1 conv + BN only when the widths differ).

Plain reference code, as TF-slim writes it: every op takes its own ReLU, every BN runs as a layer. The modules
script (``torch.jit.script``), trace (torch.fx: the SAME-padding functions are wrapped, so a graph holds them
as calls instead of tracing into their arithmetic on the input's shape) and export. Built under timm's
``exportable`` flag (``timm.create_model(..., exportable=True)``), the SAME ops read the input size as plain
integers, so an exported graph gets constant paddings for the input size it was exported at, as timm's own
``Conv2dSameExport`` does. Inference fast paths live in `nasnet_zoo.fast`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.fx
import torch.nn.functional as F
from timm.layers import is_exportable
from torch import nn

from .errors import ConfigError
from .genotype import OPS

#: Makes the normalisation layer for a channel count (BatchNorm with the config's eps and momentum).
Norm = Callable[[int], nn.Module]


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF "SAME" padding of one spatial dimension as ``(before, after)``; ``after`` takes the odd pixel."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _size(x: torch.Tensor, dim: int, static: bool) -> int:
    """``x.shape[dim]``; as a constant of a traced graph when ``static`` (a tracer's size becomes an int)."""
    return int(x.shape[dim]) if static else x.shape[dim]


def conv2d_same(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: list[int],
    dilation: list[int],
    groups: int,
    static: bool = False,
) -> torch.Tensor:
    """``F.conv2d`` with TF "SAME" padding: symmetric padding in the conv, an explicit pad when asymmetric."""
    top, bottom = same_padding(_size(x, -2, static), weight.shape[-2], stride[0], dilation[0])
    left, right = same_padding(_size(x, -1, static), weight.shape[-1], stride[1], dilation[1])
    if top == bottom and left == right:
        return F.conv2d(x, weight, bias, stride, [top, left], dilation, groups)
    x = F.pad(x, [left, right, top, bottom])
    return F.conv2d(x, weight, bias, stride, [0, 0], dilation, groups)


def pool2d_same(x: torch.Tensor, kind: str, kernel_size: int, stride: int, static: bool = False) -> torch.Tensor:
    """Max (-inf padding) or average (real-pixel divisor) pooling with TF "SAME" padding. TF's padding is
    ``(p, p)`` or ``(p, p + 1)``; symmetric ``p`` plus ``ceil_mode``'s extra window is exactly the latter."""
    top, _ = same_padding(_size(x, -2, static), kernel_size, stride)
    left, _ = same_padding(_size(x, -1, static), kernel_size, stride)
    if kind == "max":
        return F.max_pool2d(x, kernel_size, stride, [top, left], ceil_mode=True)
    return F.avg_pool2d(x, kernel_size, stride, [top, left], ceil_mode=True, count_include_pad=False)


torch.fx.wrap("conv2d_same")
torch.fx.wrap("pool2d_same")


class SameConv2d(nn.Conv2d):
    """A bias-free `Conv2d` with TF "SAME" padding for every input size (asymmetric only when needed)."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        dilation: int = 1,
        groups: int = 1,
    ) -> None:
        super().__init__(c_in, c_out, kernel_size, stride, 0, dilation, groups, bias=False)
        self.static = is_exportable()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stride, dilation = list(self.stride), list(self.dilation)
        return conv2d_same(x, self.weight, self.bias, stride, dilation, self.groups, self.static)


class SamePool2d(nn.Module):
    """Max or average pooling with TF "SAME" padding: -inf padding for max, real-pixel divisor for average."""

    def __init__(self, kind: str, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        if kind not in ("avg", "max") or kernel_size % 2 == 0 or not 1 <= stride <= kernel_size:
            raise ConfigError(f"unsupported pool: {kind} {kernel_size}x{kernel_size} stride {stride}")
        self.kind, self.kernel_size, self.stride = kind, kernel_size, stride
        self.static = is_exportable()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pool2d_same(x, self.kind, self.kernel_size, self.stride, self.static)

    def extra_repr(self) -> str:
        return f"{self.kind}, kernel_size={self.kernel_size}, stride={self.stride}"


class ConvBN(nn.Sequential):
    """[pool ->] conv -> BN, no ReLU: the ImageNet/CIFAR stem, and the projections to the cell's width."""

    def __init__(self, conv: nn.Conv2d, bn: nn.Module, pool: nn.Module | None = None) -> None:
        layers = OrderedDict(pool=pool) if pool is not None else OrderedDict()
        super().__init__(OrderedDict(layers, conv=conv, bn=bn))


class ReLUConvBN(nn.Sequential):
    """ReLU -> conv (TF "SAME") -> BN: the paper's plain convolutions and the projections."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, norm: Norm, dilation: int = 1) -> None:
        super().__init__(
            OrderedDict(
                act=nn.ReLU(),
                conv=SameConv2d(c_in, c_out, kernel_size, stride, dilation),
                bn=norm(c_out),
            )
        )


class FactorizedConv(nn.Sequential):
    """ReLU -> 1xk conv -> kx1 conv -> BN (the paper's "1x3 then 3x1" and "1x7 then 7x1")."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, norm: Norm) -> None:
        super().__init__(
            OrderedDict(
                act=nn.ReLU(),
                conv1=SameConv2d(c_in, c_out, (1, k), (1, stride)),
                conv2=SameConv2d(c_out, c_out, (k, 1), (stride, 1)),
                bn=norm(c_out),
            )
        )


class SepConvStack(nn.Sequential):
    """Twice (ReLU -> depthwise kxk -> pointwise 1x1 -> BN); the stride is on the first depthwise conv only.

    The first pointwise conv already maps to ``c_out`` (it matters when the input is wider, e.g. the raw stem
    output feeding the first stem cell), as in TF-slim. The second ReLU works in place: its input is the
    first BN's output, which nothing else reads (BN's backward needs its input, not its output).
    """

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, norm: Norm) -> None:
        super().__init__(
            OrderedDict(
                act=nn.ReLU(),
                dw1=SameConv2d(c_in, c_in, k, stride, groups=c_in),
                pw1=SameConv2d(c_in, c_out, 1),
                bn1=norm(c_out),
                act2=nn.ReLU(inplace=True),
                dw2=SameConv2d(c_out, c_out, k, 1, groups=c_out),
                pw2=SameConv2d(c_out, c_out, 1),
                bn2=norm(c_out),
            )
        )


def projection(c_in: int, c_out: int, norm: Norm) -> ConvBN:
    """1x1 conv -> BN, no ReLU: brings an input state in the concat list to the cell's width."""
    return ConvBN(SameConv2d(c_in, c_out, 1), norm(c_out))


def pool(kind: str, k: int, c_in: int, c_out: int, stride: int, norm: Norm) -> nn.Module:
    """A pool, followed by a 1x1 conv + BN (no ReLU) when the input has another width than the cell."""
    p = SamePool2d(kind, k, stride)
    if c_in == c_out:
        return p
    return ConvBN(SameConv2d(c_in, c_out, 1), norm(c_out), pool=p)


def identity(c_in: int, c_out: int, stride: int, norm: Norm) -> nn.Module:
    """Identity; ReLU -> 1x1 conv (with the stride) -> BN when a stride or a width change is needed."""
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return ReLUConvBN(c_in, c_out, 1, stride, norm)


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing pixels: two 1x1 stride-2 convs (to c_out/2 each), the second on the
    input shifted by one pixel (drop top/left, pad bottom/right), then concat and BN. No ReLU inside. (TF-slim
    subsamples with a 1x1 stride-2 average pool before each conv: the same pixels.)"""

    def __init__(self, c_in: int, c_out: int, norm: Norm) -> None:
        super().__init__()
        if c_out % 2:
            raise ConfigError(
                f"a factorized reduction needs an even number of output channels, got {c_out}: choose filters "
                "(--filters) that give every cell an even width, e.g. a multiple of 8"
            )
        self.conv1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = norm(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = F.pad(x[:, :, 1:, 1:], [0, 1, 0, 1])
        return self.bn(torch.cat([self.conv1(x), self.conv2(shifted)], 1))


class ReLUReduce(nn.Sequential):
    """ReLU -> `FactorizedReduce`: how a cell brings the input two cells back to its resolution."""

    def __init__(self, c_in: int, c_out: int, norm: Norm) -> None:
        super().__init__(OrderedDict(act=nn.ReLU(), reduce=FactorizedReduce(c_in, c_out, norm)))


def drop_path(x: torch.Tensor, keep_prob: torch.Tensor) -> torch.Tensor:
    """Zero whole examples with probability ``1 - keep_prob`` and scale survivors by ``1 / keep_prob`` (a 0-d
    tensor, so the schedule can move it without a recompile; a Python float works too outside TorchScript)."""
    mask = (torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) + keep_prob).floor_()
    return x / keep_prob * mask


#: name -> builder(c_in, c_out, stride, norm); the keys are exactly `genotype.OPS`.
OP_BUILDERS: dict[str, Callable[[int, int, int, Norm], nn.Module]] = {
    "identity": identity,
    "conv_1x3_3x1": lambda ci, co, s, n: FactorizedConv(ci, co, 3, s, n),
    "conv_1x7_7x1": lambda ci, co, s, n: FactorizedConv(ci, co, 7, s, n),
    "dil_conv_3x3": lambda ci, co, s, n: ReLUConvBN(ci, co, 3, s, n, dilation=2),
    "avg_pool_3x3": lambda ci, co, s, n: pool("avg", 3, ci, co, s, n),
    "max_pool_3x3": lambda ci, co, s, n: pool("max", 3, ci, co, s, n),
    "max_pool_5x5": lambda ci, co, s, n: pool("max", 5, ci, co, s, n),
    "max_pool_7x7": lambda ci, co, s, n: pool("max", 7, ci, co, s, n),
    "conv_1x1": lambda ci, co, s, n: ReLUConvBN(ci, co, 1, s, n),
    "conv_3x3": lambda ci, co, s, n: ReLUConvBN(ci, co, 3, s, n),
    "sep_conv_3x3": lambda ci, co, s, n: SepConvStack(ci, co, 3, s, n),
    "sep_conv_5x5": lambda ci, co, s, n: SepConvStack(ci, co, 5, s, n),
    "sep_conv_7x7": lambda ci, co, s, n: SepConvStack(ci, co, 7, s, n),
}
assert tuple(OP_BUILDERS) == OPS, "every op in genotype.OPS needs exactly one builder"


def make_op(name: str, c_in: int, c_out: int, stride: int, norm: Norm) -> nn.Module:
    """Build op ``name`` mapping ``c_in`` to ``c_out`` channels with the given stride."""
    return OP_BUILDERS[name](c_in, c_out, stride, norm)
