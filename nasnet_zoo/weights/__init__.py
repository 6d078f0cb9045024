"""Weights: conversion from other layouts, checking against a model, loading and publishing.

Every converter ends in `check_state_dict`, so a file that does not fit the model fails before anything
is loaded, with an error naming the model, the file and what to do.
"""

from __future__ import annotations

from .common import WeightsError, check_state_dict, read_state_dict, save_safetensors

__all__ = ["WeightsError", "check_state_dict", "read_state_dict", "save_safetensors"]
