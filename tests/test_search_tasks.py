"""Tasks that turn a genotype into a reward (search/tasks.py)."""

from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path

import numpy as np
import pytest
from nasnet_zoo.search import tasks
from nasnet_zoo.search.evaluators import Job, run_job
from nasnet_zoo.search.space import decode, random_genotype, sample_uniform
from nasnet_zoo.search.tasks import Cifar10Task, DigitsTask, SyntheticTask

from nasnet_zoo.data import write_random_cifar10
from nasnet_zoo.genotype import NASNET_A, Block, Cell, Genotype
from nasnet_zoo.runtime import torch_threads


def test_synthetic_has_its_known_optimum() -> None:
    task = SyntheticTask(seed=3)
    assert task.expected_reward(task.optimum) == pytest.approx(1.0)
    rng = random.Random(0)
    others = [task.expected_reward(decode(sample_uniform(rng))) for _ in range(300)]
    assert max(others) < 0.6 and 0.15 < np.mean(others) < 0.3
    assert SyntheticTask(seed=4).optimum != task.optimum


def test_synthetic_interactions_noise_and_symmetry() -> None:
    task = SyntheticTask(seed=1, noise=0.02)
    g = task.optimum
    # an op alone scores its quality; with the optimum's input as well it also scores the match bonus
    blocks = list(g.normal.blocks)
    b = blocks[2]
    wrong_input = Block(((b.inputs[0] + 1) % 4, b.inputs[1]), b.ops, b.combine)
    blocks[2] = wrong_input
    worse = Genotype(Cell.from_blocks(blocks), g.reduction)
    assert task.expected_reward(worse) <= 1.0 - 0.5 / 2 / 10 + 1e-9  # one branch of ten blocks loses 0.5
    # add commutes: swapping the branches of an add block leaves the reward alone
    g2 = random_genotype(7)
    swapped = [Block(x.inputs[::-1], x.ops[::-1], x.combine) if x.combine == "add" else x for x in g2.normal.blocks]
    g3 = Genotype(Cell(tuple(swapped), g2.normal.concat), g2.reduction)
    assert task.expected_reward(g3) == pytest.approx(task.expected_reward(g2))
    # seeded noise: the same child seed gives the same reward, others spread with the stated deviation
    assert task.reward(g2, 5) == task.reward(g2, 5)
    spread = np.std([task.reward(g2, s) for s in range(400)])
    assert spread == pytest.approx(0.02, rel=0.15)
    assert task.longer(20).reward(g2, 5) == pytest.approx(task.expected_reward(g2))


def test_digits_child_is_a_real_network_that_learns() -> None:
    task = DigitsTask()
    model = task.build(NASNET_A)
    assert len(model.layer_names) == 5  # N = 1: three normal cells and two reduction cells
    with torch_threads(1):  # as the evaluators run children
        acc = task.reward(NASNET_A, seed=0)
    assert 0.8 < acc <= 1.0  # chance is 0.1


def test_a_diverging_child_becomes_a_journaled_error() -> None:
    outcome = run_job(DigitsTask(lr=1e10, epochs=1, batch_size=256), Job(7, NASNET_A, 0), "here")
    assert outcome.id == 7 and outcome.reward is None
    # caught by the loss check or by the end-of-epoch weight check, whichever sees it first (the layout decides)
    diverged = (
        r"TrainingError: training diverged( at step \d+ \(loss nan\)|: the weights after epoch \d+ are not finite)"
    )
    assert re.match(diverged, outcome.error), outcome.error


def test_cifar10_child_is_the_papers_and_says_what_data_it_needs(tmp_path: Path) -> None:
    t = Cifar10Task()
    assert (t.num_cells, t.epochs, t.momentum, t.train_size, t.val_size) == (6, 20, 0.9, 45_000, 5_000)
    with pytest.raises(ValueError, match="needs --data-dir"):
        t.check_data()
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        Cifar10Task(data_dir=str(tmp_path)).check_data()


def test_cifar10_child_trains_on_a_local_copy(tmp_path: Path) -> None:
    write_random_cifar10(tmp_path, per_batch=6)  # 30 training images in torchvision's format
    tiny = Cifar10Task(data_dir=str(tmp_path), num_cells=3, filters=4, epochs=1, batch_size=8, train_size=24,
                       val_size=6, check_md5=False, loader_workers=0)  # fmt: skip
    with torch_threads(1):
        acc = tiny.reward(NASNET_A, seed=0)
    assert acc * 6 == pytest.approx(round(acc * 6))  # a fraction of the 6 held-out images
    with pytest.raises(ValueError, match="train_size \\+ val_size = 31 > 30 images"):
        dataclasses.replace(tiny, val_size=7).reward(NASNET_A, seed=0)


def _rows(data) -> list[tuple[bytes, int]]:
    x, y = data.tensors
    return sorted((bytes(im.numpy().tobytes()), int(c)) for im, c in zip(x, y, strict=True))


def test_digits_hold_out_a_fixed_stratified_test_split() -> None:
    from nasnet_zoo.data import digits

    t = DigitsTask()
    train, val, test = (t.split(s) for s in ("train", "validation", "test"))
    full_train, full_val = digits(0.5, 0)
    parts = _rows(train) + _rows(val) + _rows(test)
    assert sorted(parts) == sorted(_rows(full_train) + _rows(full_val))  # a partition of the 1,797: none twice or lost
    assert (len(train), len(val), len(test)) == (1079, 359, 359)
    assert np.bincount(test.tensors[1].numpy()).min() >= 35  # stratified: about 36 of each class
    fresh = tasks._digits.__wrapped__(t.val_fraction, t.test_fraction, t.split_seed)  # not the cached copy
    assert all(_rows(a) == _rows(b) for a, b in zip((train, val, test), fresh, strict=True))  # fixed
    other = DigitsTask(split_seed=1).split("test")
    assert _rows(other) != _rows(test)


def test_digits_reward_never_reads_the_test_split_and_test_accuracy_only_scores_there(monkeypatch) -> None:
    read: list[str] = []
    real = DigitsTask.split
    monkeypatch.setattr(DigitsTask, "split", lambda self, name: read.append(name) or real(self, name))
    t = DigitsTask(filters=4, epochs=1, batch_size=128)
    with torch_threads(1):
        assert 0 <= t.reward(NASNET_A, 0) <= 1
        assert set(read) == {"train", "validation"}
        read.clear()
        acc = t.test_accuracy(NASNET_A, 0)
    assert set(read) == {"train", "test"} and acc * 359 == pytest.approx(round(acc * 359))


def test_cifar10_scores_its_test_batch(tmp_path: Path) -> None:
    write_random_cifar10(tmp_path, per_batch=6)  # 30 training images, 6 test images
    tiny = Cifar10Task(data_dir=str(tmp_path), num_cells=3, filters=4, epochs=1, batch_size=8, train_size=24,
                       val_size=6, check_md5=False, loader_workers=0)  # fmt: skip
    test = tiny.split("test")
    from nasnet_zoo.data import cifar10

    assert len(test) == 6 and test.labels.tolist() == cifar10(tmp_path, train=False, check_md5=False).labels.tolist()
    assert len(tiny.split("train")) == 24 and len(tiny.split("validation")) == 6
    with torch_threads(1):
        acc = tiny.test_accuracy(NASNET_A, seed=0)
    assert acc * 6 == pytest.approx(round(acc * 6))
