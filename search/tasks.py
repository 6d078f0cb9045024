"""Tasks turn a genotype into a reward. Each is a small frozen dataclass, picklable, so any evaluator runs it.

* `SyntheticTask`: a seeded reward with a known optimum, for testing search algorithms in seconds.
* `ShapesTask`: the laptop proxy -- the CIFAR-layout network with the genotype, small N and F -- trained on
  procedurally drawn 16x16 shapes (`shapes`: nothing bundled or downloaded, validation and test splits as large
  as the statistics need); reward = validation accuracy, ``test_accuracy`` = the held-out test split's. Measured:
  Kendall tau 0.47 and 0.68 (two cell seeds) with the 3-seed stand-alone test accuracy, noise 0.55-0.77 times
  the spread between cells (`presets.PRESETS`, benchmarks/results/fidelity-laptop-seed*.md).
* `DigitsTask`: the smoke proxy -- the same small child on scikit-learn's 8x8 digits (bundled,
  `nasnet_zoo.data.digits`); fast, for checking the machinery runs; it barely tells cells apart (`presets.PRESETS`).
* `Cifar10Task`: the paper's child (N = 2, 20 epochs, cosine lr, momentum 0.9, 45k/5k split of the CIFAR-10
  training set), reading a local CIFAR-10 in torchvision's format.

Real children train with the project's one training loop, `nasnet_zoo.train.fit` (SGD with momentum 0.9,
single-period cosine lr, TF-style L2, global-norm clipping at 5); the reward is the final validation accuracy.
A child whose loss stops being finite raises `FloatingPointError`, which the evaluators journal as its error.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from nasnet_zoo.data import ImageTensorDataset, cifar10, cifar_train_transform, normalize
from nasnet_zoo.errors import ConfigError, NotFoundError
from nasnet_zoo.genotype import COMBINES, Genotype
from nasnet_zoo.train import TrainConfig, evaluate, fit
from nasnet_zoo.zoo import create_model

from .shapes import shapes_split
from .space import decisions, decode, encode


# --- synthetic ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyntheticTask:
    """A seeded landscape over the 50 decisions whose optimum (`optimum`, reward 1) is known.

    Each branch (input, op) of each block scores ``0.5 * quality[op] + 0.5 * [input and op both match the
    optimum's]``, where the per-branch op qualities lie in [0, 1] and equal 1 only at the optimum's op; a
    block scores the mean of its branches (either order for ``add``, which commutes) times 0.8, or times 1 if
    its combine matches. Reward = mean block score + Gaussian noise (``noise``, seeded by the child's seed).
    Interactions: input x op within a branch, combine x branches within a block. Simulated cost: the call
    sleeps ``seconds * (0.5 + share of convolutions)``.
    """

    seed: int = 0
    noise: float = 0.02
    seconds: float = 0.0
    num_blocks: int = 5

    @property
    def optimum(self) -> Genotype:
        return decode(_landscape(self.seed, self.num_blocks)[0], self.num_blocks)

    def expected_reward(self, genotype: Genotype) -> float:
        """The noise-free reward."""
        target, quality = _landscape(self.seed, self.num_blocks)
        a = encode(genotype)
        return float(
            np.mean([_block_score(a[i : i + 5], target[i : i + 5], quality[i // 5]) for i in range(0, len(a), 5)])
        )

    def reward(self, genotype: Genotype, seed: int) -> float:
        if self.seconds:
            ops = [op for cell in (genotype.normal, genotype.reduction) for b in cell.blocks for op in b.ops]
            convs = sum(op.startswith(("conv", "sep", "dil")) for op in ops)
            time.sleep(self.seconds * (0.5 + convs / len(ops)))
        noise = np.random.default_rng([self.seed, seed]).normal(0.0, self.noise)
        return self.expected_reward(genotype) + float(noise)

    def test_accuracy(self, genotype: Genotype, seed: int) -> float:
        """The held-out split's score: the noise-free reward."""
        return self.expected_reward(genotype)

    def longer(self, epochs: int) -> SyntheticTask:
        """What training longer does to a synthetic child: the noise goes away."""
        return dataclasses.replace(self, noise=0.0)


def _block_score(block: list[int], best: list[int], quality: np.ndarray) -> float:
    """One block's synthetic score; ``block`` and ``best`` are its 5 decisions (input, input, op, op, combine)."""

    def pairing(order: tuple[int, int]) -> float:  # branch j scored against the optimum's branch order[j]
        return sum(
            0.5 * quality[k, block[2 + j]] + 0.5 * (block[j] == best[k] and block[2 + j] == best[2 + k])
            for j, k in enumerate(order)
        )

    score = pairing((0, 1))
    if COMBINES[block[4]] == "add":  # add commutes: the better of the two pairings
        score = max(score, pairing((1, 0)))
    return score / 2 * (1.0 if block[4] == best[4] else 0.8)


@cache
def _landscape(seed: int, num_blocks: int) -> tuple[list[int], np.ndarray]:
    """The optimum's decisions and, per block and branch, every op's quality (1 at the optimum's op)."""
    rng = np.random.default_rng(seed)
    spec = decisions(num_blocks)
    target = [int(rng.integers(d.num_choices)) for d in spec]
    quality = rng.uniform(0.0, 0.9, size=(len(spec) // 5, 2, spec[2].num_choices))
    for blk in range(len(spec) // 5):
        for k in range(2):
            quality[blk, k, target[5 * blk + 2 + k]] = 1.0
    return target, quality


# --- real children --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChildTraining:
    """What every real child shares: its size in the zoo's CIFAR layout and its training (SGD with momentum,
    single-period cosine lr, TF-style L2, global-norm clipping at 5, through `nasnet_zoo.train.fit`)."""

    num_cells: int = 3  # 3 N
    filters: int = 8
    epochs: int = 3
    lr: float = 0.05
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    split_seed: int = 0

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, momentum=self.momentum,
            weight_decay=self.weight_decay, schedule="cosine", clip_grad_norm=5.0, seed=seed,
        )  # fmt: skip

    def longer(self, epochs: int) -> ChildTraining:
        """The same child trained for ``epochs`` (the retrain step's stand-alone training)."""
        return dataclasses.replace(self, epochs=epochs)

    def reward(self, genotype: Genotype, seed: int) -> float:
        return float(self._trained(genotype, seed, self.split("validation"))[1])

    def test_accuracy(self, genotype: Genotype, seed: int) -> float:
        """Trained as `reward` trains (same seed, same steps), scored on the held-out test split only."""
        model, _ = self._trained(genotype, seed, None)
        return evaluate(model, self.split("test"), **self._eval_options())["acc1"]

    def _trained(self, genotype: Genotype, seed: int, val: Dataset | None) -> tuple[nn.Module, float | None]:
        torch.manual_seed(seed)  # the child's initial weights
        model = self.build(genotype)  # build and split: each task's own
        result = fit(model, self.split("train"), val, self.train_config(seed), quiet=True, **self._fit_options())
        return model, result.final_val_acc

    def _fit_options(self) -> dict[str, Any]:
        return {"device": "cpu"}  # laptop children: one CPU thread each, wherever a GPU is

    def _eval_options(self) -> dict[str, Any]:
        return {"device": "cpu", "precision": "fp32"}


@dataclass(frozen=True)
class DigitsTask(ChildTraining):
    """The CPU proxy: N = 1 normal cell per stack, F = 8, 3 epochs on 1,079 digits; reward on 359 held out.
    ``test_accuracy`` trains the same way and scores 359 more that neither reads: a fixed stratified split of
    the bundled 1,797 (``test_fraction`` of each class first, then ``val_fraction`` of the rest)."""

    val_fraction: float = 0.25
    test_fraction: float = 0.2
    input_shape = (1, 8)  # channels, size

    def build(self, genotype: Genotype) -> nn.Module:
        """The child network: the zoo's CIFAR layout with this cell, sized for 1-channel 8x8 inputs."""
        return create_model(
            "nasnet_cifar", genotype=genotype, num_cells=self.num_cells, filters=self.filters,
            num_classes=10, in_chans=1, img_size=8, drop_path_keep_prob=1.0,
        )  # fmt: skip

    def split(self, name: str) -> Dataset:
        """``train``, ``validation`` or ``test`` (see the class docstring)."""
        return _digits(self.val_fraction, self.test_fraction, self.split_seed)[_split_index(name)]


@dataclass(frozen=True)
class ShapesTask(ChildTraining):
    """The laptop proxy: N = 1, F = 8, two epochs of 2,000 drawn 16x16 shapes (`shapes`); reward = accuracy on
    a validation split of 1,500. ``test_accuracy`` trains the same way and scores a test split of 1,500 drawn
    from a seed stream of its own: the search's reward never reads it (a test checks that it is never drawn
    while a search runs). Trained longer (`longer`), the same child is the stand-alone network that the
    fidelity measurement and the retrain step score. Two epochs: of the settings `benchmarks/proxy_tune.py`
    tried (benchmarks/results/proxy-tune.md), the one whose seed noise is the smallest share of the spread."""

    epochs: int = 2
    lr: float = 0.1
    batch_size: int = 32
    image_size: int = 16
    noise: float = 0.12
    train_size: int = 2000
    val_size: int = 1500
    test_size: int = 1500

    @property
    def input_shape(self) -> tuple[int, int]:
        return 1, self.image_size

    def build(self, genotype: Genotype) -> nn.Module:
        return create_model(
            "nasnet_cifar", genotype=genotype, num_cells=self.num_cells, filters=self.filters, num_classes=10,
            in_chans=1, img_size=self.image_size, drop_path_keep_prob=1.0,
        )  # fmt: skip

    def split(self, name: str) -> Dataset:
        size = {"train": self.train_size, "validation": self.val_size, "test": self.test_size}[name]
        return shapes_split(name, size, self.split_seed, self.image_size, self.noise)


SPLIT_NAMES = ("train", "validation", "test")


def _split_index(name: str) -> int:
    if name not in SPLIT_NAMES:
        raise ValueError(f"split must be one of {SPLIT_NAMES}, got {name!r}")
    return SPLIT_NAMES.index(name)


@cache
def _digits(val_fraction: float, test_fraction: float, seed: int) -> tuple[Dataset, Dataset, Dataset]:
    """The bundled digits as (train, validation, test): ``test_fraction`` of each class held out first (seed
    ``seed``), then ``val_fraction`` of the rest (the next seed)."""
    from torch.utils.data import TensorDataset

    from nasnet_zoo.data import digits, stratified_split

    rest, test = digits(test_fraction, seed)
    x, y = rest.tensors
    train, val = stratified_split(y.numpy(), val_fraction, seed + 1)
    return TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val]), test


@dataclass(frozen=True)
class Cifar10Task(ChildTraining):
    """The paper's child: CIFAR layout with N = 2 (the starting filter count is not stated; 32 is the CIFAR
    model's), 20 epochs, SGD momentum 0.9, cosine lr, trained on 45,000 training images (random crop and flip)
    and rewarded with accuracy on the other 5,000. Learning rate, batch and weight decay are the CIFAR
    recipe's (`nasnet_zoo.train.RECIPES["cifar10"]`); no aux head, drop path or Cutout for a child.
    ``test_accuracy`` trains the same way and scores the release's test batch (10,000 images), which the
    search's reward never reads."""

    num_cells: int = 6  # N = 2
    filters: int = 32
    epochs: int = 20
    lr: float = 0.025
    batch_size: int = 32
    data_dir: str | None = None
    train_size: int = 45_000
    val_size: int = 5_000
    loader_workers: int = 2
    check_md5: bool = True  # False reads a copy you wrote yourself in the release's format
    input_shape = (3, 32)

    def build(self, genotype: Genotype) -> nn.Module:
        return create_model("nasnet_cifar", genotype=genotype, num_cells=self.num_cells, filters=self.filters,
                            drop_path_keep_prob=1.0)  # fmt: skip

    def check_data(self) -> None:
        """Fail early, with what to do, when ``data_dir`` holds no CIFAR-10."""
        if self.data_dir is None:
            raise ConfigError("the cifar10 task needs --data-dir: a folder holding torchvision's cifar-10-batches-py")
        if not (Path(self.data_dir) / "cifar-10-batches-py").is_dir():
            raise NotFoundError(
                f"no CIFAR-10 under {self.data_dir!r}: expected {self.data_dir}/cifar-10-batches-py (torchvision's "
                "format; `nasnet-zoo train cifar10 --download` fetches it on a machine with network)"
            )

    def split(self, name: str) -> Dataset:
        """``train`` (augmented) and ``validation``: the fixed 45k/5k split of the training set; ``test``: the
        test batch."""
        self.check_data()
        if _split_index(name) == 2:
            images = cifar10(self.data_dir, train=False, check_md5=self.check_md5)
            return ImageTensorDataset(images.images, images.labels, images.classes, normalize())
        images = cifar10(self.data_dir, train=True, transform=cifar_train_transform(cutout=0),
                         check_md5=self.check_md5)  # fmt: skip
        if self.train_size + self.val_size > len(images):
            raise ConfigError(f"train_size + val_size = {self.train_size + self.val_size} > {len(images)} images")
        order = np.random.default_rng(self.split_seed).permutation(len(images)).tolist()
        if name == "train":
            return Subset(images, order[: self.train_size])
        plain = ImageTensorDataset(images.images, images.labels, images.classes, normalize())
        return Subset(plain, order[len(order) - self.val_size :])

    def _fit_options(self) -> dict[str, Any]:
        return {"num_workers": self.loader_workers}  # the default device: the GPU when there is one

    def _eval_options(self) -> dict[str, Any]:
        return {"num_workers": self.loader_workers}
