"""Per-sample ``.npz`` files of the published I2E datasets (docs/spec.md §2).

One file per sample, ``np.savez_compressed(path, events)`` of bool ``[T, 2, H, W]`` (stored under
numpy's default key ``arr_0``), arranged as ``root/<class name>/<sample>.npz``. Labels as the official
readers give them: when every class folder is a number (the official writer names them ``str(target)``),
that number is the label (``int(folder)``); otherwise the sorted folder names are numbered 0, 1, ...
as torchvision's ``DatasetFolder`` does (I2E-ImageNet's WordNet ids).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

NPZ_KEY = "arr_0"


def save_npz(path: str | Path, events: np.ndarray) -> Path:
    """Write one sample, bool ``[T, C, H, W]``, as a compressed ``.npz``."""
    events = np.asarray(events)
    if events.ndim != 4:
        raise ValueError(f"one sample must be bool [T, C, H, W], got shape {events.shape}")
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"npz sample files must end in .npz (np.savez adds it otherwise), got {path}")
    np.savez_compressed(path, events.astype(np.bool_, copy=False))
    return path


def load_npz(path: str | Path) -> np.ndarray:
    """Read one sample file -> bool ``[T, C, H, W]`` (any stored 0/1 dtype is accepted)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"npz sample not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            files = list(z.files)
            key = NPZ_KEY if NPZ_KEY in files else (files[0] if len(files) == 1 else None)
            arr = z[key] if key is not None else None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, AttributeError, TypeError) as exc:
        # np.load treats a non-zip file as a pickle and refuses it with a ValueError
        raise ValueError(f"{path} is not a readable .npz file: {exc}") from None
    if arr is None:
        raise ValueError(f"{path} holds arrays {files}; expected one array (key {NPZ_KEY!r})")
    if arr.ndim != 4:
        raise ValueError(f"{path} holds an array of shape {arr.shape}; an I2E sample is [T, 2, H, W]")
    if arr.dtype != np.bool_:
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{path} holds {arr.dtype} values other than 0/1; events must be binary")
        arr = arr.astype(np.bool_)
    return arr


def folder_labels(names: Iterable[str]) -> dict[str, int]:
    """Label of each class folder name: ``int(name)`` when all are numbers, else the sorted rank."""
    names = sorted(names)
    if names and all(n.isascii() and n.isdigit() for n in names):
        labels = {n: int(n) for n in names}
        if len(set(labels.values())) != len(names):
            raise ValueError(f"class folders {names} name the same number twice (e.g. '1' and '01'): rename one")
        return labels
    return {n: i for i, n in enumerate(names)}


class NpzFolder:
    """``root/<class>/*.npz`` -> (bool ``[T, 2, H, W]``, label); labels as :func:`folder_labels`.

    ``classes[label]`` is the class folder name of ``label`` (numeric folders: the number as text where
    a label has no folder); ``num_classes = len(classes)``.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"npz dataset folder not found: {self.root}")
        names = [p.name for p in self.root.iterdir() if p.is_dir()]
        if not names:
            raise ValueError(f"{self.root} has no class folders: expected root/<class name>/<sample>.npz")
        self.class_to_idx = folder_labels(names)
        self.classes = [str(i) for i in range(max(self.class_to_idx.values()) + 1)]
        for name, label in self.class_to_idx.items():
            self.classes[label] = name
        files: list[Path] = []
        labels: list[int] = []
        for name in sorted(self.class_to_idx):
            found = sorted((self.root / name).rglob("*.npz"))
            files.extend(found)
            labels.extend([self.class_to_idx[name]] * len(found))
        if not files:
            raise ValueError(f"no .npz files under {self.root}/<class>/")
        self.files = files
        self.labels = np.asarray(labels, dtype=np.int64)
        self.shape = tuple(int(s) for s in load_npz(files[0]).shape)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        events = load_npz(self.files[index])
        if events.shape != self.shape:
            raise ValueError(f"{self.files[index]} has shape {events.shape}, {self.files[0]} has {self.shape}")
        return events, int(self.labels[index])


def write_npz_folder(
    root: str | Path,
    samples: Iterable[np.ndarray],
    labels: Iterable[int],
    class_names: Sequence[str] | None = None,
) -> Path:
    """Write samples as ``root/<class>/<index>.npz``; class folders are the label numbers by default.

    Default names are ``str(label)`` as the official writer's, which the reader maps back to the same
    labels; given names must read back the same (sorted names, or the numbers in order).
    """
    root = Path(root)
    labels = [int(x) for x in labels]
    if class_names is None:
        class_names = [str(i) for i in range(max(labels, default=-1) + 1)]
    elif folder_labels(class_names) != {n: i for i, n in enumerate(class_names)}:
        raise ValueError("class_names must read back as their labels: sorted names, or the numbers 0, 1, ... in order")
    width = len(str(max(len(labels) - 1, 0)))
    count = 0
    for i, (events, label) in enumerate(zip(samples, labels, strict=False)):
        if not 0 <= label < len(class_names):
            raise ValueError(f"label {label} has no class name (got {len(class_names)} names)")
        folder = root / class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        save_npz(folder / f"{str(i).zfill(width)}.npz", events)
        count += 1
    if count != len(labels):
        raise ValueError(f"got {count} samples but {len(labels)} labels")
    return root
