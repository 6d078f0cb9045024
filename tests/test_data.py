"""data.py: digits, CIFAR-10 from torchvision's on-disk format, ImageFolder, and the train / eval transforms."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nasnet_zoo import data
from nasnet_zoo.data import write_random_cifar10
from nasnet_zoo.errors import DataError
from nasnet_zoo.zoo import create_model
from tests.helpers import write_image_folder


# --- datasets ---------------------------------------------------------------------------------------------------
def test_digits_split_is_stratified_and_scaled() -> None:
    train, val = data.digits()
    assert len(train) + len(val) == 1797
    xv, yv = val.tensors
    assert xv.shape[1:] == (1, 8, 8) and xv.min() == -1 and xv.max() == 1
    counts = torch.bincount(yv, minlength=10)
    assert counts.min() >= 44 and counts.max() <= 46  # 25 % of each class's ~180


def test_cifar10_reads_torchvision_format(tmp_path: Path) -> None:
    x, y = write_random_cifar10(tmp_path, per_batch=4)
    train = data.cifar10(tmp_path, train=True, transform=torch.nn.Identity(), check_md5=False)
    test = data.cifar10(tmp_path, train=False, check_md5=False)
    assert len(train) == 20 and len(test) == 4 and train.classes[3] == "class3"
    img, label = train[5]
    assert torch.equal(img, torch.from_numpy(x[5])) and label == y[5]
    img, _ = test[0]  # default transform: floats in [-1, 1]
    assert img.dtype == torch.float32 and img.shape == (3, 32, 32) and img.min() >= -1 and img.max() <= 1


def test_cifar10_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="download=True"):
        data.cifar10(tmp_path)
    write_random_cifar10(tmp_path, per_batch=4)
    with pytest.raises(ValueError, match="md5 mismatch"):  # a fake is not the release
        data.cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(Path("x"), protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load pathlib"):
        data.cifar10(tmp_path, train=False, check_md5=False)


def test_image_folder(tmp_path: Path) -> None:
    write_image_folder(tmp_path)
    ds = data.image_folder(tmp_path, data.eval_transform(create_model("nasnet_cifar", num_cells=3, filters=8)))
    assert ds.classes == ["cat", "dog", "fox"] and len(ds) == 6
    x, label = ds[3]
    assert x.shape == (3, 32, 32) and label == 1
    with pytest.raises(FileNotFoundError, match="no image folder"):
        data.image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no class folders"):
        data.image_folder(tmp_path / "empty")


def test_class_maps(tmp_path: Path) -> None:
    (tmp_path / "map.txt").write_text("zebra\n  ant \n\nbee\n")
    (tmp_path / "list.json").write_text('["zebra", "ant", "bee"]')
    (tmp_path / "dict.json").write_text('{"bee": 2, "zebra": 0, "ant": 1}')
    for name in ("map.txt", "list.json", "dict.json"):
        assert data.read_class_map(tmp_path / name) == ["zebra", "ant", "bee"]
    (tmp_path / "gap.json").write_text('{"bee": 3, "zebra": 0, "ant": 1}')
    with pytest.raises(ValueError, match=r"indices 0\.\.2"):
        data.read_class_map(tmp_path / "gap.json")
    (tmp_path / "twice.txt").write_text("a\nb\na\n")
    with pytest.raises(ValueError, match="no name twice"):
        data.read_class_map(tmp_path / "twice.txt")
    (tmp_path / "binary.txt").write_bytes(b"\x00\xff\xfe")
    (tmp_path / "torn.json").write_text('["zebra", "an')
    (tmp_path / "number.json").write_text("3")
    for name in ("binary.txt", "torn.json", "number.json"):
        with pytest.raises(DataError, match=f"{tmp_path / name}.* class map"):
            data.read_class_map(tmp_path / name)
    write_image_folder(tmp_path / "imgs", ("ant", "bee"), per_class=1)
    ds = data.image_folder(tmp_path / "imgs", class_map=data.read_class_map(tmp_path / "map.txt"))
    assert ds.targets == [1, 2] and ds.classes == ["zebra", "ant", "bee"]


# --- transforms ---------------------------------------------------------------------------------------------------
def test_cifar_train_transform_crop_flip_cutout() -> None:
    img = torch.full((3, 32, 32), 255, dtype=torch.uint8)
    img[:, :, :16] = 0  # left half black, right half white
    crop_flip = data.cifar_train_transform(cutout=0)
    torch.manual_seed(0)
    outs = torch.stack([crop_flip(img) for _ in range(200)])
    assert outs.shape == (200, 3, 32, 32) and outs.dtype == torch.float32
    assert set(outs.unique().tolist()) == {-1.0, 1.0}  # normalised to [-1, 1], nothing interpolated
    # column 8 reads input column 4..12 (black) unless flipped, then 19..27 (white): about half are flipped
    assert 0.35 < (outs[:, 0, 16, 8] == 1).float().mean() < 0.65
    # crops shift the black/white edge by up to 4 pixels either way
    edges = {int((row == 1).nonzero()[0]) for row in outs[:, 0, 16] if row[8] == -1}  # unflipped
    assert len(edges) >= 5 and min(edges) >= 12 and max(edges) <= 20
    # a white image shows the zero padding of the 40x40 canvas as black borders, at most 4 pixels wide
    white = torch.full((3, 32, 32), 255, dtype=torch.uint8)
    torch.manual_seed(1)
    borders = torch.stack([crop_flip(white) for _ in range(50)])
    black = (borders == -1).sum(dim=(1, 2, 3))
    assert black.max() > 0 and black.max() <= 3 * (32 * 4 * 2 - 16)

    cut = data.cifar_train_transform(cutout=16)
    torch.manual_seed(2)
    zeros = torch.stack([(cut(white) == 0).all(0).sum() for _ in range(300)])
    assert zeros.max() == 16 * 16 and zeros.min() >= 8 * 8  # a 16x16 square, clipped at the border at worst


def test_cutout_square_position() -> None:
    x = torch.ones(1, 32, 32)
    torch.manual_seed(0)
    for _ in range(20):
        y = data.Cutout(16)(x)
        rows, cols = (y[0] == 0).any(1).nonzero(), (y[0] == 0).any(0).nonzero()
        assert rows.numel() <= 16 and cols.numel() <= 16
        assert (y[0] == 0).sum() == rows.numel() * cols.numel()  # one axis-aligned rectangle
    assert torch.equal(x, torch.ones(1, 32, 32))  # input untouched


def test_tf_central_crop_and_legacy_bilinear() -> None:
    x = torch.zeros(3, 375, 500)
    assert data.tf_central_crop(x, 0.875).shape == (3, 329, 438)  # offsets int(23.4) = 23 and int(31.25) = 31
    # TF1 resize_bilinear(align_corners=False) samples input position i * in / out, no half-pixel shift
    row = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    assert torch.equal(data.tf_resize_bilinear(row, (1, 2)), torch.tensor([[[1.0, 3.0]]]))
    assert torch.equal(
        data.tf_resize_bilinear(torch.tensor([[[1.0, 3.0]]]), (1, 4)), torch.tensor([[[1.0, 2.0, 3.0, 3.0]]])
    )
    img = torch.rand(3, 7, 9)
    assert torch.equal(data.tf_resize_bilinear(img, (7, 9)), img)


@pytest.mark.parametrize(("name", "size", "timm_resize"), [("nasnet_a_mobile", 224, 245), ("nasnet_a_large", 331, 363)])
def test_eval_transforms_tf_and_timm(name: str, size: int, timm_resize: int) -> None:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)  # a PretrainedCfg; a model or a dict works as well
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8))
    tf, tm = data.eval_transform(cfg, "tf"), data.eval_transform(cfg, "timm")
    assert tf(image).shape == tm(image).shape == (3, size, size)
    crop_resize = tf.transforms[2]
    assert crop_resize.fraction == 0.875 and crop_resize.size == size
    resize, center = tm.transforms[0], tm.transforms[1]
    assert resize.size == timm_resize and resize.interpolation.value == "bicubic" and center.size == (size, size)
    # the TF style equals its definition: central 87.5 %, TF1 bilinear to a square, then (x - 0.5) / 0.5
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    expected = (data.tf_resize_bilinear(x[:, 23:352, 31:469], size) - 0.5) / 0.5
    torch.testing.assert_close(tf(image), expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="unknown eval style"):
        data.eval_transform(cfg, "keras")


def test_a_corrupt_image_is_named(tmp_path: Path) -> None:
    write_image_folder(tmp_path, per_class=1)
    broken = tmp_path / "dog" / "1.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    ds = data.image_folder(tmp_path)
    ds[0]  # the good ones load
    with pytest.raises(DataError, match=rf"{re.escape(str(broken))} is not a readable image .*replace or remove it"):
        [ds[i] for i in range(len(ds))]


def test_a_failed_cifar_download_says_so_and_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from urllib.error import URLError

    import torchvision.datasets.utils as tv_utils

    def offline(url: str, download_root: str, **kwargs: object) -> None:
        Path(download_root).mkdir(parents=True)  # as torchvision does before it fetches
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    root = tmp_path / "data" / "cifar10"
    with pytest.raises(DataError, match=r"downloading CIFAR-10 from .* failed .*try again"):
        data.cifar10(root, download=True)
    assert list(tmp_path.iterdir()) == []
