"""ImageNet-style folders (``train/<class>/*``, ``val/<class>/*``) decoded with Pillow.

As the official scripts (torchvision's uint8 resize, bilinear with antialias by default, docs/official.md):
eval resizes the shorter side to 256 and centre-crops 224; Baseline-I training (and ``augment="none"``)
squashes the whole image to 224x224; the worker ships that 224x224 uint8 image. Baseline-II training
(``augment="full"``) ships each decoded image whole, at its own size (a list per batch, not a stacked
tensor), and ``on_after_batch_transfer`` draws torchvision's random-resized-crop box over the whole image
from the DataModule's checkpointed generator, resizes the box to 224 (uint8 bilinear + antialias, as
``v2.RandomResizedCrop``) and flips, per sample. ``train_max_side`` optionally shrinks huge images in
the worker first (then their boxes are drawn over the shrunk image, which the official code does not do).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torch.utils.data._utils.collate import default_collate

from ..converter.images import decode_image_file
from .base import ImageDataModule
from .transforms import center_crop, random_hflip, random_resized_crop, resize_shorter_uint8, resize_uint8

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIEWS",
    "ImageFolderDataModule",
    "ImageFolderDataset",
    "collate_skip_none",
    "collate_whole_images",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")
# what a worker ships: eval view (shorter side + centre crop), squashed whole image, or the whole image as is
VIEWS = ("center", "squash", "whole")


def collate_skip_none(batch: list[Any]) -> Any:
    """Default collate after dropping the samples a dataset skipped (returned ``None``)."""
    kept = [b for b in batch if b is not None]
    if not kept:
        raise ValueError(f"every sample of a batch of {len(batch)} was a corrupt image: check the dataset")
    return default_collate(kept)


def collate_whole_images(batch: list[Any]) -> list[Any]:
    """``[list of uint8 [3, H_i, W_i] images, int64 labels [B]]``: images of their own sizes are not stacked
    (corrupt samples, returned as ``None``, dropped)."""
    kept = [b for b in batch if b is not None]
    if not kept:
        raise ValueError(f"every sample of a batch of {len(batch)} was a corrupt image: check the dataset")
    return [[image for image, _ in kept], torch.tensor([label for _, label in kept], dtype=torch.long)]


def decode_image(path: str | Path) -> torch.Tensor:
    """uint8 RGB ``[3, H, W]`` of an image file (16-bit and float images scaled to 8 bits or refused, see
    :func:`i2e_lightning.converter.images.decode_image_file`); ``ValueError`` naming the file if it is corrupt."""
    return torch.from_numpy(decode_image_file(path, "RGB")).permute(2, 0, 1).contiguous()


def shrink_to_max_side(image: Tensor, max_side: int | None, interpolation: str = "bilinear") -> Tensor:
    """Resize ``image`` so its longer side is ``max_side`` (aspect ratio kept) if it is longer; else unchanged."""
    h, w = image.shape[-2:]
    if max_side is None or max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    return resize_uint8(image, (max(1, round(h * scale)), max(1, round(w * scale))), interpolation)


class ImageFolderDataset(Dataset):
    """``root/<class>/<image>`` files -> ``(uint8 [3, h, w], label)``.

    ``view="center"``: shorter side to ``resize``, centre crop ``crop`` (the official eval view);
    ``"squash"``: the whole image resized to ``crop x crop`` (the official Baseline-I training view and
    I2E-ImageNet train split); ``"whole"``: the decoded image at its own size (Baseline-II training, the
    random resized crop runs on the batch), shrunk to ``max_side`` if longer.
    """

    def __init__(
        self,
        root: str | Path,
        classes: list[str],
        resize: int,
        crop: int,
        skip_corrupt: bool = False,
        interpolation: str = "bilinear",
        view: str = "center",
        max_side: int | None = None,
    ) -> None:
        if view not in VIEWS:
            raise ValueError(f"view must be one of {list(VIEWS)}, got {view!r}")
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
        self.view = view
        self.max_side = max_side

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
        if self.view == "whole":
            return shrink_to_max_side(image, self.max_side, self.interpolation), label
        if self.view == "squash":  # the official Baseline-I training view: Resize((crop, crop)), aspect ratio not kept
            return resize_uint8(image, (self.crop, self.crop), self.interpolation), label
        return center_crop(resize_shorter_uint8(image, self.resize, self.interpolation), self.crop), label


class ImageFolderDataModule(ImageDataModule):
    """ImageNet-style folders at 224x224, ratio 0.12 (docs/spec.md §1).

    Args (besides ``ImageDataModule``'s): ``data_dir`` (required) holds ``train/`` and ``val/`` (``val_folder``);
    ``resolution`` (224), ``resize_size`` (256: eval shorter side before the centre crop),
    ``train_max_side`` (None: Baseline-II workers ship every training image whole; an int shrinks images
    whose longer side exceeds it, bounding memory for huge images), ``skip_corrupt`` (warn and drop a
    corrupt image instead of failing). ``augment``: ``none``, ``flip`` (Baseline-I: squashed to 224 + flip),
    ``full`` (Baseline-II: random resized crop over the whole image + flip). ``val_size=0`` (default)
    validates on the ``val/`` folder.
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
        train_max_side: int | None = None,
        val_folder: str = "val",
        skip_corrupt: bool = False,
        **kwargs: Any,
    ) -> None:
        if data_dir is None:
            raise ValueError("ImageFolderDataModule needs data_dir: a folder with train/<class>/ and val/<class>/")
        if resize_size < resolution:
            raise ValueError(f"resize_size ({resize_size}) must be >= resolution ({resolution})")
        if train_max_side is not None and (
            isinstance(train_max_side, bool) or not isinstance(train_max_side, int) or train_max_side < 1
        ):
            raise ValueError(f"train_max_side must be a positive integer or null (no cap), got {train_max_side!r}")
        self.resize_size = int(resize_size)
        self.train_max_side = train_max_side
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

    def _ships_whole_images(self, split: str) -> bool:
        return split == "train" and self.augment == "full"

    def _dataset(self, split: str, view: str) -> ImageFolderDataset:
        folder = self.root / ("train" if split == "train" else self.val_folder)
        return ImageFolderDataset(
            folder,
            self.classes,
            self.resize_size,
            self.resolution[0],
            skip_corrupt=self.skip_corrupt,
            interpolation=self.interpolation,
            view=view,
            max_side=self.train_max_side,
        )

    def load_source(self, split: str) -> Dataset:
        if self._ships_whole_images(split):
            return self._dataset(split, "whole")
        return self._dataset(split, "squash" if split == "train" else "center")

    def collate_for(self, split: str) -> Any:
        return collate_whole_images if self._ships_whole_images(split) else self.collate_fn

    def split_dataset(self, split: str) -> Dataset:
        if self._ships_whole_images(split):
            return self._dataset(split, "center")  # the contract: eval preprocessing
        return super().split_dataset(split)

    def eval_view(self, images: Tensor | Sequence[Tensor]) -> Tensor:
        """Images of any size -> the official eval view: shorter side ``resize_size``, centre crop ``resolution``."""
        views = [
            center_crop(resize_shorter_uint8(im, self.resize_size, self.interpolation), self.resolution)
            for im in images
        ]
        return torch.stack(views) if views else torch.empty(0, 3, *self.resolution, dtype=torch.uint8)

    def augment_batch(self, images: Tensor) -> Tensor:
        if self.augment == "full":
            images = random_resized_crop(images, self.resolution, self.aug_generator)
        return random_hflip(images, self.aug_generator)

    def device_transform(self, images: Tensor | Sequence[Tensor], train: bool) -> Tensor:
        # Baseline-II batches are lists of whole images: the box is drawn over each whole image here, in the
        # training process, rather than in the workers, so its parameters come from the checkpointed
        # aug_generator (exact resume, own stream per DDP rank); the crop is resized on the CPU either way
        # (torch's uint8 antialias resampler, the official kernel, is CPU-only: resize_uint8).
        if isinstance(images, Tensor) and tuple(images.shape[-2:]) == self.resolution:
            return super().device_transform(images, train)
        if train and self.augment == "full":
            return random_hflip(random_resized_crop(images, self.resolution, self.aug_generator), self.aug_generator)
        # whole images met outside of Baseline-II training (e.g. convert_batch(train=False)): the eval view
        return super().device_transform(self.eval_view(images), train)
