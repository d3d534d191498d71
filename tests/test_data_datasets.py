"""Data layer: CIFAR pickles, image folders (corrupt files), CIFAR10-DVS recordings, pre-converted event files."""

from __future__ import annotations

import math
import pickle
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from i2e_lightning.converter import I2E
from i2e_lightning.data import (
    CIFAR10DataModule,
    CIFAR10DVSDataModule,
    CIFAR100DataModule,
    EventFileDataModule,
    ImageFolderDataModule,
)
from i2e_lightning.data.cifar10dvs import integrate_frames, read_cifar10dvs_events
from tests.helpers.official import tv_resize_uint8
from tests.helpers.trainer import fake_trainer


def spec_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """CIFAR's and ImageNet's official resize: v2.Resize's default, torchvision's uint8 bilinear with antialias."""
    return tv_resize_uint8(x, size, "bilinear")


# -- CIFAR -----------------------------------------------------------------------------------


def write_cifar10(root: Path, per_batch: int = 4, n_test: int = 6, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    out = {"train": [], "test": None}
    for i in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        with open(folder / f"data_batch_{i}", "wb") as fh:
            pickle.dump({"data": data, "labels": labels, "batch_label": f"training batch {i} of 5"}, fh)
        out["train"].append((data, labels))
    data = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, n_test).tolist()
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({"data": data, "labels": labels}, fh)
    out["test"] = (data, labels)
    return out


def test_cifar10_pickles(tmp_path: Path) -> None:
    truth = write_cifar10(tmp_path)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), resolution=64, batch_size=5, num_workers=0)  # parent dir is accepted
    dm.setup("fit")
    train, test = dm.loader_dataset("train"), dm.loader_dataset("test")
    assert len(train) == 20 and len(test) == 6 and len(dm.loader_dataset("val")) == 6  # val = test
    img, label = train[6]  # batch 2, row 2
    data, labels = truth["train"][1]
    assert img.shape == (3, 32, 32) and img.dtype == torch.uint8  # shipped at native 32x32
    assert torch.equal(img, torch.from_numpy(data[2].reshape(3, 32, 32))) and label == labels[2]
    # split_dataset: the eval preprocessing at the target resolution
    img128, _ = dm.split_dataset("test")[1]
    ref = spec_resize(torch.from_numpy(truth["test"][0][1].reshape(1, 3, 32, 32)), (64, 64))[0]
    assert img128.shape == (3, 64, 64) and torch.equal(img128, ref)
    assert dm.ratio == pytest.approx(0.07) and dm.num_classes == 10
    # Baseline-II on device: [T, B, 2, 64, 64] float events; eval equals converting the resized images
    images, lbl = next(iter(dm.train_dataloader()))
    dm.trainer = fake_trainer(True)
    ev, out_lbl = dm.on_after_batch_transfer((images, lbl), 0)
    assert ev.shape == (8, 5, 2, 64, 64) and ev.dtype == torch.float32 and torch.equal(out_lbl, lbl)
    dm.trainer = fake_trainer(False)
    ev_eval, _ = dm.on_after_batch_transfer((images, lbl), 0)
    ref_ev = I2E(0.07, 4, 8).eval()(spec_resize(images, (64, 64)), dtype=torch.float32)
    assert torch.equal(ev_eval, ref_ev) and not torch.equal(ev, ev_eval)


def test_cifar_full_augment_is_pad_crop_resize_flip(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    dm = CIFAR10DataModule(data_dir=str(tmp_path / "cifar-10-batches-py"), resolution=40, augment="full")
    x = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8).expand(48, -1, -1, -1).contiguous()
    out = dm.device_transform(x, train=True)
    assert out.shape == (48, 3, 40, 40)
    # every output is resize(flip?(window of the edge-padded image))
    padded = F.pad(x[:1].float(), (4,) * 4, mode="replicate").to(torch.uint8)
    wins = torch.cat([padded[..., i : i + 32, j : j + 32] for i in range(9) for j in range(9)])
    resized = spec_resize(wins, (40, 40))  # the official order: pad, crop, resize, then flip
    cands = torch.cat([resized, resized.flip(-1)])
    keys = {c.numpy().tobytes() for c in cands}
    assert all(o.numpy().tobytes() in keys for o in out)
    assert len({o.numpy().tobytes() for o in out}) > 10


def test_cifar100_and_errors(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 7), ("test", 3)):
        with open(folder / name, "wb") as fh:
            pickle.dump(
                {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "fine_labels": list(range(90, 90 + n))}, fh
            )
    dm = CIFAR100DataModule(data_dir=str(folder), val_size=2)
    assert dm.num_classes == 100 and len(dm.loader_dataset("train")) == 5
    assert sorted(lbl for _, lbl in dm.loader_dataset("test")) == [90, 91, 92]
    (folder / "test").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="cifar-100-python/test"):
        CIFAR100DataModule(data_dir=str(folder)).setup("test")
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py.*download cifar10"):
        CIFAR10DataModule(data_dir=str(tmp_path / "none")).setup("fit")


# -- image folders ---------------------------------------------------------------------------


def write_image_folder(root: Path, sizes: list[tuple[int, int]]) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c, cls in enumerate(("cat", "dog", "eel")):
            d = root / split / cls
            d.mkdir(parents=True)
            for i, (h, w) in enumerate(sizes):
                mode = "L" if (i + c) % 3 == 0 else "RGB"  # grey files are converted to RGB
                arr = rng.integers(0, 256, (h, w) if mode == "L" else (h, w, 3), dtype=np.uint8)
                ext = ".png" if i % 2 == 0 else ".JPG"
                Image.fromarray(arr, mode).save(d / f"{i}{ext}", format="PNG" if ext == ".png" else "JPEG")
            (d / "notes.txt").write_text("not an image")


def test_image_folder_eval_preprocessing(tmp_path: Path) -> None:
    write_image_folder(tmp_path, [(30, 40), (50, 23), (24, 24)])
    dm = ImageFolderDataModule(
        data_dir=str(tmp_path),
        resolution=16,
        resize_size=20,
        augment="flip",
        batch_size=4,
        num_workers=0,
    )
    assert dm.num_classes == 3 and dm.classes == ["cat", "dog", "eel"] and dm.ratio == pytest.approx(0.12)
    dm.setup("fit")
    ds = dm.split_dataset("val")
    assert len(ds) == 9
    img, label = ds[1]  # cat/1.JPG, 50x23 RGB
    assert img.shape == (3, 16, 16) and img.dtype == torch.uint8 and label == 0
    with Image.open(tmp_path / "val" / "cat" / "1.JPG") as im:
        raw = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)[None]
    short = spec_resize(raw, (int(20 * 50 / 23), 20))  # shorter side (width 23) -> 20
    top = round((short.shape[-2] - 16) / 2)
    assert torch.equal(img, short[0, :, top : top + 16, 2:18])
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 16, 16)
    dm.trainer = fake_trainer(True)
    ev, _ = dm.on_after_batch_transfer((images, labels), 0)
    assert ev.shape == (8, 4, 2, 16, 16) and ev.dtype == torch.float32


def test_image_folder_full_augment_ships_whole_images(tmp_path: Path) -> None:
    write_image_folder(tmp_path, [(30, 40), (26, 26)])
    dm = ImageFolderDataModule(data_dir=str(tmp_path), resolution=16, resize_size=20, batch_size=6, num_workers=0)
    dm.setup("fit")
    assert dm.loader_dataset("train")[0][0].shape == (3, 30, 40)  # the decoded image, whole
    assert dm.split_dataset("train")[0][0].shape == (3, 16, 16)  # contract: eval preprocessing
    images, labels = next(iter(dm.train_dataloader()))
    assert isinstance(images, list) and len(images) == 6 and labels.dtype == torch.long
    assert {tuple(im.shape) for im in images} == {(3, 30, 40), (3, 26, 26)}
    dm.trainer = fake_trainer(True)
    ev, _ = dm.on_after_batch_transfer((images, labels), 0)
    assert ev.shape == (8, 6, 2, 16, 16)
    # outside of training a list of whole images gets the eval view (shorter side 20, centre crop 16)
    view = dm.device_transform(images, train=False)
    assert view.shape == (6, 3, 16, 16)
    i = next(i for i, im in enumerate(images) if im.shape[-1] == 40)
    short = spec_resize(images[i][None], (20, int(20 * 40 / 30)))[0]  # v2.Resize(20), then CenterCrop(16)
    left = round((short.shape[-1] - 16) / 2)
    assert torch.equal(view[i], short[:, 2:18, left : left + 16])


def test_image_folder_corrupt_file(tmp_path: Path) -> None:
    write_image_folder(tmp_path, [(20, 20), (21, 22)])
    bad = tmp_path / "train" / "dog" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    dm = ImageFolderDataModule(data_dir=str(tmp_path), resolution=16, resize_size=16, augment="none", batch_size=16)
    dm.setup("fit")
    with pytest.raises(ValueError, match="corrupt or unreadable image file .*broken.jpg"):
        list(dm.train_dataloader())
    dm = ImageFolderDataModule(
        data_dir=str(tmp_path),
        resolution=16,
        resize_size=16,
        augment="none",
        batch_size=16,
        skip_corrupt=True,
        num_workers=0,  # warnings of worker processes do not reach the test
    )
    dm.setup("fit")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = list(dm.train_dataloader())
    assert sum(len(b[1]) for b in batches) == 6  # 7 files, the corrupt one dropped
    assert any("broken.jpg" in str(w.message) for w in caught)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs data_dir"):
        ImageFolderDataModule()
    with pytest.raises(FileNotFoundError, match="train"):
        ImageFolderDataModule(data_dir=str(tmp_path)).setup("fit")
    write_image_folder(tmp_path, [(20, 20)])
    (tmp_path / "val" / "fox").mkdir()
    with pytest.raises(ValueError, match="fox"):
        ImageFolderDataModule(data_dir=str(tmp_path), resolution=16, resize_size=16).setup("validate")


# -- CIFAR10-DVS -----------------------------------------------------------------------------

DVS_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# a jAER-style AEDAT 2 header: CRLF and LF lines, XML preference lines, all starting with '#'
HEADER = (
    b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
    b"# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n"
    b'#Start of Preferences for this AEChip\n#<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
    b'#<map><entry key="x" value="1"/></map>\n#End of Preferences\r\n#!END-HEADER\r\n'
)


def write_aedat(path: Path, x: np.ndarray, y: np.ndarray, p: np.ndarray, rng: np.random.Generator) -> None:
    """AEDAT 2 as in CIFAR10-DVS: '#' header lines then big-endian (address, timestamp) uint32 pairs."""
    noise = rng.integers(0, 2, len(x)).astype(np.uint32) << 15  # bit 15 is outside every mask
    addr = (y.astype(np.uint32) << 8) | (x.astype(np.uint32) << 1) | p.astype(np.uint32) | noise
    ts = np.cumsum(rng.integers(1, 50, len(x))).astype(np.uint32)
    body = np.empty(2 * len(x), dtype=">u4")
    body[0::2], body[1::2] = addr, ts
    path.write_bytes(HEADER + body.tobytes())


def reference_frames(path: Path, frames: int) -> np.ndarray:
    """Independent slow path: struct-parse, SpikingJelly's mapping, segment loops."""
    raw = path.read_bytes()
    body = raw[len(HEADER) :]
    events = [struct.unpack(">II", body[i : i + 8]) for i in range(0, len(body), 8)]
    out = np.zeros((frames, 2, 128, 128), dtype=np.int64)
    n = len(events)
    step = n // frames
    for j in range(frames):
        hi = n if j == frames - 1 else step * (j + 1)
        for addr, _ in events[step * j : hi]:
            x, y, p = (addr & 0xFE) >> 1, (addr & 0x7F00) >> 8, addr & 1
            out[j, 1 - p, 127 - x, 127 - y] += 1
    return out


@pytest.fixture
def dvs_root(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "CIFAR10DVS"
    for cls in DVS_CLASSES:
        (root / cls).mkdir(parents=True)
        for i in range(11):
            n = int(rng.integers(3, 60))
            x, y, p = rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)
            if i == 4:  # a hot pixel: counts above 1
                x[:], y[:] = 5, 7
            write_aedat(root / cls / f"cifar10_{cls}_{i}.aedat", x, y, p, rng)
    return root


def test_aedat_parse_and_integration_match_reference(dvs_root: Path) -> None:
    for name in ("cifar10_cat_0.aedat", "cifar10_cat_4.aedat", "cifar10_ship_7.aedat"):
        path = dvs_root / name.split("_")[1] / name
        ev = read_cifar10dvs_events(path)
        for frames in (8, 3, 1):
            got = integrate_frames(ev["x"], ev["y"], ev["p"], frames)
            assert np.array_equal(got, reference_frames(path, frames))
        assert got.sum() == len(ev["t"]) and np.all(np.diff(ev["t"]) > 0)


def test_integration_fewer_events_than_frames() -> None:
    x, y, p = np.array([1, 2, 3]), np.array([0, 0, 0]), np.array([0, 1, 0])
    frames = integrate_frames(x, y, p, frames=8)
    assert frames[:7].sum() == 0 and frames[7].sum() == 3  # SpikingJelly: all in the last segment


def test_truncated_aedat_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "cut.aedat"
    bad.write_bytes(HEADER + b"\x00" * 13)
    with pytest.raises(ValueError, match="cut.aedat.*truncated"):
        read_cifar10dvs_events(bad)


def test_cifar10dvs_split_cache_and_batches(dvs_root: Path, tmp_path: Path) -> None:
    dm = CIFAR10DVSDataModule(data_dir=str(dvs_root), batch_size=4, num_workers=0)
    rec = dm.recordings()
    assert len(rec["train"]) == 100 and len(rec["test"]) == 10  # ceil(0.9 * 11) = 10 per class
    # file-name order: ..._0, _1, _10, _2, ... _9 -> the last one (..._9) is the test recording
    assert {p.name for p, _ in rec["test"]} == {f"cifar10_{c}_9.aedat" for c in DVS_CLASSES}
    assert [lbl for _, lbl in rec["test"]] == list(range(10))
    reports: list[tuple[str, int, int]] = []
    dm.on_progress = lambda task, done, total: reports.append((task, done, total))
    dm.prepare_data()  # progress reaches the caller's callback; the library draws nothing itself
    assert [r[1:] for r in reports if "train" in r[0]] == [(i, 100) for i in range(1, 101)]
    assert [r[1:] for r in reports if "test" in r[0]] == [(i, 10) for i in range(1, 11)]
    cache = dvs_root / "frames_8"
    assert len(list(cache.rglob("*.npz"))) == 110 and not list(cache.rglob("*.tmp*"))
    ds = dm.split_dataset("test")
    frames, label = ds[3]
    src = rec["test"][3][0]
    assert frames.shape == (8, 2, 128, 128) and frames.dtype == torch.int16 and label == 3
    assert np.array_equal(frames.numpy(), reference_frames(src, 8))
    # second pass reads the cache, never the recording
    src.write_bytes(b"gone")
    assert torch.equal(dm.split_dataset("test")[3][0], frames)
    # batches: [T, B, 2, H, W] float counts, or binary
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    dm.trainer = fake_trainer(False)
    ev, labels = dm.on_after_batch_transfer(batch, 0)
    assert ev.shape == (8, 4, 2, 128, 128) and ev.dtype == torch.float32 and labels.dtype == torch.int64
    assert torch.equal(ev.transpose(0, 1), batch[0].float())
    dmb = CIFAR10DVSDataModule(
        data_dir=str(dvs_root), frame_mode="binary", augment="flip", cache_dir=str(tmp_path / "c")
    )
    dmb.trainer = fake_trainer(True)
    evb, _ = dmb.on_after_batch_transfer(batch, 0)
    assert set(evb.unique().tolist()) <= {0.0, 1.0}
    fl = [(evb[:, b] == (batch[0][b] > 0).float().flip(-1)).all() for b in range(4)]
    same = [(evb[:, b] == (batch[0][b] > 0).float()).all() for b in range(4)]
    assert all(bool(a) or bool(s) for a, s in zip(fl, same, strict=True))


def test_cifar10dvs_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="figshare"):
        CIFAR10DVSDataModule(data_dir=str(tmp_path / "missing")).setup("fit")
    (tmp_path / "one" / "cat").mkdir(parents=True)
    (tmp_path / "one" / "cat" / "a.aedat").write_bytes(HEADER)
    with pytest.raises(ValueError, match="expected 10 class folders"):
        CIFAR10DVSDataModule(data_dir=str(tmp_path / "one")).setup("fit")
    with pytest.raises(ValueError, match="frame_mode"):
        CIFAR10DVSDataModule(data_dir=str(tmp_path), frame_mode="sum")


# -- pre-converted event files ---------------------------------------------------------------


def test_event_file_datamodule_npz(tmp_path: Path) -> None:
    from i2e_lightning.events.npz import write_npz_folder

    rng = np.random.default_rng(0)
    shape = (8, 2, 6, 5)  # odd bit count: packed rows carry padding bits
    for split, n in (("train", 12), ("test", 4)):
        events = rng.random((n, *shape)) < 0.3
        labels = [i % 3 for i in range(n)]
        write_npz_folder(tmp_path / split, list(events), labels)
    dm = EventFileDataModule(train_path="train", test_path="test", data_dir=str(tmp_path), batch_size=4, timesteps=5)
    assert dm.num_classes == 3 and dm.resolution == (6, 5) and dm.timesteps == 5 and dm.converter is None
    dm.setup("fit")
    packed, labels = next(iter(dm.val_dataloader()))
    assert packed.dtype == torch.uint8 and packed.shape == (4, math.ceil(8 * 2 * 6 * 5 / 8))
    dm.trainer = fake_trainer(False)
    ev, out_labels = dm.on_after_batch_transfer((packed, labels), 0)
    assert ev.shape == (5, 4, 2, 6, 5) and ev.dtype == torch.float32
    truth = torch.stack([torch.from_numpy(np.asarray(dm.event_dataset("test")._source[i][0])) for i in range(4)])
    assert torch.equal(ev, truth[:, :5].transpose(0, 1).float())
    with pytest.raises(FileNotFoundError, match="nope"):
        EventFileDataModule(train_path=str(tmp_path / "nope.h5"), test_path="x").setup("fit")
