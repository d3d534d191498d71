"""Checkpoint writes: last.ckpt whatever the score, and faults of the checkpoint folder named before they cost time.

Issue 15, points 4 and 8: ``last.ckpt`` was refreshed only with a new best (so ``--ckpt_path last`` retrained
finished epochs); a read-only checkpoint folder was found only after the first epoch; a full disk ended in a
traceback. The folder faults use a real tmpfs mount (read-only, or a few KiB) where this machine allows mounting.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.plugins.io import TorchCheckpointIO

from i2e_lightning.training.callbacks import checkpoint_callbacks
from i2e_lightning.training.checkpoint import AtomicCheckpointIO, CheckpointWriteError, ensure_writable_dir
from tests.helpers.cli import TINY, run_cli


class NeverImproves(BoringModel):
    """val/acc is the same every epoch: only the first epoch is ever a 'best'."""

    def validation_step(self, batch, batch_idx):  # noqa: ANN001, ANN201 - Lightning's signature
        self.log("val/acc", 0.5)
        return super().validation_step(batch, batch_idx)


class LastSeen(L.Callback):
    """At the start of each training batch, the global step stored in last.ckpt (None if absent)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seen: list[tuple[int, int | None]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        last = self.folder / "last.ckpt"
        step = torch.load(last, weights_only=False)["global_step"] if last.is_file() else None
        self.seen.append((trainer.global_step, step))


def _fit(folder: Path, every: int, epochs: int = 3, batches: int = 5) -> LastSeen:
    probe = LastSeen(folder)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        limit_train_batches=batches,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[probe, *checkpoint_callbacks(folder, every_n_train_steps=every)],
        plugins=[AtomicCheckpointIO()],
    )
    trainer.fit(NeverImproves())
    return probe


def test_last_ckpt_written_at_every_epoch_end_without_improvement(tmp_path: Path) -> None:
    _fit(tmp_path, every=0)
    last = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert last["epoch"] == 2 and last["global_step"] == 15  # the final epoch, not the first (the only 'best')
    assert len(list(tmp_path.glob("best*.ckpt"))) == 1


def test_last_ckpt_written_every_n_steps_and_at_the_epoch_end(tmp_path: Path) -> None:
    probe = _fit(tmp_path, every=2, epochs=3)
    seen = dict(probe.seen)
    # before the batch of step s, last.ckpt holds the latest multiple of 2, or an epoch end (steps 5, 10)
    assert [seen[s] for s in range(1, 15)] == [None, 2, 2, 4, 5, 6, 6, 8, 8, 10, 10, 12, 12, 14]
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["global_step"] == 15  # the last epoch's end


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator:
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], capture_output=True)


def test_read_only_checkpoint_folder_found_before_training(mount_tmpfs) -> None:
    ro = mount_tmpfs("ro,size=1m")
    with pytest.raises(
        CheckpointWriteError, match="cannot write checkpoint .*Read-only file system.*--trainer.default_root_dir"
    ):
        ensure_writable_dir(ro / "run")


def test_full_disk_checkpoint_save_is_one_error_and_keeps_the_previous_file(mount_tmpfs) -> None:
    small = mount_tmpfs("size=64k")
    io = AtomicCheckpointIO()
    target = small / "last.ckpt"
    io.save_checkpoint({"w": torch.zeros(4)}, target)
    before = target.read_bytes()
    with pytest.raises(CheckpointWriteError, match="cannot write checkpoint .*last.ckpt.*free space"):
        io.save_checkpoint({"w": torch.zeros(200_000)}, target)  # 800 kB into 64 kB
    assert target.read_bytes() == before and sorted(p.name for p in small.iterdir()) == ["last.ckpt"]


def test_lightnings_own_save_loses_the_previous_checkpoint_on_a_full_disk(mount_tmpfs) -> None:
    # why AtomicCheckpointIO stays (issue 11 point 11): Lightning's TorchCheckpointIO writes a temporary file in
    # /tmp and moves it over the target, so a full checkpoint disk truncates the previous last.ckpt
    small = mount_tmpfs("size=64k")
    target = small / "last.ckpt"
    TorchCheckpointIO().save_checkpoint({"w": torch.zeros(4)}, target)
    before = target.read_bytes()
    with pytest.raises(OSError, match="No space left"):
        TorchCheckpointIO().save_checkpoint({"w": torch.zeros(200_000)}, target)
    assert target.read_bytes() != before  # the resume point is gone; ours keeps it (test above)


@pytest.mark.slow
def test_fit_into_a_read_only_folder_stops_at_once_with_one_line(
    tmp_path: Path, toy_idx_dir: Path, mount_tmpfs
) -> None:
    ro = mount_tmpfs("ro,size=1m")
    args = ["fit", "--config", str(TINY), "--data.init_args.data_dir", str(toy_idx_dir)]
    proc = run_cli([*args, "--trainer.default_root_dir", str(ro / "ckpts"), "--trainer.logger", "false"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Read-only file system" in proc.stderr
    assert "--trainer.default_root_dir" in proc.stderr and "Epoch" not in proc.stdout + proc.stderr
