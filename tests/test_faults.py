"""Faults: kill -9 mid-epoch then resume with --ckpt_path last; truncated checkpoint; missing data; bad config.

All through the real command line in subprocesses (exit codes and stderr as a user sees them).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers.cli import TINY, cli_env, run_checkpoints, run_cli
from tests.helpers.datasets import make_idx_dir
from tests.helpers.probe import write_probe


def _read(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_last(tmp_path: Path) -> None:
    data = make_idx_dir(tmp_path / "data", n_train=400, n_test=48)
    probe = write_probe(tmp_path / "probe")
    slow = tmp_path / "slow.yaml"
    slow.write_text(
        "trainer:\n  callbacks:\n    - class_path: i2e_probe.Slow\n      init_args:\n        seconds: 0.1\n"
    )
    args = [
        "fit", "--config", str(TINY), "--config", str(slow),
        "--data.init_args.data_dir", str(data), "--data.init_args.subset", "320",
        "--trainer.default_root_dir", str(tmp_path / "ckpts"), "--last_checkpoint.every_n_train_steps", "5",
        "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "30", "--trainer.logger", "false",
    ]  # fmt: skip
    last = run_checkpoints(tmp_path / "ckpts", "tiny", version=0) / "last.ckpt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "i2e_lightning", *args],
        cwd=tmp_path,
        env=cli_env(probe),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed_at = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if last.is_file():
                step = _read(last)["global_step"]
                if 10 <= step < 25:  # mid first epoch (30 batches), with a checkpoint on disk
                    os.kill(proc.pid, signal.SIGKILL)
                    killed_at = step
                    break
            time.sleep(0.05)
    finally:
        if proc.poll() is None and killed_at is None:
            proc.kill()
        proc.wait(timeout=30)
    assert killed_at is not None, f"no mid-epoch checkpoint seen; stderr: {proc.stderr.read()[-2000:]}"
    assert proc.returncode == -signal.SIGKILL

    done = run_cli([*args, "--ckpt_path", "last"], cwd=tmp_path, timeout=150, extra_pythonpath=probe)
    assert done.returncode == 0, done.stderr[-3000:]
    final = _read(last)
    assert final["global_step"] == 60  # 2 x 30 steps: the resumed run did not redo or skip batches
    assert "Restoring states from the checkpoint" in done.stderr + done.stdout


@pytest.mark.slow
def test_truncated_checkpoint_cli_message(tmp_path: Path) -> None:
    bad = tmp_path / "half.ckpt"
    src = tmp_path / "full.ckpt"
    torch.save({"state_dict": {"w": torch.randn(4096)}, "pytorch-lightning_version": "2.6"}, src)
    bad.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    data = make_idx_dir(tmp_path / "data", n_train=40, n_test=20)
    proc = run_cli(
        ["validate", "--config", str(TINY), "--data.init_args.data_dir", str(data), "--ckpt_path", str(bad)],
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "half.ckpt" in proc.stderr and "truncated or corrupt" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_missing_dataset_and_bad_key_cli_messages(tmp_path: Path) -> None:
    proc = run_cli(["fit", "--config", str(TINY), "--data.init_args.data_dir", str(tmp_path / "nothing")], cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "Fashion-MNIST not found" in proc.stderr and "nothing" in proc.stderr

    proc = run_cli(["fit", "--config", str(TINY), "--model.lerning_rate", "0.1"], cwd=tmp_path)
    assert proc.returncode == 2 and "lerning_rate" in proc.stderr and "Traceback" not in proc.stderr
