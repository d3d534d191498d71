"""Threshold calibration: event rate, the rate-vs-ratio curve, bisection, and the calibrate CLI."""

from __future__ import annotations

import textwrap

import pytest
import torch

from i2e_lightning.commands.calibrate import main as calibrate_main
from i2e_lightning.converter import I2E
from i2e_lightning.converter.calibrate import calibrate_ratio, default_ratios, event_rate, rate_curve
from tests.helpers.official import to_dtype_scale


def smooth_images(n=24, size=(20, 17), channels=3, seed=0) -> torch.Tensor:
    """Blurred random uint8 images: natural-looking gradients so the curve is smooth."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, *size, generator=g)
    x = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    x = (x - x.amin((1, 2, 3), keepdim=True)) / (x.amax((1, 2, 3), keepdim=True) - x.amin((1, 2, 3), keepdim=True))
    return (x * 255).round().to(torch.uint8)


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
@pytest.mark.parametrize("order,timesteps", [(4, 8), (0, 3), ([7, 6, 5, 4, 3, 2, 1, 0], 1)])
def test_event_rate_is_the_converter_mean(dtype, order, timesteps):
    x = smooth_images(7, (9, 13))
    if dtype == "float32":
        x = to_dtype_scale(x)
    for ratio in (0.05, 0.12, 0.3):
        events = I2E(ratio, order, timesteps).eval()(x)
        ref = int(events.sum()) / events.numel()
        # chunked counting (batch_size 3) gives exactly the same rate
        assert event_rate(x, ratio, order, timesteps, batch_size=3) == pytest.approx(ref, abs=1e-12)


def test_curve_falls_monotonically():
    x = smooth_images()
    curve = rate_curve(x, default_ratios(0.01, 0.9, 30))
    rates = [r for _, r in curve]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))
    assert rates[0] > 0.2 > rates[-1]
    with pytest.raises(ValueError, match="empty"):
        rate_curve(x, [])


@pytest.mark.parametrize("target", [0.02, 0.05, 0.1])
def test_bisection_hits_the_target(target):
    x = smooth_images(16, (32, 32))
    res = calibrate_ratio(x, target, tol=1e-5)
    assert abs(res.rate - target) < 0.003
    assert res.rate == pytest.approx(event_rate(x, res.ratio), abs=1e-12)
    assert res.target == target
    ratios = [r for r, _ in res.curve]
    assert ratios == sorted(ratios) and res.ratio in ratios
    # the bracket around the chosen ratio straddles the target
    below = [v for r, v in res.curve if r < res.ratio]
    above = [v for r, v in res.curve if r > res.ratio]
    assert min(below) >= target - 0.003 and max(above) <= target + 0.003


def test_unreachable_targets_and_bad_arguments():
    x = smooth_images(4)
    with pytest.raises(ValueError, match="out of reach"):
        calibrate_ratio(x, 0.55)  # above the rate at the smallest ratio (at most 0.5)
    with pytest.raises(ValueError, match="out of reach"):
        calibrate_ratio(x, 0.001, hi=0.05)
    flat = torch.full((3, 3, 8, 8), 77, dtype=torch.uint8)
    assert event_rate(flat, 0.1) == 0.0
    with pytest.raises(ValueError, match="out of reach"):
        calibrate_ratio(flat, 0.05)
    with pytest.raises(ValueError, match="target_rate"):
        calibrate_ratio(x, 5.0)
    with pytest.raises(ValueError, match="lo < hi"):
        calibrate_ratio(x, 0.05, lo=0.5, hi=0.2)
    with pytest.raises(ValueError, match="NaN"):
        event_rate(torch.full((1, 3, 4, 4), float("nan")), 0.1)
    with pytest.raises(ValueError, match="non-empty"):
        event_rate(torch.zeros(0, 3, 4, 4), 0.1)
    with pytest.raises(ValueError, match="preset"):
        event_rate(x, 0.1, order=9)


FAKE_DM = textwrap.dedent(
    """
    import torch
    from i2e_lightning.data.base import EventDataModule, ImageDataModule, TensorImageDataset


    def fake_images(split):
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        x = torch.rand(60, 3, 24, 24, generator=g)
        x = torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
        x = (x - x.amin()) / (x.amax() - x.amin())
        return TensorImageDataset((x * 255).round().to(torch.uint8), torch.zeros(60, dtype=torch.long))


    class FakeImages(ImageDataModule):
        num_classes = 2
        default_ratio = 0.1

        def __init__(self, resolution: int = 24, **kwargs):
            super().__init__(resolution=resolution, **kwargs)

        def load_source(self, split):
            return fake_images(split)


    class FakeEvents(EventDataModule):
        num_classes = 2
        resolution = (24, 24)

        def load_source(self, split):
            return fake_images(split)
    """
)


@pytest.fixture
def fake_config(tmp_path, monkeypatch):
    (tmp_path / "fake_calib_dm.py").write_text(FAKE_DM)
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(cls: str, **init) -> str:
        args = "".join(f"\n    {k}: {v}" for k, v in init.items())
        path = tmp_path / f"{cls}.yaml"
        path.write_text(f"data:\n  class_path: fake_calib_dm.{cls}\n  init_args:{args or ' {}'}\n")
        return str(path)

    return write


def test_cli_curve_target_and_plot(fake_config, tmp_path, capsys):
    cfg = fake_config("FakeImages", ratio=0.2, timesteps=4, num_workers=0)
    plot = tmp_path / "curve.png"
    argv = ["--config", cfg, "--target_rate", "0.05", "--samples", "32", "--points", "6", "--plot", str(plot)]
    assert calibrate_main(argv) == 0
    out = capsys.readouterr().out
    assert "chosen" in out and "config ratio 0.2 gives" in out and "data.init_args.ratio:" in out
    assert plot.is_file() and plot.stat().st_size > 1000
    # the printed ratio really gives about 5 % on the same sample
    chosen = float(out.split("data.init_args.ratio:")[1].split()[0])
    from i2e_lightning.data.calibrate import sample_images
    from i2e_lightning.data.config import datamodule_from_config

    dm = datamodule_from_config(cfg)
    imgs = sample_images(dm.split_dataset("train"), 32, 0)
    assert event_rate(imgs, chosen, 4, 4) == pytest.approx(0.05, abs=0.005)


def test_cli_curve_only_and_errors(fake_config, capsys):
    cfg = fake_config("FakeImages", num_workers=0)
    assert calibrate_main(["--config", cfg, "--samples", "8", "--points", "3", "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "config ratio 0.1 gives" in out and "chosen" not in out
    assert calibrate_main(["--config", cfg, "--target_rate", "0.9", "--samples", "8"]) == 2
    assert "out of reach" in capsys.readouterr().err
    assert calibrate_main(["--config", cfg, "--target_rate", "5"]) == 2
    assert "fraction" in capsys.readouterr().err
    assert calibrate_main(["--config", fake_config("FakeEvents", num_workers=0), "--target_rate", "0.05"]) == 2
    assert "no threshold ratio" in capsys.readouterr().err
    assert calibrate_main(["--config", "missing.yaml", "--target_rate", "0.05"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cli_unavailable_device_is_one_line(fake_config, capsys):
    cfg = fake_config("FakeImages", num_workers=0)
    assert calibrate_main(["--config", cfg, "--device", "cuda", "--samples", "4"]) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and len(err.strip().splitlines()) == 1
