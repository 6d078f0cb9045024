"""timm / Cadene (``pretrainedmodels``) NASNet-A state dicts -> the zoo's layout.

Both ports name modules after TF-slim's scopes (``cell_3.comb_iter_1_left.separable_2.depthwise_conv2d``);
the zoo compiles cells from genotypes (``cell_3.blocks.1.left.op.dw2``). The mapping is a handful of
renames; the result is checked key by key and shape by shape against the model before it is returned.
TF checkpoints have 1001 classes (0 = background); a 1001-row classifier loses row 0.
"""

from __future__ import annotations

import re
from os import PathLike
from pathlib import Path

import torch

from .common import WeightsError, check_state_dict, read_state_dict, save_safetensors

_RENAMES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), r)
    for p, r in [
        (r"^conv0\.", "stem."),
        (r"^last_linear\.", "classifier."),
        (r"\.conv_1x1\.", ".pre0."),
        (r"\.conv_prev_1x1\.", ".pre1."),
        (r"\.path_([12])\.conv\.", r".pre1.reduce.conv\1."),
        (r"\.final_path_bn\.", ".pre1.reduce.bn."),
        (r"\.comb_iter_(\d)_(left|right)\.separable_([12])\.depthwise_conv2d\.", r".blocks.\1.\2.op.dw\3."),
        (r"\.comb_iter_(\d)_(left|right)\.separable_([12])\.pointwise_conv2d\.", r".blocks.\1.\2.op.pw\3."),
        (r"\.comb_iter_(\d)_(left|right)\.bn_sep_([12])\.", r".blocks.\1.\2.op.bn\3."),
    ]
]


def rename_key(key: str) -> str:
    for pattern, repl in _RENAMES:
        key = pattern.sub(repl, key)
    return key


def expected_model(model_name: str, num_classes: int = 1000) -> torch.nn.Module:
    """The zoo model built on the meta device (no memory, no init time), for its keys and shapes."""
    from ..zoo import create_model

    with torch.device("meta"):
        return create_model(model_name, num_classes=num_classes)


def _renumber(keys: list[str], layer_names: list[str], what: str) -> dict[str, str]:
    """Map the source's cell names to the zoo's, both in forward order."""
    source = list(dict.fromkeys(k.split(".", 1)[0] for k in keys if re.match(r"(cell|reduction_cell)_", k)))
    if [n.rstrip("0123456789") for n in source] != [n.rstrip("0123456789") for n in layer_names]:
        raise WeightsError(
            f"{what}: its cells {source[:4]}... do not line up with the model's {layer_names[:4]}... "
            f"({len(source)} vs {len(layer_names)} cells); is it a NASNet-A of this size?"
        )
    return dict(zip(source, layer_names, strict=True))


def timm_to_zoo(
    state_dict: dict[str, torch.Tensor], model_name: str, what: str = "the timm/Cadene state dict"
) -> dict[str, torch.Tensor]:
    """Rename a timm/Cadene NASNet-A state dict into ``model_name``'s layout and check it fits exactly."""
    model = expected_model(model_name)
    cells = _renumber(list(state_dict), model.layer_names, what)

    def new_key(k: str) -> str:
        head, _, rest = k.partition(".")
        return rename_key(f"{cells.get(head, head)}.{rest}")

    out = {new_key(k): v for k, v in state_dict.items()}
    w, b = out.get("classifier.weight"), out.get("classifier.bias")
    if w is not None and w.shape[0] == 1001:  # TF's background class 0
        out["classifier.weight"], out["classifier.bias"] = w[1:], b[1:]
    if w is not None and out["classifier.weight"].shape[0] != model.num_classes:
        model = expected_model(model_name, out["classifier.weight"].shape[0])
    return check_state_dict(out, model.state_dict(), f"{what} (as {model_name})")


def convert_timm_file(src: str | PathLike[str], model_name: str, out: str | PathLike[str]) -> Path:
    """Convert a timm/Cadene ``.pth`` (read with ``weights_only=True``) or ``.safetensors`` file."""
    src = Path(src)
    sd = timm_to_zoo(read_state_dict(src), model_name, what=str(src))
    if Path(out).suffix != ".safetensors":
        raise WeightsError(f"write converted weights as .safetensors, got {out}")
    return save_safetensors(sd, out, metadata={"source": src.name, "format": "pt", "model": model_name})
