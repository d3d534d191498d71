"""User callbacks and loggers replace ours (issue 11 point 3), through the real command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from lightning.pytorch.loggers import CSVLogger

from i2e_lightning.commands import lightning_cli
from tests.helpers.cli import TINY, run_cli


def _fit(tmp_path: Path, idx_dir: Path, *extra: str):
    args = ["fit", "--config", str(TINY), "--data.init_args.data_dir", str(idx_dir)]
    return run_cli([*args, "--trainer.default_root_dir", str(tmp_path / "ckpts"), *extra], cwd=tmp_path, timeout=300)


@pytest.mark.slow
def test_a_named_progress_bar_replaces_ours_and_no_already_configured_message(tmp_path: Path, toy_idx_dir: Path):
    plain = _fit(tmp_path, toy_idx_dir, "--trainer.limit_train_batches", "2")
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert "already configured" not in plain.stdout + plain.stderr
    assert "Params" in plain.stdout + plain.stderr  # our model summary still printed
    tqdm = _fit(
        tmp_path, toy_idx_dir, "--trainer.limit_train_batches", "2",
        "--trainer.callbacks", "lightning.pytorch.callbacks.TQDMProgressBar",
    )  # fmt: skip
    out = tqdm.stdout + tqdm.stderr
    assert tqdm.returncode == 0 and "multiple progress bar" not in out, out[-2000:]
    assert "it/s]" in out or "s/it]" in out  # tqdm's own bar, not rich's


def test_callback_classes_found_from_the_config() -> None:
    named = [{"class_path": "lightning.pytorch.callbacks.TQDMProgressBar", "init_args": {}}]
    classes = lightning_cli._callback_classes(named)
    from lightning.pytorch.callbacks import ModelSummary, ProgressBar

    assert lightning_cli._any_subclass(classes, ProgressBar) and not lightning_cli._any_subclass(classes, ModelSummary)
    assert lightning_cli._callback_classes(None) == []


def test_default_logger_follows_lightnings_choice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(lightning_cli, "_TENSORBOARD_AVAILABLE", False)
    monkeypatch.setattr(lightning_cli, "_TENSORBOARDX_AVAILABLE", False)
    assert type(lightning_cli.default_logger("run", str(tmp_path))) is CSVLogger
    monkeypatch.setattr(lightning_cli, "_TENSORBOARD_AVAILABLE", True)
    made: list[dict] = []  # TensorBoard itself is not installed here: record what would be built

    class FakeTensorBoard:
        def __init__(self, **kwargs) -> None:  # noqa: ANN003
            made.append(kwargs)

    monkeypatch.setattr(lightning_cli, "TensorBoardLogger", FakeTensorBoard)
    assert isinstance(lightning_cli.default_logger("run", str(tmp_path)), FakeTensorBoard)
    assert made == [{"save_dir": str(tmp_path), "name": "run"}]
