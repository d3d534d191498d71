"""Untrusted checkpoints never run code: every entry point that reads a user-named file refuses a
crafted pickle (``weights_only=True``) with one message naming the file, and the command in the
pickle never runs. Our own checkpoints (and official ``.pth`` files) still load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from i2e_lightning.models import load_official, read_checkpoint, spiking_cnn
from i2e_lightning.models.checkpoint import checkpoint_kind, describe_state_diff, network_state
from i2e_lightning.onnx.export import load_checkpoint_model
from i2e_lightning.training import AtomicCheckpointIO, load_classifier, load_init_weights
from tests.helpers.cli import TINY, run_cli
from tests.helpers.datasets import make_idx_dir
from tests.helpers.faults import write_code_running_checkpoint

REFUSED = "was not loaded"

IN_PROCESS = {
    "read_checkpoint": lambda p: read_checkpoint(p),
    "load_classifier": lambda p: load_classifier(p),
    "load_official": lambda p: load_official(p),
    "init_from": lambda p: load_init_weights(spiking_cnn(num_classes=10, in_channels=2), p, "spiking_cnn", 10),
    "export_checkpoint_model": lambda p: load_checkpoint_model(p),
    "lightning_resume_io": lambda p: AtomicCheckpointIO().load_checkpoint(p),
}


@pytest.mark.parametrize("layout", ["lightning", "official"])
@pytest.mark.parametrize("entry", sorted(IN_PROCESS))
def test_crafted_checkpoint_is_refused_in_python(tmp_path: Path, entry: str, layout: str) -> None:
    marker = tmp_path / "ran"
    ckpt = write_code_running_checkpoint(tmp_path / f"evil_{layout}.ckpt", marker, layout)
    with pytest.raises(ValueError, match=REFUSED) as err:
        IN_PROCESS[entry](ckpt)
    assert "posix.system" in str(err.value) or "nt.system" in str(err.value)
    assert str(ckpt) in str(err.value)
    assert not marker.exists(), f"{entry} ran the command in a crafted checkpoint"


def test_trusted_load_is_an_explicit_choice(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    ckpt = write_code_running_checkpoint(tmp_path / "mine.ckpt", marker)
    read_checkpoint(ckpt, trusted=True)  # the caller's own file: the old behaviour, asked for by name
    assert marker.exists()


def test_own_and_official_checkpoints_load_weights_only(tmp_path: Path) -> None:
    net = spiking_cnn(num_classes=10, in_channels=2)
    ours = {
        "pytorch-lightning_version": "2.6.0",
        "state_dict": {f"net._orig_mod.{k}": v for k, v in net.state_dict().items()},
        "hyper_parameters": {"arch": "spiking_cnn", "num_classes": 10, "data_dir": tmp_path},  # a Path is allowed
        "best": __import__("numpy").float64(0.5),  # so is a numpy scalar
    }
    torch.save(ours, tmp_path / "ours.ckpt")
    ckpt = read_checkpoint(tmp_path / "ours.ckpt")
    assert checkpoint_kind(ckpt) == "lightning"
    state = network_state(ckpt)
    assert describe_state_diff(net.state_dict(), state) is None
    official = {"state_dict": {"module.i2e.weight": torch.ones(8, 1, 3, 3), "module.fc.weight": torch.ones(3, 4)}}
    torch.save(official, tmp_path / "official.pth")
    off = read_checkpoint(tmp_path / "official.pth")
    assert checkpoint_kind(off) == "official" and list(network_state(off)) == ["fc.weight"]


def test_key_diff_is_readable() -> None:
    own = {"a.weight": torch.zeros(2, 3), "b.weight": torch.zeros(4)}
    state = {"a.weight": torch.zeros(3, 3), "c.bias": torch.zeros(1)}
    text = describe_state_diff(own, state)
    assert text == (
        "missing in checkpoint: b.weight; unexpected in checkpoint: c.bias; "
        "shape mismatch: a.weight: checkpoint (3, 3) vs model (2, 3)"
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_idx_dir(tmp_path_factory.mktemp("faults_data"), n_train=64, n_test=16)


CLI_ENTRIES = {
    "fit --ckpt_path": ("lightning", ["fit", "--ckpt_path", "{ckpt}"]),
    "test --ckpt_path": ("lightning", ["test", "--ckpt_path", "{ckpt}"]),
    "fit --model.init_from (ours)": ("lightning", ["fit", "--model.init_from", "{ckpt}"]),
    "fit --model.init_from (official .pth)": ("official", ["fit", "--model.init_from", "{ckpt}"]),
    "export-onnx --ckpt_path": ("lightning", ["export-onnx", "--ckpt_path", "{ckpt}", "--out", "{out}"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("entry", sorted(CLI_ENTRIES))
def test_crafted_checkpoint_is_refused_by_the_cli(tmp_path: Path, data_dir: Path, entry: str) -> None:
    layout, template = CLI_ENTRIES[entry]
    marker = tmp_path / "ran"
    ckpt = write_code_running_checkpoint(tmp_path / f"evil.{'pth' if layout == 'official' else 'ckpt'}", marker, layout)
    args = [a.format(ckpt=ckpt, out=tmp_path / "x.onnx") for a in template]
    if args[0] != "export-onnx":
        args += ["--config", str(TINY), "--data.init_args.data_dir", str(data_dir), "--trainer.logger", "false"]
        args += ["--trainer.default_root_dir", str(tmp_path / "ckpts")]
    proc = run_cli(args, cwd=tmp_path)
    assert not marker.exists(), f"{entry} ran the command in a crafted checkpoint"
    said = proc.stderr + proc.stdout
    assert proc.returncode == 2, said[-2000:]
    assert REFUSED in said and str(ckpt) in said.replace("\n", ""), said[-2000:]
    assert "Traceback" not in said
