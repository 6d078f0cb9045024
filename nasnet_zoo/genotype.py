"""Cells as data: the op vocabulary, `Block`, `Cell`, `Genotype`, and NASNet-A itself.

A cell has hidden states numbered as in the authors' TF-slim code:

* ``0`` -- the cell's current input after ReLU -> 1x1 conv -> BN (``h0``),
* ``1`` -- the output two cells back, brought to the same shape (``h1``; the raw input for a first cell),
* ``2 + b`` -- the output of block ``b``.

Block ``b`` applies ``ops[0]`` to state ``inputs[0]`` ("left") and ``ops[1]`` to state ``inputs[1]``
("right") and combines the two by ``add`` or ``concat``. The cell's output concatenates the states in
``concat``. The released NASNet-A code does not use the paper's "every unused state" rule for that list (the
normal cell also outputs ``h1``), so a cell always carries its own list; `Cell.from_blocks` fills it by the
paper's rule for searched cells.

A genotype is JSON::

    {"normal":    {"blocks": [{"inputs": [0, 1], "ops": ["sep_conv_5x5", "sep_conv_3x3"],
                               "combine": "add"}, ...], "concat": [1, 2, 3, 4, 5, 6]},
     "reduction": {...}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from .errors import GenotypeError
from .files import atomic_write

#: The paper's 13 operations (Sec. 3), named once; the search space, the builders and JSON use these names.
OPS: tuple[str, ...] = (
    "identity",
    "conv_1x3_3x1",
    "conv_1x7_7x1",
    "dil_conv_3x3",
    "avg_pool_3x3",
    "max_pool_3x3",
    "max_pool_5x5",
    "max_pool_7x7",
    "conv_1x1",
    "conv_3x3",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
)

#: How a block merges its two branches. ``concat`` doubles the width of that state.
COMBINES: tuple[str, ...] = ("add", "concat")

#: States every cell starts with: ``h0`` (current input) and ``h1`` (the input two cells back).
NUM_INPUT_STATES = 2


@dataclass(frozen=True)
class Block:
    """Two inputs, two ops, one combine: ``combine(ops[0](h[inputs[0]]), ops[1](h[inputs[1]]))``."""

    inputs: tuple[int, int]
    ops: tuple[str, str]
    combine: str = "add"

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "ops", tuple(self.ops))


@dataclass(frozen=True)
class Cell:
    """B blocks and the states the cell outputs (concatenated in this order).

    Constructing one does not validate it (a search builds cells block by block); `Genotype` does, and so do
    `from_blocks`, `from_lists` and `from_dict`.
    """

    blocks: tuple[Block, ...]
    concat: tuple[int, ...]

    def __post_init__(self) -> None:
        blocks = tuple(b if isinstance(b, Block) else Block(**_block_fields(b)) for b in self.blocks)
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "concat", tuple(self.concat))

    @property
    def num_states(self) -> int:
        return NUM_INPUT_STATES + len(self.blocks)

    def validate(self, where: str = "cell") -> None:
        """Raise `GenotypeError` naming the first problem found."""
        if not self.blocks:
            raise GenotypeError(f"{where}: a cell needs at least one block, got none")
        for b, block in enumerate(self.blocks):
            at = f"{where} block {b}"
            if len(block.inputs) != 2 or len(block.ops) != 2:
                raise GenotypeError(f"{at}: needs exactly 2 inputs and 2 ops, got {block.inputs} / {block.ops}")
            for i in block.inputs:
                if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < NUM_INPUT_STATES + b:
                    raise GenotypeError(
                        f"{at}: input {i!r} out of range; block {b} may read states 0..{NUM_INPUT_STATES + b - 1} "
                        f"(0 = h0, 1 = h1, 2.. = earlier blocks)"
                    )
            for op in block.ops:
                if op not in OPS:
                    raise GenotypeError(f"{at}: unknown op {op!r}; known ops: {', '.join(OPS)}")
            if block.combine not in COMBINES:
                raise GenotypeError(f"{at}: unknown combine {block.combine!r}; use one of {COMBINES}")
        if not self.concat:
            raise GenotypeError(f"{where}: empty concat list; the cell must output at least one state")
        if len(set(self.concat)) != len(self.concat):
            raise GenotypeError(f"{where}: duplicate states in concat list {list(self.concat)}")
        for s in self.concat:
            if not isinstance(s, int) or isinstance(s, bool) or not 0 <= s < self.num_states:
                raise GenotypeError(f"{where}: concat state {s!r} out of range 0..{self.num_states - 1}")

    @staticmethod
    def unused_states(blocks: tuple[Block, ...] | list[Block]) -> tuple[int, ...]:
        """The paper's output rule: every state that no block reads, in order."""
        used = {i for block in blocks for i in block.inputs}
        return tuple(s for s in range(NUM_INPUT_STATES + len(blocks)) if s not in used)

    @classmethod
    def from_blocks(cls, blocks: list[Block] | tuple[Block, ...]) -> Cell:
        """A cell whose output is every unused state (the rule for searched cells)."""
        cell = cls(tuple(blocks), cls.unused_states(blocks))
        cell.validate()
        return cell

    @classmethod
    def from_lists(cls, ops: list[str], inputs: list[int], concat: list[int], combine: str | list[str] = "add") -> Cell:
        """Build from TF-slim's flat lists: block ``b`` uses ``ops[2b:2b+2]`` on ``inputs[2b:2b+2]``."""
        if len(ops) != len(inputs) or len(ops) % 2:
            raise GenotypeError(
                f"flat lists need one op per input and an even length, got {len(ops)} ops, {len(inputs)} inputs"
            )
        n = len(ops) // 2
        combines = [combine] * n if isinstance(combine, str) else list(combine)
        if len(combines) != n:
            raise GenotypeError(f"{n} blocks but {len(combines)} combines")
        blocks = tuple(
            Block((inputs[2 * b], inputs[2 * b + 1]), (ops[2 * b], ops[2 * b + 1]), combines[b]) for b in range(n)
        )
        cell = cls(blocks, tuple(concat))
        cell.validate()
        return cell

    def to_dict(self) -> dict[str, Any]:
        return {
            "blocks": [{"inputs": list(b.inputs), "ops": list(b.ops), "combine": b.combine} for b in self.blocks],
            "concat": list(self.concat),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "cell") -> Cell:
        if not isinstance(d, dict) or set(d) != {"blocks", "concat"}:
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise GenotypeError(f"{where}: expected an object with keys 'blocks' and 'concat', got {got}")
        if not isinstance(d["blocks"], list):
            raise GenotypeError(f"{where}: 'blocks' must be a list")
        blocks = tuple(Block(**_block_fields(b, f"{where} block {i}")) for i, b in enumerate(d["blocks"]))
        if not isinstance(d["concat"], list):
            raise GenotypeError(f"{where}: 'concat' must be a list of state indices")
        cell = cls(blocks, tuple(d["concat"]))
        cell.validate(where)
        return cell


def _block_fields(b: Any, where: str = "block") -> dict[str, Any]:
    if not isinstance(b, dict) or not {"inputs", "ops"} <= set(b) <= {"inputs", "ops", "combine"}:
        raise GenotypeError(f"{where}: expected an object with 'inputs', 'ops' and optional 'combine', got {b!r}")
    if not isinstance(b["inputs"], list | tuple) or not isinstance(b["ops"], list | tuple):
        raise GenotypeError(f"{where}: 'inputs' and 'ops' must be lists, got {b!r}")
    return {"inputs": tuple(b["inputs"]), "ops": tuple(b["ops"]), "combine": b.get("combine", "add")}


@dataclass(frozen=True)
class Genotype:
    """A normal cell and a reduction cell: everything about a NASNet that a search decides."""

    normal: Cell
    reduction: Cell

    def __post_init__(self) -> None:
        self.normal.validate("normal cell")
        self.reduction.validate("reduction cell")

    # --- JSON round trip -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"normal": self.normal.to_dict(), "reduction": self.reduction.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Genotype:
        if not isinstance(d, dict) or set(d) != {"normal", "reduction"}:
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise GenotypeError(f"a genotype is an object with keys 'normal' and 'reduction', got {got}")
        return cls(Cell.from_dict(d["normal"], "normal cell"), Cell.from_dict(d["reduction"], "reduction cell"))

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise GenotypeError(f"not valid JSON: {e}") from None
        return cls.from_dict(d)

    def save(self, path: str | PathLike[str]) -> Path:
        return atomic_write(path, self.to_json() + "\n")

    @classmethod
    def load(cls, source: Genotype | str | PathLike[str] | dict[str, Any]) -> Genotype:
        """From a JSON file path, a JSON string, a dict, or a zoo genotype name such as ``"NASNET_A"``."""
        if isinstance(source, Genotype):
            return source
        if isinstance(source, dict):
            return cls.from_dict(source)
        if isinstance(source, str) and source.lstrip().startswith("{"):
            return cls.from_json(source)
        if isinstance(source, str) and source in GENOTYPES:
            return GENOTYPES[source]
        path = Path(source)
        if not path.is_file():
            raise GenotypeError(
                f"no genotype file at {str(path)!r}; pass a JSON file, a JSON string, a dict, "
                f"or one of {sorted(GENOTYPES)}"
            )
        try:
            return cls.from_json(path.read_text())
        except GenotypeError as e:
            raise GenotypeError(f"{path}: {e}") from None
        except UnicodeDecodeError:
            raise GenotypeError(f"{path} is not a text file: a genotype is JSON (a search's best.json)") from None


# --- NASNet-A, exactly as the released TF-slim code builds it (nasnet_utils.py) ------------------------------
# fmt: off
NASNET_A = Genotype(
    normal=Cell.from_lists(
        ops=["sep_conv_5x5", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_3x3", "avg_pool_3x3",
             "identity", "avg_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "identity"],
        inputs=[0, 1, 1, 1, 0, 1, 1, 1, 0, 0],
        concat=[1, 2, 3, 4, 5, 6],
    ),
    reduction=Cell.from_lists(
        ops=["sep_conv_5x5", "sep_conv_7x7", "max_pool_3x3", "sep_conv_7x7", "avg_pool_3x3",
             "sep_conv_5x5", "identity", "avg_pool_3x3", "sep_conv_3x3", "max_pool_3x3"],
        inputs=[0, 1, 0, 1, 0, 1, 3, 2, 2, 0],
        concat=[3, 4, 5, 6],
    ),
)
# fmt: on

#: Named genotypes that `Genotype.load` accepts by name.
GENOTYPES: dict[str, Genotype] = {"NASNET_A": NASNET_A}
