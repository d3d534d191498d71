"""Callbacks used by the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info


class PredictionWriter(BasePredictionWriter):
    """Save the predictions of ``predict`` (``pred``, ``probs`` and ``target`` when known) to one ``.pt`` file.

    Under DDP every rank writes ``<stem>.rank<r>.pt`` with the dataset ``indices`` of its samples.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__(write_interval="epoch")
        self.path = Path(path)

    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        # one dataloader: a list of per-batch dicts; several: a list of such lists
        batches = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        out: dict[str, Any] = {}
        for key in ("pred", "probs", "target"):
            parts = [b[key].cpu() for b in batches if isinstance(b, dict) and key in b]
            if parts:
                out[key] = torch.cat(parts)
        indices = batch_indices[0] if batch_indices and isinstance(batch_indices[0], list) else batch_indices
        flat = [i for batch in (indices or []) if batch is not None for i in batch]
        if flat:
            out["indices"] = torch.as_tensor(flat)
        path = self.path
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(out, path)
        n = len(out.get("pred", []))
        acc = ""
        if "target" in out and n:
            acc = f", accuracy {float((out['pred'] == out['target']).float().mean()):.4f}"
        rank_zero_info(f"wrote {n} predictions to {path}{acc}")


class NonFiniteError(ValueError):
    """A NaN/Inf loss stopped the run, or non-finite weights were about to be saved."""


class FiniteLossGuard(L.Callback):
    """Catch divergence: a NaN/Inf training loss stops the run with a message naming it, or (``policy="skip"``)
    skips that optimizer step; a checkpoint is never written with non-finite weights.

    ``SpikingClassifier`` adds one with the defaults unless the trainer already has one, so
    ``--trainer.callbacks+=i2e_lightning.training.FiniteLossGuard --trainer.callbacks.policy=skip``
    switches to skipping. The loss is checked before ``backward``: a stopped run's weights are those
    of the last good step. Under DDP the ranks decide together (one rank's NaN stops or skips on all).

    Args:
        policy: ``"stop"`` (raise :class:`NonFiniteError`) or ``"skip"`` (drop the step's gradients).
        max_consecutive_skips: with ``"skip"``, stop anyway after this many non-finite steps in a row.
    """

    def __init__(self, policy: str = "stop", max_consecutive_skips: int = 10) -> None:
        if policy not in ("stop", "skip"):
            raise ValueError(f"FiniteLossGuard policy must be 'stop' or 'skip', got {policy!r}")
        if max_consecutive_skips < 1:
            raise ValueError(f"max_consecutive_skips must be >= 1, got {max_consecutive_skips}")
        self.policy = policy
        self.max_consecutive_skips = int(max_consecutive_skips)
        self.skipped = 0  # steps skipped in this run
        self._in_a_row = 0
        self._skip_this_step = False
        self._buffers: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _decide(self, trainer: L.Trainer, bad: bool) -> bool:
        return trainer.strategy.reduce_boolean_decision(bad, all=False) if trainer.world_size > 1 else bad

    def _handle(self, trainer: L.Trainer, what: str) -> None:
        where = f"at epoch {trainer.current_epoch}, global step {trainer.global_step}"
        self._in_a_row += 1
        if self.policy == "stop" or self._in_a_row > self.max_consecutive_skips:
            times = "" if self.policy == "stop" else f" for {self._in_a_row} steps in a row"
            raise NonFiniteError(
                f"{what}{times} {where}: the run diverged (no checkpoint holds these values); lower model.lr, "
                "clip gradients (--trainer.gradient_clip_val 1.0) or check the data; to skip such steps instead: "
                "--trainer.callbacks+=i2e_lightning.training.FiniteLossGuard --trainer.callbacks.policy=skip"
            )
        self._skip_this_step = True
        self.skipped += 1
        from lightning.pytorch.utilities import rank_zero_warn

        rank_zero_warn(f"{what} {where}: step skipped ({self.skipped} so far)")

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.policy == "skip":  # a skipped step must also undo what its forward did to BatchNorm statistics
            self._buffers = [(b, b.detach().clone()) for b in pl_module.buffers() if b.is_floating_point()]

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        self._skip_this_step = False
        if self._decide(trainer, not bool(torch.isfinite(loss.detach()).all())):
            value = float(loss.detach().float().reshape(-1)[0]) if loss.numel() else float("nan")
            self._handle(trainer, f"training loss is {value}")

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        # a finite loss can still give NaN/Inf gradients (e.g. a surrogate gradient of NaN input); with a
        # GradScaler (fp16) Inf gradients are normal and the scaler skips the step itself
        if not self._skip_this_step and getattr(trainer.precision_plugin, "scaler", None) is None:
            named = [(n, p.grad) for n, p in pl_module.named_parameters() if p.grad is not None]
            if named:
                norms = torch._foreach_norm([g.detach() for _, g in named])
                finite = torch.isfinite(torch.stack([n.float() for n in norms]))
                if self._decide(trainer, not bool(finite.all())):
                    first = named[int((~finite).nonzero()[0])][0] if not bool(finite.all()) else "a parameter"
                    self._handle(trainer, f"the gradient of {first} is NaN/Inf (the loss was finite)")
        if self._skip_this_step:
            # parameters without a gradient are left alone by every torch optimizer (no decay, no momentum)
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None
            with torch.no_grad():
                for buffer, saved in getattr(self, "_buffers", []):
                    buffer.copy_(saved)
        else:
            self._in_a_row = 0

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        for key, value in (checkpoint.get("state_dict") or {}).items():
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(value.isfinite().all()):
                raise NonFiniteError(
                    f"not writing a checkpoint at epoch {trainer.current_epoch}, global step {trainer.global_step}: "
                    f"the weight {key} holds NaN/Inf (the run diverged); lower model.lr or clip gradients "
                    "(--trainer.gradient_clip_val 1.0)"
                )


class LastCheckpoint(ModelCheckpoint):
    """Refresh only ``last.ckpt``: at every epoch end and every ``every_n_train_steps`` steps, improved or not.

    Lightning's ``save_last=True`` follows the top-k saves, so beside a ``monitor`` it writes ``last.ckpt``
    only with a new best: ``--ckpt_path last`` would then retrain finished epochs. ``dirpath=None`` puts
    it where Lightning puts every checkpoint: ``<log_dir>/checkpoints`` of the run's version folder.
    """

    def __init__(self, dirpath: str | Path | None = None, every_n_train_steps: int = 0) -> None:
        super().__init__(
            dirpath=dirpath,
            save_top_k=0,
            save_last=True,
            every_n_train_steps=every_n_train_steps or None,
            enable_version_counter=False,
        )
        # also at epoch ends (ModelCheckpoint takes one trigger; both are wanted here)
        self._every_n_epochs = 1

    def _save_topk_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict[str, torch.Tensor]) -> None:
        # no top-k files: mark this step as saved, so that the base class writes last.ckpt now
        self._last_global_step_saved = trainer.global_step

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # an epoch end always writes: a step-triggered save at the same step lacks the finished epoch
        self._last_global_step_saved = -1
        super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_global_step_saved = -1
        super().on_validation_end(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning's final save_last ignores fast_dev_run (it would write a last.ckpt a dry run should not)
        if not trainer.fast_dev_run:
            super().on_train_end(trainer, pl_module)


#: the best checkpoint's settings (``--checkpoint.*`` defaults of the CLI; ``dirpath=None``: the run's folder)
BEST_CHECKPOINT = {
    "filename": "best-epoch{epoch:03d}-acc{val/acc:.4f}",
    "auto_insert_metric_name": False,
    "monitor": "val/acc",
    "mode": "max",
    "save_top_k": 1,
    "enable_version_counter": False,
}


def checkpoint_callbacks(folder: str | Path | None = None, every_n_train_steps: int = 0) -> list[ModelCheckpoint]:
    """The run's checkpoints: the best by ``val/acc`` and ``last.ckpt`` (epoch ends and every N steps).

    The best comes first: at an epoch end ``last.ckpt`` then records the best score just decided.
    ``folder=None``: the run's version folder (``<log_dir>/checkpoints``), as Lightning decides it.
    """
    return [ModelCheckpoint(dirpath=folder, **BEST_CHECKPOINT), LastCheckpoint(folder, every_n_train_steps)]
