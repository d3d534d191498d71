"""The project's HDF5 event file: one packed row per sample, resumable writes.

Layout (fixed, see docs/events.md):

- dataset ``events``: uint8 ``[N, ceil(T*2*H*W/8)]``, row ``i`` = ``np.packbits`` of sample ``i``'s
  bool ``[T, 2, H, W]`` in C order; chunked by rows, resizable along N.
- dataset ``labels``: int64 ``[N]``.
- attributes ``shape`` (T, 2, H, W), ``ratio``, ``order`` (the 8 direction indices), ``resolution``
  (H, W), ``source``; and for safe resuming ``split``, ``num_samples`` (rows the finished file will
  hold), ``num_written`` (rows flushed so far), ``complete``, ``format``/``format_version``.

Writes are append-only and in dataset order: after every appended batch the rows are written,
``num_written`` is updated and the file is flushed, so a killed writer leaves a readable file whose
first ``num_written`` rows are valid; :class:`EventH5Writer` resumes there.

Two writers never share a file: a writer holds an exclusive lock on ``<file>.lock`` from before it
touches the file until it closes it (``overwrite`` included, which replaces the file by a new one
instead of truncating it under a reader). Before each batch the writer reserves the disk space the
batch needs (``posix_fallocate``), so a full disk or a file-size limit stops it *before* HDF5 writes
anything: the file stays readable and the same command resumes it.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .packed import event_shape, packed_size, unpack_events_np

FORMAT_NAME = "i2e-events"
FORMAT_VERSION = 1
CHUNK_BYTES = 1 << 16  # 64 KiB of packed rows per HDF5 chunk: cheap random row reads


@dataclass(frozen=True)
class EventFileMeta:
    """What a file was written with; resuming requires every field to match."""

    shape: tuple[int, int, int, int]
    ratio: float
    order: tuple[int, ...]
    resolution: tuple[int, int]
    source: str
    split: str = ""
    num_samples: int | None = None
    extra: dict = field(default_factory=dict, compare=False)  # informative attrs, e.g. num_classes

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", event_shape(self.shape))
        object.__setattr__(self, "order", tuple(int(d) for d in self.order))
        object.__setattr__(self, "resolution", tuple(int(r) for r in self.resolution))
        object.__setattr__(self, "ratio", float(self.ratio))
        if len(self.resolution) != 2 or tuple(self.resolution) != tuple(self.shape[2:]):
            raise ValueError(f"resolution {self.resolution} must equal the (H, W) of shape {self.shape}")

    @property
    def row_bytes(self) -> int:
        return packed_size(self.shape)

    def differences(self, other: EventFileMeta) -> list[str]:
        """Human-readable list of the fields that differ (empty when resuming is safe)."""
        out = []
        for name in ("shape", "ratio", "order", "resolution", "source", "split", "num_samples"):
            a, b = getattr(self, name), getattr(other, name)
            same = math.isclose(a, b, rel_tol=0, abs_tol=1e-12) if name == "ratio" else a == b
            if not same:
                out.append(f"{name}: file has {b!r}, this run has {a!r}")
        return out


def _attr_str(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_meta(f: h5py.File, path: str | Path = "") -> EventFileMeta:
    """The metadata of an open event file; a clear error when it is not one."""
    missing = [k for k in ("events", "labels") if k not in f]
    need = ("shape", "ratio", "order", "resolution", "source")
    missing += [f"attribute {k!r}" for k in need if k not in f.attrs]
    if missing:
        raise ValueError(f"{path} is not an I2E event file: it lacks {', '.join(missing)}")
    a = f.attrs

    def attr(key: str, parse, what: str, default=None):
        value = a.get(key, default)
        try:
            return parse(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"{path} is not a valid I2E event file: attribute {key!r} is {value!r}, expected {what} ({exc}); "
                "convert the images again"
            ) from None

    def order(value) -> tuple[int, ...]:
        from ..converter.directions import resolve_order

        return resolve_order([int(d) for d in np.atleast_1d(value)])

    num = attr("num_samples", int, "an integer", -1)
    extra = {k: a[k] for k in ("num_classes",) if k in a}
    try:
        return EventFileMeta(
            shape=attr("shape", lambda v: tuple(int(s) for s in v), "(T, 2, H, W)"),
            ratio=attr("ratio", float, "a number in (0, 1)"),
            order=attr("order", order, "the 8 direction indices 0-7"),
            resolution=attr("resolution", lambda v: tuple(int(r) for r in v), "(H, W)"),
            source=_attr_str(a["source"]),
            split=_attr_str(a.get("split", "")),
            num_samples=None if num < 0 else num,
            extra=extra,
        )
    except ValueError as exc:
        if str(path) in str(exc):
            raise
        raise ValueError(f"{path} is not a valid I2E event file: {exc}; convert the images again") from None


try:  # POSIX advisory locks; elsewhere two writers are not detected (HDF5's own lock still applies)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_SPACE_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EFBIG: "the file-size limit (ulimit -f) is reached"}
if hasattr(errno, "EDQUOT"):
    _SPACE_ERRNOS[errno.EDQUOT] = "the disk quota is exceeded"


class EventFileWriteError(OSError):
    """Writing rows failed for a reason outside the program (full disk, size limit, read-only); the
    rows written before stay valid and the same command resumes. ``errno`` is the system's."""

    def __str__(self) -> str:
        return str(self.strerror)


def write_error_cause(exc: OSError) -> str:
    """What an ``OSError`` raised while writing means for the user: full disk, size limit, read-only, ..."""
    if exc.errno in _SPACE_ERRNOS:
        return _SPACE_ERRNOS[exc.errno]
    if exc.errno == errno.EROFS:
        return "the file system became read-only"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "write permission was withdrawn"
    return exc.strerror or str(exc)


def _hdf5_open_error(path: Path, exc: OSError) -> ValueError:
    """Name the real cause of an ``h5py.File`` failure (not every message holding "lock" is a lock)."""
    text = str(exc)
    if "unable to lock file" in text:
        return ValueError(
            f"{path} is open in another process (HDF5 file lock: {text.split('errno')[0].strip(' ,(')}): "
            "wait for that process to end"
        )
    if "truncated file" in text:
        return ValueError(
            f"{path} is damaged: it is shorter than its HDF5 header says (a write was cut off, e.g. the disk "
            "filled up under an older version); its rows cannot be recovered: pass --overwrite to convert again"
        )
    if "file signature not found" in text:
        return ValueError(f"{path} is not an HDF5 file: pass --overwrite to replace it, or choose another --out")
    return ValueError(f"{path} exists but cannot be opened as HDF5 ({text}): pass --overwrite to replace it")


class _WriterLock:
    """An exclusive lock on ``<path>.lock``, taken before the data file is touched (never blocks)."""

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + ".lock")
        self.fd: int | None = None
        if fcntl is None:  # pragma: no cover - Windows
            return
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise PermissionError(f"cannot write {path}: cannot create its lock file {self.path} ({exc})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
                os.close(fd)
                raise ValueError(
                    f"{path} is being written by another convert (process {holder or '?'} holds {self.path}): "
                    "wait for it to end, or choose another --out"
                ) from None
            # the previous holder may have removed the lock file between our open and flock: retry then
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(os.getpid()).encode(), 0)
                self.fd = fd
                return
            os.close(fd)

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):  # e.g. the folder became read-only: an unlocked lock file is harmless
            os.unlink(self.path)
        os.close(self.fd)
        self.fd = None


def _num_written(f: h5py.File) -> int:
    # files written by other tools may lack the attribute: then every row counts
    raw = f.attrs.get("num_written", f["events"].shape[0])
    try:
        n = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{f.filename}: attribute 'num_written' is {raw!r}, not a row count: convert again") from None
    return min(n, f["events"].shape[0], f["labels"].shape[0])


def _check_datasets(f: h5py.File, path: str | Path, complete: bool) -> None:
    """The ``events`` / ``labels`` datasets a reader relies on: uint8 rows, 1-D integer labels, one per row."""
    events, labels = f["events"], f["labels"]
    fix = "convert the images again (python -m i2e_lightning convert)"
    if events.dtype != np.uint8 or events.ndim != 2:
        raise ValueError(f"{path}: 'events' is {events.dtype} {events.shape}, expected packed uint8 rows: {fix}")
    if labels.ndim != 1:
        raise ValueError(f"{path}: 'labels' has shape {labels.shape}, expected one label per row (1-D): {fix}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: 'labels' are {labels.dtype}, expected integer class indices: {fix}")
    if complete and labels.shape[0] != events.shape[0]:
        raise ValueError(
            f"{path}: {events.shape[0]} event rows but {labels.shape[0]} labels in a file marked complete: {fix}"
        )


class EventH5Writer:
    """Append packed rows to an event file, resuming a partial file written with the same settings.

    Args:
        path: the ``.h5`` file.
        meta: the settings of this run.
        overwrite: replace an existing file (complete or not, whatever its settings).
        compression: optional HDF5 filter for ``events`` (``"gzip"``/``"lzf"``); packed events
            compress little, so the default is none (fastest).

    Raises:
        FileExistsError: the file is complete and ``overwrite`` is False.
        ValueError: the file was written with other settings, or is not an event file.
    """

    def __init__(
        self,
        path: str | Path,
        meta: EventFileMeta,
        *,
        overwrite: bool = False,
        compression: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.meta = meta
        if self.path.is_dir():
            raise ValueError(f"output {self.path} is a directory: give a file name such as {self.path / 'events.h5'}")
        parent = self.path.parent if str(self.path.parent) else Path(".")
        if not parent.is_dir():
            raise FileNotFoundError(f"cannot write {self.path}: the folder {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise PermissionError(f"cannot write {self.path}: no write permission on the folder {parent}")
        self.resumed = False
        self._lock = _WriterLock(self.path)  # before the file is opened, created or replaced
        self._space_fd: int | None = None
        try:
            if self.path.exists() and not overwrite:
                self._file = self._open_existing()
            else:
                if self.path.exists():
                    self._check_not_open_elsewhere()
                    # a new file instead of a truncated one: a process still reading the old one keeps it
                    self.path.unlink()
                self._file = self._create(compression)
        except BaseException:
            self._lock.release()
            raise
        self._events = self._file["events"]
        self._labels = self._file["labels"]
        self.num_written = _num_written(self._file)
        # dataset indices dropped as corrupt (skip_corrupt): the next sample to convert is rows + skipped
        self.skipped = [int(i) for i in np.atleast_1d(self._file.attrs.get("skipped", np.zeros(0, np.int64)))]
        # drop rows beyond num_written (a batch written before a kill, not yet counted)
        if self._events.shape[0] != self.num_written or self._labels.shape[0] != self.num_written:
            self._events.resize(self.num_written, axis=0)
            self._labels.resize(self.num_written, axis=0)
            self._file.flush()

    def _check_not_open_elsewhere(self) -> None:
        try:
            with h5py.File(self.path, "r+"):
                pass
        except OSError as exc:
            if "unable to lock file" in str(exc):
                raise _hdf5_open_error(self.path, exc) from None
            # anything else (damaged, not HDF5) is what --overwrite replaces

    def _open_existing(self) -> h5py.File:
        try:
            f = h5py.File(self.path, "r+")
        except OSError as exc:
            raise _hdf5_open_error(self.path, exc) from None
        try:
            old = read_meta(f, self.path)
            if f["events"].dtype != np.uint8 or f["events"].shape[1:] != (self.meta.row_bytes,):
                raise ValueError(
                    f"{self.path} has events {f['events'].dtype} {f['events'].shape}, "
                    f"this run writes uint8 rows of {self.meta.row_bytes} bytes"
                )
            diff = self.meta.differences(old)
            complete = bool(f.attrs.get("complete", False))
            if complete:
                what = "with other settings (" + "; ".join(diff) + ")" if diff else "with the same settings"
                raise FileExistsError(
                    f"{self.path} is already complete ({_num_written(f)} rows, {what}): "
                    "pass --overwrite (overwrite=True) to convert again"
                )
            if diff:
                raise ValueError(
                    f"{self.path} is a partial file written with other settings, refusing to append: "
                    + "; ".join(diff)
                    + ". Pass --overwrite to start over, or choose another --out"
                )
        except BaseException:
            f.close()
            raise
        self.resumed = True
        return f

    def _create(self, compression: str | None) -> h5py.File:
        meta = self.meta
        try:
            f = h5py.File(self.path, "x")  # never truncates: the old file, if any, was removed under our lock
        except OSError as exc:
            raise PermissionError(f"cannot create {self.path}: {exc}") from None
        row = meta.row_bytes
        chunk_rows = max(1, min(CHUNK_BYTES // row, 4096))
        f.create_dataset(
            "events",
            shape=(0, row),
            maxshape=(None, row),
            dtype=np.uint8,
            chunks=(chunk_rows, row),
            compression=compression,
        )
        f.create_dataset("labels", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(max(chunk_rows, 1024),))
        a = f.attrs
        a["format"] = FORMAT_NAME
        a["format_version"] = FORMAT_VERSION
        a["shape"] = np.asarray(meta.shape, dtype=np.int64)
        a["ratio"] = float(meta.ratio)
        a["order"] = np.asarray(meta.order, dtype=np.int64)
        a["resolution"] = np.asarray(meta.resolution, dtype=np.int64)
        a["source"] = meta.source
        a["split"] = meta.split
        a["num_samples"] = -1 if meta.num_samples is None else int(meta.num_samples)
        a["layout"] = "TCHW"  # per-row bit layout: C order of [T, 2, H, W], channel 0 = ON
        a["bitorder"] = "big"  # np.packbits default
        for k, v in meta.extra.items():
            a[k] = v
        a["num_written"] = 0
        a["complete"] = False
        f.flush()
        return f

    @property
    def complete(self) -> bool:
        return bool(self._file.attrs["complete"])

    @property
    def num_consumed(self) -> int:
        """Dataset samples done: rows written plus samples skipped as corrupt."""
        return self.num_written + len(self.skipped)

    def append(self, packed: np.ndarray, labels: np.ndarray | Sequence[int], skipped: Sequence[int] = ()) -> int:
        """Append rows (uint8 ``[n, row_bytes]``) and their labels; returns the new ``num_written``.

        ``skipped``: dataset indices of this batch that were dropped (corrupt images), recorded with
        the rows so that a resumed run continues after them.
        """
        packed = np.asarray(packed)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if packed.dtype != np.uint8 or packed.ndim != 2 or packed.shape[1] != self.meta.row_bytes:
            raise ValueError(f"rows must be uint8 [n, {self.meta.row_bytes}], got {packed.dtype} {tuple(packed.shape)}")
        if packed.shape[0] != labels.shape[0]:
            raise ValueError(f"got {packed.shape[0]} rows but {labels.shape[0]} labels")
        n0, n = self.num_written, packed.shape[0]
        skipped = [int(i) for i in skipped]
        if self.meta.num_samples is not None and self.num_consumed + n + len(skipped) > self.meta.num_samples:
            raise ValueError(f"appending {n} rows to {n0} exceeds the announced {self.meta.num_samples} samples")
        if skipped:
            self.skipped += skipped
            self._file.attrs["skipped"] = np.asarray(self.skipped, dtype=np.int64)
            if n == 0:
                self._file.flush()
        if n == 0:
            return n0
        self._reserve(n)
        # data first, counter last: a kill in between leaves extra rows that num_written does not count
        self._events.resize(n0 + n, axis=0)
        self._events[n0:] = packed
        self._labels.resize(n0 + n, axis=0)
        self._labels[n0:] = labels
        self._file.attrs["num_written"] = n0 + n
        self._file.flush()
        self.num_written = n0 + n
        return self.num_written

    def _reserve(self, rows: int) -> None:
        """Allocate the disk space of ``rows`` more rows (with HDF5's chunk and metadata overhead) up front.

        A full disk or a file-size limit then fails here, before HDF5 writes anything, instead of
        cutting an HDF5 write in half (which leaves a file no one can open).
        """
        if not hasattr(os, "posix_fallocate"):  # pragma: no cover - macOS / Windows
            return
        chunk_rows, row = self._events.chunks
        chunk_bytes = chunk_rows * row
        need = (rows // chunk_rows + 2) * chunk_bytes + (rows // 1024 + 2) * 8 * 1024 + (256 << 10)
        try:
            if self._space_fd is None:
                self._space_fd = os.open(self.path, os.O_WRONLY)
            os.posix_fallocate(self._space_fd, 0, self._file.id.get_filesize() + need)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):  # no fallocate here: write and see
                return
            raise EventFileWriteError(
                exc.errno,
                f"cannot write more rows to {self.path}: {write_error_cause(exc)}; its {self.num_written} rows "
                "so far are saved: make room and run the same command again to resume",
            ) from None

    def finish(self) -> None:
        """Mark the file complete (after all rows); checks the announced sample count."""
        if self.meta.num_samples is not None and self.num_consumed != self.meta.num_samples:
            raise ValueError(
                f"{self.path} holds {self.num_written} rows (+{len(self.skipped)} skipped), "
                f"{self.meta.num_samples} were announced"
            )
        self._file.attrs["num_samples"] = self.num_written
        self._file.attrs["complete"] = True
        self._file.flush()

    def close(self) -> None:
        if self._file.id.valid:
            try:
                used = self._file.id.get_filesize()  # HDF5's end of allocated space, without the reserve
            except Exception:  # noqa: BLE001 - the size is cosmetic
                used = 0
            self._file.close()
            if used and self._space_fd is not None:
                with contextlib.suppress(OSError):
                    if os.fstat(self._space_fd).st_size > used:
                        os.ftruncate(self._space_fd, used)  # give back the unused reservation
        if self._space_fd is not None:
            os.close(self._space_fd)
            self._space_fd = None
        self._lock.release()

    def __enter__(self) -> EventH5Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class EventH5Reader:
    """Read-only access to an event file; safe to use in DataLoader workers (opens lazily per process).

    Only the first ``num_written`` rows count (all of them in a complete file).

    Args:
        path: the ``.h5`` file.
        in_memory: load all packed rows into RAM at once (fast random access; the packed size).
    """

    def __init__(self, path: str | Path, *, in_memory: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"event file not found: {self.path}")
        try:
            f = h5py.File(self.path, "r")
        except OSError as exc:
            raise ValueError(f"{self.path} is not a readable HDF5 file: {exc}") from None
        with f:
            self.meta = read_meta(f, self.path)
            self.complete = bool(f.attrs.get("complete", True))
            _check_datasets(f, self.path, self.complete)
            self.num_rows = _num_written(f)
            if f["events"].shape[1:] != (self.meta.row_bytes,):
                raise ValueError(
                    f"{self.path}: events rows have {f['events'].shape[1:]} bytes, "
                    f"shape {self.meta.shape} needs {self.meta.row_bytes}"
                )
            self.labels = np.asarray(f["labels"][: self.num_rows], dtype=np.int64)
            self.attrs = {k: f.attrs[k] for k in f.attrs}
            self._rows = np.asarray(f["events"][: self.num_rows]) if in_memory else None
        self._file: h5py.File | None = None
        self._pid = -1

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return self.meta.shape

    def __len__(self) -> int:
        return self.num_rows

    def _events(self) -> h5py.Dataset:
        # an h5py handle must not cross a fork: reopen in each DataLoader worker
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file["events"]

    def packed(self, index: int) -> np.ndarray:
        """Packed row ``index`` (uint8 ``[row_bytes]``)."""
        if not -self.num_rows <= index < self.num_rows:
            raise IndexError(f"index {index} out of range for {self.num_rows} rows in {self.path}")
        index %= self.num_rows
        if self._rows is not None:
            return self._rows[index]
        return self._events()[index]

    def packed_many(self, indices: Sequence[int]) -> np.ndarray:
        """Packed rows at ``indices`` (any order, repeats allowed) in one read: uint8 ``[len, row_bytes]``."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -self.num_rows or idx.max() >= self.num_rows):
            raise IndexError(f"indices out of range for {self.num_rows} rows in {self.path}")
        idx %= max(self.num_rows, 1)
        if self._rows is not None:
            return self._rows[idx]
        # h5py wants increasing unique indices: read those once, then scatter back to the asked order
        uniq, inverse = np.unique(idx, return_inverse=True)
        return self._events()[uniq][inverse] if uniq.size else np.empty((0, self.meta.row_bytes), np.uint8)

    def packed_rows(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Packed rows ``start:stop`` (uint8 ``[n, row_bytes]``), clipped to the valid rows."""
        stop = self.num_rows if stop is None else min(stop, self.num_rows)
        if self._rows is not None:
            return self._rows[start:stop]
        return self._events()[start:stop]

    def events(self, index: int) -> np.ndarray:
        """Bool ``[T, 2, H, W]`` of sample ``index``."""
        return unpack_events_np(self.packed(index), self.meta.shape)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.events(index), int(self.labels[index])

    def close(self) -> None:
        if self._file is not None and self._file.id.valid:
            self._file.close()
        self._file = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None  # h5py handles do not pickle; reopened on first use
        state["_pid"] = -1
        return state
