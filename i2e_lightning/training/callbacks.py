"""Callbacks used by the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter


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
        print(f"[i2e] wrote {n} predictions to {path}{acc}")
