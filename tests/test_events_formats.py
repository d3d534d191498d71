"""The published per-sample formats: Hugging Face header+packbits bytes, parquet files, npz folders."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from i2e_lightning.events import (
    EventFileDataset,
    NpzFolder,
    decode_payload,
    decode_sample,
    encode_payload,
    encode_sample,
    load_npz,
    save_npz,
    write_npz_folder,
)
from i2e_lightning.events.hf import ParquetEvents, sample_shape, write_parquet

FIXTURES = Path(__file__).parent / "fixtures" / "events"

# A sample written by hand, independently of the encoder: shape (T, C, H, W) = (1, 2, 2, 3), 12 bits.
# Header: four little-endian uint16 1, 2, 2, 3. Body: bits 1,0,0,1,1,0 | 0,0,0,1,1,1 (+4 padding bits).
HANDMADE_PAYLOAD = bytes([1, 0, 2, 0, 2, 0, 3, 0, 0b10011000, 0b01110000])
HANDMADE_EVENTS = np.array([[[[1, 0, 0], [1, 1, 0]], [[0, 0, 0], [1, 1, 1]]]], dtype=bool)


def test_handmade_payload_decodes():
    np.testing.assert_array_equal(decode_payload(HANDMADE_PAYLOAD), HANDMADE_EVENTS)
    np.testing.assert_array_equal(encode_payload(HANDMADE_EVENTS), np.frombuffer(HANDMADE_PAYLOAD, np.uint8))


def test_handmade_npy_fixture_decodes():
    # tests/fixtures/events/hf_sample_1x2x2x3.npy: the .npy bytes a parquet `data` cell holds
    data = (FIXTURES / "hf_sample_1x2x2x3.npy").read_bytes()
    assert data.startswith(b"\x93NUMPY")
    np.testing.assert_array_equal(decode_sample(data), HANDMADE_EVENTS)
    assert sample_shape(data) == (1, 2, 2, 3)
    assert encode_sample(HANDMADE_EVENTS) == data


def test_decode_like_the_official_loader():
    """The README's loader: np.load -> first 8 bytes viewed as uint16 -> unpackbits -> first prod(shape) bits."""
    rng = np.random.default_rng(1)
    ev = rng.random((8, 2, 5, 7)) < 0.2
    raw = np.load(io.BytesIO(encode_sample(ev)))
    shape = tuple(raw[:8].view(np.uint16))
    assert shape == (8, 2, 5, 7)
    flat = np.unpackbits(raw[8:])[: np.prod(shape)]
    np.testing.assert_array_equal(flat.reshape(shape).astype(bool), ev)


@pytest.mark.parametrize("shape", [(1, 2, 1, 1), (2, 2, 3, 5), (8, 2, 32, 32), (4, 2, 1, 9)])
def test_encode_decode_roundtrip(shape):
    ev = np.random.default_rng(0).random(shape) < 0.4
    np.testing.assert_array_equal(decode_sample(encode_sample(ev)), ev)
    np.testing.assert_array_equal(decode_payload(encode_payload(ev)), ev)
    np.testing.assert_array_equal(decode_sample({"bytes": encode_sample(ev), "path": None}), ev)


def test_decode_errors_are_clear():
    with pytest.raises(ValueError, match="8-byte"):
        decode_payload(b"\x01\x00")
    with pytest.raises(ValueError, match="truncated"):
        decode_payload(HANDMADE_PAYLOAD[:-1])
    with pytest.raises(ValueError, match="four positive"):
        decode_payload(bytes(8))
    with pytest.raises(ValueError, match="must be bytes"):
        decode_sample(12)


def test_npz_roundtrip_and_key(tmp_path):
    ev = np.random.default_rng(2).random((8, 2, 5, 6)) < 0.3
    path = save_npz(tmp_path / "a.npz", ev)
    with np.load(path) as z:  # the published files store the array positionally (arr_0)
        assert z.files == ["arr_0"] and z["arr_0"].dtype == bool
    np.testing.assert_array_equal(load_npz(path), ev)
    np.savez_compressed(tmp_path / "f.npz", ev.astype(np.float32))  # float 0/1 files are accepted
    np.testing.assert_array_equal(load_npz(tmp_path / "f.npz"), ev)


def test_npz_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_npz(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz"):
        load_npz(tmp_path / "junk.npz")
    np.savez_compressed(tmp_path / "v.npz", np.full((1, 2, 2, 2), 3, np.uint8))
    with pytest.raises(ValueError, match="binary"):
        load_npz(tmp_path / "v.npz")


def test_npz_folder_dataset(tmp_path):
    rng = np.random.default_rng(3)
    samples = rng.random((7, 2, 2, 3, 4)) < 0.3
    labels = [2, 0, 1, 2, 0, 0, 1]
    write_npz_folder(tmp_path / "ds", samples, labels, class_names=["cat", "dog", "emu"])
    folder = NpzFolder(tmp_path / "ds")
    assert folder.classes == ["cat", "dog", "emu"] and len(folder) == 7
    ds = EventFileDataset(tmp_path / "ds")
    assert ds.kind == "npz" and ds.shape == (2, 2, 3, 4) and ds.num_classes == 3
    got = sorted((int(ds[i][1]), ds[i][0].numpy().tobytes()) for i in range(len(ds)))
    want = sorted((lab, s.tobytes()) for s, lab in zip(samples, labels, strict=True))
    assert got == want
    packed_ds = EventFileDataset(tmp_path / "ds", packed=True)
    row, label = packed_ds[0]
    assert row.dtype == torch.uint8 and row.shape == (packed_ds.row_bytes,)
    np.testing.assert_array_equal(np.unpackbits(row.numpy())[: 2 * 2 * 3 * 4].reshape(2, 2, 3, 4), ds[0][0].numpy())


@pytest.mark.parametrize("in_memory", [False, True])
def test_parquet_roundtrip_and_dataset(tmp_path, in_memory):
    pytest.importorskip("pyarrow")
    import pickle

    rng = np.random.default_rng(4)
    samples = rng.random((5, 3, 2, 4, 5)) < 0.3
    labels = [4, 1, 0, 3, 1]
    path = write_parquet(tmp_path / "train-00000-of-00001.parquet", samples, labels, row_group_size=2)
    pe = ParquetEvents(path, in_memory=in_memory)
    assert len(pe) == 5 and pe.shape == (3, 2, 4, 5)
    for i in [4, 0, 3, 1, 2, 4]:  # jumps between the three row groups
        ev, lab = pe[i]
        np.testing.assert_array_equal(ev, samples[i])
        assert lab == labels[i]
    with pytest.raises(IndexError):
        pe[5]
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(pe))[3][0], samples[3])
    ds = EventFileDataset(path)
    assert ds.kind == "parquet" and ds.num_classes == 5
    np.testing.assert_array_equal(ds[3][0].numpy(), samples[3])
    packed = EventFileDataset(path, packed=True)
    np.testing.assert_array_equal(packed[2][0].numpy(), np.packbits(samples[2].reshape(-1)))
    # a folder of shards reads as one dataset, in file order
    write_parquet(tmp_path / "train-00001-of-00001.parquet", samples[:2], labels[:2])
    shards = EventFileDataset(tmp_path)
    assert len(shards) == 7 and shards[6][1] == labels[1]
    np.testing.assert_array_equal(shards[6][0].numpy(), samples[1])


def test_parquet_with_handmade_cells(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    cell = (FIXTURES / "hf_sample_1x2x2x3.npy").read_bytes()
    pq.write_table(pa.table({"data": [cell, cell], "label": [7, 3]}), tmp_path / "hand.parquet")
    ds = EventFileDataset(tmp_path / "hand.parquet")
    assert len(ds) == 2 and ds.shape == (1, 2, 2, 3) and ds.labels.tolist() == [7, 3]
    np.testing.assert_array_equal(ds[1][0].numpy(), HANDMADE_EVENTS)
    pq.write_table(pa.table({"image": [cell], "label": [0]}), tmp_path / "other.parquet")
    with pytest.raises(ValueError, match="data"):
        ParquetEvents(tmp_path / "other.parquet")


def test_parquet_without_pyarrow_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match="pip install"):
        ParquetEvents(tmp_path / "x.parquet")


def test_dataset_rejects_unknown_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        EventFileDataset(tmp_path / "nope.h5")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="cannot tell"):
        EventFileDataset(tmp_path / "x.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="class folders"):
        EventFileDataset(tmp_path / "empty")


def test_npz_folder_numeric_classes_are_the_official_labels(tmp_path):
    # the official CIFAR writer: np.savez_compressed(root/str(target)/str(index), events); its reader takes
    # target = int(path.split('/')[-2]). Sorted strings would turn folder "2" into label 12 of 100.
    rng = np.random.default_rng(5)
    targets = [0, 2, 12, 99, 23, 3, 10]
    for index, target in enumerate(targets):
        (tmp_path / "val" / str(target)).mkdir(parents=True, exist_ok=True)
        np.savez_compressed(tmp_path / "val" / str(target) / str(index), rng.random((2, 2, 3, 3)) < 0.5)
    folder = NpzFolder(tmp_path / "val")
    official = [int(str(path).split("/")[-2]) for path in folder.files]
    assert [int(label) for label in folder.labels] == official
    assert sorted(official) == sorted(targets) and len(folder.classes) == 100
    ds = EventFileDataset(tmp_path / "val")
    assert ds.num_classes == 100 and sorted(int(ds[i][1]) for i in range(len(ds))) == sorted(targets)
    # written by the project (default names) and read back: the same labels, across 10 and more classes
    write_npz_folder(tmp_path / "ours", list(rng.random((12, 1, 2, 2, 2)) < 0.5), list(range(12)))
    assert sorted(int(v) for v in NpzFolder(tmp_path / "ours").labels) == list(range(12))
    # names that are not all numbers keep torchvision's sorted order (I2E-ImageNet's WordNet ids)
    for name in ("n02", "n01", "10"):
        (tmp_path / "mixed" / name).mkdir(parents=True)
        np.savez_compressed(tmp_path / "mixed" / name / "0", np.zeros((1, 2, 2, 2), dtype=bool))
    assert NpzFolder(tmp_path / "mixed").class_to_idx == {"10": 0, "n01": 1, "n02": 2}
    (tmp_path / "dup" / "1").mkdir(parents=True)
    (tmp_path / "dup" / "01").mkdir(parents=True)
    with pytest.raises(ValueError, match="same number twice"):
        NpzFolder(tmp_path / "dup")
