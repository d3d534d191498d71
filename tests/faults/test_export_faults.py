"""export-onnx: NaN logits fail ``--check``; a ``--config`` whose ratio/order disagree with the
checkpoint's is named instead of silently exporting another converter."""

from __future__ import annotations

from pathlib import Path

import torch

from i2e_lightning.commands.export_onnx import main as export_onnx
from i2e_lightning.models import spiking_cnn


def _ckpt(path: Path, nan: bool = False, ratio: float = 0.15) -> Path:
    net = spiking_cnn(num_classes=10, in_channels=2, channels=[4, 8], input_size=[32, 32])
    state = {f"net.{k}": v.clone() for k, v in net.state_dict().items()}
    if nan:  # in the head: NaN inside the spiking layers is masked (no spike fires), in the head it is not
        state[[k for k in state if k.endswith("weight")][-1]].fill_(float("nan"))
    torch.save(
        {
            "pytorch-lightning_version": "2.6.0",
            "state_dict": state,
            "hyper_parameters": {
                "arch": "spiking_cnn",
                "num_classes": 10,
                "in_channels": 2,
                "model_kwargs": {"channels": [4, 8], "input_size": [32, 32]},
            },
            "datamodule_hyper_parameters": {"ratio": ratio, "order": 4, "timesteps": 2, "resolution": 32},
        },
        path,
    )
    return path


def test_nan_logits_fail_the_check(tmp_path: Path, capsys) -> None:
    code = export_onnx(
        ["--ckpt_path", str(_ckpt(tmp_path / "nan.ckpt", nan=True)), "--out", str(tmp_path / "m.onnx"), "--check"]
    )
    out = capsys.readouterr().out
    assert code == 1 and "check FAILED" in out and "NaN/Inf" in out, out
    code = export_onnx(["--ckpt_path", str(_ckpt(tmp_path / "ok.ckpt")), "--out", str(tmp_path / "ok.onnx"), "--check"])
    assert code == 0, capsys.readouterr().out


def test_config_ratio_that_disagrees_with_the_checkpoint_is_named(tmp_path: Path, toy_idx_dir: Path, capsys) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "data:\n  class_path: i2e_lightning.data.FashionMNISTDataModule\n  init_args:\n"
        f"    data_dir: {toy_idx_dir}\n    ratio: 0.07\n    timesteps: 2\n"
    )
    ckpt = _ckpt(tmp_path / "m.ckpt", ratio=0.15)
    code = export_onnx(["--ckpt_path", str(ckpt), "--config", str(cfg), "--out", str(tmp_path / "m.onnx")])
    out = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "gives ratio 0.07 but checkpoint" in out and "trained with ratio 0.15" in out, out
    assert not (tmp_path / "m.onnx").exists()
    # an explicit --ratio is a decision, not a mismatch
    code = export_onnx(
        ["--ckpt_path", str(ckpt), "--config", str(cfg), "--ratio", "0.07", "--out", str(tmp_path / "m.onnx")]
    )
    assert code == 0, capsys.readouterr().out
