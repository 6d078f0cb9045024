"""The op vocabulary as modules, with TensorFlow "SAME" padding at every input size.

TF pads a strided op asymmetrically when the input size needs it: the extra row/column goes at the bottom/
right (e.g. a 3x3 stride-2 op on an even size pads 0 before and 1 after). Average pooling divides by the
number of real pixels and max pooling pads with -inf. `SameConv2d` and `SamePool2d` reproduce that exactly
for any input size; pooling needs no copy (the odd pixel is the extra window of ``ceil_mode``).

Every builder in `OP_BUILDERS` has the signature ``(c_in, c_out, stride, norm) -> nn.Module`` and maps
``c_in`` channels to ``c_out`` channels (pools add a 1x1 conv + BN only when the widths differ).

Two things make inference fast without changing what is computed (tests/test_fast_paths.py bounds both):

* `conv_bn` runs a conv and the BN after it as one conv with the BN folded into its weights and bias when
  nothing needs the BN as a layer: BN in eval mode, autograd off, not being traced by torch.compile/export,
  no forward hooks on either layer (so tools that hook layers, e.g. `complexity.count_mult_adds`, see them).
  The folded weights are cached per conv and recomputed when any of the five tensors they come from changes
  (PyTorch's version counter and storage pointer), so an optimiser step, `load_state_dict` or `.to()` is
  seen; `NASNet.train()` drops the cache.
* Ops that start with a ReLU derive from `ReLUFirst`: a cell computes each state's ReLU once and calls the
  op's `body` on it, instead of every op reading that state taking its own ReLU (so inside a cell the ops'
  ``act`` modules are not called; they run when an op is used on its own).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from weakref import WeakKeyDictionary

import torch
import torch.nn.functional as F
from torch import nn

from .genotype import OPS

#: Makes the normalisation layer for a channel count (BatchNorm with the config's eps and momentum).
Norm = Callable[[int], nn.Module]


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF "SAME" padding of one spatial dimension as ``(before, after)``; ``after`` takes the odd pixel."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def layout(x: torch.Tensor) -> torch.memory_format:
    """``x``'s memory format: channels_last when channels are its innermost dimension (also in a strided view
    of such a tensor), else the standard one."""
    return torch.channels_last if x.ndim == 4 and x.stride(1) == 1 else torch.contiguous_format


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

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if layout(x) == torch.channels_last:  # the output follows the input's layout, whatever the weight's
            weight = weight.contiguous(memory_format=torch.channels_last)
        top, bottom = same_padding(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = same_padding(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
        if top == bottom and left == right:
            return F.conv2d(x, weight, bias, self.stride, (top, left), self.dilation, self.groups)
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, weight, bias, self.stride, 0, self.dilation, self.groups)


class SamePool2d(nn.Module):
    """Max or average pooling with TF "SAME" padding: -inf padding for max, real-pixel divisor for average."""

    def __init__(self, kind: str, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        if kind not in ("avg", "max") or kernel_size % 2 == 0 or not 1 <= stride <= kernel_size:
            raise ValueError(f"unsupported pool: {kind} {kernel_size}x{kernel_size} stride {stride}")
        self.kind, self.kernel_size, self.stride = kind, kernel_size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # TF's padding is (p, p) or (p, p + 1); symmetric p plus ceil_mode's extra window is exactly the latter.
        top, _ = same_padding(x.shape[-2], self.kernel_size, self.stride)
        left, _ = same_padding(x.shape[-1], self.kernel_size, self.stride)
        if self.kind == "max":
            return F.max_pool2d(x, self.kernel_size, self.stride, (top, left), ceil_mode=True)
        return F.avg_pool2d(x, self.kernel_size, self.stride, (top, left), ceil_mode=True, count_include_pad=False)

    def extra_repr(self) -> str:
        return f"{self.kind}, kernel_size={self.kernel_size}, stride={self.stride}"


# --- conv + BN, folded for inference ------------------------------------------------------------------------
_FOLDED: WeakKeyDictionary[nn.Conv2d, tuple[tuple, torch.Tensor, torch.Tensor]] = WeakKeyDictionary()


def folds_bn(bn: nn.Module, *convs: nn.Module) -> bool:
    """Whether ``bn`` and the convs before it run as folded convs now: BN in eval mode, autograd off, not
    traced (tracers fold on their own), and no forward hooks on these layers (they must see them run)."""
    if bn.training or torch.is_grad_enabled() or torch.compiler.is_compiling():
        return False
    return not any(m._forward_hooks or m._forward_pre_hooks for m in (bn, *convs))


def _folded(
    conv: nn.Conv2d, bn: nn.BatchNorm2d, channels: slice, fmt: torch.memory_format
) -> tuple[torch.Tensor, torch.Tensor]:
    """``conv``'s weight and a bias with ``bn[channels]`` folded in: ``bn(conv(x)) == conv'(x)``; the weight in
    the memory format ``fmt`` of the input (so the conv needs no per-call copy of it). Cached."""
    w, g, b, mean, var = conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var
    key = (w._version, g._version, b._version, mean._version, var._version,  # in-place changes
           w.data_ptr(), g.data_ptr(), b.data_ptr(), mean.data_ptr(), var.data_ptr(),  # new storage
           channels.start, bn.eps, fmt)  # fmt: skip
    hit = _FOLDED.get(conv)
    if hit is not None and hit[0] == key:
        return hit[1], hit[2]
    scale = g[channels] * torch.rsqrt(var[channels] + bn.eps)
    weight = (w * scale.view(-1, 1, 1, 1)).contiguous(memory_format=fmt)
    bias = b[channels] - mean[channels] * scale
    _FOLDED[conv] = (key, weight, bias)
    return weight, bias


def conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: torch.Tensor, channels: slice = slice(None)) -> torch.Tensor:
    """``bn(conv(x))`` (``bn[channels]`` when the BN spans several convs), one conv with BN folded in when
    `folds_bn`; else the layers as they are."""
    if folds_bn(bn, conv):
        return conv._conv_forward(x, *_folded(conv, bn, channels, layout(x)))
    if channels == slice(None):
        return bn(conv(x))
    raise ValueError("a BN shared by several convs is applied by its owner outside inference")


def drop_folded(module: nn.Module) -> None:
    """Forget the folded weights of every conv in ``module`` (they are rebuilt on the next inference call)."""
    for m in module.modules():
        _FOLDED.pop(m, None)


class ConvBN(nn.Sequential):
    """[pool ->] conv -> BN, no ReLU: the ImageNet/CIFAR stem, and the projections to the cell's width."""

    def __init__(self, conv: nn.Conv2d, bn: nn.Module, pool: nn.Module | None = None) -> None:
        layers = OrderedDict(pool=pool) if pool is not None else OrderedDict()
        super().__init__(OrderedDict(layers, conv=conv, bn=bn))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if "pool" in self._modules:
            x = self.pool(x)
        return conv_bn(self.conv, self.bn, x)


# --- ops that start with a ReLU -------------------------------------------------------------------------------
class ReLUFirst(nn.Sequential):
    """An op whose first layer is ReLU (the ``act`` child). ``forward(x) == body(relu(x))``; a cell shares
    the ReLU of a state among all the ops reading it by calling `body` directly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.act(x))

    def body(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class ReLUConvBN(ReLUFirst):
    """ReLU -> conv (TF "SAME") -> BN: the paper's plain convolutions and the projections."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, norm: Norm, dilation: int = 1) -> None:
        super().__init__(
            OrderedDict(
                act=nn.ReLU(),
                conv=SameConv2d(c_in, c_out, kernel_size, stride, dilation),
                bn=norm(c_out),
            )
        )

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return conv_bn(self.conv, self.bn, x)


class FactorizedConv(ReLUFirst):
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

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return conv_bn(self.conv2, self.bn, self.conv1(x))


class SepConvStack(ReLUFirst):
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

    def body(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act2(conv_bn(self.pw1, self.bn1, self.dw1(x)))
        return conv_bn(self.pw2, self.bn2, self.dw2(x))


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
    input shifted by one pixel (pad bottom/right, drop top/left), then concat and BN. No ReLU inside."""

    def __init__(self, c_in: int, c_out: int, norm: Norm) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"factorized reduction needs an even number of output channels, got {c_out}")
        self.conv1 = nn.Conv2d(c_in, c_out // 2, 1, bias=False)
        self.conv2 = nn.Conv2d(c_in, c_out // 2, 1, bias=False)
        self.bn = norm(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmt = layout(x)  # the strided views are made dense in it (a conv may not see it in a view)
        x1 = x[:, :, ::2, ::2].contiguous(memory_format=fmt)
        if x.shape[-2] % 2 or x.shape[-1] % 2:  # the pad's zero row/column falls on the shifted grid
            x = F.pad(x, (0, 1, 0, 1))
        x2 = x[:, :, 1::2, 1::2].contiguous(memory_format=fmt)
        if folds_bn(self.bn, self.conv1, self.conv2):  # each half of the BN folds into its own conv
            half = self.conv1.out_channels
            return torch.cat([conv_bn(self.conv1, self.bn, x1, slice(0, half)),
                              conv_bn(self.conv2, self.bn, x2, slice(half, None))], 1)  # fmt: skip
        return self.bn(torch.cat([self.conv1(x1), self.conv2(x2)], 1))


class ReLUReduce(ReLUFirst):
    """ReLU -> `FactorizedReduce`: how a cell brings the input two cells back to its resolution."""

    def __init__(self, c_in: int, c_out: int, norm: Norm) -> None:
        super().__init__(OrderedDict(act=nn.ReLU(), reduce=FactorizedReduce(c_in, c_out, norm)))

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduce(x)


def drop_path(x: torch.Tensor, keep_prob: float | torch.Tensor) -> torch.Tensor:
    """Zero whole examples with probability ``1 - keep_prob`` and scale survivors by ``1 / keep_prob``."""
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
