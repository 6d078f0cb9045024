"""Each tracer and exporter against the eager model, per model family (CIFAR stem, ImageNet stem): TorchScript,
torch.fx, timm's FX feature extractor, torchvision's feature extractor, and ONNX through both of torch's
exporters, run with onnxruntime. The NASNet-A cell at toy width (3 cells of 8 filters) with its BN statistics
calibrated on random batches, so that eval-mode outputs have the scale of a trained model's and a relative
error means something. Agreement: max |tool - eager| <= 1e-4 max |eager|, on every output."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

import nasnet_zoo  # noqa: F401  (registers the zoo with timm)
from nasnet_zoo.runtime import torch_threads as num_threads

onnx = pytest.importorskip("onnx")  # the export extra; CI installs it
onnxruntime = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.usefixtures("one_thread")

TOY = dict(num_cells=3, filters=8)
FAMILIES = {"cifar": ("nasnet_cifar", 32), "imagenet": ("nasnet_imagenet", 64)}  # row, input size
RTOL = 1e-4


def calibrate(model: nn.Module, size: int, batches: int = 4) -> nn.Module:
    """Running statistics set to the exact average over a few random train-mode batches (momentum None), then
    eval mode. Returns the model."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    g = torch.Generator().manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(8, 3, size, size, generator=g))
    for m, momentum in zip(bns, momenta, strict=True):
        m.momentum = momentum
    return model.eval()


def assert_agrees(out: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    err = (out - ref).abs().max().item() / ref.abs().max().item()
    assert out.shape == ref.shape and err <= RTOL, f"{what}: relative error {err:.2e} > {RTOL} (shape {out.shape})"


class Family:
    """A family's calibrated model, an input it was not calibrated on, and eager's logits and feature maps."""

    def __init__(self, key: str) -> None:
        self.name, self.size = FAMILIES[key]
        torch.manual_seed(0)
        self.model = calibrate(timm.create_model(self.name, **TOY), self.size)
        self.x = torch.randn(2, 3, self.size, self.size, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            self.logits = self.model(self.x)
            self.feats = self.model.forward_intermediates(self.x, intermediates_only=True)

    def build(self, **kwargs) -> nn.Module:
        """The same row built again (with ``kwargs``) carrying the calibrated weights."""
        other = timm.create_model(self.name, **TOY, **kwargs)
        other.load_state_dict(self.model.state_dict())
        return other.eval()


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request: pytest.FixtureRequest) -> Family:
    with num_threads(1):  # set up before the function-scoped one_thread fixture applies
        return Family(request.param)


def test_calibrated_logits_have_a_trained_scale(family: Family) -> None:
    assert 0.05 < family.logits.std().item() < 100 and family.logits.abs().max().item() > 0.1


def test_torchscript(family: Family) -> None:
    scripted = torch.jit.script(family.model)
    with torch.no_grad(), torch.jit.optimized_execution(False):
        assert_agrees(scripted(family.x), family.logits, "torch.jit.script")


def test_fx_symbolic_trace(family: Family) -> None:
    graph = torch.fx.symbolic_trace(family.model)
    with torch.no_grad():
        assert_agrees(graph(family.x), family.logits, "torch.fx.symbolic_trace")
        assert_agrees(torch.jit.script(graph)(family.x), family.logits, "torch.fx then torch.jit.script")


def test_timm_fx_feature_extractor(family: Family) -> None:
    """``features_only=True, feature_cls="fx"``: timm's FX feature extractor, eager and scripted."""
    torch.manual_seed(0)
    feats = timm.create_model(family.name, **TOY, features_only=True, feature_cls="fx")
    missing, unexpected = feats.graph_module.load_state_dict(family.model.state_dict(), strict=False)
    # The train-mode graph holds drop path's keep probabilities as constants (see the README's compatibility notes)
    assert all(k.startswith("_tensor_constant") for k in missing) and all(
        k.startswith("classifier.") for k in unexpected
    )
    feats.eval()
    with torch.no_grad(), torch.jit.optimized_execution(False):
        for how, run in (("eager", feats), ("scripted", torch.jit.script(feats))):
            out = run(family.x)
            assert len(out) == len(family.feats)
            for level, (a, b) in enumerate(zip(out, family.feats, strict=True)):
                assert_agrees(a, b, f"timm FX features ({how}), level {level}")


def test_torchvision_feature_extractor(family: Family) -> None:
    """torchvision's create_feature_extractor with its own tracer: each `feature_info` level (the ReLU module
    that reads the level's output first) and the logits."""
    modules = [f["module"] for f in family.model.feature_info]
    extractor = create_feature_extractor(family.model, return_nodes=[*modules, "classifier"])
    with torch.no_grad():
        out = extractor(family.x)
    assert_agrees(out["classifier"], family.logits, "torchvision create_feature_extractor")
    for module, ref in zip(modules, family.feats, strict=True):
        assert_agrees(out[module], ref, f"torchvision create_feature_extractor at {module}")


def run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def test_onnx_torchscript_exporter(family: Family, tmp_path: Path) -> None:
    """The TorchScript-based exporter (timm's onnx_export.py) on a model built with ``exportable=True``: every
    SAME padding is a constant of the graph (no Shape op), and onnxruntime agrees with eager."""
    model = family.build(exportable=True)
    path = tmp_path / "model.onnx"
    sample = torch.randn_like(family.x)  # exported on other values than those it is checked on
    with pytest.warns(torch.jit.TracerWarning):  # the traced padding arithmetic: constants, as intended
        torch.onnx.export(model, (sample,), str(path), dynamo=False, input_names=["input"], output_names=["logits"])
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "Shape" not in ops and {"Conv", "Pad", "MaxPool", "AveragePool"} <= ops
    assert_agrees(run_onnx(path, family.x), family.logits, "ONNX (TorchScript exporter) in onnxruntime")


def test_onnx_torchscript_exporter_needs_exportable(tmp_path: Path) -> None:
    """Without ``exportable`` the paddings follow the input's shape, which that exporter cannot keep."""
    model = timm.create_model("nasnet_cifar", **TOY).eval()
    with pytest.raises(torch.onnx.errors.SymbolicValueError, match="not constant"):
        torch.onnx.export(model, (torch.randn(1, 3, 16, 16),), str(tmp_path / "m.onnx"), dynamo=False)


def test_onnx_dynamo_exporter(family: Family, tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    sample = torch.randn_like(family.x)
    torch.onnx.export(family.model, (sample,), str(path), dynamo=True, external_data=False, verbose=False)
    assert_agrees(run_onnx(path, family.x), family.logits, "ONNX (dynamo exporter) in onnxruntime")
