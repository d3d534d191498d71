"""Random images for smoke runs: the official ``--dummy`` flag (torchvision's ``FakeData``) as a DataModule.

No files are read: every sample is drawn from a generator seeded by its split and index, so a run is
repeatable and any size (ImageNet's 1,281,167 x 3 x 224 x 224 included) costs no memory. Use it to check a
config end to end, e.g. ``--data FakeDataModule --data.num_classes 1000 --data.image_size 224``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .base import ImageDataModule
from .transforms import random_hflip

__all__ = ["FakeDataModule", "FakeImages"]


class FakeImages(Dataset):
    """``size`` random uint8 images ``[channels, height, width]`` with random labels, drawn per index."""

    def __init__(self, size: int, shape: tuple[int, int, int], num_classes: int, seed: int = 0) -> None:
        self.size, self.shape, self.num_classes, self.seed = int(size), tuple(shape), int(num_classes), int(seed)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} fake images")
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        image = torch.randint(0, 256, self.shape, dtype=torch.uint8, generator=g)
        label = int(torch.randint(0, self.num_classes, (), generator=g))
        return image, label


class FakeDataModule(ImageDataModule):
    """Random images converted to events like a real dataset: a smoke test of a config without data.

    Args (besides ``ImageDataModule``'s): ``num_classes`` (10), ``image_size`` (side of the generated
    images, 32), ``channels`` (3), ``train_samples`` / ``test_samples`` (split sizes, the official
    dummy ImageNet uses 1281167 / 50000), ``resolution`` (what the converter sees; default
    ``image_size``).
    """

    default_ratio = 0.12
    augment_presets = ("none", "flip", "full")  # "full" flips too: a real config's preset still runs

    def augment_batch(self, images: Tensor) -> Tensor:
        return super().augment_batch(images) if self.augment == "flip" else random_hflip(images, self.aug_generator)

    def __init__(
        self,
        data_dir: str | None = None,
        num_classes: int = 10,
        image_size: int = 32,
        channels: int = 3,
        train_samples: int = 1024,
        test_samples: int = 256,
        resolution: int | None = None,
        num_workers: int = 0,
        **kwargs: Any,
    ) -> None:
        if num_classes < 2 or image_size < 1 or channels not in (1, 3) or train_samples < 1 or test_samples < 1:
            raise ValueError(
                "FakeDataModule needs num_classes >= 2, image_size >= 1, channels 1 or 3 and at least one "
                f"sample per split, got {num_classes}, {image_size}, {channels}, {train_samples}, {test_samples}"
            )
        self.num_classes = int(num_classes)
        self.image_shape = (int(channels), int(image_size), int(image_size))
        self.split_sizes = {"train": int(train_samples), "test": int(test_samples)}
        super().__init__(
            data_dir=data_dir,
            resolution=image_size if resolution is None else resolution,
            num_workers=num_workers,
            **kwargs,
        )

    def load_source(self, split: str) -> Dataset:
        return FakeImages(
            self.split_sizes[split], self.image_shape, self.num_classes, seed=0 if split == "train" else 1
        )
