"""Exactness against the PyTorch ports (random weights, randomised BN statistics, eval mode), through the
timm/Cadene converter and timm's pretrained-file path.

* Cadene's NASNetAMobile at 224 and NASNetALarge at 331 are TF-exact at those sizes (pad-and-crop tricks).
* timm's nasnetalarge counts the zero padding in its four stride-2 average pools; with those replaced by
  pad-excluding pools it is TF-exact at every size. Unpatched, it differs: the test shows that too.
"""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

import nasnet_zoo
from nasnet_zoo.cli import main as cli
from tests.helpers import randomize_bn

pretrainedmodels = pytest.importorskip("pretrainedmodels")  # the peers extra; installed in CI


class TFAvgPool3x3Stride2(nn.Module):
    """TF "SAME" 3x3/2 average pool written independently of ours: zero-pad explicitly, sum, and divide by the
    number of real pixels (a pooled map of ones)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for n in (x.shape[-1], x.shape[-2]):
            total = max((-(-n // 2) - 1) * 2 + 3 - n, 0)
            pads += [total // 2, total - total // 2]
        ones = F.pad(torch.ones_like(x[:1, :1]), pads)
        total = F.avg_pool2d(F.pad(x, pads), 3, 2, divisor_override=1)
        return total / F.avg_pool2d(ones, 3, 2, divisor_override=1)


def peer_with_random_weights(model: nn.Module) -> nn.Module:
    randomize_bn(model)
    with torch.no_grad():
        model.last_linear.weight.mul_(20)  # logits of order 10, so an absolute 1e-4 bound means something
    return model.eval()


def convert_through_cli(peer: nn.Module, model_name: str, tmp_path) -> nn.Module:
    src = tmp_path / "peer.pth"
    torch.save(peer.state_dict(), src)
    out = tmp_path / "ours.safetensors"
    assert cli(["convert", "timm", str(src), "--model", model_name, "-o", str(out)]) == 0
    ours = timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=dict(file=str(out)))
    return ours.eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize(
    "peer_cls, model_name, size",
    [("nasnet_mobile.NASNetAMobile", "nasnet_a_mobile", 224), ("nasnet.NASNetALarge", "nasnet_a_large", 331)],
)
def test_cadene_ports(peer_cls, model_name, size, tmp_path, measurements):
    torch.manual_seed(0)
    module, cls = peer_cls.split(".")
    peer_cls = getattr(getattr(pretrainedmodels.models, module), cls)
    peer = peer_with_random_weights(peer_cls(num_classes=1001))
    ours = convert_through_cli(peer, model_name, tmp_path)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        peer_logits, our_logits = peer(x)[:, 1:], ours(x)  # the converter drops TF's background class 0
        peer_feats = peer.relu(peer.features(x))
        our_feats = ours.forward_features(x)
    print(f"{model_name} vs Cadene at {size}: logits {max_diff(peer_logits, our_logits):.2e} "
          f"(max |logit| {peer_logits.abs().max():.1f}), features {max_diff(peer_feats, our_feats):.2e}")  # fmt: skip
    assert peer_logits.abs().max() > 1.0
    assert max_diff(peer_logits, our_logits) <= 1e-4
    assert max_diff(peer_feats, our_feats) <= 1e-4
    measurements.peer(
        model_name, f"Cadene `{cls}` (pretrainedmodels 0.7.4)", size,
        logits=(max_diff(peer_logits, our_logits), peer_logits.abs().max()),
        features=(max_diff(peer_feats, our_feats), peer_feats.abs().max()),
        agrees=True, note="TF-exact at its native size (pad-and-crop); its weights through `nasnet-zoo convert timm`",
    )  # fmt: skip


def test_timm_nasnetalarge_patched_is_exact_at_every_size_and_unpatched_is_not(tmp_path, measurements):
    torch.manual_seed(0)
    peer = peer_with_random_weights(timm.create_model("nasnetalarge"))
    ours = convert_through_cli(peer, "nasnet_a_large", tmp_path)
    assert type(ours) is nasnet_zoo.NASNet
    x = torch.randn(1, 3, 331, 331)
    with torch.no_grad():
        peer_feats, our_feats = peer.forward_features(x), ours.forward_features(x)
        peer_logits, our_logits = peer.forward_head(peer_feats), ours.forward_head(our_feats)
    unpatched = max_diff(peer_feats, our_feats)
    print(f"timm nasnetalarge as released vs ours at 331: features differ by {unpatched:.2e} (its known deviation)")
    assert unpatched > 1e-3
    measurements.peer(
        "nasnet_a_large", "timm `nasnetalarge` as released", 331,
        logits=(max_diff(peer_logits, our_logits), peer_logits.abs().max()),
        features=(unpatched, peer_feats.abs().max()),
        agrees=False, note="its 4 stride-2 average pools count the zero padding, TF's do not",
    )  # fmt: skip

    for name in ("cell_stem_0", "cell_stem_1", "reduction_cell_0", "reduction_cell_1"):
        getattr(peer, name).comb_iter_2_left = TFAvgPool3x3Stride2()
    for size in (331, 299, 256, 225):
        x = torch.randn(1, 3, size, size)
        with torch.no_grad():
            peer_feats, our_feats = peer.forward_features(x), ours.forward_features(x)
            peer_logits, our_logits = peer.forward_head(peer_feats), ours.forward_head(our_feats)
        feats, logits = max_diff(peer_feats, our_feats), max_diff(peer_logits, our_logits)
        print(f"timm nasnetalarge (pad-excluding pools) vs ours at {size}: features {feats:.2e}, logits {logits:.2e}")
        assert feats <= 1e-4 and logits <= 1e-4
        measurements.peer(
            "nasnet_a_large", "timm `nasnetalarge`, pad-excluding pools", size,
            logits=(logits, peer_logits.abs().max()), features=(feats, peer_feats.abs().max()),
            agrees=True, note="its 4 stride-2 average pools swapped for ones that divide by real pixels, as TF does",
        )  # fmt: skip
