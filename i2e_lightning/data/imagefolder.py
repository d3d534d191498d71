"""ImageNet-style folders (``train/<class>/*``, ``val/<class>/*``) decoded with Pillow.

As the official scripts (torchvision's uint8 resize, bilinear with antialias by default, docs/official.md):
eval resizes the shorter side to 256 and centre-crops 224; Baseline-I training (and ``augment="none"``)
squashes the whole image to 224x224; the worker ships that 224x224 uint8 image. Baseline-II training ships a 256x256 centre crop of the
shorter-side-256 image and the device draws a random resized crop 224 + flip per sample (a fixed-size
batch is what allows batched on-device augmentation; the crop box is drawn inside that 256x256 view).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from torch.utils.data._utils.collate import default_collate

from ..converter.images import decode_image_file
from .base import ImageDataModule
from .transforms import center_crop, random_hflip, random_resized_crop, resize_shorter_uint8, resize_uint8

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderDataModule", "ImageFolderDataset", "collate_skip_none"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")


def collate_skip_none(batch: list[Any]) -> Any:
    """Default collate after dropping the samples a dataset skipped (returned ``None``)."""
    kept = [b for b in batch if b is not None]
    if not kept:
        raise ValueError(f"every sample of a batch of {len(batch)} was a corrupt image: check the dataset")
    return default_collate(kept)


def decode_image(path: str | Path) -> torch.Tensor:
    """uint8 RGB ``[3, H, W]`` of an image file (16-bit and float images scaled to 8 bits or refused, see
    :func:`i2e_lightning.converter.images.decode_image_file`); ``ValueError`` naming the file if it is corrupt."""
    return torch.from_numpy(decode_image_file(path, "RGB")).permute(2, 0, 1).contiguous()


class ImageFolderDataset(Dataset):
    """``root/<class>/<image>`` files -> ``(uint8 [3, size, size], label)``.

    Shorter-side resize + centre crop (the official eval view), or with ``squash`` a resize of the whole
    image to ``crop x crop`` (the official Baseline-I training view and I2E-ImageNet train split).
    """

    def __init__(
        self,
        root: str | Path,
        classes: list[str],
        resize: int,
        crop: int,
        skip_corrupt: bool = False,
        interpolation: str = "bilinear",
        squash: bool = False,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        self.classes = classes
        index = {c: i for i, c in enumerate(classes)}
        samples: list[tuple[str, int]] = []
        for entry in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if entry.name not in index:
                raise ValueError(f"{entry}: class folder {entry.name!r} is not among the training classes")
            for dirpath, _, files in sorted(os.walk(entry)):
                for name in sorted(files):
                    if name.lower().endswith(IMAGE_EXTENSIONS):
                        samples.append((os.path.join(dirpath, name), index[entry.name]))
        if not samples:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {self.root}/<class>/")
        self.samples = samples
        self.resize = resize
        self.crop = crop
        self.skip_corrupt = skip_corrupt
        self.interpolation = interpolation
        self.squash = squash

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        path, label = self.samples[index]
        try:
            image = decode_image(path)
        except ValueError as exc:
            if not self.skip_corrupt:
                raise
            warnings.warn(f"skipping {exc}", stacklevel=2)
            return None
        if self.squash:  # the official Baseline-I training view: Resize((crop, crop)), aspect ratio not kept
            return resize_uint8(image, (self.crop, self.crop), self.interpolation), label
        return center_crop(resize_shorter_uint8(image, self.resize, self.interpolation), self.crop), label


class ImageFolderDataModule(ImageDataModule):
    """ImageNet-style folders at 224x224, ratio 0.12 (docs/spec.md §1).

    Args (besides ``ImageDataModule``'s): ``data_dir`` (required) holds ``train/`` and ``val/`` (``val_folder``);
    ``resolution`` (224), ``resize_size`` (256: eval shorter side before the centre crop),
    ``train_load_size`` (256: the square view Baseline-II crops from), ``skip_corrupt`` (warn and drop a
    corrupt image instead of failing). ``augment``: ``none``, ``flip`` (Baseline-I), ``full`` (Baseline-II:
    random resized crop + flip). ``val_size=0`` (default) validates on the ``val/`` folder.
    """

    default_ratio = 0.12
    augment_presets = ("none", "flip", "full")
    collate_fn = staticmethod(collate_skip_none)

    def __init__(
        self,
        data_dir: str | None = None,
        augment: str = "full",
        resolution: int = 224,
        resize_size: int = 256,
        train_load_size: int = 256,
        val_folder: str = "val",
        skip_corrupt: bool = False,
        **kwargs: Any,
    ) -> None:
        if data_dir is None:
            raise ValueError("ImageFolderDataModule needs data_dir: a folder with train/<class>/ and val/<class>/")
        if resize_size < resolution or train_load_size < resolution:
            raise ValueError(
                f"resize_size ({resize_size}) and train_load_size ({train_load_size}) must be >= resolution ({resolution})"
            )
        self.resize_size = int(resize_size)
        self.train_load_size = int(train_load_size)
        self.val_folder = val_folder
        self.skip_corrupt = bool(skip_corrupt)
        self._classes: list[str] | None = None
        super().__init__(data_dir=data_dir, augment=augment, resolution=resolution, **kwargs)

    @property
    def root(self) -> Path:
        return Path(os.path.expanduser(str(self.data_dir)))

    @property
    def classes(self) -> list[str]:
        """Sorted class folder names of ``train/`` (index = label)."""
        if self._classes is None:
            train = self.root / "train"
            if not train.is_dir():
                raise FileNotFoundError(f"image folder dataset: {train} does not exist (expected train/<class>/*)")
            self._classes = sorted(p.name for p in train.iterdir() if p.is_dir())
            if not self._classes:
                raise FileNotFoundError(f"image folder dataset: no class folders in {train}")
        return self._classes

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return len(self.classes)

    def load_source(self, split: str) -> Dataset:
        folder = self.root / ("train" if split == "train" else self.val_folder)
        if split == "train" and self.augment == "full":
            # square view for the on-device random resized crop
            size = (self.train_load_size, self.train_load_size)
        else:
            size = (self.resize_size, self.resolution[0])
        return ImageFolderDataset(
            folder,
            self.classes,
            size[0],
            size[1],
            skip_corrupt=self.skip_corrupt,
            interpolation=self.interpolation,
            squash=split == "train" and self.augment != "full",
        )

    def split_dataset(self, split: str) -> Dataset:
        if split == "train" and self.augment == "full":
            return ImageFolderDataset(
                self.root / "train",
                self.classes,
                self.resize_size,
                self.resolution[0],
                self.skip_corrupt,
                interpolation=self.interpolation,
            )
        return super().split_dataset(split)

    def augment_batch(self, images: torch.Tensor) -> torch.Tensor:
        if self.augment == "full":
            images = random_resized_crop(images, self.resolution, self.aug_generator)
        return random_hflip(images, self.aug_generator)

    def device_transform(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        if not train and tuple(images.shape[-2:]) != self.resolution:
            # a Baseline-II training view met outside of training (e.g. convert_batch(train=False)): centre crop
            images = center_crop(images, self.resolution)
        return super().device_transform(images, train)
