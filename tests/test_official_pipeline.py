"""The DataModules against the official generation pipeline written out in tests/helpers/official.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from i2e_lightning.data import CIFAR10DataModule, FashionMNISTDataModule, MNISTDataModule
from i2e_lightning.data.imagefolder import ImageFolderDataModule
from i2e_lightning.data.mnist import load_idx_split
from tests.helpers.official import official_i2e, to_dtype_scale, tv_resize_uint8

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def test_interpolation_defaults_are_the_official_ones(tmp_path: Path) -> None:
    # Fashion-MNIST: the README protocol's bicubic; CIFAR and ImageNet notebooks: v2.Resize's default
    assert FashionMNISTDataModule(data_dir=str(tmp_path)).interpolation == "bicubic"
    assert MNISTDataModule(data_dir=str(tmp_path)).interpolation == "bicubic"
    assert CIFAR10DataModule(data_dir=str(tmp_path)).interpolation == "bilinear"
    assert ImageFolderDataModule(data_dir=str(tmp_path)).interpolation == "bilinear"
    dm = CIFAR10DataModule(data_dir=str(tmp_path), interpolation="bicubic")
    assert dm.interpolation == "bicubic" and dm.hparams["interpolation"] == "bicubic"
    with pytest.raises(ValueError, match="interpolation must be one of"):
        CIFAR10DataModule(data_dir=str(tmp_path), interpolation="area")


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="needs the Fashion-MNIST idx files")
def test_fashion_mnist_events_equal_the_official_pipeline() -> None:
    # the published I2E-FashionMNIST: convert('RGB') -> PILToTensor -> Resize((32, 32), BICUBIC)
    # -> ToDtype(scale=True) -> official I2E(ratio=0.15) in eval mode
    raw, _ = load_idx_split(FASHION_MNIST_DIR, "test")
    raw = raw[:256]
    rgb = torch.from_numpy(raw.copy()).unsqueeze(1).expand(-1, 3, -1, -1)
    official_in = torch.cat(
        [to_dtype_scale(tv_resize_uint8(rgb[i : i + 1], (32, 32), "bicubic")) for i in range(len(raw))]
    )
    official = official_i2e(official_in, 0.15).bool()
    dm = FashionMNISTDataModule(num_workers=0, subset=None)
    ours = dm.converter.eval()(dm.load_source("test").images[:256])
    assert torch.equal(ours, official)
    # what the test guards against: x / 255 flips samples, the float-path resize nearly all of them
    resized = tv_resize_uint8(rgb.contiguous(), (32, 32), "bicubic")
    by_division = official_i2e(resized.float() / 255, 0.15).bool()
    assert (by_division != official).flatten(2).any(-1).any(0).sum() > 0
    floaty = torch.nn.functional.interpolate(rgb.float(), (32, 32), mode="bicubic", antialias=True)
    by_float_resize = official_i2e(to_dtype_scale(floaty.clamp(0, 255).round().to(torch.uint8)), 0.15).bool()
    assert (by_float_resize != official).flatten(2).any(-1).any(0).sum() > 128


def test_imagefolder_baseline_i_training_view_is_squashed(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)).save(tmp_path / split / cls / "0.png")
    dm = ImageFolderDataModule(data_dir=str(tmp_path), augment="flip", resolution=16, resize_size=20, num_workers=0)
    img, _ = dm.load_source("train")[0]
    with Image.open(tmp_path / "train" / "a" / "0.png") as im:
        raw = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)[None]
    # official Baseline-I train transform: v2.Resize((224, 224)) -- the whole image, aspect ratio not kept
    assert torch.equal(img, tv_resize_uint8(raw, (16, 16), "bilinear")[0])
    # eval: v2.Resize(256) (shorter side) then CenterCrop(224)
    val, _ = dm.load_source("test")[0]
    with Image.open(tmp_path / "val" / "a" / "0.png") as im:
        raw = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)[None]
    short = tv_resize_uint8(raw, (20, int(20 * 50 / 30)), "bilinear")[0]
    top, left = round((20 - 16) / 2), round((short.shape[-1] - 16) / 2)
    assert torch.equal(val, short[:, top : top + 16, left : left + 16])


def test_random_resized_crop_resizes_as_torchvision() -> None:
    from i2e_lightning.data.transforms import random_resized_crop

    x = torch.randint(0, 256, (6, 3, 16, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    # a box over the whole image: v2.RandomResizedCrop is then v2.Resize (uint8 bilinear + antialias)
    whole = random_resized_crop(x, (12, 9), torch.Generator().manual_seed(1), scale=(1.0, 1.0), ratio=(1.25, 1.25))
    assert torch.equal(whole, tv_resize_uint8(x, (12, 9), "bilinear"))
    # 8x8 boxes at random offsets: every output is the torchvision resize of one 8x8 window of its image
    out = random_resized_crop(x, (11, 11), torch.Generator().manual_seed(2), scale=(0.2, 0.2), ratio=(1.0, 1.0))
    for i in range(len(x)):
        windows = torch.cat([x[i : i + 1, :, t : t + 8, s : s + 8] for t in range(9) for s in range(13)])
        candidates = tv_resize_uint8(windows, (11, 11), "bilinear")
        assert any(torch.equal(out[i], c) for c in candidates)
