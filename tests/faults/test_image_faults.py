"""Images decoded faithfully or refused: 16-bit PNGs and float TIFFs scaled to 8 bits (or refused),
decompression bombs refused naming the file, and ``skip_corrupt`` honoured by convert, visualize,
calibrate and predict (not only fit)."""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from i2e_lightning.converter import I2E
from i2e_lightning.converter.images import ImageDecodeError, decode_image_file
from i2e_lightning.data.calibrate import sample_images
from i2e_lightning.data.imagefolder import ImageFolderDataModule
from i2e_lightning.events.convert import convert_dataset
from tests.helpers.cli import run_cli


def test_16_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (4, 1))
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    got = decode_image_file(tmp_path / "ramp16.png", "L")
    expected = np.rint(ramp.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert np.array_equal(got, expected)
    assert (got == 255).mean() < 0.01  # the old decode: 99.6 % saturated
    rgb = decode_image_file(tmp_path / "ramp16.png")
    assert rgb.shape == (4, 256, 3) and np.array_equal(rgb[..., 0], expected)


def test_float_tiff_in_unit_range_is_scaled_and_others_refused(tmp_path: Path) -> None:
    unit = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    Image.fromarray(unit, mode="F").save(tmp_path / "unit.tif")
    assert np.array_equal(decode_image_file(tmp_path / "unit.tif", "L"), np.rint(unit * 255.0).astype(np.uint8))
    Image.fromarray(unit * 1000, mode="F").save(tmp_path / "big.tif")
    with pytest.raises(ImageDecodeError, match=r"big\.tif is a float image with values in \[0, 1000\]"):
        decode_image_file(tmp_path / "big.tif")
    Image.fromarray(np.full((4, 4), 70000, np.int32), mode="I").save(tmp_path / "int32.tif")
    with pytest.raises(ImageDecodeError, match=r"int32\.tif holds 32-bit integers"):
        decode_image_file(tmp_path / "int32.tif")


@pytest.mark.parametrize("limit", [6000, 3000], ids=["warning-size", "error-size"])
def test_decompression_bomb_is_an_error_naming_the_file(tmp_path: Path, monkeypatch, limit: int) -> None:
    Image.new("RGB", (80, 80)).save(tmp_path / "bomb.png")  # 6400 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(ImageDecodeError, match=r"bomb\.png is too large to decode safely.*MAX_IMAGE_PIXELS"):
        decode_image_file(tmp_path / "bomb.png")


def test_truncated_file_is_named(tmp_path: Path) -> None:
    Image.new("RGB", (64, 64), (10, 200, 30)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match=r"cut\.png"):
        decode_image_file(tmp_path / "cut.png")


@pytest.fixture
def folder_with_a_corrupt_image(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("a", "b"):
            d = tmp_path / "imgs" / split / c
            d.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(d / f"{i}.png")
    (tmp_path / "imgs" / "val" / "a" / "1.png").write_bytes(b"\x89PNG but not really")
    return tmp_path / "imgs"


def _dm(root: Path, **kw) -> ImageFolderDataModule:
    return ImageFolderDataModule(
        data_dir=str(root), resolution=32, resize_size=36, batch_size=4, num_workers=0,
        persistent_workers=False, skip_corrupt=True, augment="none", **kw,
    )  # fmt: skip


def test_convert_honours_skip_corrupt_and_resumes_after_it(folder_with_a_corrupt_image: Path, tmp_path: Path) -> None:
    dm = _dm(folder_with_a_corrupt_image)
    out = tmp_path / "val.h5"
    with pytest.warns(UserWarning, match=r"skipping .*1\.png"):
        res = convert_dataset(dm.split_dataset("val"), I2E(0.12), out, batch_size=2)
    assert res.num_rows == 5 and res.skipped == 1
    with h5py.File(out, "r") as f:
        assert f.attrs["complete"] and list(f.attrs["skipped"]) == [1] and list(f["labels"][:]) == [0, 0, 1, 1, 1]
    # interrupted right after the corrupt sample: the resumed file equals the undisturbed one
    part = tmp_path / "part.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        convert_dataset(dm.split_dataset("val"), I2E(0.12), part, batch_size=2, limit=None)
        with h5py.File(part, "r+") as f:  # what a kill after the second batch leaves
            f["events"].resize(1, axis=0)
            f["labels"].resize(1, axis=0)
            f.attrs["num_written"], f.attrs["complete"], f.attrs["num_samples"] = 1, False, 6
        res2 = convert_dataset(dm.split_dataset("val"), I2E(0.12), part, batch_size=2)
    assert res2.resumed_from == 2
    with h5py.File(out, "r") as a, h5py.File(part, "r") as b:
        assert np.array_equal(a["events"][:], b["events"][:]) and np.array_equal(a["labels"][:], b["labels"][:])


def test_calibrate_and_predict_honour_skip_corrupt(folder_with_a_corrupt_image: Path) -> None:
    dm = _dm(folder_with_a_corrupt_image)
    with pytest.warns(UserWarning, match="skipping"):
        images = sample_images(dm.split_dataset("val"), samples=6)
    assert images.shape == (5, 3, 32, 32)
    dm.setup("predict")
    with pytest.warns(UserWarning, match="skipping"):
        batches = list(dm.predict_dataloader())
    assert sum(len(b[1]) for b in batches) == 5


@pytest.mark.slow
def test_visualize_honours_skip_corrupt(folder_with_a_corrupt_image: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "data:\n  class_path: i2e_lightning.data.ImageFolderDataModule\n  init_args:\n"
        f"    data_dir: {folder_with_a_corrupt_image}\n    resolution: 32\n    resize_size: 36\n"
        "    skip_corrupt: true\n    num_workers: 0\n"
    )
    proc = run_cli(["visualize", "--config", str(cfg), "--split", "val", "--index", "0", "1", "2",
                    "--out", str(tmp_path / "v.png")], cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1.png" in proc.stderr and (tmp_path / "v.png").is_file()


def test_onnx_runtime_loader_scales_16_bit_and_refuses_bombs(tmp_path: Path, monkeypatch) -> None:
    from i2e_lightning.onnx.runtime import load_images

    ramp = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (4, 1))
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    got = load_images([tmp_path / "ramp16.png"], mode="L")[0, 0]
    assert np.array_equal(got, np.rint(ramp.astype(np.float64) * 255 / 65535).astype(np.uint8))
    Image.fromarray(np.full((4, 4), 3.0, np.float32), mode="F").save(tmp_path / "f.tif")
    with pytest.raises(ValueError, match=r"f\.tif is a float image outside \[0, 1\]"):
        load_images([tmp_path / "f.tif"])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ValueError, match=r"ramp16\.png is too large to decode safely"):
        load_images([tmp_path / "ramp16.png"])
