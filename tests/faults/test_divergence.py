"""Divergence is caught: a NaN/Inf loss stops the run naming it (or skips the step when asked), and
no checkpoint is ever written with non-finite weights."""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from i2e_lightning.data import FashionMNISTDataModule
from i2e_lightning.models.checkpoint import read_checkpoint
from i2e_lightning.training import FiniteLossGuard, NonFiniteError, SpikingClassifier
from tests.helpers.cli import TINY, run_cli
from tests.helpers.probe import write_probe

SMALL = {"channels": [4, 8]}


class PoisonedBatches(L.Callback):
    """Turns the events of the given training steps into ``value`` (NaN or Inf), as a bad batch would."""

    def __init__(self, steps: set[int], value: float = float("nan")) -> None:
        self.steps, self.value = steps, value

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step in self.steps:
            batch[0].fill_(self.value)


class PoisonedLoss(SpikingClassifier):
    """Its training loss becomes ``value`` at the given steps (a loss blowing up)."""

    def __init__(self, steps: set[int], value: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.poison_steps, self.poison_value = steps, value

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * self.poison_value if self.trainer.global_step in self.poison_steps else loss


def _fit(tmp_path: Path, idx_dir: Path, callbacks: list, fast_trainer, steps: int = 6, module=None):
    dm = FashionMNISTDataModule(data_dir=str(idx_dir), batch_size=8, val_size=16, timesteps=2, subset=64)
    module = module or SpikingClassifier("spiking_cnn", model_kwargs=SMALL, lr=0.05)
    trainer = fast_trainer(limit_train_batches=steps, callbacks=callbacks, enable_checkpointing=True)
    trainer.fit(module, datamodule=dm)
    return module


def _finite(module: SpikingClassifier) -> bool:
    return all(bool(p.isfinite().all()) for p in module.net.state_dict().values() if p.is_floating_point())


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_loss_stops_the_run_naming_it(tmp_path: Path, toy_idx_dir: Path, fast_trainer, value) -> None:
    every_step = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=1, save_top_k=-1)
    module = PoisonedLoss({3}, value, arch="spiking_cnn", model_kwargs=SMALL, lr=0.05)
    with pytest.raises(NonFiniteError, match=r"training loss is (nan|inf) at epoch 0, global step 3.*gradient_clip"):
        _fit(tmp_path, toy_idx_dir, [every_step], fast_trainer, module=module)
    saved = sorted((tmp_path / "ck").glob("*.ckpt"))
    assert len(saved) == 3  # steps 1-3, all before the bad batch
    for path in saved:
        state = read_checkpoint(path)["state_dict"]
        assert all(bool(v.isfinite().all()) for v in state.values() if v.is_floating_point()), path


def test_non_finite_gradient_of_a_finite_loss_stops_the_run(tmp_path: Path, toy_idx_dir: Path, fast_trainer) -> None:
    # NaN events: no neuron fires, the loss stays finite, but the surrogate gradients are NaN
    with pytest.raises(NonFiniteError, match=r"the gradient of net\.\S+ is NaN/Inf .* global step 1"):
        _fit(tmp_path, toy_idx_dir, [PoisonedBatches({1})], fast_trainer)


def test_skip_policy_skips_only_the_bad_steps(tmp_path: Path, toy_idx_dir: Path, fast_trainer) -> None:
    guard = FiniteLossGuard(policy="skip")
    module = _fit(tmp_path, toy_idx_dir, [guard, PoisonedBatches({2, 4})], fast_trainer)
    assert guard.skipped == 2 and _finite(module)
    assert module.trainer.global_step == 6


def test_skip_policy_gives_up_after_too_many_in_a_row(tmp_path: Path, toy_idx_dir: Path, fast_trainer) -> None:
    guard = FiniteLossGuard(policy="skip", max_consecutive_skips=2)
    with pytest.raises(NonFiniteError, match="for 3 steps in a row"):
        _fit(tmp_path, toy_idx_dir, [guard, PoisonedBatches({1, 2, 3})], fast_trainer)


def test_checkpoint_with_non_finite_weights_is_never_written(tmp_path: Path, toy_idx_dir: Path, fast_trainer) -> None:
    module = _fit(tmp_path, toy_idx_dir, [], fast_trainer, steps=2)
    with torch.no_grad():
        weight = next(module.net.parameters())
        weight[(0,) * weight.dim()] = float("nan")
    with pytest.raises(NonFiniteError, match="holds NaN/Inf"):
        module.trainer.save_checkpoint(tmp_path / "bad.ckpt")
    assert not (tmp_path / "bad.ckpt").exists()


def test_bad_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="'stop' or 'skip'"):
        FiniteLossGuard(policy="ignore")


@pytest.mark.slow
def test_cli_reports_divergence_in_one_line(tmp_path: Path, toy_idx_dir: Path) -> None:
    probe = write_probe(tmp_path / "probe")
    (probe / "i2e_poison.py").write_text(
        "import lightning as L\n"
        "class Poison(L.Callback):\n"
        "    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):\n"
        "        if trainer.global_step == 2:\n"
        "            batch[0].fill_(float('nan'))\n"
    )
    args = ["fit", "--config", str(TINY), "--data.init_args.data_dir", str(toy_idx_dir), "--trainer.logger", "false"]
    args += ["--trainer.default_root_dir", str(tmp_path / "ck"), "--last_checkpoint.every_n_train_steps", "1"]
    args += ["--trainer.callbacks+=i2e_poison.Poison"]
    proc = run_cli(args, cwd=tmp_path, extra_pythonpath=probe)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert re.search(r"error: the gradient of net\.\S+ is NaN/Inf .*at epoch 0, global step 2", proc.stderr)
    assert "Traceback" not in proc.stderr
    last = read_checkpoint(next((tmp_path / "ck").rglob("last.ckpt")))
    assert last["global_step"] == 2
    assert all(bool(v.isfinite().all()) for v in last["state_dict"].values() if v.is_floating_point())
