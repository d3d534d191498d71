"""Exact resume: the DataModule's random streams and its place in the epoch are part of every checkpoint,
so a run stopped mid-epoch and resumed ends with the weights of the uninterrupted run, bit for bit (CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from i2e_lightning.data import FashionMNISTDataModule
from i2e_lightning.training import SpikingClassifier
from tests.helpers.cli import TINY, cli_env, run_checkpoints, run_cli
from tests.helpers.datasets import make_idx_dir
from tests.helpers.probe import write_probe
from tests.helpers.trainer import fake_trainer

AUGMENTED = {"augment": "full", "per_sample_pairs": True}


def _dm(data: Path, **kw) -> FashionMNISTDataModule:
    return FashionMNISTDataModule(data_dir=str(data), batch_size=8, val_size=16, timesteps=2, subset=120, **kw)


def _train_batches(dm: FashionMNISTDataModule, loader_iter, n: int) -> list[torch.Tensor]:
    out = []
    for _ in range(n):
        images, labels = next(loader_iter)
        events, _ = dm.on_after_batch_transfer((images, labels), 0)
        out.append(torch.cat([events.flatten(), labels.float()]))
    return out


def test_state_dict_resumes_order_augmentation_and_pairs_mid_epoch(toy_idx_dir: Path) -> None:
    dm = _dm(toy_idx_dir, **AUGMENTED)
    dm.trainer = fake_trainer(training=True)
    dm.setup("fit")
    it = iter(dm.train_dataloader())
    _train_batches(dm, it, 4)
    state = dm.state_dict()
    assert state["sampler"]["skip"] == 4 * 8 and set(state["generators"]) == {"pairs", "augment", "order"}
    rest = _train_batches(dm, it, 11)  # the other 11 of 15 batches of the epoch
    next_epoch = _train_batches(dm, iter(dm.train_dataloader()), 3)

    again = _dm(toy_idx_dir, **AUGMENTED)
    again.trainer = fake_trainer(training=True)
    again.setup("fit")
    again.load_state_dict(state)
    it = iter(again.train_dataloader())
    resumed = _train_batches(again, it, 11)
    assert all(torch.equal(a, b) for a, b in zip(rest, resumed, strict=True))
    with pytest.raises(StopIteration):
        next(it)  # the epoch ends where the uninterrupted one ends
    assert all(
        torch.equal(a, b)
        for a, b in zip(next_epoch, _train_batches(again, iter(again.train_dataloader()), 3), strict=True)
    )

    # without the state the same run draws other samples and other augmentations: the check above can fail
    fresh = _dm(toy_idx_dir, **AUGMENTED)
    fresh.trainer = fake_trainer(training=True)
    fresh.setup("fit")
    assert not torch.equal(_train_batches(fresh, iter(fresh.train_dataloader()), 1)[0], rest[0])


def test_state_of_another_rank_is_not_loaded(toy_idx_dir: Path) -> None:
    dm = _dm(toy_idx_dir)
    state = dm.state_dict()  # rank 0's streams
    rank1 = _dm(toy_idx_dir)
    rank1.trainer = fake_trainer(training=True, rank=1)
    rank1.setup("fit")
    before = rank1.converter.generator.get_state()
    rank1.load_state_dict(state)
    assert torch.equal(rank1.converter.generator.get_state(), before)


class _StopAt(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("stopped on purpose")


@pytest.mark.slow
def test_fit_stopped_mid_epoch_resumes_to_identical_weights(tmp_path: Path, toy_idx_dir: Path, fast_trainer) -> None:
    def run(root: Path, stop: int | None = None, ckpt: Path | None = None) -> SpikingClassifier:
        L.seed_everything(0)
        model = SpikingClassifier("spiking_cnn", model_kwargs={"channels": [4, 8]}, lr=0.05)
        every = ModelCheckpoint(dirpath=root, every_n_train_steps=3, save_last=True, save_top_k=0)
        callbacks = [every] + ([_StopAt(stop)] if stop else [])
        trainer = fast_trainer(max_epochs=2, limit_train_batches=None, callbacks=callbacks, enable_checkpointing=True)
        try:
            trainer.fit(model, datamodule=_dm(toy_idx_dir, **AUGMENTED), ckpt_path=ckpt)
        except RuntimeError as exc:
            assert "on purpose" in str(exc)
        return model

    reference = run(tmp_path / "a")
    run(tmp_path / "b", stop=7)  # 15 batches an epoch; last.ckpt written at step 6
    assert torch.load(tmp_path / "b" / "last.ckpt", weights_only=False)["global_step"] == 6
    resumed = run(tmp_path / "b", ckpt=tmp_path / "b" / "last.ckpt")
    ref, got = reference.state_dict(), resumed.state_dict()
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.slow
def test_kill_9_mid_epoch_and_resume_last_gives_the_uninterrupted_weights(tmp_path: Path) -> None:
    data = make_idx_dir(tmp_path / "data", n_train=400, n_test=48)
    probe = write_probe(tmp_path / "probe")
    slow = tmp_path / "slow.yaml"
    slow.write_text(
        "trainer:\n  callbacks:\n    - class_path: i2e_probe.Slow\n      init_args:\n        seconds: 0.1\n"
    )

    def args(run: str) -> list[str]:
        slowed = ["--config", str(slow)] if run == "killed" else []  # the sleeps change no weight
        return [
            "fit", "--config", str(TINY), *slowed,
            "--data.init_args.data_dir", str(data), "--data.init_args.subset", "320",
            "--data.init_args.augment", "full", "--data.init_args.per_sample_pairs", "true",
            "--trainer.default_root_dir", str(tmp_path / run), "--last_checkpoint.every_n_train_steps", "5",
            "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "30", "--trainer.logger", "false",
        ]  # fmt: skip

    whole = run_cli(args("whole"), cwd=tmp_path, timeout=240, extra_pythonpath=probe)
    assert whole.returncode == 0, whole.stderr[-3000:]
    last = run_checkpoints(tmp_path / "killed", "tiny", version=0) / "last.ckpt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "i2e_lightning", *args("killed")],
        cwd=tmp_path,
        env=cli_env(probe),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    killed_at = None
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if last.is_file():
                step = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
                if 10 <= step < 25:  # mid first epoch (30 batches), with a checkpoint on disk
                    os.kill(proc.pid, signal.SIGKILL)
                    killed_at = step
                    break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    assert killed_at is not None, "no mid-epoch checkpoint seen before the run ended"
    resumed = run_cli([*args("killed"), "--ckpt_path", "last"], cwd=tmp_path, timeout=240, extra_pythonpath=probe)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ref, got = _weights(run_checkpoints(tmp_path / "whole", "tiny", version=0) / "last.ckpt"), _weights(last)
    assert torch.load(last, weights_only=False)["global_step"] == 60
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref), f"killed at step {killed_at}"


@pytest.mark.slow
@pytest.mark.parametrize(("data_seed", "expected"), [(None, 5), (7, 7)])
def test_cli_seed_everything_seeds_the_data_unless_it_has_its_own(
    tmp_path: Path, toy_idx_dir: Path, data_seed: int | None, expected: int
) -> None:
    probe = write_probe(tmp_path / "probe")
    extra = tmp_path / "probe.yaml"
    extra.write_text(
        "trainer:\n  callbacks:\n    - class_path: i2e_probe.PairProbe\n"
        f"      init_args:\n        out_dir: {tmp_path / 'draws'}\n"
    )
    args = [
        "fit", "--config", str(TINY), "--config", str(extra), "--seed_everything", "5",
        "--data.init_args.data_dir", str(toy_idx_dir), "--trainer.default_root_dir", str(tmp_path / "ckpts"),
        "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1", "--trainer.logger", "false",
    ]  # fmt: skip
    if data_seed is not None:
        args += ["--data.init_args.seed", str(data_seed)]
    proc = run_cli(args, cwd=tmp_path, extra_pythonpath=probe)
    assert proc.returncode == 0, proc.stderr[-3000:]
    streams = json.loads((tmp_path / "draws" / "rank0.json").read_text())["streams"]
    assert streams == {"augment": expected + 0x5EED0000, "order": expected + 0x0DE50000, "pairs": expected}
