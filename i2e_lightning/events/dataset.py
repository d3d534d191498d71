"""One torch Dataset over every on-disk event format: HDF5 files, npz folders and HF parquet files (local, or
the published datasets by name through the Hugging Face cache)."""

from __future__ import annotations

import bisect
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .hdf5 import EventH5Reader
from .hf import ParquetEvents
from .hub import hub_parquet_files, parse_hub_path
from .npz import NpzFolder
from .packed import pack_events, packed_size, unpack_events

H5_SUFFIXES = (".h5", ".hdf5", ".he5")


class _ParquetShards:
    """Several parquet files of one split (``train-00000-of-00004.parquet`` ...) read as one."""

    def __init__(self, files: list[Path], in_memory: bool = False) -> None:
        self.parts = [ParquetEvents(f, in_memory=in_memory) for f in files]
        shapes = {p.shape for p in self.parts}
        if len(shapes) != 1:
            raise ValueError(f"parquet shards hold different sample shapes {sorted(shapes)}")
        self.shape = self.parts[0].shape
        self.labels = np.concatenate([p.labels for p in self.parts])
        self._starts = np.cumsum([0] + [len(p) for p in self.parts]).tolist()

    def __len__(self) -> int:
        return self._starts[-1]

    def _locate(self, index: int) -> tuple[ParquetEvents, int]:
        part = bisect.bisect_right(self._starts, index) - 1
        return self.parts[part], index - self._starts[part]

    def packed(self, index: int) -> np.ndarray:
        part, i = self._locate(index)
        return part.packed(i)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        part, i = self._locate(index)
        return part[i]


class EventFileDataset(Dataset):
    """Pre-converted events from disk, as ``(events, label)``.

    ``path`` may be an HDF5 event file (``.h5``), a parquet file of the Hugging Face I2E dataset
    (``.parquet``), a folder of parquet shards, a folder ``root/<class>/<sample>.npz``, or a published
    dataset by name, ``hf://CONFIG/SPLIT`` (e.g. ``hf://I2E-CIFAR10/train``; needs the ``hub`` extra;
    fetched into the Hugging Face cache once, read from there offline with ``HF_HUB_OFFLINE=1``).

    Args:
        path: the file, folder or ``hf://`` name.
        packed: yield the packed uint8 row ``[ceil(T*2*H*W/8)]`` instead of bool ``[T, 2, H, W]``
            (8x less to collate and transfer; unpack the batch on the device with
            :func:`i2e_lightning.events.unpack_events(batch, dataset.shape, device)`).
        in_memory: load all packed rows into RAM up front (HDF5 and parquet); otherwise HDF5 rows
            are read per batch and parquet row groups on demand.
        transform: called on each sample's events (bool ``[T, 2, H, W]`` tensor), as in torchvision and
            tonic datasets; not with ``packed=True``.
        target_transform: called on each label.
        cache_dir: the Hugging Face cache for ``hf://`` paths (default: ``HF_HUB_CACHE``).

    Attributes:
        shape: ``(T, 2, H, W)`` of every sample.
        labels: int64 numpy array of all labels.
        num_classes: from the file's ``num_classes`` attribute, the npz class folders, or ``max(label) + 1``.
        meta: the HDF5 file's :class:`~i2e_lightning.events.hdf5.EventFileMeta` (``None`` for other formats).
    """

    def __init__(
        self,
        path: str | Path,
        packed: bool = False,
        *,
        in_memory: bool = False,
        transform: Callable[[torch.Tensor], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        hub_path = parse_hub_path(path)
        self.path = Path(path) if hub_path is None else Path(str(path))
        self.packed = bool(packed)
        if self.packed and transform is not None:
            raise ValueError("transform works on unpacked events: pass packed=False, or transform the unpacked batch")
        self.transform = transform
        self.target_transform = target_transform
        self.meta = None
        self.classes: list[str] | None = None
        declared_classes: int | None = None
        if hub_path is not None:
            files = hub_parquet_files(hub_path.config, hub_path.split, repo_id=hub_path.repo_id, cache_dir=cache_dir)
            self._source = _ParquetShards(files, in_memory=in_memory)
            self.kind = "parquet"
        elif not self.path.exists():
            raise FileNotFoundError(f"event dataset not found: {self.path}")
        elif self.path.is_dir():
            shards = sorted(self.path.glob("*.parquet"))
            if shards:
                self._source = _ParquetShards(shards, in_memory=in_memory)
                self.kind = "parquet"
            else:
                self._source = NpzFolder(self.path)
                self.kind = "npz"
                self.classes = self._source.classes
                declared_classes = len(self.classes)
        elif self.path.suffix.lower() in H5_SUFFIXES:
            self._source = EventH5Reader(self.path, in_memory=in_memory)
            self.kind = "hdf5"
            self.meta = self._source.meta
            if not self._source.complete:
                warnings.warn(
                    f"{self.path} is an unfinished conversion: it holds {len(self._source)} of "
                    f"{self.meta.num_samples} samples (run the same convert command again to finish it)",
                    stacklevel=2,
                )
            if "num_classes" in self._source.attrs:
                declared_classes = int(self._source.attrs["num_classes"])
        elif self.path.suffix.lower() == ".parquet":
            self._source = _ParquetShards([self.path], in_memory=in_memory)
            self.kind = "parquet"
        elif self.path.suffix.lower() == ".npz":
            raise ValueError(
                f"{self.path} is one sample; EventFileDataset reads a folder root/<class>/<sample>.npz "
                "(use i2e_lightning.events.load_npz for a single file)"
            )
        else:
            raise ValueError(
                f"cannot tell the event format of {self.path}: expected a .h5/.hdf5 file, a .parquet file, "
                "or a folder of .parquet shards or <class>/*.npz files"
            )
        self.shape: tuple[int, int, int, int] = tuple(int(s) for s in self._source.shape)
        if self.shape[1] != 2:
            raise ValueError(f"{self.path} holds events of shape {self.shape}; I2E events are [T, 2, H, W]")
        self.labels: np.ndarray = np.asarray(self._source.labels, dtype=np.int64)
        if len(self.labels) and self.labels.min() < 0:
            raise ValueError(f"{self.path} has negative labels (min {self.labels.min()})")
        inferred = int(self.labels.max()) + 1 if len(self.labels) else 0
        self.num_classes: int = max(declared_classes or 0, inferred)

    @property
    def row_bytes(self) -> int:
        return packed_size(self.shape)

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples in {self.path}")
        index %= len(self)
        label = int(self.labels[index])
        if self.packed:
            row = pack_events(self._source[index][0]) if self.kind == "npz" else self._source.packed(index)
            return torch.from_numpy(np.array(row, dtype=np.uint8, copy=True)), self._target(label)
        events = torch.from_numpy(np.ascontiguousarray(self._source[index][0]))
        return self._sample(events, label)

    def _target(self, label: int) -> Any:
        return label if self.target_transform is None else self.target_transform(label)

    def _sample(self, events: torch.Tensor, label: int) -> tuple[Any, Any]:
        return (events if self.transform is None else self.transform(events)), self._target(label)

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, int]]:
        """A DataLoader batch in one HDF5 read (torch's fetcher calls this when it exists)."""
        if self.kind != "hdf5":
            return [self[i] for i in indices]
        n = len(self)
        for i in indices:
            if not -n <= i < n:
                raise IndexError(f"index {i} out of range for {n} samples in {self.path}")
        rows = torch.from_numpy(self._source.packed_many(indices))
        labels = self.labels[np.asarray(indices, dtype=np.int64) % n].tolist()
        if self.packed:
            return [(row, self._target(label)) for row, label in zip(rows.unbind(0), labels, strict=True)]
        events = unpack_events(rows, self.shape)
        return [self._sample(ev, label) for ev, label in zip(events.unbind(0), labels, strict=True)]
