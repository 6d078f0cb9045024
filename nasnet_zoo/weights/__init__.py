"""Weights: the `Weights` value and its sources, conversion from other layouts, loading into a model, Hub folders.

This layer sits below the zoo table: its modules take models and `Weights` values as arguments and never
import the table. ``common`` reads, checks and writes state dicts; ``sources`` fetches, verifies and caches
released files; ``convert_keras`` and ``convert_timm`` map other layouts onto a model; ``load`` is timm's
pretrained loading with those sources and checks (the zoo's builders call it); ``hub_folder`` writes and pushes
the zoo's Hub folder. Every converter ends in `check_state_dict`, so a file that does not fit the model fails
before anything is loaded, with an error naming the model, the file and what to do.
"""

from __future__ import annotations

from .common import WeightsError, WeightsUnavailableError, check_state_dict, read_state_dict, save_safetensors
from .sources import Weights

__all__ = [
    "Weights",
    "WeightsError",
    "WeightsUnavailableError",
    "check_state_dict",
    "read_state_dict",
    "save_safetensors",
]
