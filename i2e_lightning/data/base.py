"""The DataModule bases: ``ImageDataModule`` converts images to events on the device, ``EventDataModule``
reads events that exist already; ``I2EDataModule`` is what both share.

Data flow of an image DataModule::

    worker: decode -> (resize once, or cached) -> uint8 [C, h, w]  ──collate──> uint8 [B, C, h, w]
    device (on_after_batch_transfer): augment (training only, per-sample random)
                                      -> bicubic resize to ``resolution`` if the batch is smaller
                                      -> I2E converter (random equivalent pairs in training,
                                         canonical pairs otherwise) -> float events [T, B, 2, H, W]

A DataModule whose training images keep their own sizes ships them as a list (``collate_for``; ImageNet
Baseline-II, whose random resized crop is drawn over each whole image in ``device_transform``).

An event DataModule ships stored events (packed rows, frames) and only reshapes (and flips) them on the device.

The converter's settings (ratio, order, timesteps, per-sample pairs) are DataModule arguments, so they
live in the ``data:`` section of a config and not in the model's checkpointed hyper-parameters.

Randomness: the training order, the augmentation and the converter's pairs each draw from an own
generator seeded with ``seed + rank`` (``seed`` defaults to the one ``seed_everything`` set). The
generators and the position in the epoch are the DataModule's ``state_dict``, which Lightning stores in
every checkpoint: a run resumed mid-epoch draws exactly what the uninterrupted run draws.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence, Sized
from typing import Any, ClassVar

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler, Subset

from ..converter import I2E, parse_dtype
from .transforms import INTERPOLATIONS, random_hflip, resize_uint8

__all__ = [
    "SPLITS",
    "EventDataModule",
    "I2EDataModule",
    "ImageDataModule",
    "ResizedDataset",
    "ResumableRandomSampler",
    "TensorImageDataset",
]

SPLITS = ("train", "val", "test")
# the held-out validation indices and the `subset` caps do not depend on `seed`, so changing the
# training seed never moves samples between train and val
SPLIT_SEED = 20251111
# offsets between the random streams of one rank (the converter's pairs use seed + rank itself)
_STREAMS = {"pairs": 0, "augment": 0x5EED0000, "order": 0x0DE50000}


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

    def __init__(self, dataset: Dataset, size: tuple[int, int], interpolation: str = "bicubic") -> None:
        self.dataset = dataset
        self.size = tuple(size)
        self.interpolation = interpolation

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image, label = self.dataset[index]
        return resize_uint8(image, self.size, self.interpolation), label


class ResumableRandomSampler(RandomSampler):
    """A new random order every epoch from an own generator; the epoch in progress can be resumed.

    ``batches_done`` counts the training batches of the current epoch that reached the device (the
    DataModule counts them; prefetched batches do not count). ``state_dict`` holds the generator as it
    was when the epoch's order was drawn and how many samples were used, so ``load_state_dict`` redraws
    the same order and skips what was trained. Under DDP Lightning replaces it with a DistributedSampler.
    """

    def __init__(self, data_source: Sized, generator: torch.Generator, batch_size: int) -> None:
        super().__init__(data_source, generator=generator)
        self.batch_size = batch_size
        self.batches_done = 0
        self._epoch_start = generator.get_state()
        self._resume: tuple[Tensor, int] | None = None

    def __iter__(self) -> Iterator[int]:
        skip = 0
        if self._resume is not None:
            state, skip = self._resume
            self._resume = None
            self.generator.set_state(state)
        self._epoch_start = self.generator.get_state()
        self.batches_done = skip // self.batch_size
        order = torch.randperm(len(self.data_source), generator=self.generator).tolist()
        yield from order[skip:]

    def state_dict(self, epoch_finished: bool) -> dict[str, Any]:
        if epoch_finished:  # the next epoch draws a new order from where the generator is now
            return {"generator": self.generator.get_state(), "skip": 0}
        return {"generator": self._epoch_start, "skip": self.batches_done * self.batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume = (state["generator"], int(state["skip"]))


class _ResumableDataLoader(DataLoader):
    """The training loader of one process: its position is restored through the DataModule's state
    (the sampler's), so it tells Lightning it is resumable and holds no state of its own."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass


class I2EDataModule(L.LightningDataModule):
    """What every DataModule shares: splits, loaders, seeded random streams, resumable state.

    Subclass ``ImageDataModule`` (images converted to events on the device) or ``EventDataModule``
    (events read from disk), not this class.

    Args:
        data_dir: where the dataset lives (each subclass has a default or a search list).
        batch_size: samples per batch (per DDP rank).
        num_workers: DataLoader worker processes (0 = load in the main process).
        augment: augmentation in training; presets depend on the dataset (``"none"``, ``"flip"`` = Baseline-I,
            ``"full"`` = Baseline-II where defined).
        val_size: validation samples held out of the official training set with a fixed seeded
            permutation: an int count, a float fraction in (0, 1), or 0 to validate on the test set.
        seed: seed of the training order, augmentation and pair draws; DDP rank r uses ``seed + r``.
            ``None`` = the seed of ``seed_everything`` (the config's ``seed_everything``), else 0.
        pin_memory: pin the host batches (useful with CUDA).
        subset: keep at most this many samples per split (a fixed seeded random choice), for tiny runs.
        events_dtype: dtype of the events handed to the model (float32, float16 or bfloat16).
        persistent_workers: keep the workers alive between epochs (only with ``num_workers > 0``).
    """

    # facts of a dataset, read by the model (the CLI links them): set by subclasses
    augment_presets: ClassVar[tuple[str, ...]] = ("none", "flip")
    num_classes: int = 0
    resolution: tuple[int, int] = (32, 32)
    in_channels: int = 2
    timesteps: int = 8

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 128,
        num_workers: int = 2,
        augment: str = "none",
        val_size: int | float = 0,
        seed: int | None = None,
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
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an integer or null (= the seed_everything seed), got {seed!r}")
        self.events_dtype = parse_dtype(events_dtype)
        if not self.events_dtype.is_floating_point:
            raise ValueError(f"events_dtype must be a float dtype (float32, float16, bfloat16), got {events_dtype!r}")
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.augment = augment
        self.val_size = val_size
        self.seed = seed
        self.pin_memory = bool(pin_memory)
        self.subset = subset
        self.persistent_workers = bool(persistent_workers)
        self.aug_generator = torch.Generator()
        self.order_generator = torch.Generator()
        self._train_sampler: ResumableRandomSampler | None = None
        self._pending_state: dict[str, Any] | None = None
        self._splits: dict[str, Dataset] = {}
        self.seed_streams(0)
        self.save_hyperparameters()

    # -- what a subclass provides -------------------------------------------------------------

    def load_source(self, split: str) -> Dataset:
        """Official split ``"train"`` or ``"test"`` as shipped by the workers."""
        raise NotImplementedError(f"{type(self).__name__} must implement load_source(split)")

    def device_transform(self, batch: Tensor, train: bool) -> Tensor:
        """A shipped batch -> what ``to_events`` takes (augmented when ``train``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement device_transform(batch, train)")

    def to_events(self, batch: Tensor, train: bool) -> Tensor:
        """The output of ``device_transform`` -> events ``[T, B, 2, H, W]`` in ``events_dtype``."""
        raise NotImplementedError(f"{type(self).__name__} must implement to_events(batch, train)")

    collate_fn: Any = None  # None = torch's default collate

    def collate_for(self, split: str) -> Any:
        """The collate function of ``split``'s loader: ``collate_fn`` unless a split ships otherwise (e.g.
        images of their own sizes as a list)."""
        return self.collate_fn

    # -- random streams ----------------------------------------------------------------------

    @property
    def resolved_seed(self) -> int:
        """``seed``, or the seed of ``seed_everything`` when ``seed`` is None (0 without either)."""
        if self.seed is not None:
            return self.seed
        return int(os.environ.get("PL_GLOBAL_SEED", 0))

    def random_streams(self) -> dict[str, torch.Generator]:
        """The generators of this DataModule by stream name (image DataModules add the converter's)."""
        return {"augment": self.aug_generator, "order": self.order_generator}

    def seed_streams(self, rank: int = 0) -> None:
        """Seed every stream with ``seed + rank`` (plus a fixed offset per stream)."""
        for name, generator in self.random_streams().items():
            generator.manual_seed(self.resolved_seed + rank + _STREAMS[name])

    # -- splits ------------------------------------------------------------------------------

    def _held_out(self, n: int) -> int:
        size = self.val_size
        count = int(round(size * n)) if isinstance(size, float) else int(size)
        if count >= n:
            raise ValueError(f"val_size={size!r} holds out {count} of only {n} training samples: choose fewer")
        return count

    def loader_dataset(self, split: str) -> Dataset:
        """Dataset of ``split`` exactly as the dataloaders use it (as the workers ship it)."""
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
        """``split`` (train|val|test) as the model's preprocessing sees it outside of training."""
        return self.loader_dataset(split)

    # -- Lightning hooks ---------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        # each DDP rank draws its own order, augmentations and pairs
        rank = self.trainer.global_rank if self.trainer is not None else 0
        self.seed_streams(rank)
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage, SPLITS) if stage else SPLITS:
            self.loader_dataset(split)  # load now, so a missing dataset fails before training starts

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        ds = self.loader_dataset(split)
        sampler = None
        loader_class = DataLoader
        if shuffle:
            sampler = ResumableRandomSampler(ds, self.order_generator, self.batch_size)  # type: ignore[arg-type]
            if self._pending_state is not None and "sampler" in self._pending_state:
                sampler.load_state_dict(self._pending_state.pop("sampler"))
            self._train_sampler = sampler
            if getattr(self.trainer, "world_size", 1) == 1:  # DDP swaps in a DistributedSampler
                loader_class = _ResumableDataLoader
        return loader_class(
            ds,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            collate_fn=self.collate_for(split),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def state_dict(self) -> dict[str, Any]:
        """The random streams and the position in the training epoch (Lightning puts it in checkpoints)."""
        trainer = self.trainer
        state: dict[str, Any] = {
            "rank": trainer.global_rank if trainer is not None else 0,
            "generators": {name: g.get_state() for name, g in self.random_streams().items()},
        }
        if self._train_sampler is not None:
            total = getattr(trainer, "num_training_batches", float("inf")) if trainer is not None else float("inf")
            state["sampler"] = self._train_sampler.state_dict(self._train_sampler.batches_done >= total)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        trainer = self.trainer
        rank = trainer.global_rank if trainer is not None else 0
        if state_dict.get("rank", 0) != rank:
            return  # another rank's streams (DDP checkpoints hold rank 0's): keep this rank's own seeding
        streams = self.random_streams()
        for name, state in state_dict.get("generators", {}).items():
            if name in streams:
                streams[name].set_state(state)
        self._pending_state = {k: v for k, v in state_dict.items() if k == "sampler"}

    def __getstate__(self) -> dict[str, Any]:
        # loaded splits are rebuilt lazily: keeps ddp_spawn / pickling of the DataModule cheap
        state = self.__dict__.copy()
        state["_splits"] = {}
        return state

    def _is_training(self) -> bool:
        trainer = self.trainer
        return bool(trainer is not None and trainer.training)

    def convert_batch(self, batch: Tensor, train: bool = False) -> Tensor:
        """Augment (when ``train``) and turn a shipped batch into events, outside of a trainer too."""
        return self.to_events(self.device_transform(batch, train), train)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> tuple[Tensor, Tensor]:
        if not isinstance(batch, Sequence) or len(batch) < 2:
            raise ValueError(f"{type(self).__name__} expects (images, labels) batches, got {type(batch).__name__}")
        images, labels = batch[0], batch[1]
        train = self._is_training()
        if train and self._train_sampler is not None:
            self._train_sampler.batches_done += 1
        events = self.convert_batch(images, train=train)
        return events, labels.long()


class ImageDataModule(I2EDataModule):
    """Images shipped as uint8, augmented, resized and converted to events by I2E on the batch's device.

    Args:
        data_dir: where the dataset lives.
        ratio: converter threshold ratio S_th0; ``None`` = the dataset's published ratio (docs/spec.md §1).
        order: timestep order, preset 0-5 or a list of 8 direction indices (default 4, the paper's best).
        timesteps: keep the first ``timesteps`` (1-8) directions.
        per_sample_pairs: in training draw the random equivalent pair per sample (else per batch,
            as the official code).
        resolution: side of the square images the converter sees.
        interpolation: ``"bilinear"`` or ``"bicubic"`` (torchvision's uint8 resize with antialias);
            ``None`` = the dataset's official choice (``default_interpolation``, docs/official.md).
        **kwargs: the arguments of ``I2EDataModule`` (batch_size, augment, val_size, seed, ...).
    """

    default_ratio: ClassVar[float] = 0.12
    # the official generation code's resize: v2.Resize's default (bilinear) unless a dataset says otherwise
    default_interpolation: ClassVar[str] = "bilinear"

    def __init__(
        self,
        data_dir: str | None = None,
        ratio: float | None = None,
        order: int | list[int] = 4,
        timesteps: int = 8,
        per_sample_pairs: bool = False,
        resolution: int = 32,
        interpolation: str | None = None,
        **kwargs: Any,
    ) -> None:
        if interpolation is not None and interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {list(INTERPOLATIONS)} or null, got {interpolation!r}")
        self.interpolation = self.default_interpolation if interpolation is None else interpolation
        self.ratio = float(self.default_ratio if ratio is None else ratio)
        self.order = order
        self.timesteps = timesteps
        self.per_sample_pairs = bool(per_sample_pairs)
        self.resolution = (int(resolution), int(resolution))
        # validate=False: uint8 input cannot hold NaN/Inf, and the check costs a reduction per batch
        self.converter = I2E(
            self.ratio, order, timesteps, per_sample=self.per_sample_pairs, dtype=torch.bool, validate=False
        )
        super().__init__(data_dir=data_dir, **kwargs)
        # the resolved ratio, not None: a checkpoint alone then rebuilds the converter (export-onnx --ckpt)
        self.hparams["ratio"] = self.ratio
        self.hparams["interpolation"] = self.interpolation

    def random_streams(self) -> dict[str, torch.Generator]:
        if self.converter.generator is None:
            self.converter.generator = torch.Generator()
        return {**super().random_streams(), "pairs": self.converter.generator}

    def augment_batch(self, images: Tensor) -> Tensor:
        """Training augmentation of a uint8 batch (before the resize to ``resolution``)."""
        if self.augment == "flip":
            return random_hflip(images, self.aug_generator)
        return images

    def device_transform(self, batch: Tensor, train: bool) -> Tensor:
        """uint8 batch as shipped -> uint8 ``[B, C, H, W]`` at ``resolution`` (augmented when ``train``)."""
        if train and self.augment != "none":
            batch = self.augment_batch(batch)
        return resize_uint8(batch, self.resolution, self.interpolation)

    def to_events(self, batch: Tensor, train: bool) -> Tensor:
        """uint8 images at ``resolution`` -> events ``[T, B, 2, H, W]`` in ``events_dtype``."""
        self.converter.train(train)
        with torch.no_grad():
            return self.converter(batch, dtype=self.events_dtype)

    def split_dataset(self, split: str) -> Dataset:
        """``split`` as ``(uint8 [C, H, W] at resolution, eval preprocessing, int label)``."""
        ds = self.loader_dataset(split)
        sample = ds[0] if len(ds) else None  # type: ignore[arg-type]
        if sample is not None and tuple(sample[0].shape[-2:]) != tuple(self.resolution):
            return ResizedDataset(ds, self.resolution, self.interpolation)
        return ds


class EventDataModule(I2EDataModule):
    """Events that exist already (converted files, event-camera recordings): no converter.

    Subclasses ship ``[B, T, 2, H, W]`` batches from ``device_transform`` (after unpacking, if the workers
    ship packed rows); this class flips them in training (``augment="flip"``) and hands ``[T, B, 2, H, W]``
    to the model.
    """

    converter: I2E | None = None  # the events exist already (callers such as `convert` test for None)

    def flip_events(self, events: Tensor) -> Tensor:
        """Flip each sample ``[T, 2, H, W]`` of a ``[B, T, 2, H, W]`` batch horizontally with probability 0.5."""
        b = events.shape[0]
        flip = (torch.rand(b, generator=self.aug_generator) < 0.5).to(events.device).view(b, 1, 1, 1, 1)
        return torch.where(flip, events.flip(-1), events)

    def device_transform(self, batch: Tensor, train: bool) -> Tensor:
        if train and self.augment == "flip":
            batch = self.flip_events(batch)
        return batch

    def to_events(self, batch: Tensor, train: bool) -> Tensor:
        return batch.transpose(0, 1).to(self.events_dtype).contiguous()
