"""LightningCLI's own flags and run folders (issue 11 points 1 and 2), through the real command line."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml

from i2e_lightning.training import SpikingClassifier
from i2e_lightning.training.checkpoint import find_run_checkpoint, next_version
from tests.helpers.cli import TINY, run_checkpoints, run_cli


def _fit(cwd: Path, idx_dir: Path, *extra: str):
    args = ["fit", "--config", str(TINY), "--data.init_args.data_dir", str(idx_dir), *extra]
    return run_cli(args, cwd=cwd, timeout=300)


def _logged(version_dir: Path) -> list[dict[str, str]]:
    with open(version_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_optimizer_flags_train_with_sgd(tmp_path: Path, toy_idx_dir: Path) -> None:
    # the command: the network exists when LightningCLI builds the optimizer from --optimizer
    root = tmp_path / "out"
    proc = _fit(
        tmp_path, toy_idx_dir, "--trainer.default_root_dir", str(root),
        "--optimizer", "SGD", "--optimizer.lr", "0.05", "--optimizer.momentum", "0.9",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "empty parameter list" not in proc.stderr
    ck = torch.load(run_checkpoints(root) / "last.ckpt", map_location="cpu", weights_only=False)
    state = ck["optimizer_states"][0]
    assert state["param_groups"][0]["lr"] == pytest.approx(0.05)
    assert state["param_groups"][0]["momentum"] == pytest.approx(0.9)
    assert all("momentum_buffer" in s for s in state["state"].values())  # SGD's own state, 3 steps taken
    assert ck["global_step"] == 3
    saved = yaml.safe_load((root / "lightning_logs" / "tiny" / "version_0" / "config.yaml").read_text())
    assert saved["optimizer"]["class_path"] == "torch.optim.SGD"
    # the forced callbacks are declared, so the saved config shows them
    assert saved["checkpoint"]["monitor"] == "val/acc" and saved["last_checkpoint"]["every_n_train_steps"] == 50
    assert "lr_monitor" in saved


@pytest.mark.slow
def test_lr_scheduler_alone_pairs_with_the_preset_optimizer(tmp_path: Path, toy_idx_dir: Path) -> None:
    root = tmp_path / "out"
    proc = _fit(
        tmp_path, toy_idx_dir, "--trainer.default_root_dir", str(root), "--trainer.max_epochs", "2",
        "--trainer.limit_train_batches", "2", "--lr_scheduler", "StepLR",
        "--lr_scheduler.step_size", "1", "--lr_scheduler.gamma", "0.5",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _logged(root / "lightning_logs" / "tiny" / "version_0")
    lrs = [float(r["train/lr/weights"]) for r in rows if r.get("train/lr/weights")]
    # tiny.yaml's preset: SGD at lr 0.05; StepLR halves it after the first epoch
    assert lrs[0] == pytest.approx(0.05) and lrs[-1] == pytest.approx(0.025), lrs


@pytest.mark.slow
def test_a_genuine_input_size_error_is_reported(tmp_path: Path, toy_idx_dir: Path) -> None:
    # five stride-2 stages do not fit 32x32 events: the model's own error, not swallowed by a retry
    proc = _fit(tmp_path, toy_idx_dir, "--model.model_kwargs", "{channels: [4, 4, 4, 4, 4, 4]}")
    assert proc.returncode == 2
    assert "too small" in proc.stderr and "input_size" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_default_root_dir_holds_every_output_and_runs_never_mix(tmp_path: Path, toy_idx_dir: Path) -> None:
    cwd, root = tmp_path / "cwd", tmp_path / "out"
    cwd.mkdir()
    for _ in range(2):
        proc = _fit(cwd, toy_idx_dir, "--trainer.default_root_dir", str(root), "--trainer.limit_train_batches", "2")
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(cwd.iterdir()) == []  # nothing written where the command ran
    runs = root / "lightning_logs" / "tiny"
    assert sorted(p.name for p in runs.iterdir()) == ["version_0", "version_1"]
    for v in (0, 1):
        folder = runs / f"version_{v}"
        assert (folder / "config.yaml").is_file() and (folder / "metrics.csv").is_file()
        names = sorted(p.name for p in (folder / "checkpoints").iterdir())
        assert names[-1] == "last.ckpt" and len(names) == 2 and names[0].startswith("best")
    # `last` is the newest run; `best` what that run's ModelCheckpoint recorded
    assert find_run_checkpoint(runs, "last") == runs / "version_1" / "checkpoints" / "last.ckpt"
    test = run_cli(
        ["test", "--config", str(TINY), "--data.init_args.data_dir", str(toy_idx_dir),
         "--trainer.default_root_dir", str(root), "--ckpt_path", "best"],
        cwd=cwd,
    )  # fmt: skip
    assert test.returncode == 0, test.stderr[-3000:]
    assert str(runs / "version_1" / "checkpoints" / "best-") in test.stdout + test.stderr


def _fake_ckpt(path: Path, step: int, best: Path | None, score: float | None = None) -> None:
    state = {"monitor": "val/acc", "best_model_path": str(best) if best else "", "best_model_score": score}
    key = "ModelCheckpoint{'monitor': 'val/acc', 'mode': 'max'}"
    last = {"monitor": None, "best_model_path": "", "best_model_score": None}
    torch.save(
        {
            "global_step": step,
            "pytorch-lightning_version": "2.6",
            "state_dict": {},
            "callbacks": {key: state, "Last": last},
        },
        path,
    )


def test_best_is_the_recorded_best_not_the_newest_file(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    folder = runs / "version_0" / "checkpoints"
    folder.mkdir(parents=True)
    good, worse = folder / "best-epoch001-acc0.9000.ckpt", folder / "best-epoch004-acc0.5000.ckpt"
    _fake_ckpt(good, 10, good, 0.9)
    # written later (newer file) but not the best: a leftover of save_top_k > 1, say
    _fake_ckpt(worse, 40, good, 0.9)
    _fake_ckpt(folder / "last.ckpt", 50, good, 0.9)
    assert find_run_checkpoint(runs, "best") == good
    assert find_run_checkpoint(runs, "last") == folder / "last.ckpt"
    (folder / "last.ckpt").rename(tmp_path / "away.ckpt")
    assert find_run_checkpoint(runs, "best") == good  # without last.ckpt: the newest checkpoint's record
    (tmp_path / "away.ckpt").rename(folder / "last.ckpt")
    # a newer version without checkpoints (a run that died at once) is skipped; none at all: None
    (runs / "version_1" / "checkpoints").mkdir(parents=True)
    assert find_run_checkpoint(runs, "best") == good and next_version(runs) == 2
    assert find_run_checkpoint(tmp_path / "nothing", "last") is None
    good.unlink()
    with pytest.raises(FileNotFoundError, match="best-epoch001-acc0.9000.ckpt.*is gone"):
        find_run_checkpoint(runs, "best")


def test_the_network_exists_after_construction_with_the_data_facts() -> None:
    # what the CLI's links give the model: parameters at once, sized for the events
    model = SpikingClassifier("spiking_cnn", num_classes=7, in_channels=2, input_size=(20, 12))
    assert model.net is not None and sum(p.numel() for p in model.parameters()) > 0
    assert model(torch.zeros(2, 3, 2, 20, 12)).shape == (3, 7)
    resnet = SpikingClassifier("ms_resnet18", num_classes=5, in_channels=2, input_size=64)  # takes any size
    assert resnet.net is not None


@pytest.mark.slow
def test_fast_dev_run_writes_nothing(tmp_path: Path, toy_idx_dir: Path) -> None:
    # a dry run: no checkpoint (Lightning's final save_last would write one), no run folder
    proc = _fit(tmp_path, toy_idx_dir, "--trainer.fast_dev_run", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(tmp_path.iterdir()) == []
