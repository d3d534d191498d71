"""Pictures of events: GIF frame count and size, PNG strip size, colours, HDF5 samples, and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from i2e_lightning.commands.visualize import main
from i2e_lightning.converter import I2E
from i2e_lightning.events import EventFileMeta, EventH5Writer, pack_events
from i2e_lightning.events.visualize import OFF_COLOR, ON_COLOR, event_panel, render_gif_frames, render_strip
from tests.helpers.run_if import RunIf


def make_image(path: Path, h: int, w: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    arr = np.zeros((h, w, 3), np.uint8)
    arr[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 200  # a bright square: edges give events
    arr += rng.integers(0, 20, arr.shape, dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def gif_frames(path: Path) -> tuple[int, tuple[int, int]]:
    with Image.open(path) as im:
        return im.n_frames, im.size


@pytest.mark.parametrize(("h", "w", "t"), [(16, 16, 8), (12, 20, 3), (9, 7, 1)])
def test_gif_has_one_frame_per_timestep(tmp_path, h, w, t):
    img = make_image(tmp_path / "a.png", h, w)
    out = tmp_path / "a.gif"
    assert main([str(img), "--out", str(out), "--timesteps", str(t), "--scale", "3", "--ratio", "0.1"]) == 0
    n, size = gif_frames(out)
    gap = 3
    assert size == (2 * w * 3 + gap, h * 3)
    # identical consecutive frames may be merged by GIF writers, so count the distinct event frames
    ev = I2E(ratio=0.1, timesteps=t).eval()(torch.from_numpy(np.array(Image.open(img))).permute(2, 0, 1))
    distinct = 1 + sum(not torch.equal(ev[i], ev[i - 1]) for i in range(1, t))
    assert n == distinct


def test_png_strip_size_and_colours(tmp_path):
    a = make_image(tmp_path / "a.png", 10, 14, seed=1)
    b = make_image(tmp_path / "b.jpg", 20, 8, seed=2)
    out = tmp_path / "strip.png"
    assert main([str(a), str(b), "--out", str(out), "--resolution", "[12,16]", "--scale", "2"]) == 0
    with Image.open(out) as im:
        assert im.size == (9 * 16 * 2 + 8 * 2, 2 * 12 * 2 + 2)
        pixels = set(map(tuple, np.asarray(im.convert("RGB")).reshape(-1, 3).tolist()))
    assert ON_COLOR in pixels and OFF_COLOR in pixels


def test_event_panel_colours():
    frame = np.zeros((2, 2, 3), bool)
    frame[0, 0, 0] = True
    frame[1, 1, 2] = True
    rgb = event_panel(frame)
    assert tuple(rgb[0, 0]) == ON_COLOR and tuple(rgb[1, 2]) == OFF_COLOR and tuple(rgb[0, 1]) == (0, 0, 0)


def test_strip_of_generated_events_has_expected_layout():
    ev = np.zeros((4, 2, 5, 6), bool)
    ev[2, 0, 1, 1] = True
    strip = render_strip([(None, ev)], scale=1, gap=1)
    assert strip.size == (5 * 6 + 4, 5)
    arr = np.asarray(strip)
    assert tuple(arr[1, 3 * 7 + 1]) == ON_COLOR  # panel index 3 = timestep 2


def test_h5_sample(tmp_path):
    rng = np.random.default_rng(0)
    ev = rng.random((3, 8, 2, 6, 5)) < 0.2
    path = tmp_path / "e.h5"
    m = EventFileMeta(shape=(8, 2, 6, 5), ratio=0.1, order=range(8), resolution=(6, 5), source="t")
    with EventH5Writer(path, m) as w:
        w.append(pack_events(ev), [0, 1, 2])
        w.finish()
    out = tmp_path / "h.png"
    assert main(["--h5", str(path), "--index", "1", "2", "--out", str(out), "--scale", "1"]) == 0
    with Image.open(out) as im:
        assert im.size == (9 * 5 + 8 * 2, 2 * 6 + 2)
        arr = np.asarray(im.convert("RGB"))
    # row 0 = sample 1, timestep 0 panel starts after the left panel and a 2-pixel gap
    np.testing.assert_array_equal(np.all(arr[:6, 7:12] == ON_COLOR, axis=-1), ev[1, 0, 0])
    assert main(["--h5", str(path), "--index", "3", "--out", str(out)]) == 2
    assert main(["--h5", str(path), "--out", str(tmp_path / "h.gif"), "--timesteps", "4"]) == 0
    assert gif_frames(tmp_path / "h.gif")[0] <= 4


def test_bad_inputs_are_named(tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"definitely not a png")
    assert main([str(bad), "--out", str(tmp_path / "x.gif")]) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "cannot read image" in err
    assert main([str(tmp_path / "missing.jpg"), "--out", str(tmp_path / "x.gif")]) == 2
    assert "missing.jpg" in capsys.readouterr().err
    img = make_image(tmp_path / "ok.png", 8, 8)
    assert main([str(img), "--out", str(tmp_path / "nodir" / "x.gif")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([str(img), "--out", str(tmp_path / "x.bmp")]) == 2
    assert ".gif" in capsys.readouterr().err
    (tmp_path / "dir.gif").mkdir()
    assert main([str(img), "--out", str(tmp_path / "dir.gif")]) == 2
    assert "directory" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "x.gif")]) == 2
    assert main([str(img), "--out", str(tmp_path / "x.gif"), "--resolution", "0"]) == 2
    assert "--resolution" in capsys.readouterr().err


def test_unwritable_output_says_why(tmp_path, capsys, monkeypatch):
    img = make_image(tmp_path / "ok.png", 8, 8)

    def refuse(self, fp, *a, **k):
        raise PermissionError(13, "Permission denied", str(fp))

    monkeypatch.setattr(Image.Image, "save", refuse)
    assert main([str(img), "--out", str(tmp_path / "x.png")]) == 2
    assert "Permission denied" in capsys.readouterr().err


@RunIf(fashion_mnist=True)
def test_config_samples(tmp_path, capsys):
    cfg = tmp_path / "fm.yaml"
    cfg.write_text("data:\n  class_path: i2e_lightning.data.FashionMNISTDataModule\n")
    out = tmp_path / "fm.gif"
    assert main(["--config", str(cfg), "--index", "0", "1", "2", "--out", str(out)]) == 0
    n, size = gif_frames(out)
    assert size == (2 * 32 * 4 + 4, 3 * 32 * 4 + 2 * 4) and 1 < n <= 8
    assert "3 sample(s)" in capsys.readouterr().out
    assert main(["--config", str(cfg), "--index", "10000", "--out", str(out)]) == 2
    assert "out of range" in capsys.readouterr().err


def test_columns_put_samples_side_by_side():
    ev = np.zeros((2, 2, 4, 3), bool)
    strip = render_strip([(None, ev)] * 3, scale=1, gap=1, columns=2)
    assert strip.size == (2 * (3 * 3) + 5, 2 * 4 + 1)
    frames = render_gif_frames([(None, ev)] * 3, scale=2, gap=2, columns=3)
    assert len(frames) == 2 and frames[0].size == (6 * 3 * 2 + 5 * 2, 4 * 2)
