"""nasnet-zoo: NASNet-A exact to the authors' TensorFlow code, pretrained weights, and the cell search.

import nasnet_zoo, timm
m = timm.create_model("nasnet_a_mobile")          # every zoo model is registered with timm on import
m = nasnet_zoo.create_model("nasnet_cifar", genotype=nasnet_zoo.Genotype.load("best.json"))
m, source = nasnet_zoo.load_model("runs/ft/model")  # a model with its weights, and where they were read from
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

from .genotype import NASNET_A, Genotype
from .network import MacroConfig, NASNet
from .zoo import MODELS, create_model, list_models, load_model

__all__ = ["MODELS", "NASNET_A", "Genotype", "MacroConfig", "NASNet", "create_model", "list_models", "load_model"]
__version__ = "0.1.0"


class _SourceTreeSearch(importlib.abc.MetaPathFinder):
    """Finds ``nasnet_zoo.search`` in a source checkout, where it is the folder ``search/`` beside this one.

    pyproject maps that folder to ``nasnet_zoo.search`` at install time. Python started in the repository
    root imports ``nasnet_zoo`` from the checkout instead of the installed copy, and no installed finder
    knows the mapping then; this one does. It goes first on ``sys.meta_path``: an editable install's finder
    would otherwise map ``nasnet_zoo.search`` to the installed checkout's folder, not to this one's (a git
    worktree beside it).
    """

    source = Path(__file__).resolve().parent.parent / "search" / "__init__.py"

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != f"{__name__}.search" or not self.source.is_file():
            return None
        return importlib.util.spec_from_file_location(
            fullname, self.source, submodule_search_locations=[str(self.source.parent)]
        )


if _SourceTreeSearch.source.is_file() and not any(isinstance(f, _SourceTreeSearch) for f in sys.meta_path):
    sys.meta_path.insert(0, _SourceTreeSearch())
