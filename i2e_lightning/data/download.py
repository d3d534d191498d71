"""Download the image datasets from their official URLs, with MD5 checks (``python -m i2e_lightning download``).

Files are written to a ``.part`` name and renamed only after the checksum matched, so an interrupted
download never leaves a file that looks complete. Files already present with the right checksum are
kept. CIFAR10-DVS and ImageNet are not downloaded (licence/size): see docs/data.md.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["APT_PACKAGES", "DATASETS", "download", "download_file", "ensure"]

_FMNIST = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_FMNIST_GH = "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_MNIST_LECUN = "http://yann.lecun.com/exdb/mnist/"
_CIFAR = "https://www.cs.toronto.edu/~kriz/"

# name -> list of (file name, md5, mirrors); archives are extracted into the target directory
DATASETS: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    "fashion_mnist": [
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", (_FMNIST, _FMNIST_GH)),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe", (_FMNIST, _FMNIST_GH)),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79", (_FMNIST, _FMNIST_GH)),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310", (_FMNIST, _FMNIST_GH)),
    ],
    "mnist": [
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", (_MNIST, _MNIST_LECUN)),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", (_MNIST, _MNIST_LECUN)),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", (_MNIST, _MNIST_LECUN)),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", (_MNIST, _MNIST_LECUN)),
    ],
    "cifar10": [("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", (_CIFAR,))],
    "cifar100": [("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", (_CIFAR,))],
}

# Debian packages that install a dataset where the DataModule looks first
APT_PACKAGES = {"fashion_mnist": "dataset-fashion-mnist"}

Opener = Callable[[str], BinaryIO]
# on_progress(file name, bytes so far, total bytes or None when the server does not say)
ProgressCallback = Callable[[str, int, "int | None"], None]


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _default_opener(url: str) -> BinaryIO:
    request = urllib.request.Request(url, headers={"User-Agent": "i2e_lightning"})
    return urllib.request.urlopen(request, timeout=60)  # noqa: S310 - fixed official http(s) URLs


def download_file(
    url: str,
    dest: Path,
    md5: str | None = None,
    opener: Opener | None = None,
    on_progress: ProgressCallback | None = None,
) -> Path:
    """Stream ``url`` to ``dest`` (via ``dest.part``), verify ``md5``; raises ``OSError``/``ValueError``."""
    opener = opener or _default_opener
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    with opener(url) as response:
        total = getattr(response, "length", None) or int(getattr(response, "headers", {}).get("Content-Length", 0) or 0)
        done = 0
        if on_progress is not None:
            on_progress(dest.name, done, total or None)
        with open(part, "wb") as out:
            for chunk in iter(lambda: response.read(1 << 16), b""):
                out.write(chunk)
                done += len(chunk)
                if on_progress is not None:
                    on_progress(dest.name, done, total or None)
    if md5 is not None and _md5(part) != md5:
        part.unlink(missing_ok=True)
        raise ValueError(f"checksum mismatch (expected md5 {md5}): the download is corrupt, try again")
    os.replace(part, dest)
    return dest


def download(
    name: str, directory: str | Path, opener: Opener | None = None, on_progress: ProgressCallback | None = None
) -> Path:
    """Download dataset ``name`` (see ``DATASETS``) into ``directory``; returns the directory to use as ``data_dir``."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: choose one of {sorted(DATASETS)}")
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    for filename, md5, mirrors in DATASETS[name]:
        dest = directory / filename
        if dest.is_file() and _md5(dest) == md5:
            continue
        errors = []
        for base in mirrors:
            try:
                download_file(base + filename, dest, md5, opener=opener, on_progress=on_progress)
                break
            except (OSError, ValueError) as exc:
                errors.append(f"{base + filename}: {exc}")
        else:
            raise OSError(f"could not download {filename}:\n  " + "\n  ".join(errors))
        if filename.endswith(".tar.gz"):
            with tarfile.open(dest) as tar:
                # the "data" filter refuses absolute paths and links out of the target (Python >= 3.10.12)
                kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(directory, **kwargs)
    return directory


def _search_dirs(name: str) -> tuple[str, ...]:
    from .mnist import FASHION_MNIST_DIRS, MNIST_DIRS

    dirs = {"fashion_mnist": FASHION_MNIST_DIRS, "mnist": MNIST_DIRS}
    if name not in dirs:
        raise ValueError(f"--ensure knows {sorted(dirs)}; for {name!r} use --dir DIR")
    return dirs[name]


def _complete(directory: Path) -> bool:
    from .idx import IDX_FILES, find_idx_file

    return all(find_idx_file(directory, stem) is not None for pair in IDX_FILES.values() for stem in pair)


def _apt_install(package: str, run: Callable[..., subprocess.CompletedProcess], say: Callable[[str], None]) -> bool:
    """``apt-get install -y package`` as root or through passwordless sudo; False when not possible or failed."""
    if shutil.which("apt-get") is None:
        return False
    prefix: list[str] = []
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        if shutil.which("sudo") is None:
            return False
        prefix = ["sudo", "-n"]  # never prompt: fall back to the download instead
    for attempt in (
        ["apt-get", "install", "-y", package],
        ["apt-get", "update"],
        ["apt-get", "install", "-y", package],
    ):
        say(f"running: {' '.join(prefix + attempt)}")
        try:
            ok = run(prefix + attempt, check=False).returncode == 0
        except OSError as exc:  # apt-get/sudo vanished or not executable: use the download
            say(f"{exc}")
            return False
        if ok and attempt[1] == "install":
            return True
        if not ok and attempt[1] == "update":
            return False
    return False


def ensure(
    name: str,
    directory: str | Path | None = None,
    *,
    use_apt: bool = True,
    opener: Opener | None = None,
    run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
    on_message: Callable[[str], None] | None = None,
    on_progress: ProgressCallback | None = None,
) -> Path:
    """Make dataset ``name`` available where its DataModule looks, and return that folder.

    Already installed in a default place: nothing to do. Else the Debian package (``apt-get``, as root or
    with passwordless ``sudo``) when there is one, else a download into ``directory`` (default: the
    DataModule's own fallback folder, e.g. ``data/fashion-mnist``, so no ``data_dir`` is needed).
    ``on_message`` receives what is being done (the apt-get command lines), ``on_progress`` the download's bytes.
    """
    say = on_message or (lambda _msg: None)
    dirs = [Path(os.path.expanduser(d)) for d in _search_dirs(name)]
    targets = [Path(directory).expanduser()] if directory is not None else []
    for d in targets + dirs:
        if _complete(d):
            return d
    if use_apt and directory is None and name in APT_PACKAGES and _apt_install(APT_PACKAGES[name], run, say):
        if _complete(dirs[0]):
            return dirs[0]
        say(f"{APT_PACKAGES[name]} installed but {dirs[0]} is incomplete: downloading instead")
    return download(name, targets[0] if targets else dirs[1], opener=opener, on_progress=on_progress)
