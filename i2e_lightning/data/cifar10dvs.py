"""CIFAR10-DVS (real event-camera recordings) for sim-to-real fine-tuning (docs/spec.md §3).

Reads the original ``<class>/<name>.aedat`` recordings exactly as SpikingJelly does: text header lines
starting with ``#``, then big-endian uint32 pairs ``(address, timestamp_us)``; ``x = (a & 0xFE) >> 1``,
``y = (a & 0x7F00) >> 8``, ``p = a & 1``, mapped to ``x' = 127 - y``, ``y' = 127 - x``, ``p' = 1 - p``.
Every recording is integrated into ``frames`` frames by equal event count (``[frames, 2, 128, 128]``
event counts per (p', y', x')), and the frames are cached on disk (one compressed ``.npz`` per recording,
written atomically) under ``<data_dir>/frames_<frames>/`` (or ``cache_dir``) by the first pass.
Split: per class, in sorted file-name order, the first ``ceil(0.9 n)`` recordings train, the rest test.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .base import EventDataModule

#: ``(task, done, total)``
ProgressCallback = Callable[[str, int, int], None]

__all__ = [
    "CIFAR10DVSDataModule",
    "CIFAR10DVSFrames",
    "aedat_header_size",
    "integrate_frames",
    "read_cifar10dvs_events",
]

SENSOR = 128
FRAME_DTYPE = np.int16  # per-pixel counts in one frame; clipped at 32767 (never reached by real recordings)


def aedat_header_size(raw: bytes) -> int:
    """Bytes of the leading ``#`` text lines (SpikingJelly's rule: stop at the first line that is not one)."""
    pos = 0
    while pos < len(raw):
        end = raw.find(b"\n", pos)
        end = len(raw) if end < 0 else end + 1
        try:
            text = raw[pos:end].decode().strip()
        except UnicodeDecodeError:
            break
        if not text or text[0] != "#":
            break
        pos = end
    return pos


def read_cifar10dvs_events(path: str | Path) -> dict[str, np.ndarray]:
    """Events of one ``.aedat`` recording in SpikingJelly's coordinates: ``t, x, y, p`` arrays."""
    path = Path(path)
    raw = path.read_bytes()
    body = raw[aedat_header_size(raw) :]
    if len(body) % 8:
        raise ValueError(
            f"{path}: {len(body)} bytes of events after the header is not a whole number of "
            "(address, timestamp) uint32 pairs: the recording is truncated or not an AEDAT 2 file"
        )
    data = np.frombuffer(body, dtype=">u4")
    addr, ts = data[0::2].astype(np.int64), data[1::2].astype(np.int64)
    x = (addr & 0xFE) >> 1
    y = (addr & 0x7F00) >> 8
    p = addr & 1
    return {"t": ts, "x": (SENSOR - 1) - y, "y": (SENSOR - 1) - x, "p": 1 - p}


def integrate_frames(
    x: np.ndarray, y: np.ndarray, p: np.ndarray, frames: int = 8, height: int = SENSOR, width: int = SENSOR
) -> np.ndarray:
    """Equal-event-count integration: frame j counts events ``[floor(N/M) j, floor(N/M) (j+1))``, the last to N.

    Returns int64 ``[frames, 2, height, width]``.
    """
    n = len(x)
    di = n // frames
    if di == 0:  # fewer events than frames: every segment but the last is empty (as SpikingJelly)
        j = np.full(n, frames - 1, dtype=np.int64)
    else:
        j = np.minimum(np.arange(n, dtype=np.int64) // di, frames - 1)
    flat = ((j * 2 + p) * height + y) * width + x
    counts = np.bincount(flat, minlength=frames * 2 * height * width)
    return counts.reshape(frames, 2, height, width)


def _atomic_save_npz(path: Path, frames: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp.npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, frames=frames)
        os.replace(tmp, path)  # readers see the old state or the whole file, never a partial one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CIFAR10DVSFrames(Dataset):
    """Recordings ``[(aedat path, label)]`` -> ``(int16 frames [frames, 2, 128, 128], label)``, cached on disk."""

    def __init__(self, samples: list[tuple[Path, int]], root: Path, cache_dir: Path, frames: int = 8) -> None:
        self.samples = samples
        self.root = root
        self.cache_dir = cache_dir
        self.frames = frames

    def __len__(self) -> int:
        return len(self.samples)

    def cache_path(self, index: int) -> Path:
        src = self.samples[index][0]
        return self.cache_dir / src.relative_to(self.root).with_suffix(".npz")

    def compute(self, index: int) -> np.ndarray:
        path = self.samples[index][0]
        ev = read_cifar10dvs_events(path)
        counts = integrate_frames(ev["x"], ev["y"], ev["p"], self.frames)
        return np.minimum(counts, np.iinfo(FRAME_DTYPE).max).astype(FRAME_DTYPE)

    def load(self, index: int) -> np.ndarray:
        cached = self.cache_path(index)
        if cached.is_file():
            try:
                with np.load(cached) as npz:
                    frames = npz["frames"]
                if frames.shape == (self.frames, 2, SENSOR, SENSOR):
                    return frames
            except (OSError, ValueError, KeyError, EOFError):
                pass  # unreadable cache entry (e.g. disk full when written): rebuild it below
        frames = self.compute(index)
        try:
            _atomic_save_npz(cached, frames)
        except OSError as exc:
            raise OSError(
                f"cannot write the CIFAR10-DVS frame cache {cached} ({exc}): set cache_dir to a writable folder"
            ) from exc
        return frames

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return torch.from_numpy(self.load(index)), self.samples[index][1]


class _CacheBuilder(Dataset):
    def __init__(self, ds: CIFAR10DVSFrames, indices: list[int]) -> None:
        self.ds, self.indices = ds, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> int:
        self.ds.load(self.indices[i])
        return 0


class CIFAR10DVSDataModule(EventDataModule):
    """CIFAR10-DVS recordings as ``frames`` (8) event-count frames ``[T, B, 2, 128, 128]`` (no converter).

    Args:
        data_dir: folder holding the 10 class folders of ``.aedat`` files (or their parent ``extract/``).
        cache_dir: where the integrated frames go (default ``<data_dir>/frames_<frames>``).
        frames: frames per recording (equal event count), the model's T.
        frame_mode: ``"count"`` (event counts, as SpikingJelly) or ``"binary"`` (count > 0, like I2E events).
        augment: ``"none"`` or ``"flip"`` (per-sample horizontal flip of the frames).
        train_ratio: per-class fraction of recordings (in file-name order) used for training (0.9).
        val_size: 0 (default) validates on the test split, as the paper; or hold some training recordings out.
        **kwargs: the arguments of ``I2EDataModule`` (batch_size 32 here = the paper's Transfer-II).
    """

    num_classes = 10
    resolution = (SENSOR, SENSOR)
    augment_presets = ("none", "flip")

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 32,
        frames: int = 8,
        frame_mode: str = "count",
        train_ratio: float = 0.9,
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        if data_dir is None:
            raise ValueError("CIFAR10DVSDataModule needs data_dir: the folder with the class folders of .aedat files")
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise ValueError(f"frames must be a positive integer, got {frames!r}")
        if frame_mode not in ("count", "binary"):
            raise ValueError(f"frame_mode must be 'count' or 'binary', got {frame_mode!r}")
        if not 0.0 < train_ratio < 1.0:
            raise ValueError(f"train_ratio must lie in (0, 1), got {train_ratio!r}")
        self.frames = frames
        self.timesteps = frames
        self.frame_mode = frame_mode
        self.train_ratio = float(train_ratio)
        self.cache_dir = cache_dir
        self._index: dict[str, list[tuple[Path, int]]] | None = None
        super().__init__(data_dir=data_dir, batch_size=batch_size, **kwargs)

    @property
    def root(self) -> Path:
        base = Path(os.path.expanduser(str(self.data_dir)))
        if not any(base.glob("*/*.aedat")) and any((base / "extract").glob("*/*.aedat")):
            return base / "extract"
        return base

    @property
    def frame_cache_dir(self) -> Path:
        if self.cache_dir is not None:
            return Path(os.path.expanduser(self.cache_dir))
        return Path(os.path.expanduser(str(self.data_dir))) / f"frames_{self.frames}"

    def recordings(self) -> dict[str, list[tuple[Path, int]]]:
        """``{"train": [(path, label)...], "test": [...]}``: per class, sorted names, first ceil(ratio n) train."""
        if self._index is None:
            root = self.root
            if not root.is_dir():
                raise FileNotFoundError(
                    f"CIFAR10-DVS not found: {root} does not exist. Download the recordings (figshare, "
                    "https://doi.org/10.6084/m9.figshare.4724671), extract the class zips and set data_dir"
                )
            classes = sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.aedat")))
            if not classes:
                raise FileNotFoundError(f"CIFAR10-DVS: no <class>/*.aedat recordings under {root}")
            if len(classes) != self.num_classes:
                raise ValueError(f"CIFAR10-DVS: expected 10 class folders with .aedat files in {root}, found {classes}")
            index: dict[str, list[tuple[Path, int]]] = {"train": [], "test": []}
            for label, name in enumerate(classes):
                files = sorted((root / name).glob("*.aedat"), key=lambda p: p.name)
                cut = math.ceil(len(files) * self.train_ratio)
                index["train"] += [(f, label) for f in files[:cut]]
                index["test"] += [(f, label) for f in files[cut:]]
            self._index = index
        return self._index

    def load_source(self, split: str) -> Dataset:
        return CIFAR10DVSFrames(self.recordings()[split], self.root, self.frame_cache_dir, self.frames)

    #: ``on_progress(task, done, total)`` while ``prepare_data`` integrates recordings; the command layer sets
    #: a progress bar here, the library itself prints nothing
    on_progress: ProgressCallback | None = None

    def prepare_data(self) -> None:
        """Integrate and cache every recording not cached yet (local rank 0 only), reporting to ``on_progress``."""
        for split in ("train", "test"):
            ds = self.load_source(split)
            assert isinstance(ds, CIFAR10DVSFrames)
            missing = [i for i in range(len(ds)) if not ds.cache_path(i).is_file()]
            if not missing:
                continue
            loader = DataLoader(_CacheBuilder(ds, missing), batch_size=None, num_workers=self.num_workers)
            task = f"CIFAR10-DVS {split}: integrating frames"
            for done, _ in enumerate(loader, 1):
                if self.on_progress is not None:
                    self.on_progress(task, done, len(missing))

    def to_events(self, batch: Tensor, train: bool) -> Tensor:
        if self.frame_mode == "binary":
            batch = batch > 0
        return super().to_events(batch, train)
