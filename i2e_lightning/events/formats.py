"""Every format the project reads, written from an HDF5 event file: ``convert --format h5|parquet|npz``.

``convert`` always converts into the resumable HDF5 file first (nothing lost on a crash); for the other
formats the finished file is then streamed, a block of rows at a time, into

* ``parquet`` - the published Hugging Face layout (docs/spec.md §2): columns ``data`` (the ``.npy`` bytes
  of the 8-byte shape header + packbits; the packed HDF5 row *is* that packbits body) and ``label``;
* ``npz`` - the official folder layout ``root/<label>/<index>.npz``, one bool ``[T, 2, H, W]`` per file.

Both read back through :class:`~i2e_lightning.events.EventFileDataset` with the same events and labels.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .hdf5 import EventH5Reader
from .hf import HEADER_BYTES, _require_pyarrow
from .npz import save_npz
from .packed import unpack_events_np

__all__ = ["FORMATS", "write_format"]

FORMATS = ("h5", "parquet", "npz")
_BLOCK_ROWS = 4096


def _npy_cell(header: np.ndarray, row: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.concatenate([header, row]), allow_pickle=False)
    return buf.getvalue()


def _write_parquet(reader: EventH5Reader, out: Path, on_rows: Callable[[int], None] | None) -> None:
    pq = _require_pyarrow()
    import pyarrow as pa

    header = np.asarray(reader.shape, dtype="<u2").view(np.uint8)
    assert header.size == HEADER_BYTES
    schema = pa.schema([("data", pa.binary()), ("label", pa.int64())])
    n = len(reader)
    with pq.ParquetWriter(out, schema) as writer:
        for start in range(0, n, _BLOCK_ROWS):
            idx = list(range(start, min(start + _BLOCK_ROWS, n)))
            rows = reader.packed_many(idx)
            cells = [_npy_cell(header, row) for row in rows]
            labels = np.asarray(reader.labels[start : start + len(idx)], dtype=np.int64)
            writer.write_table(pa.table({"data": pa.array(cells, type=pa.binary()), "label": labels}, schema=schema))
            if on_rows is not None:
                on_rows(len(idx))


def _write_npz(reader: EventH5Reader, out: Path, on_rows: Callable[[int], None] | None) -> None:
    n = len(reader)
    width = len(str(max(n - 1, 0)))
    for start in range(0, n, _BLOCK_ROWS):
        idx = list(range(start, min(start + _BLOCK_ROWS, n)))
        rows = reader.packed_many(idx)
        for i, row in zip(idx, rows, strict=True):
            folder = out / str(int(reader.labels[i]))  # label folders, as the official writer names them
            folder.mkdir(parents=True, exist_ok=True)
            save_npz(folder / f"{str(i).zfill(width)}.npz", unpack_events_np(row, reader.shape))
        if on_rows is not None:
            on_rows(len(idx))


def write_format(
    h5_path: str | Path,
    out: str | Path,
    fmt: str,
    *,
    overwrite: bool = False,
    on_rows: Callable[[int], None] | None = None,
) -> Path:
    """Write the complete HDF5 event file ``h5_path`` as ``fmt`` (``parquet`` file or ``npz`` folder) at ``out``.

    The output is built under a temporary name beside ``out`` and renamed when complete, so an interrupted
    export never leaves a partial dataset under the final name. ``on_rows(n)`` reports progress.
    """
    if fmt not in FORMATS[1:]:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists: pass overwrite=True (--overwrite) to replace it")
    reader = EventH5Reader(h5_path)
    if not reader.complete:
        raise ValueError(f"{h5_path} is an unfinished conversion: finish it before writing {fmt}")
    tmp = out.with_name(out.name + ".partial")
    if tmp.is_dir():
        shutil.rmtree(tmp)
    elif tmp.exists():
        tmp.unlink()
    try:
        if fmt == "parquet":
            _write_parquet(reader, tmp, on_rows)
        else:
            _write_npz(reader, tmp, on_rows)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        raise
    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
    tmp.rename(out)
    return out
