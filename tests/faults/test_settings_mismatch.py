"""Mismatched settings are named: an event file converted with another ratio or order than the
training file is refused with both values (it used to be mixed in silently)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from i2e_lightning.data import EventFileDataModule
from i2e_lightning.events.hdf5 import EventFileMeta, EventH5Writer


def _file(path: Path, ratio: float = 0.15, order=(4, 5, 6, 7, 0, 1, 2, 3)) -> Path:
    meta = EventFileMeta(shape=(2, 2, 4, 4), ratio=ratio, order=order, resolution=(4, 4), source="t", num_samples=4)
    with EventH5Writer(path, meta) as w:
        w.append(np.zeros((4, 8), np.uint8), [0, 1, 0, 1])
        w.finish()
    return path


@pytest.mark.parametrize(
    ("change", "needle"),
    [({"ratio": 0.07}, "ratio 0.07 (training file: 0.15)"), ({"order": tuple(range(8))}, "order (0, 1, 2")],
)
def test_split_converted_with_other_settings_is_named(tmp_path: Path, change: dict, needle: str) -> None:
    train = _file(tmp_path / "train.h5")
    test = _file(tmp_path / "test.h5", **change)
    dm = EventFileDataModule(train_path=str(train), test_path=str(test), batch_size=2, num_workers=0)
    with pytest.raises(ValueError, match="test.h5 .test. was converted with other settings") as err:
        dm.load_source("test")
    assert needle in str(err.value) and "train.h5" in str(err.value)


def test_same_settings_load(tmp_path: Path) -> None:
    dm = EventFileDataModule(
        train_path=str(_file(tmp_path / "train.h5")), test_path=str(_file(tmp_path / "test.h5")), num_workers=0
    )
    assert len(dm.load_source("test")) == 4
