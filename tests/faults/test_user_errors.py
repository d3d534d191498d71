"""Raw tracebacks turned into one-line errors naming the file, key or value and the fix: wrong
checkpoint kinds and shape mismatches (test / export-onnx), I2ERuntime on a file that is not ONNX,
an unknown convert device, a visualization too large to draw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from i2e_lightning.events.convert import resolve_device
from i2e_lightning.events.visualize import save_visualization
from i2e_lightning.models import save_official, spiking_cnn
from i2e_lightning.onnx.export import load_checkpoint_model
from i2e_lightning.onnx.runtime import I2ERuntime
from i2e_lightning.training import AtomicCheckpointIO
from tests.helpers.cli import TINY, run_cli


@pytest.mark.parametrize("device", ["tpu", "quantum:0", "cuda:x"])
def test_unknown_convert_device_is_named(device: str) -> None:
    with pytest.raises(ValueError, match=rf"device {device!r}.*use auto, cpu, cuda or cuda:N"):
        resolve_device(device)


def test_huge_visualization_is_refused_before_drawing(tmp_path: Path) -> None:
    events = np.zeros((8, 2, 28, 28), bool)
    with pytest.raises(ValueError, match=r"--scale 100000 would draw .* TiB .*use --scale \d+ or less"):
        save_visualization([(None, events)], tmp_path / "x.png", scale=100000)
    assert not (tmp_path / "x.png").exists()


def test_runtime_on_a_file_that_is_not_onnx(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_text("definitely not protobuf")
    with pytest.raises(ValueError, match=r"model\.onnx is not an ONNX model ONNX Runtime can load.*export-onnx"):
        I2ERuntime(tmp_path / "model.onnx")


def _lightning_ckpt(path: Path, channels: list[int], saved_channels: list[int]) -> Path:
    net = spiking_cnn(num_classes=10, in_channels=2, channels=channels, input_size=[32, 32])
    torch.save(
        {
            "pytorch-lightning_version": "2.6.0",
            "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
            "hyper_parameters": {
                "arch": "spiking_cnn",
                "num_classes": 10,
                "in_channels": 2,
                "model_kwargs": {"channels": saved_channels, "input_size": [32, 32]},
            },
        },
        path,
    )
    return path


def test_export_of_a_checkpoint_whose_weights_do_not_fit_names_the_keys(tmp_path: Path) -> None:
    ckpt = _lightning_ckpt(tmp_path / "m.ckpt", channels=[8, 16], saved_channels=[4, 8])
    with pytest.raises(ValueError, match=r"m\.ckpt does not fit spiking_cnn .*shape mismatch: net|shape mismatch"):
        load_checkpoint_model(ckpt)
    save_official(spiking_cnn(num_classes=10, in_channels=2), tmp_path / "official.pth")
    with pytest.raises(ValueError, match=r"official\.pth is not a SpikingClassifier Lightning checkpoint"):
        load_checkpoint_model(tmp_path / "official.pth")


def test_resume_from_an_official_pth_points_to_init_from(tmp_path: Path) -> None:
    save_official(spiking_cnn(num_classes=10, in_channels=2), tmp_path / "official.pth")
    with pytest.raises(ValueError, match=r"not a Lightning checkpoint.*--model.init_from .*official\.pth"):
        AtomicCheckpointIO().load_checkpoint(tmp_path / "official.pth")


@pytest.mark.slow
def test_test_command_with_wrong_checkpoint_kind_or_shape(tmp_path: Path, toy_idx_dir: Path) -> None:
    common = ["--config", str(TINY), "--data.init_args.data_dir", str(toy_idx_dir), "--trainer.logger", "false"]
    common += ["--trainer.default_root_dir", str(tmp_path / "ck")]
    save_official(spiking_cnn(num_classes=10, in_channels=2), tmp_path / "official.pth")
    proc = run_cli(["test", *common, "--ckpt_path", str(tmp_path / "official.pth")], cwd=tmp_path)
    assert proc.returncode == 2 and "not a Lightning checkpoint" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    ckpt = _lightning_ckpt(tmp_path / "wide.ckpt", channels=[8, 16], saved_channels=[4, 8])
    proc = run_cli(["test", *common, "--ckpt_path", str(ckpt)], cwd=tmp_path)
    assert proc.returncode == 2 and "does not fit this model" in proc.stderr, proc.stderr[-2000:]
    assert "shape mismatch" in proc.stderr and "Traceback" not in proc.stderr
