"""The laptop proxy's data and task (search/shapes.py, tasks.ShapesTask): deterministic draws, disjoint
splits, and a held-out test split that the search's reward never reads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from nasnet_zoo.search import tasks
from nasnet_zoo.search.fidelity import FidelityConfig, run_fidelity
from nasnet_zoo.search.loop import DEFAULT_PRESET, PRESETS, SearchConfig, run_search
from nasnet_zoo.search.shapes import CLASSES, _masks, draw_shapes, shapes_split
from nasnet_zoo.search.tasks import ShapesTask

from nasnet_zoo.genotype import NASNET_A

TINY = ShapesTask(train_size=64, val_size=32, test_size=32, batch_size=32)


def test_shapes_are_a_pure_function_of_the_seed() -> None:
    x, y = draw_shapes(200, seed=3)
    x2, y2 = draw_shapes(200, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert x.shape == (200, 1, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert set(y.tolist()) == set(range(len(CLASSES)))  # every class drawn
    assert not torch.equal(draw_shapes(200, seed=4)[0], x)


def test_the_splits_share_no_image() -> None:
    train, val, test = (shapes_split(s, 300).tensors[0].flatten(1) for s in ("train", "validation", "test"))
    for a, b in ((train, val), (train, test), (val, test)):
        assert torch.cdist(a, b).min() > 1.0  # independent draws under pixel noise: nowhere near equal


def test_each_class_draws_its_own_shape() -> None:
    """Unrotated and centred, any two classes' shapes differ in at least 8 % of the pixels, and none is empty."""
    axis = torch.linspace(-1, 1, 64)
    v, u = torch.meshgrid(axis, axis, indexing="ij")
    masks = _masks(u, v).flatten(1)
    assert masks.shape[0] == len(CLASSES) and (masks.mean(1) > 0.1).all()
    differ = (masks[:, None] != masks[None]).float().mean(2) + torch.eye(len(CLASSES))
    assert differ.min() > 0.08


def test_laptop_is_the_default_preset_and_has_a_held_out_test_split() -> None:
    assert DEFAULT_PRESET == "laptop" and SearchConfig().preset == "laptop"
    preset = PRESETS["laptop"]
    assert isinstance(preset.task, ShapesTask) and callable(preset.task.test_accuracy)
    assert preset.task.longer(preset.retrain_epochs).epochs == preset.retrain_epochs


def test_the_test_split_never_reaches_the_searchs_reward(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, one_thread: None
) -> None:
    """A search and the proxy half of a fidelity measurement draw only train and validation; scoring a cell on
    the test split draws test (so the recorder sees it when it happens)."""
    drawn: list[str] = []
    real = tasks.shapes_split

    def recording(split: str, *args: object) -> object:
        drawn.append(split)
        return real(split, *args)

    monkeypatch.setattr(tasks, "shapes_split", recording)
    run_search(SearchConfig(preset="laptop", algo="ppo", budget=2, workers=1, backend="serial", task=TINY))
    assert drawn and set(drawn) == {"train", "validation"}
    assert TINY.reward(NASNET_A, 0) >= 0 and "test" not in drawn
    TINY.test_accuracy(NASNET_A, 0)
    assert "test" in drawn and "validation" not in drawn[drawn.index("test") :]


def test_fidelity_scores_the_proxy_on_validation_and_the_stand_alone_on_test(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, one_thread: None
) -> None:
    drawn: list[str] = []
    real = tasks.shapes_split
    monkeypatch.setattr(tasks, "shapes_split", lambda split, *a: drawn.append(split) or real(split, *a))
    config = FidelityConfig(preset="laptop", cells=2, seeds=2, seed=9, out=tmp_path, workers=1, backend="serial",
                            task=TINY, standalone_epochs=1)  # fmt: skip
    result = run_fidelity(config)
    assert result["cells_complete"] == 3 and result["stats"] is not None
    assert drawn.count("test") == 3  # one stand-alone child per cell, nothing else
    assert all(r["params"] > 0 and r["mult_adds"] > 0 for r in result["rows"])
