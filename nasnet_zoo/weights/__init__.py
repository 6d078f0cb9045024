"""Weights: conversion from other layouts, checking against a model, loading and publishing.

Every converter ends in `check_state_dict`, so a file that does not fit the model fails before anything
is loaded, with an error naming the model, the file and what to do. Importing this package installs
`hub.load_pretrained` as the zoo's pretrained loader (``import nasnet_zoo`` does it).
"""

from __future__ import annotations

from .common import WeightsError, check_state_dict, read_state_dict, save_safetensors
from .hub import cached_file, describe_weights, load_pretrained

__all__ = [
    "WeightsError",
    "cached_file",
    "check_state_dict",
    "describe_weights",
    "load_pretrained",
    "read_state_dict",
    "save_safetensors",
]
