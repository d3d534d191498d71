"""The HDF5 event file: fixed layout, writer checks, resume bookkeeping, and reading through EventFileDataset."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from i2e_lightning.events import EventFileDataset, EventFileMeta, EventH5Reader, EventH5Writer, unpack_events

SHAPE = (3, 2, 5, 7)


def meta(**kw) -> EventFileMeta:
    base = dict(shape=SHAPE, ratio=0.15, order=(4, 5, 6, 7, 0, 1, 2, 3), resolution=(5, 7), source="unit", split="test")
    base.update(kw)
    return EventFileMeta(**base)


def rows_and_labels(n: int, seed: int = 0):
    ev = np.random.default_rng(seed).random((n, *SHAPE)) < 0.3
    return ev, np.packbits(ev.reshape(n, -1), axis=-1), np.arange(n, dtype=np.int64) % 4


def write_complete(path, rows: np.ndarray, labels: np.ndarray, **meta_kw):
    """A finished event file holding ``rows`` and ``labels`` (one append), at ``path``."""
    with EventH5Writer(path, meta(num_samples=len(rows), **meta_kw)) as w:
        w.append(rows, labels)
        w.finish()
    return path


def test_layout_is_the_documented_one(tmp_path):
    ev, rows, labels = rows_and_labels(10)
    path = tmp_path / "e.h5"
    with EventH5Writer(path, meta(num_samples=10, extra={"num_classes": 4})) as w:
        w.append(rows[:6], labels[:6])
        w.append(rows[6:], labels[6:])
        w.finish()
    with h5py.File(path, "r") as f:
        assert set(f.keys()) == {"events", "labels"}
        assert f["events"].dtype == np.uint8 and f["events"].shape == (10, 27)  # ceil(3*2*5*7 / 8) = 27
        assert f["labels"].dtype == np.int64 and f["labels"].shape == (10,)
        assert f["events"].chunks is not None and f["events"].maxshape == (None, 27)
        a = f.attrs
        assert tuple(a["shape"]) == SHAPE and a["ratio"] == pytest.approx(0.15)
        assert tuple(a["order"]) == (4, 5, 6, 7, 0, 1, 2, 3) and tuple(a["resolution"]) == (5, 7)
        assert a["source"] == "unit" and a["split"] == "test"
        assert a["num_written"] == 10 and bool(a["complete"]) and a["num_samples"] == 10 and a["num_classes"] == 4
        # row i is np.packbits of sample i in C order of [T, 2, H, W]
        got = np.unpackbits(f["events"][:], axis=1)[:, : np.prod(SHAPE)].reshape(10, *SHAPE)
        np.testing.assert_array_equal(got, ev)
        np.testing.assert_array_equal(f["labels"][:], labels)


def test_resume_drops_uncounted_rows_and_appends(tmp_path):
    ev, rows, labels = rows_and_labels(8)
    path = tmp_path / "p.h5"
    w = EventH5Writer(path, meta(num_samples=8))
    w.append(rows[:3], labels[:3])
    w.close()
    with h5py.File(path, "r+") as f:  # a batch written but not counted (killed before num_written)
        f["events"].resize(5, axis=0)
        f["events"][3:5] = 255
        f["labels"].resize(5, axis=0)
    w = EventH5Writer(path, meta(num_samples=8))
    assert w.resumed and w.num_written == 3
    w.append(rows[3:], labels[3:])
    w.finish()
    w.close()
    r = EventH5Reader(path)
    assert len(r) == 8 and r.complete
    np.testing.assert_array_equal(r.packed_rows(), rows)


@pytest.mark.parametrize(
    "change",
    [
        {"ratio": 0.1},
        {"order": (0, 1, 2, 3, 4, 5, 6, 7)},
        {"source": "other"},
        {"split": "train"},
        {"num_samples": 9},
    ],
)
def test_partial_file_with_other_settings_is_refused(tmp_path, change):
    _, rows, labels = rows_and_labels(4)
    path = tmp_path / "m.h5"
    with EventH5Writer(path, meta(num_samples=8)) as w:
        w.append(rows, labels)
    key = next(iter(change))
    with pytest.raises(ValueError, match=f"other settings.*{key}"):
        EventH5Writer(path, meta(**{"num_samples": 8, **change}))
    with h5py.File(path, "r") as f:  # untouched
        assert f.attrs["num_written"] == 4 and f["events"].shape[0] == 4


def test_other_shape_is_refused(tmp_path):
    _, rows, labels = rows_and_labels(2)
    path = tmp_path / "s.h5"
    with EventH5Writer(path, meta()) as w:
        w.append(rows, labels)
    with pytest.raises(ValueError, match="uint8 rows of"):
        EventH5Writer(path, meta(shape=(2, 2, 5, 7)))


def test_complete_file_needs_overwrite(tmp_path):
    _, rows, labels = rows_and_labels(2)
    path = write_complete(tmp_path / "c.h5", rows, labels)
    with pytest.raises(FileExistsError, match="already complete.*--overwrite"):
        EventH5Writer(path, meta(num_samples=2))
    with EventH5Writer(path, meta(num_samples=1), overwrite=True) as w:
        assert w.num_written == 0 and not w.resumed
        w.append(rows[:1], labels[:1])
        w.finish()
    assert len(EventH5Reader(path)) == 1


def test_writer_rejects_bad_rows_and_paths(tmp_path):
    _, rows, labels = rows_and_labels(3)
    with EventH5Writer(tmp_path / "r.h5", meta(num_samples=2)) as w:
        with pytest.raises(ValueError, match="uint8"):
            w.append(rows[:, :-1], labels)
        with pytest.raises(ValueError, match="labels"):
            w.append(rows, labels[:2])
        with pytest.raises(ValueError, match="exceeds"):
            w.append(rows, labels)
        w.append(rows[:1], labels[:1])
        with pytest.raises(ValueError, match="announced"):
            w.finish()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        EventH5Writer(tmp_path / "no" / "x.h5", meta())
    with pytest.raises(ValueError, match="directory"):
        EventH5Writer(tmp_path, meta())
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(ValueError, match="--overwrite"):
        EventH5Writer(tmp_path / "junk.h5", meta())
    with pytest.raises(ValueError, match="resolution"):
        meta(resolution=(7, 5))


def test_dataset_reads_hdf5(tmp_path):
    ev, rows, labels = rows_and_labels(9, seed=5)
    path = write_complete(tmp_path / "d.h5", rows, labels, extra={"num_classes": 6})
    for in_memory in (False, True):
        ds = EventFileDataset(path, in_memory=in_memory)
        assert ds.kind == "hdf5" and len(ds) == 9 and ds.shape == SHAPE and ds.num_classes == 6
        assert ds.meta.ratio == pytest.approx(0.15)
        x, y = ds[4]
        assert x.dtype == torch.bool and tuple(x.shape) == SHAPE and y == labels[4]
        np.testing.assert_array_equal(x.numpy(), ev[4])
        np.testing.assert_array_equal(ds[-1][0].numpy(), ev[-1])
    packed = EventFileDataset(path, packed=True)
    batch = torch.stack([packed[i][0] for i in range(9)])
    np.testing.assert_array_equal(unpack_events(batch, packed.shape).numpy(), ev)
    with pytest.raises(IndexError):
        packed[9]
    # the dataset pickles (DataLoader workers) and reopens the file in the new process
    import pickle

    clone = pickle.loads(pickle.dumps(packed))
    np.testing.assert_array_equal(clone[2][0].numpy(), rows[2])


def test_dataset_reads_only_the_flushed_rows_of_a_partial_file(tmp_path):
    _, rows, labels = rows_and_labels(6)
    path = tmp_path / "part.h5"
    with EventH5Writer(path, meta(num_samples=6)) as w:
        w.append(rows[:4], labels[:4])
    with pytest.warns(UserWarning, match="4 of 6 samples"):
        ds = EventFileDataset(path)
    assert len(ds) == 4 and not ds._source.complete


def test_non_event_hdf5_is_named(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(ValueError, match="not an I2E event file"):
        EventFileDataset(tmp_path / "x.h5")


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("in_memory", [False, True])
def test_batched_reads_match_single_reads(tmp_path, packed, in_memory):
    ev, rows, labels = rows_and_labels(40, seed=7)
    path = write_complete(tmp_path / "b.h5", rows, labels)
    ds = EventFileDataset(path, packed=packed, in_memory=in_memory)
    idx = [31, 2, 2, -1, 0, 17]
    batch = ds.__getitems__(idx)
    for i, (x, y) in zip(idx, batch, strict=True):
        x1, y1 = ds[i]
        assert torch.equal(x, x1) and y == y1
    with pytest.raises(IndexError):
        ds.__getitems__([1, 40])
    # the DataLoader uses __getitems__: one read per batch, same order as the sampler
    loader = torch.utils.data.DataLoader(ds, batch_size=16, shuffle=False)
    got = torch.cat([x for x, _ in loader])
    want = torch.from_numpy(rows) if packed else torch.from_numpy(ev)
    assert torch.equal(got, want)


def test_transforms_apply_to_batched_hdf5_reads(tmp_path):
    # the DataLoader's batch fetch (__getitems__, one HDF5 read) applies them per sample, like __getitem__
    ev, rows, labels = rows_and_labels(6)
    path = write_complete(tmp_path / "t.h5", rows, labels)
    ds = EventFileDataset(path, transform=lambda x: x[0], target_transform=lambda y: -y)
    batch = ds.__getitems__([4, 1])
    assert [tuple(b[0].shape) for b in batch] == [SHAPE[1:], SHAPE[1:]]
    assert torch.equal(batch[0][0], torch.from_numpy(ev[4][0])) and batch[1][1] == -labels[1]
    assert torch.equal(ds[4][0], batch[0][0]) and ds[1][1] == batch[1][1]
