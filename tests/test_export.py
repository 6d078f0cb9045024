"""export.py: ONNX (run with onnxruntime) and torch.export programs agree with the eager model, a disagreeing
export is refused and leaves no file, and the CLI exports a saved model. A tiny NASNet trained for one epoch on
the digits, so its logits have a trained model's scale."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from nasnet_zoo.cli import main
from nasnet_zoo.data import digits
from nasnet_zoo.export import ExportCheckError, export_model
from nasnet_zoo.finetune import save_finetuned
from nasnet_zoo.runtime import torch_threads as num_threads
from nasnet_zoo.train import TrainConfig, fit
from nasnet_zoo.zoo import create_model

onnxruntime = pytest.importorskip("onnxruntime")  # the export extra; CI installs it


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("nasnet_cifar", num_cells=3, filters=8, in_chans=1, num_classes=10, img_size=8)
    (x, y), _ = (t.tensors for t in digits())
    with num_threads(1):
        fit(model, TensorDataset(x[:512], y[:512]), config=TrainConfig(epochs=1, lr=0.05), device="cpu")
    return model.eval()


def fresh_input(batch: int = 5) -> torch.Tensor:
    return torch.randn(batch, 1, 8, 8, generator=torch.Generator().manual_seed(123))


@pytest.mark.parametrize("fmt", ["onnx", "exported-program"])
def test_export_agrees_with_eager(fmt: str, trained: nn.Module, tmp_path: Path) -> None:
    out = tmp_path / ("m.onnx" if fmt == "onnx" else "m.pt2")
    report = export_model(trained, fmt, out, input_size=(1, 8, 8))
    assert report["path"] == str(out) and report["checked_batch_sizes"] == [2, 1] and report["max_abs_diff"] <= 1e-4
    assert report["atol"] <= report["allowed_max_abs_diff"] and report["max_abs_diff"] <= report["allowed_max_abs_diff"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # one self-contained file, no partial left

    # Independently of export_model's own check: load the file and run a batch size it has not seen.
    x = fresh_input()
    with torch.no_grad():
        eager = trained(x)
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        exported = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
    else:
        exported = torch.export.load(str(out)).module()(x)
    assert eager.abs().max() > 1  # trained logits, not a degenerate output
    assert (exported - eager).abs().max().item() <= 1e-4
    assert np.array_equal(exported.argmax(1).numpy(), eager.argmax(1).numpy())


class Drifting(nn.Module):
    """Eager output changes on every call; a traced export freezes the first value, so the check must fail."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x.flatten(1) * self.calls


def test_disagreeing_export_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ExportCheckError, match="differs from the eager model"):
        export_model(Drifting(), "exported-program", tmp_path / "d.pt2", input_size=(1, 2, 2))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="unknown export format"):
        export_model(Drifting(), "tflite", tmp_path / "d.tflite", input_size=(1, 2, 2))


def test_cli_export_of_a_saved_model(trained: nn.Module, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = save_finetuned(trained, tmp_path / "saved", data_config=dict(input_size=(1, 8, 8)))
    out = tmp_path / "digits.pt2"
    assert main(["export", str(folder), "--format", "exported-program", "-o", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["input_shape"] == [2, 1, 8, 8] and report["max_abs_diff"] <= 1e-4  # size from the saved config
    x = fresh_input()
    with torch.no_grad():
        assert (torch.export.load(str(out)).module()(x) - trained(x)).abs().max().item() <= 1e-4
    # A model without weights is not exported unless asked to be.
    assert main(["export", "nasnet_cifar", "--format", "onnx", "-o", str(tmp_path / "r.onnx")]) == 1
    assert "--no-pretrained" in capsys.readouterr().err and not (tmp_path / "r.onnx").exists()
