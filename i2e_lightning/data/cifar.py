"""CIFAR-10 / CIFAR-100 DataModules from the python pickle batches.

Workers ship the native 32x32 uint8 images (16x less host->device traffic than 128x128); the device
does the Baseline-II augmentation at 32x32 (edge-pad 4, random crop 32, flip) and then the bicubic
resize to 128x128 of docs/spec.md §1, which is also the whole eval preprocessing.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .base import ImageDataModule, TensorImageDataset
from .transforms import pad_random_crop, random_hflip

__all__ = ["CIFAR10DataModule", "CIFAR100DataModule", "read_cifar_batches"]

CIFAR_DIRS = ("/usr/share/datasets", "data", "~/.cache/i2e_lightning")


def _load_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable CIFAR pickle batch ({exc}): download the dataset again") from exc


def read_cifar_batches(files: list[Path], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate CIFAR python batches -> uint8 ``[N, 3, 32, 32]``, int64 ``[N]``."""
    images, labels = [], []
    for path in files:
        entry = _load_pickle(path)
        if "data" not in entry or label_key not in entry:
            raise ValueError(f"{path}: CIFAR batch without 'data' or '{label_key}' (keys: {sorted(entry)})")
        data = np.asarray(entry["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072:
            raise ValueError(f"{path}: 'data' must be [N, 3072] uint8 (3x32x32 per row), got {data.shape}")
        lbl = np.asarray(entry[label_key], dtype=np.int64)
        if len(lbl) != len(data):
            raise ValueError(f"{path}: {len(lbl)} labels for {len(data)} images")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lbl)
    return np.concatenate(images), np.concatenate(labels)


class _CIFAR(ImageDataModule):
    default_ratio = 0.07
    augment_presets = ("none", "flip", "full")
    folder = ""
    train_files: tuple[str, ...] = ()
    test_files: tuple[str, ...] = ()
    label_key = ""
    download_name = ""

    def __init__(
        self, data_dir: str | None = None, augment: str = "full", resolution: int = 128, **kwargs: Any
    ) -> None:
        super().__init__(data_dir=data_dir, augment=augment, resolution=resolution, **kwargs)

    def _find_dir(self) -> Path:
        roots = [self.data_dir] if self.data_dir is not None else list(CIFAR_DIRS)
        tried = []
        for root in roots:
            root_path = Path(os.path.expanduser(root))
            # data_dir may be the extracted folder itself or its parent
            for cand in (root_path, root_path / self.folder):
                tried.append(str(cand))
                if (cand / self.train_files[0]).is_file():
                    return cand
        raise FileNotFoundError(
            f"{type(self).__name__}: {self.folder}/{self.train_files[0]} not found (looked in {', '.join(tried)}). "
            f"Get it with `python -m i2e_lightning download {self.download_name} --dir DIR` and set data_dir: DIR"
        )

    def load_source(self, split: str) -> Dataset:
        directory = self._find_dir()
        files = [directory / f for f in (self.train_files if split == "train" else self.test_files)]
        for path in files:
            if not path.is_file():
                raise FileNotFoundError(f"{type(self).__name__}: {path} is missing (incomplete {self.folder})")
        images, labels = read_cifar_batches(files, self.label_key)
        return TensorImageDataset(torch.from_numpy(images), torch.from_numpy(labels))

    def augment_batch(self, images: torch.Tensor) -> torch.Tensor:
        # Baseline-II: edge-pad 4 + random crop 32 (then the resize to 128 in device_transform) + flip
        if self.augment == "full":
            images = pad_random_crop(images, 4, self.aug_generator, mode="replicate")
        return random_hflip(images, self.aug_generator)


_CIFAR_ARGS_DOC = """
    Args are those of ``ImageDataModule`` (``resolution`` 128 here). ``augment``: ``none``,
    ``flip`` (Baseline-I), ``full`` (Baseline-II: edge-pad 4, random crop 32, resize, flip).
    ``data_dir`` is ``{folder}`` or its parent (default search: /usr/share/datasets, ./data,
    ~/.cache/i2e_lightning). ``val_size=0`` (the default) validates on the official test set, as the paper.
"""


class CIFAR10DataModule(_CIFAR):
    num_classes = 10
    folder = "cifar-10-batches-py"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_files = ("test_batch",)
    label_key = "labels"
    download_name = "cifar10"
    __doc__ = "CIFAR-10 at 128x128, ratio 0.07 (docs/spec.md §1)." + _CIFAR_ARGS_DOC.format(folder=folder)


class CIFAR100DataModule(_CIFAR):
    num_classes = 100
    folder = "cifar-100-python"
    train_files = ("train",)
    test_files = ("test",)
    label_key = "fine_labels"
    download_name = "cifar100"
    __doc__ = "CIFAR-100, fine labels, 128x128, ratio 0.07 (docs/spec.md §1)." + _CIFAR_ARGS_DOC.format(folder=folder)
