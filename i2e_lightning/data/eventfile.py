"""Train from pre-converted I2E events on disk (HDF5, ``<class>/*.npz`` folders, Hugging Face parquet).

Workers ship the packed bit rows (8x less than bool); the device unpacks them with
``i2e_lightning.events.unpack_events`` and hands ``[T, B, 2, H, W]`` floats to the model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

from ..events.dataset import EventFileDataset
from ..events.hub import parse_hub_path
from ..events.packed import unpack_events
from .base import EventDataModule

__all__ = ["EventFileDataModule"]


class EventFileDataModule(EventDataModule):
    """Pre-converted event files (no converter at training time: the events were made by ``convert``).

    Args:
        train_path: events of the training split (``.h5``, ``.parquet``, a parquet-shard folder or an npz folder),
            or a published dataset by name: ``hf://I2E-CIFAR10/train`` (the ``hub`` extra; docs/events.md).
        test_path: events of the test split.
        val_path: events of the validation split; ``None`` = hold ``val_size`` samples out of ``train_path``
            (or, with ``val_size=0``, validate on ``test_path``).
        data_dir: folder that relative paths are taken from (default: the working directory).
        timesteps: keep the first ``timesteps`` of the stored T (``None`` = all).
        augment: ``"none"`` or ``"flip"`` (per-sample horizontal flip of the events).
        in_memory: HDF5 only: load the packed rows into RAM.
        **kwargs: the arguments of ``I2EDataModule``.
    """

    augment_presets = ("none", "flip")

    def __init__(
        self,
        train_path: str,
        test_path: str,
        val_path: str | None = None,
        data_dir: str | None = None,
        timesteps: int | None = None,
        in_memory: bool = False,
        **kwargs: Any,
    ) -> None:
        if timesteps is not None and (isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1):
            raise ValueError(f"timesteps must be a positive integer or null, got {timesteps!r}")
        self.paths = {"train": train_path, "test": test_path, "val": val_path}
        self.in_memory = bool(in_memory)
        self._timesteps = timesteps
        self._datasets: dict[str, EventFileDataset] = {}
        super().__init__(data_dir=data_dir, **kwargs)

    def _path(self, split: str) -> Path:
        path = Path(os.path.expanduser(self.paths[split]))  # type: ignore[arg-type]
        if not path.is_absolute() and self.data_dir is not None:
            path = Path(os.path.expanduser(self.data_dir)) / path
        return path

    def event_dataset(self, split: str) -> EventFileDataset:
        """The events helper's dataset of ``split`` (train|val|test file), packed rows."""
        if split not in self._datasets and parse_hub_path(self.paths[split] or "") is not None:
            # a published dataset by name (hf://CONFIG/SPLIT), read through the Hugging Face cache
            self._datasets[split] = EventFileDataset(self.paths[split], packed=True, in_memory=self.in_memory)
        if split not in self._datasets:
            path = self._path(split)
            if not path.exists():
                raise FileNotFoundError(
                    f"event dataset for split {split!r} not found: {path} "
                    "(make it with `python -m i2e_lightning convert`, see docs/events.md)"
                )
            self._datasets[split] = EventFileDataset(path, packed=True, in_memory=self.in_memory)
        return self._datasets[split]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Stored ``(T, 2, H, W)``."""
        return self.event_dataset("train").shape

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return self.event_dataset("train").num_classes

    @property
    def resolution(self) -> tuple[int, int]:  # type: ignore[override]
        return (self.shape[2], self.shape[3])

    @property
    def timesteps(self) -> int:  # type: ignore[override]
        stored = self.shape[0]
        return stored if self._timesteps is None else min(self._timesteps, stored)

    def load_source(self, split: str) -> Dataset:
        ds = self.event_dataset(split)
        if ds.shape != self.shape:
            raise ValueError(f"{self._path(split)} holds events {ds.shape}, the training file {self.shape}")
        train = self.event_dataset("train")
        if split != "train" and ds.meta is not None and train.meta is not None:
            # events of another ratio or order than the training file's are another dataset: name it
            differ = [
                f"{name} {getattr(ds.meta, name)!r} (training file: {getattr(train.meta, name)!r})"
                for name in ("ratio", "order")
                if not _same(getattr(ds.meta, name), getattr(train.meta, name))
            ]
            if differ:
                raise ValueError(
                    f"{self._path(split)} ({split}) was converted with other settings than the training file "
                    f"{self._path('train')}: {'; '.join(differ)}; convert every split with the same config "
                    "(python -m i2e_lightning convert --config ... --split ...)"
                )
        return ds

    def loader_dataset(self, split: str) -> Dataset:
        if split == "val" and self.paths["val"] is not None:
            if "val" not in self._splits:
                self._splits["val"] = self.load_source("val")
            return self._splits["val"]
        return super().loader_dataset(split)

    def split_dataset(self, split: str) -> Dataset:
        """``(packed uint8 row, label)`` of ``split``: unpack with ``unpack_events(row, dm.shape)``."""
        return self.loader_dataset(split)

    def device_transform(self, batch: Tensor, train: bool) -> Tensor:
        events = unpack_events(batch, self.shape, device=batch.device)  # [B, T, 2, H, W] bool
        return super().device_transform(events[:, : self.timesteps], train)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return abs(float(a) - float(b)) <= 1e-9
    return tuple(a) == tuple(b) if isinstance(a, (tuple, list)) else a == b
