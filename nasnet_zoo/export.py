"""Export a model to ONNX or to a `torch.export` ExportedProgram, checked against the eager model.

Public API::

    FORMATS                              {"onnx": ".onnx", "exported-program": ".pt2"}
    export_model(model, fmt, out, *, input_size=None, batch_size=2, atol=1e-4, rtol=1e-5, seed=0) -> dict
    ExportCheckError                     the exported model disagrees with the eager one

The model is exported in eval mode on the CPU with a dynamic batch dimension (spatial size fixed). The file is
written under a temporary name, loaded back (ONNX with onnxruntime, the ExportedProgram with
`torch.export.load`) and run on seeded random inputs of ``batch_size`` and of 1 image; only when the outputs
match the eager model's, ``max |exported - eager| <= atol + rtol * max |eager|``, is it renamed to ``out``. The
relative term is for models whose logits are large (1e3 and more, and float32 rounding of the activations
with them); a trained model's logits are small, and atol governs.
ONNX needs the ``export`` extra (onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ConfigError, ExportCheckError

FORMATS = {"onnx": ".onnx", "exported-program": ".pt2"}


def _export_onnx(model: nn.Module, x: torch.Tensor, path: Path, dynamic: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        import onnxruntime
    except ImportError as e:  # pragma: no cover - the export extra is installed in CI
        raise ImportError("ONNX export needs the export extra: pip install 'nasnet-zoo[export]'") from e
    torch.onnx.export(
        model, (x,), str(path), dynamo=True, external_data=False, input_names=["input"], output_names=["logits"],
        dynamic_shapes=dynamic, verbose=False,
    )  # fmt: skip
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda t: torch.from_numpy(session.run(None, {"input": t.numpy()})[0])


def _export_program(
    model: nn.Module, x: torch.Tensor, path: Path, dynamic: Any
) -> Callable[[torch.Tensor], torch.Tensor]:
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes=dynamic), str(path))
    return torch.export.load(str(path)).module()


def export_model(
    model: nn.Module,
    fmt: str,
    out: str | PathLike[str],
    *,
    input_size: tuple[int, int, int] | None = None,
    batch_size: int = 2,
    atol: float = 1e-4,
    rtol: float = 1e-5,
    seed: int = 0,
) -> dict[str, Any]:
    """Export ``model`` as ``fmt`` ("onnx" or "exported-program") to ``out`` and check it against eager.

    ``input_size`` is ``(C, H, W)`` (default: the model's channels at its pretrained cfg's size). Returns the
    path, the input shape, the largest absolute difference seen and the tolerances; raises `ExportCheckError`
    (and writes nothing) when the exported model disagrees.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if batch_size < 2:
        raise ConfigError("batch_size must be >= 2 (a batch of 1 would fix the batch dimension in the export)")
    out = Path(out)
    if input_size is None:
        input_size = (model.in_chans, *model.pretrained_cfg["input_size"][1:])
    model = model.eval().to("cpu")
    g = torch.Generator().manual_seed(seed)
    samples = [torch.randn(b, *input_size, generator=g) for b in (batch_size, 1)]
    dynamic = ({0: torch.export.Dim("batch", min=1)},)
    t0 = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial{out.suffix}")
    try:
        with torch.no_grad():
            run = (_export_onnx if fmt == "onnx" else _export_program)(model, samples[0], tmp, dynamic)
            diffs, alloweds = [], []
            for x in samples:
                eager, exported = model(x), run(x)
                if exported.shape != eager.shape:
                    raise ExportCheckError(
                        f"the exported model gives shape {tuple(exported.shape)}, eager {eager.shape}"
                    )
                diffs.append((exported - eager).abs().max().item())
                allowed = atol + rtol * eager.abs().max().item()
                alloweds.append(allowed)
                if not diffs[-1] <= allowed:
                    raise ExportCheckError(
                        f"the {fmt} export differs from the eager model by up to {diffs[-1]:.3g} on an input of shape "
                        f"{tuple(x.shape)}, more than the {allowed:.3g} allowed ({atol} + {rtol} x max |eager|); "
                        f"nothing was written to {out}"
                    )
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return dict(
        format=fmt, path=str(out), bytes=out.stat().st_size, input_shape=[batch_size, *input_size],
        checked_batch_sizes=[len(x) for x in samples], max_abs_diff=max(diffs),
        allowed_max_abs_diff=alloweds[diffs.index(max(diffs))], atol=atol, rtol=rtol,
        seconds=round(time.perf_counter() - t0, 1),
    )  # fmt: skip
