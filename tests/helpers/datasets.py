"""Small datasets written on the fly, so no test depends on a real dataset being installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from i2e_lightning.data.idx import IDX_FILES, write_idx


def make_idx_dir(path: Path, n_train: int = 160, n_test: int = 48, size: int = 28, seed: int = 0) -> Path:
    """Gzipped idx files of a learnable 10-class Fashion-MNIST look-alike: class k is a bright bar at row 2 + 2k."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(labels)
        images = rng.integers(0, 60, size=(n, size, size), dtype=np.uint8)
        for i, k in enumerate(labels):
            r = 2 + 2 * int(k)
            images[i, r : r + 2, 4 : size - 4] = 230
        img_stem, lbl_stem = IDX_FILES[split]
        write_idx(path / f"{img_stem}.gz", images)
        write_idx(path / f"{lbl_stem}.gz", labels)
    return path


def make_mnist_dir(
    root: Path, n_train: int, n_test: int, size: int = 28, gz: bool = True, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """idx files of uniformly random images and labels; returns ``{"train"|"t10k": (images, labels)}``."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        ext = ".gz" if gz else ""
        write_idx(root / f"{split}-images-idx3-ubyte{ext}", images)
        write_idx(root / f"{split}-labels-idx1-ubyte{ext}", labels)
        out[split] = (images, labels)
    return out
