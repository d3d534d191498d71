"""``I2EDataModule``: workers ship uint8 images, the training device augments and converts them to events.

Data flow of every image DataModule::

    worker: decode -> (resize once, or cached) -> uint8 [C, h, w]  ──collate──> uint8 [B, C, h, w]
    device (on_after_batch_transfer): augment (training only, per-sample random)
                                      -> bicubic resize to ``resolution`` if the batch is smaller
                                      -> I2E converter (random equivalent pairs in training,
                                         canonical pairs otherwise) -> float events [T, B, 2, H, W]

The converter's settings (ratio, order, timesteps, per-sample pairs) are datamodule arguments, so they
live in the ``data:`` section of a config and not in the model's checkpointed hyper-parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from ..converter import I2E, parse_dtype
from .transforms import random_hflip, resize_uint8

__all__ = ["I2EDataModule", "ResizedDataset", "TensorImageDataset", "SPLITS"]

SPLITS = ("train", "val", "test")
# the held-out validation indices and the `subset` caps do not depend on `seed`, so changing the
# training seed never moves samples between train and val
SPLIT_SEED = 20251111
# offset between the converter's and the augmentation's random streams of one rank
_AUG_STREAM = 0x5EED0000


class TensorImageDataset(Dataset):
    """In-memory uint8 images ``[N, C, H, W]`` and int64 labels ``[N]``; yields ``(uint8 [C, H, W], int)``."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        if labels.dim() != 1 or len(labels) != len(images):
            raise ValueError(f"labels must be [N] with N = {len(images)}, got {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.long()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])


class ResizedDataset(Dataset):
    """Wrap a uint8 image dataset and bicubic-resize each sample to ``size`` (the eval preprocessing)."""

    def __init__(self, dataset: Dataset, size: tuple[int, int]) -> None:
        self.dataset = dataset
        self.size = tuple(size)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image, label = self.dataset[index]
        return resize_uint8(image, self.size), label


class I2EDataModule(L.LightningDataModule):
    """Base DataModule: uint8 image batches in, I2E events ``[T, B, 2, H, W]`` out (on the batch's device).

    Args:
        data_dir: where the dataset lives (each subclass has a default or a search list).
        batch_size: samples per batch (per DDP rank).
        num_workers: DataLoader worker processes (0 = load in the main process).
        ratio: converter threshold ratio S_th0; ``None`` = the dataset's published ratio (docs/spec.md §1).
        order: timestep order, preset 0-5 or a list of 8 direction indices (default 4, the paper's best).
        timesteps: keep the first ``timesteps`` (1-8) directions.
        per_sample_pairs: in training draw the random equivalent pair per sample (else per batch,
            as the official code).
        augment: image augmentation before conversion in training; presets depend on the dataset
            (``"none"``, ``"flip"`` = Baseline-I, ``"full"`` = Baseline-II where defined).
        val_size: validation samples held out of the official training set with a fixed seeded
            permutation: an int count, a float fraction in (0, 1), or 0 to validate on the test set.
        seed: seed of the random pair and augmentation draws; DDP rank r uses ``seed + r``.
        pin_memory: pin the host batches (useful with CUDA).
        subset: keep at most this many samples per split (a fixed seeded random choice), for tiny runs.
        events_dtype: dtype of the events handed to the model (float32, float16 or bfloat16).
        persistent_workers: keep the workers alive between epochs (only with ``num_workers > 0``).
    """

    # subclass facts
    default_ratio: ClassVar[float] = 0.12
    augment_presets: ClassVar[tuple[str, ...]] = ("none", "flip")
    num_classes: int = 0
    resolution: tuple[int, int] = (32, 32)
    in_channels: int = 2

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 128,
        num_workers: int = 2,
        ratio: float | None = None,
        order: int | list[int] = 4,
        timesteps: int = 8,
        per_sample_pairs: bool = False,
        augment: str = "none",
        val_size: int | float = 0,
        seed: int = 0,
        pin_memory: bool = False,
        subset: int | None = None,
        events_dtype: str = "float32",
        persistent_workers: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an integer >= 0, got {num_workers!r}")
        if augment not in self.augment_presets:
            raise ValueError(
                f"augment={augment!r} is not defined for {type(self).__name__}: use one of {list(self.augment_presets)}"
            )
        if isinstance(val_size, bool) or not isinstance(val_size, (int, float)) or val_size < 0:
            raise ValueError(f"val_size must be an int count, a fraction in (0, 1) or 0, got {val_size!r}")
        if isinstance(val_size, float) and not (val_size == 0 or 0 < val_size < 1):
            raise ValueError(f"a float val_size is a fraction and must lie in (0, 1), got {val_size!r}")
        if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset < 1):
            raise ValueError(f"subset must be a positive integer or null, got {subset!r}")
        self.events_dtype = parse_dtype(events_dtype)
        if not self.events_dtype.is_floating_point:
            raise ValueError(f"events_dtype must be a float dtype (float32, float16, bfloat16), got {events_dtype!r}")
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.ratio = float(self.default_ratio if ratio is None else ratio)
        self.order = order
        self.timesteps = timesteps
        self.per_sample_pairs = bool(per_sample_pairs)
        self.augment = augment
        self.val_size = val_size
        self.seed = int(seed)
        self.pin_memory = bool(pin_memory)
        self.subset = subset
        self.persistent_workers = bool(persistent_workers)
        self.converter: I2E | None = self._make_converter()
        self.aug_generator = torch.Generator()
        self._seed_generators(0)
        self._splits: dict[str, Dataset] = {}
        self.save_hyperparameters()
        # the resolved ratio, not None: a checkpoint alone then rebuilds the converter (export-onnx --ckpt)
        self.hparams["ratio"] = self.ratio

    # -- hooks for subclasses ---------------------------------------------------------------

    def _make_converter(self) -> I2E | None:
        # validate=False: uint8 input cannot hold NaN/Inf, and the check costs a reduction per batch
        return I2E(
            self.ratio,
            self.order,
            self.timesteps,
            per_sample=self.per_sample_pairs,
            dtype=torch.bool,
            validate=False,
        )

    def load_source(self, split: str) -> Dataset:
        """Official split ``"train"`` or ``"test"`` as shipped by the workers: ``(uint8 [C, h, w], int)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement load_source(split)")

    def augment_batch(self, images: Tensor) -> Tensor:
        """Training augmentation of a uint8 batch (before the resize to ``resolution``)."""
        if self.augment == "flip":
            return random_hflip(images, self.aug_generator)
        return images

    collate_fn: Any = None  # None = torch's default collate

    def device_transform(self, images: Tensor, train: bool) -> Tensor:
        """uint8 batch as shipped -> uint8 ``[B, C, H, W]`` at ``resolution`` (augmented when ``train``)."""
        if train and self.augment != "none":
            images = self.augment_batch(images)
        return resize_uint8(images, self.resolution)

    # -- splits ------------------------------------------------------------------------------

    def _held_out(self, n: int) -> int:
        size = self.val_size
        count = int(round(size * n)) if isinstance(size, float) else int(size)
        if count >= n:
            raise ValueError(f"val_size={size!r} holds out {count} of only {n} training samples: choose fewer")
        return count

    def loader_dataset(self, split: str) -> Dataset:
        """Dataset of ``split`` exactly as the dataloaders use it (uint8 at the shipping resolution)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if split in self._splits:
            return self._splits[split]
        if split == "test" or (split == "val" and self.val_size == 0):
            ds = self._source("test")
        else:
            train = self._source("train")
            n = len(train)  # type: ignore[arg-type]
            held = self._held_out(n)
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
            idx = sorted(perm[:held]) if split == "val" else sorted(perm[held:])
            ds = Subset(train, idx) if held else train
        if self.subset is not None and len(ds) > self.subset:  # type: ignore[arg-type]
            perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(SPLIT_SEED + 1))  # type: ignore[arg-type]
            ds = Subset(ds, sorted(perm[: self.subset].tolist()))
        self._splits[split] = ds
        return ds

    def _source(self, split: str) -> Dataset:
        key = f"source:{split}"
        if key not in self._splits:
            self._splits[key] = self.load_source(split)
        return self._splits[key]

    def split_dataset(self, split: str) -> Dataset:
        """``split`` (train|val|test) as ``(uint8 [C, H, W] at resolution, eval preprocessing, int label)``."""
        ds = self.loader_dataset(split)
        sample = ds[0] if len(ds) else None  # type: ignore[arg-type]
        if sample is not None and tuple(sample[0].shape[-2:]) != tuple(self.resolution):
            return ResizedDataset(ds, self.resolution)
        return ds

    # -- Lightning hooks ---------------------------------------------------------------------

    def _seed_generators(self, rank: int) -> None:
        if self.converter is not None:
            self.converter.generator = torch.Generator().manual_seed(self.seed + rank)
        self.aug_generator.manual_seed(self.seed + rank + _AUG_STREAM)

    def setup(self, stage: str | None = None) -> None:
        # each DDP rank draws its own pairs and augmentations
        rank = self.trainer.global_rank if self.trainer is not None else 0
        self._seed_generators(rank)
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage, SPLITS) if stage else SPLITS:
            self.loader_dataset(split)  # load now, so a missing dataset fails before training starts

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        ds = self.loader_dataset(split)
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            collate_fn=self.collate_fn,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def __getstate__(self) -> dict[str, Any]:
        # loaded splits are rebuilt lazily: keeps ddp_spawn / pickling of the DataModule cheap
        state = self.__dict__.copy()
        state["_splits"] = {}
        return state

    def _is_training(self) -> bool:
        trainer = self.trainer
        return bool(trainer is not None and trainer.training)

    def to_events(self, images: Tensor, train: bool) -> Tensor:
        """uint8 images at ``resolution`` -> events ``[T, B, 2, H, W]`` in ``events_dtype``."""
        assert self.converter is not None
        self.converter.train(train)
        with torch.no_grad():
            return self.converter(images, dtype=self.events_dtype)

    def convert_batch(self, images: Tensor, train: bool = False) -> Tensor:
        """Augment (when ``train``), resize and convert a shipped uint8 batch, outside of a trainer too."""
        return self.to_events(self.device_transform(images, train), train)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> tuple[Tensor, Tensor]:
        if not isinstance(batch, Sequence) or len(batch) < 2:
            raise ValueError(f"{type(self).__name__} expects (images, labels) batches, got {type(batch).__name__}")
        images, labels = batch[0], batch[1]
        events = self.convert_batch(images, train=self._is_training())
        return events, labels.long()
