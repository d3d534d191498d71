"""Bad event files give one error naming the file and what is wrong (no raw traceback, no silent
garbage): labels shorter than the events, float or 2-D labels, bad attributes, float event rows,
mixed-shape or unlabelled parquet rows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from i2e_lightning.events.dataset import EventFileDataset
from i2e_lightning.events.hdf5 import EventFileMeta, EventH5Writer


def _good(path: Path) -> Path:
    meta = EventFileMeta(shape=(2, 2, 4, 4), ratio=0.1, order=range(8), resolution=(4, 4), source="t", num_samples=4)
    with EventH5Writer(path, meta) as w:
        w.append(np.zeros((4, 8), np.uint8), [0, 1, 0, 1])
        w.finish()
    return path


def _replace(f: h5py.File, name: str, data: np.ndarray) -> None:
    del f[name]
    f.create_dataset(name, data=data)


H5_FAULTS: dict[str, tuple[Callable[[h5py.File], None], str]] = {
    "labels shorter than events": (lambda f: f["labels"].resize(2, axis=0), "4 event rows but 2 labels"),
    "float labels": (lambda f: _replace(f, "labels", np.array([0.5, 1, 0, 1])), "'labels' are float64"),
    "2-D labels": (lambda f: _replace(f, "labels", np.zeros((4, 2), np.int64)), "'labels' has shape"),
    "float event rows": (lambda f: _replace(f, "events", np.zeros((4, 8), np.float32)), "'events' is float32"),
    "shape attribute of 3 values": (lambda f: f.attrs.__setitem__("shape", np.array([2, 2, 4])), "four positive"),
    "shape attribute text": (lambda f: f.attrs.__setitem__("shape", "abc"), "attribute 'shape' is 'abc'"),
    "ratio attribute text": (lambda f: f.attrs.__setitem__("ratio", "high"), "attribute 'ratio' is 'high'"),
    "order attribute too short": (lambda f: f.attrs.__setitem__("order", np.array([1, 2, 3])), "attribute 'order'"),
    "num_written text": (lambda f: f.attrs.__setitem__("num_written", "x"), "'num_written' is 'x'"),
}


@pytest.mark.parametrize("fault", sorted(H5_FAULTS))
def test_bad_hdf5_event_file_is_named(tmp_path: Path, fault: str) -> None:
    break_it, needle = H5_FAULTS[fault]
    path = _good(tmp_path / "bad.h5")
    with h5py.File(path, "r+") as f:
        break_it(f)
    with pytest.raises(ValueError) as err:
        ds = EventFileDataset(path, packed=True)
        ds[0]
    assert needle in str(err.value) and "bad.h5" in str(err.value), str(err.value)


def test_parquet_rows_with_other_shapes_or_no_label_are_named(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    from i2e_lightning.events.hf import encode_sample, write_parquet

    a, b = np.zeros((2, 2, 4, 4), bool), np.zeros((2, 2, 5, 5), bool)
    write_parquet(tmp_path / "mixed.parquet", [a, b], [0, 1])
    ds = EventFileDataset(tmp_path / "mixed.parquet")
    with pytest.raises(ValueError, match=r"mixed\.parquet row 1 has shape \(2, 2, 5, 5\).*mixed shapes"):
        ds[1]
    table = pa.table(
        {"data": pa.array([encode_sample(a)] * 3, type=pa.binary()), "label": pa.array([0, None, 1], pa.int64())}
    )
    pq.write_table(table, tmp_path / "nolabel.parquet")
    with pytest.raises(ValueError, match=r"nolabel\.parquet: 1 rows have no label \(the first: row 1\)"):
        EventFileDataset(tmp_path / "nolabel.parquet")
    table = pa.table({"data": pa.array([encode_sample(a)] * 2, type=pa.binary()), "label": pa.array([0.0, 1.5])})
    pq.write_table(table, tmp_path / "float.parquet")
    with pytest.raises(ValueError, match=r"float\.parquet: the 'label' column is double"):
        EventFileDataset(tmp_path / "float.parquet")
