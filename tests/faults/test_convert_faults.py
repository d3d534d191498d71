"""``convert`` under faults: a second writer, a full disk / file-size limit, a file system turning
read-only, a damaged file. Nothing written before the fault is lost, the same command resumes to
the rows an undisturbed run writes, and every error names its real cause."""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from i2e_lightning.converter import I2E
from i2e_lightning.events import hdf5 as hdf5_module
from i2e_lightning.events.convert import convert_dataset
from i2e_lightning.events.hdf5 import EventFileMeta, EventFileWriteError, EventH5Writer
from tests.helpers.cli import ROOT, cli_env

N, H, W = 600, 32, 32  # 2 KiB packed rows at T=8: 1.2 MB of events


class Images(Dataset):
    """Deterministic uint8 images; ``slow`` seconds per sample (to catch a writer mid-run)."""

    def __init__(self, n: int = N, slow: float = 0.0) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (n, 3, H, W), dtype=torch.uint8, generator=g)
        self.labels = torch.randint(0, 10, (n,), generator=g)
        self.slow = slow

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self.slow:
            time.sleep(self.slow)
        return self.images[i], int(self.labels[i])


def rows(path: Path) -> tuple[bytes, bytes, dict]:
    with h5py.File(path, "r") as f:
        return f["events"][:].tobytes(), f["labels"][:].tobytes(), dict(f.attrs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "full.h5"
    convert_dataset(Images(), I2E(ratio=0.15), out, batch_size=50)
    return out


SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from faults.test_convert_faults import Images
from i2e_lightning.converter import I2E
from i2e_lightning.events.convert import convert_dataset
try:
    convert_dataset(Images(slow=float(sys.argv[2])), I2E(ratio=0.15), sys.argv[1], batch_size=50,
                    overwrite=sys.argv[3] == "1")
except (ValueError, OSError) as exc:
    print("error:", exc, flush=True)
    raise SystemExit(2)
print("done", flush=True)
"""


def convert_in_subprocess(out: Path, slow: float = 0.0, overwrite: bool = False, fsize: int | None = None):
    code = textwrap.dedent(SCRIPT).format(tests=str(ROOT / "tests"))
    limit = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))) if fsize else None
    return subprocess.Popen(
        [sys.executable, "-c", code, str(out), str(slow), "1" if overwrite else "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        preexec_fn=limit,
    )


@pytest.mark.slow
def test_overwrite_never_truncates_a_file_another_convert_writes(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "e.h5"
    first = convert_in_subprocess(out, slow=0.02)  # ~12 s
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the first writer has rows on disk
        if out.exists():
            try:
                with h5py.File(out, "r", locking=False) as f:
                    if int(f.attrs["num_written"]) > 0:
                        break
            except OSError:
                pass
        time.sleep(0.05)
    second = convert_in_subprocess(out, overwrite=True)
    assert first.poll() is None, "the first writer ended too early for this test"
    said = second.communicate(timeout=60)[0]
    assert second.returncode == 2 and "being written by another convert" in said, said
    assert first.communicate(timeout=120)[0].strip().endswith("done")
    assert rows(out)[:2] == rows(reference)[:2]  # the first writer's file is whole


@pytest.mark.slow
@pytest.mark.parametrize("limit_kib", [700, 1000])
def test_file_size_limit_stops_cleanly_and_resumes_identically(tmp_path: Path, reference: Path, limit_kib: int) -> None:
    out = tmp_path / "e.h5"
    proc = convert_in_subprocess(out, fsize=limit_kib * 1024)
    said, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, (proc.returncode, said, err[-2000:])  # not a crash (139) nor a traceback
    assert "file-size limit" in said and "resume" in said and "Traceback" not in err, said
    _, _, attrs = rows(out)  # still a readable HDF5 file
    assert 0 < attrs["num_written"] < N and not attrs["complete"]
    done = convert_dataset(Images(), I2E(ratio=0.15), out, batch_size=50)  # no limit now
    assert done.resumed_from == attrs["num_written"]
    assert rows(out)[:2] == rows(reference)[:2]
    assert not out.with_name("e.h5.lock").exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_space_or_permission_lost_midway_resumes_identically(
    tmp_path: Path, reference: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    out = tmp_path / "e.h5"
    calls = {"n": 0}
    real = os.posix_fallocate

    def failing(fd: int, offset: int, length: int) -> None:
        calls["n"] += 1
        if calls["n"] >= 4:  # the 4th batch finds the disk full / the folder or file system read-only
            raise OSError(code, os.strerror(code))
        real(fd, offset, length)

    monkeypatch.setattr(hdf5_module.os, "posix_fallocate", failing)
    with pytest.raises(EventFileWriteError) as err:
        convert_dataset(Images(), I2E(ratio=0.15), out, batch_size=50)
    cause = hdf5_module.write_error_cause(OSError(code, ""))
    assert cause in str(err.value) and "150 rows so far are saved" in str(err.value)
    monkeypatch.setattr(hdf5_module.os, "posix_fallocate", real)
    done = convert_dataset(Images(), I2E(ratio=0.15), out, batch_size=50)
    assert done.resumed_from == 150
    assert rows(out)[:2] == rows(reference)[:2]


def meta() -> EventFileMeta:
    return EventFileMeta(shape=(2, 2, 4, 4), ratio=0.1, order=range(8), resolution=(4, 4), source="t", num_samples=8)


def test_second_writer_is_refused_before_touching_the_file(tmp_path: Path) -> None:
    out = tmp_path / "e.h5"
    with EventH5Writer(out, meta()) as w:
        w.append(np.full((3, 8), 7, np.uint8), [1, 2, 3])
        for overwrite in (False, True):
            with pytest.raises(ValueError, match="being written by another convert"):
                EventH5Writer(out, meta(), overwrite=overwrite)
        w.append(np.full((5, 8), 9, np.uint8), [4, 5, 6, 7, 8])
        w.finish()
    events, labels, attrs = rows(out)
    assert attrs["complete"] and labels == np.arange(1, 9, dtype=np.int64).tobytes()
    assert not out.with_name("e.h5.lock").exists()


def test_overwrite_replaces_instead_of_truncating(tmp_path: Path) -> None:
    out = tmp_path / "e.h5"
    with EventH5Writer(out, meta()) as w:
        w.append(np.zeros((8, 8), np.uint8), range(8))
        w.finish()
    with open(out, "rb") as reader:  # a process still holding the old file (e.g. a training run)
        old_inode = os.fstat(reader.fileno()).st_ino
        with EventH5Writer(out, meta(), overwrite=True) as w:
            assert not w.resumed and w.num_written == 0
        assert os.stat(out).st_ino != old_inode and os.fstat(reader.fileno()).st_size > 0


def test_damaged_file_is_named_damaged_not_locked(tmp_path: Path) -> None:
    out = tmp_path / "e.h5"
    with EventH5Writer(out, meta()) as w:
        w.append(np.zeros((4, 8), np.uint8), range(4))
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])  # what a write cut off by a full disk leaves
    with pytest.raises(ValueError) as err:
        EventH5Writer(out, meta())
    assert "damaged" in str(err.value) and "another process" not in str(err.value)
    assert "--overwrite" in str(err.value)
    out.write_bytes(b"not hdf5 at all" * 10)
    with pytest.raises(ValueError, match="not an HDF5 file"):
        EventH5Writer(out, meta())
    with EventH5Writer(out, meta(), overwrite=True) as w:  # the advertised fix works
        assert w.num_written == 0
