"""The per-sample format of the published Hugging Face dataset ``UESTC-BICS/I2E`` (docs/spec.md §2).

Each parquet row has a ``label`` and a ``data`` column holding the bytes of an ``.npy`` file
(``np.save``) of a uint8 array: an 8-byte header with the shape ``(T, C, H, W)`` as four
little-endian uint16, then ``np.packbits`` of the flattened bool events (padding bits ignored).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .packed import event_shape, pack_events, packed_size, unpack_events_np

HEADER_BYTES = 8
_NPY_MAGIC = b"\x93NUMPY"
_HEADER_DTYPE = np.dtype("<u2")


def encode_payload(events: np.ndarray) -> np.ndarray:
    """Bool ``[T, C, H, W]`` -> the uint8 array stored per sample: header (T, C, H, W as <u2) + packbits."""
    events = np.asarray(events)
    if events.ndim != 4:
        raise ValueError(f"one sample must be bool [T, C, H, W], got shape {events.shape}")
    if max(events.shape) > np.iinfo(np.uint16).max:
        raise ValueError(f"every dimension must fit a uint16 header (<= 65535), got shape {events.shape}")
    header = np.asarray(events.shape, dtype=_HEADER_DTYPE).view(np.uint8)
    return np.concatenate([header, pack_events(events)])


def decode_payload(payload: np.ndarray | bytes) -> np.ndarray:
    """The uint8 header+packbits array (or its raw bytes) -> bool ``[T, C, H, W]``."""
    raw = np.frombuffer(payload, dtype=np.uint8) if isinstance(payload, (bytes, bytearray, memoryview)) else payload
    raw = np.asarray(raw)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"an I2E payload is a 1-D uint8 array, got {raw.dtype} with shape {raw.shape}")
    if raw.size < HEADER_BYTES:
        raise ValueError(f"an I2E payload starts with an 8-byte shape header, got only {raw.size} bytes")
    shape = event_shape(raw[:HEADER_BYTES].view(_HEADER_DTYPE).astype(np.int64))
    body = raw[HEADER_BYTES:]
    need = packed_size(shape)
    if body.size != need:
        raise ValueError(
            f"I2E payload header says shape {shape} ({math.prod(shape)} bits = {need} bytes) "
            f"but {body.size} bytes follow: the record is truncated or not an I2E sample"
        )
    return unpack_events_np(body, shape)


def encode_sample(events: np.ndarray) -> bytes:
    """Bool ``[T, C, H, W]`` -> the bytes of the ``data`` column (an ``.npy`` file of the payload)."""
    buf = io.BytesIO()
    np.save(buf, encode_payload(events), allow_pickle=False)
    return buf.getvalue()


def _payload_from_bytes(data: bytes | bytearray | memoryview | dict) -> np.ndarray:
    # `datasets` may hand a binary feature over as {"bytes": ..., "path": ...}
    if isinstance(data, dict):
        if "bytes" not in data:
            raise ValueError(f"an I2E data cell must be bytes, got a dict with keys {sorted(data)}")
        data = data["bytes"]
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"an I2E data cell must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if data.startswith(_NPY_MAGIC):
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"the I2E data cell is a damaged .npy file: {exc}") from None
        return arr.reshape(-1)
    return np.frombuffer(data, dtype=np.uint8)  # raw header+packbits without the .npy wrapper


def decode_sample(data: bytes | bytearray | memoryview | dict) -> np.ndarray:
    """Bytes of one ``data`` cell (``.npy`` of the payload, or the bare payload) -> bool ``[T, C, H, W]``."""
    return decode_payload(_payload_from_bytes(data))


def sample_shape(data: bytes | bytearray | memoryview | dict) -> tuple[int, int, int, int]:
    """The ``(T, C, H, W)`` of one ``data`` cell, read from its header without unpacking."""
    raw = _payload_from_bytes(data)
    if raw.size < HEADER_BYTES:
        raise ValueError(f"an I2E payload starts with an 8-byte shape header, got only {raw.size} bytes")
    return event_shape(raw[:HEADER_BYTES].view(_HEADER_DTYPE).astype(np.int64))


def _require_pyarrow():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            "reading or writing I2E parquet files needs pyarrow: pip install 'i2e_lightning[parquet]' "
            "(or pip install pyarrow)"
        ) from None
    return pq


class ParquetEvents:
    """Random access to a local parquet file of the Hugging Face I2E dataset (columns ``data``, ``label``).

    The labels are read at once; the byte cells are read one parquet row group at a time, on
    demand, keeping the last few row groups (so shards of any size fit in memory). With
    ``in_memory=True`` the whole ``data`` column is read up front (the packed bytes: about 1/8
    of the bool events). Safe in DataLoader workers: the file is reopened in each process.
    """

    CACHED_GROUPS = 4

    def __init__(self, path: str | Path, *, in_memory: bool = False) -> None:
        pq = _require_pyarrow()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"parquet file not found: {self.path}")
        try:
            pf = pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises its own ArrowInvalid for non-parquet files
            raise ValueError(f"{self.path} is not a readable parquet file: {exc}") from None
        names = pf.schema_arrow.names
        missing = {"data", "label"} - set(names)
        if missing:
            raise ValueError(f"{self.path} lacks the column(s) {sorted(missing)} of the I2E dataset (it has {names})")
        labels = pf.read(columns=["label"]).column("label")
        if labels.null_count:
            first = next(i for i, v in enumerate(labels.is_null().to_pylist()) if v)
            raise ValueError(
                f"{self.path}: {labels.null_count} rows have no label (the first: row {first}): "
                "drop or label them before training"
            )
        import pyarrow.types as pat

        if not pat.is_integer(labels.type):
            raise ValueError(f"{self.path}: the 'label' column is {labels.type}, expected integer class indices")
        self.labels = np.asarray(labels.to_numpy(zero_copy_only=False), dtype=np.int64)
        if len(self.labels) == 0:
            raise ValueError(f"{self.path} holds no rows")
        rows = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
        self._group_starts = np.cumsum([0, *rows])
        self._data = pf.read(columns=["data"]).column("data") if in_memory else None
        self._pf = None
        self._pid = -1
        self._groups: dict[int, object] = {}  # row group -> its data column, most recent last
        self.shape = sample_shape(self._cell(0))

    def __len__(self) -> int:
        return len(self.labels)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_pf=None, _pid=-1, _groups={})  # Arrow file handles do not cross processes
        return state

    def _group_column(self, group: int):
        if group in self._groups:
            self._groups[group] = self._groups.pop(group)  # mark as most recently used
            return self._groups[group]
        if self._pf is None or self._pid != os.getpid():
            pq = _require_pyarrow()
            self._pf, self._pid, self._groups = pq.ParquetFile(self.path), os.getpid(), {}
        column = self._pf.read_row_group(group, columns=["data"]).column("data")
        self._groups[group] = column
        while len(self._groups) > self.CACHED_GROUPS:
            self._groups.pop(next(iter(self._groups)))
        return column

    def _cell(self, index: int):
        if not 0 <= index < len(self.labels):
            raise IndexError(f"row {index} out of range for {len(self.labels)} rows in {self.path}")
        if self._data is not None:
            return self._data[index].as_py()
        group = int(np.searchsorted(self._group_starts, index, side="right")) - 1
        return self._group_column(group)[index - int(self._group_starts[group])].as_py()

    def payload(self, index: int) -> np.ndarray:
        """The uint8 header+packbits payload of row ``index``."""
        return _payload_from_bytes(self._cell(index))

    def packed(self, index: int) -> np.ndarray:
        """The packed bits of row ``index`` (without the header), checked against the file's shape."""
        raw = self.payload(index)
        shape = event_shape(raw[:HEADER_BYTES].view(_HEADER_DTYPE).astype(np.int64))
        if shape != self.shape:
            raise ValueError(f"{self.path} row {index} has shape {shape}, the first row {self.shape}: mixed shapes")
        body = raw[HEADER_BYTES:]
        if body.size != packed_size(shape):
            raise ValueError(f"{self.path} row {index} is truncated ({body.size} bytes for shape {shape})")
        return body

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        events = decode_payload(self.payload(index))
        if tuple(events.shape) != tuple(self.shape):
            raise ValueError(
                f"{self.path} row {index} has shape {tuple(events.shape)}, the first row {self.shape}: mixed shapes"
            )
        return events, int(self.labels[index])

    def __iter__(self) -> Iterator[tuple[np.ndarray, int]]:
        for i in range(len(self)):
            yield self[i]


def write_parquet(
    path: str | Path, events: Iterator[np.ndarray] | np.ndarray, labels, *, row_group_size: int | None = None
) -> Path:
    """Write samples in the Hugging Face I2E layout (``data`` = ``.npy`` bytes, ``label`` = int64)."""
    pq = _require_pyarrow()
    import pyarrow as pa

    cells = [encode_sample(np.asarray(e)) for e in events]
    labels = np.asarray(labels, dtype=np.int64)
    if len(cells) != len(labels):
        raise ValueError(f"got {len(cells)} samples but {len(labels)} labels")
    path = Path(path)
    table = pa.table({"data": pa.array(cells, type=pa.binary()), "label": pa.array(labels, type=pa.int64())})
    pq.write_table(table, path, row_group_size=row_group_size)
    return path
