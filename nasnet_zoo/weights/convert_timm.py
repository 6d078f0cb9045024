"""timm / Cadene (``pretrainedmodels``) NASNet-A state dicts -> the zoo's layout.

Both ports name modules after TF-slim's scopes (``cell_3.comb_iter_1_left.separable_2.depthwise_conv2d``);
the zoo compiles cells from genotypes (``cell_3.blocks.1.left.op.dw2``). The mapping is a handful of
renames; the result is checked key by key and shape by shape against the model (a template, e.g. built on the
meta device) before it is returned. TF checkpoints have 1001 classes (0 = background); a 1001-row classifier
loses row 0.
"""

from __future__ import annotations

import re
from os import PathLike
from pathlib import Path

import torch

from .common import (
    WeightsError,
    architecture,
    check_state_dict,
    expected_tensors,
    read_state_dict,
    save_safetensors,
    tensors_digest,
)

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


def _renumber(keys: list[str], layer_names: list[str], what: str) -> dict[str, str]:
    """Map the source's cell names to the zoo's: its k-th stem, normal and reduction cell (in numeric order, as
    Cadene's mobile numbers have gaps and safetensors lists keys sorted by name) is the zoo's k-th of each kind."""

    def by_kind(names: set[str] | list[str]) -> dict[str, list[str]]:
        kinds: dict[str, list[tuple[int, str]]] = {}
        for n in names:
            kind, _, index = n.rpartition("_")
            kinds.setdefault(kind, []).append((int(index), n))
        return {kind: [n for _, n in sorted(cells)] for kind, cells in kinds.items()}

    heads = {k.split(".", 1)[0] for k in keys}
    source = by_kind({h for h in heads if re.fullmatch(r"(cell_stem|cell|reduction_cell)_\d+", h)})
    target = by_kind(layer_names)
    counts = {kind: len(cells) for kind, cells in source.items()}
    if counts != {kind: len(cells) for kind, cells in target.items()}:
        raise WeightsError(
            f"{what}: its cells ({counts}) do not line up with the model's "
            f"({ {kind: len(cells) for kind, cells in target.items()} }); is it a NASNet-A of this size?"
        )
    return {s: t for kind, cells in target.items() for s, t in zip(source[kind], cells, strict=True)}


def rename_timm(state_dict: dict[str, torch.Tensor], layer_names: list[str], what: str) -> dict[str, torch.Tensor]:
    """Rename a timm/Cadene NASNet-A state dict onto the cells ``layer_names`` (unchecked; 1001 -> 1000 classes)."""
    cells = _renumber(list(state_dict), layer_names, what)

    def new_key(k: str) -> str:
        head, _, rest = k.partition(".")
        return rename_key(f"{cells.get(head, head)}.{rest}")

    out = {new_key(k): v for k, v in state_dict.items()}
    w, b = out.get("classifier.weight"), out.get("classifier.bias")
    if w is not None and b is not None and w.shape[0] == 1001:  # TF's background class 0
        out["classifier.weight"], out["classifier.bias"] = w[1:], b[1:]
    return out


def timm_to_zoo(
    state_dict: dict[str, torch.Tensor], model: torch.nn.Module, what: str = "the timm/Cadene state dict"
) -> dict[str, torch.Tensor]:
    """Rename a timm/Cadene NASNet-A state dict into ``model``'s layout and check it fits exactly (its classifier
    may have any number of rows, or none)."""
    out = rename_timm(state_dict, model.layer_names, what)
    head = out.get("classifier.weight")
    expected = expected_tensors(model, 0 if head is None else head.shape[0])
    return check_state_dict(out, expected, f"{what} (as {architecture(model)})")


def convert_timm_file(src: str | PathLike[str], model: torch.nn.Module, out: str | PathLike[str]) -> Path:
    """Convert a timm/Cadene ``.pth`` (read with ``weights_only=True``) or ``.safetensors`` file for ``model``."""
    src = Path(src)
    if Path(out).suffix != ".safetensors":
        raise WeightsError(f"write converted weights as .safetensors, got {out}")
    sd = timm_to_zoo(read_state_dict(src), model, what=str(src))
    meta = {"source": src.name, "format": "pt", "model": architecture(model), "tensors_sha256": tensors_digest(sd)}
    return save_safetensors(sd, out, metadata=meta)
