"""Convert an image dataset to an HDF5 event file (the library behind ``python -m i2e_lightning convert``).

The conversion uses the canonical pairs (``converter.eval()``), the datamodule's eval
preprocessing and runs in large batches on the GPU when there is one. Rows are appended and
flushed batch by batch, so an interrupted run leaves a valid file and the same command resumes it.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..converter import I2E
from .hdf5 import EventFileMeta, EventH5Writer
from .packed import pack_events

SPLITS = ("train", "val", "test")
AUTO_BATCH_BITS = 1 << 28  # auto batch size: about 256 MB of bool events per batch

if hasattr(np, "bitwise_count"):  # numpy >= 2.0

    def _popcount(a: np.ndarray) -> np.ndarray:
        return np.bitwise_count(a)

else:
    _POP_LUT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)

    def _popcount(a: np.ndarray) -> np.ndarray:
        return _POP_LUT[a]


@dataclass
class ConvertResult:
    """What one call of :func:`convert_dataset` did (statistics cover the rows converted in this call)."""

    path: Path
    num_rows: int  # rows in the file now
    converted: int  # rows converted in this call
    resumed_from: int  # rows already in the file before this call
    seconds: float
    shape: tuple[int, int, int, int]
    counts: np.ndarray = field(repr=False)  # int64 [T, 2] events per timestep and polarity
    bytes_written: int = 0  # packed event + label bytes written in this call
    file_bytes: int = 0
    skipped: int = 0  # samples dropped as corrupt (skip_corrupt), in the whole file

    @property
    def event_rate(self) -> float:
        """Mean fraction of (t, polarity, pixel) sites holding an event."""
        sites = self.converted * math.prod(self.shape)
        return float(self.counts.sum()) / sites if sites else 0.0

    @property
    def rate_per_timestep(self) -> list[float]:
        t, c, h, w = self.shape
        sites = self.converted * c * h * w
        return [float(x) / sites if sites else 0.0 for x in self.counts.sum(axis=1)]

    @property
    def on_fraction(self) -> float:
        """ON events / all events."""
        total = self.counts.sum()
        return float(self.counts[:, 0].sum()) / float(total) if total else 0.0

    @property
    def throughput(self) -> float:
        return self.converted / self.seconds if self.seconds > 0 else 0.0


def _events_to_rows(ev: torch.Tensor, in_torch: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Bool events ``[T, B, 2, H, W]`` -> (packed rows uint8 ``[B, nbytes]``, counts int64 ``[T, 2]``).

    ``in_torch`` (default: when the events are not on the CPU) packs with torch on the events' device.
    """
    t, b, c, h, w = ev.shape
    if in_torch is None:
        in_torch = ev.device.type != "cpu"
    if in_torch:
        # pack on the device and move only the packed bytes (8x less than bool)
        counts = ev.reshape(t, b, c, h * w).sum(dim=(1, 3)).cpu().numpy().astype(np.int64)
        rows = pack_events(ev.permute(1, 0, 2, 3, 4).contiguous()).cpu().numpy()
        return rows, counts
    arr = ev.numpy()
    # pack every (t, b, polarity) plane separately: cheap to count, and when a plane is a whole
    # number of bytes its bytes are exactly a slice of the sample's row, so rows only need a
    # transpose of the packed bytes instead of a copy of the bool events
    planes = np.packbits(arr.reshape(t, b, c, h * w), axis=-1)  # [T, B, 2, ceil(HW/8)]
    counts = _popcount(planes).sum(axis=(1, 3), dtype=np.int64)
    if (h * w) % 8 == 0:
        rows = np.ascontiguousarray(planes.transpose(1, 0, 2, 3)).reshape(b, -1)
    else:
        rows = np.packbits(np.ascontiguousarray(arr.transpose(1, 0, 2, 3, 4)).reshape(b, -1), axis=-1)
    return rows, counts


class _Indexed(Dataset):
    """``(dataset index, sample)`` of ``dataset[start + i]``: the collate knows which samples were skipped."""

    def __init__(self, dataset: Dataset, start: int, stop: int) -> None:
        self.dataset, self.start, self.stop = dataset, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> tuple[int, Any]:
        return self.start + i, self.dataset[self.start + i]


def _collate_indexed(batch: list) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """``_collate`` of the samples that are not ``None`` (a dataset's ``skip_corrupt``), and the skipped indices."""
    skipped = [i for i, item in batch if item is None]
    kept = [item for _, item in batch if item is not None]
    if not kept:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.int64), skipped
    images, labels = _collate(kept)
    return images, labels, skipped


def _collate(batch: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(image [C, H, W], label)`` pairs; grey images join RGB ones (max(R, G, B) of grey is grey)."""
    images = [x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x)) for x, _ in batch]
    first = images[0]
    if any(x.shape[-2:] != first.shape[-2:] or x.dim() != 3 for x in images):
        sizes = sorted({tuple(x.shape) for x in images})
        raise ValueError(
            f"dataset images differ in size ({sizes[:4]}): all samples must have one resolution [C, H, W] "
            "(the DataModule's split_dataset resizes them)"
        )
    if len({x.shape[0] for x in images}) > 1:
        images = [x.expand(3, -1, -1) if x.shape[0] == 1 else x for x in images]
    labels = torch.as_tensor([int(y) for _, y in batch], dtype=torch.int64)
    return torch.stack(images), labels


def _sample_image(dataset: Dataset) -> torch.Tensor:
    item = None
    for index in range(len(dataset)):  # the first sample a skip_corrupt dataset does not drop
        item = dataset[index]
        if item is not None:
            break
    if item is None:
        raise ValueError("every image of the dataset is corrupt (all were skipped): check the data")
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise ValueError("the dataset must yield (image, label) pairs")
    image = item[0]
    if not isinstance(image, torch.Tensor):
        image = torch.as_tensor(np.asarray(image))
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"dataset images must be tensors [C, H, W] with C = 1 or 3, got shape {tuple(image.shape)}")
    return image


def auto_batch_size(shape: Sequence[int]) -> int:
    """Images per batch so that the bool events of a batch take about 256 MB (64..4096)."""
    return int(min(4096, max(64, AUTO_BATCH_BITS // math.prod(shape))))


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when available, else CPU; an unavailable CUDA request is an error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda", "mps", "xpu"):
        raise ValueError(f"device {device!r} cannot run the converter here: use auto, cpu, cuda or cuda:N")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} requested but MPS is not available: use --device cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available: use --device cpu")
    return dev


def convert_dataset(
    dataset: Dataset,
    converter: I2E,
    out_path: str | Path,
    *,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    num_workers: int | None = None,
    overwrite: bool = False,
    limit: int | None = None,
    source: str | None = None,
    split: str = "",
    extra_attrs: dict | None = None,
    compression: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ConvertResult:
    """Convert ``dataset`` (yielding ``(image [C, H, W], label)``) to the HDF5 event file ``out_path``.

    Resumes a partial file written with the same settings; refuses a complete file unless
    ``overwrite`` and a file written with other settings (``ValueError``/``FileExistsError``).
    The converter runs in eval mode (canonical pairs); its train/eval flag is restored afterwards.
    ``batch_size=None`` picks about 256 MB of events per batch; ``num_workers=None`` uses no
    DataLoader workers on the CPU (they would compete with the converter) and up to 8 with a GPU.
    ``on_progress(samples_done, total)`` is called once before the first batch (``samples_done > 0``:
    a resumed file) and after every batch written.
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    dev = resolve_device(device)
    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1) if dev.type == "cuda" else 0
    total = len(dataset) if limit is None else min(limit, len(dataset))
    if total == 0:
        raise ValueError("the dataset is empty: nothing to convert")
    image = _sample_image(dataset)
    h, w = int(image.shape[1]), int(image.shape[2])
    shape = (converter.timesteps, 2, h, w)
    batch_size = batch_size or auto_batch_size(shape)
    meta = EventFileMeta(
        shape=shape,
        ratio=converter.ratio,
        order=converter.order,
        resolution=(h, w),
        source=source or type(dataset).__name__,
        split=split,
        num_samples=total,
        extra=dict(extra_attrs or {}),
    )
    out_path = Path(out_path)
    was_training = converter.training
    converter.eval()
    t_start = time.perf_counter()
    counts = np.zeros((converter.timesteps, 2), dtype=np.int64)
    with EventH5Writer(out_path, meta, overwrite=overwrite, compression=compression) as writer:
        start = writer.num_consumed
        rows_before = writer.num_written
        loader = DataLoader(
            _Indexed(dataset, start, total),
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            pin_memory=dev.type == "cuda",
            collate_fn=_collate_indexed,
        )
        try:
            done = start
            if on_progress is not None:
                on_progress(done, total)
            for images, labels, skipped in loader:
                if not len(images):  # every sample of the batch was skipped as corrupt
                    writer.append(np.zeros((0, meta.row_bytes), np.uint8), [], skipped=skipped)
                    done += len(skipped)
                    if on_progress is not None:
                        on_progress(done, total)
                    continue
                if images.shape[-2:] != (h, w):
                    raise ValueError(
                        f"dataset images differ in size ({(h, w)} at sample 0, {tuple(images.shape[-2:])} "
                        "later): all samples must have one resolution (the DataModule's split_dataset resizes them)"
                    )
                with torch.inference_mode():
                    ev = converter(images.to(dev, non_blocking=True), dtype=torch.bool)
                if converter.layout == "BTCHW":
                    ev = ev.transpose(0, 1)  # back to the contiguous [T, B, ...] buffer
                rows, batch_counts = _events_to_rows(ev)
                writer.append(rows, labels.numpy(), skipped=skipped)
                counts += batch_counts
                done += rows.shape[0] + len(skipped)
                if on_progress is not None:
                    on_progress(done, total)
            writer.finish()
        finally:
            converter.train(was_training)
        num_rows = writer.num_written
        skipped_total = len(writer.skipped)
    seconds = time.perf_counter() - t_start
    converted = num_rows - rows_before
    return ConvertResult(
        path=out_path,
        num_rows=num_rows,
        converted=converted,
        resumed_from=start,
        skipped=skipped_total,
        seconds=seconds,
        shape=shape,
        counts=counts,
        bytes_written=converted * (meta.row_bytes + 8),
        file_bytes=out_path.stat().st_size,
    )
