"""A fast CPU Trainer for in-process tests, and a stand-in trainer for calling DataModule hooks directly."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import lightning as L


def fast_trainer(root: Path, **overrides: Any) -> L.Trainer:
    """One CPU device, one short epoch, nothing printed or written outside ``root`` (overrides win)."""
    options: dict[str, Any] = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
    )
    options.update(overrides)
    return L.Trainer(**options)


def fake_trainer(training: bool, rank: int = 0) -> types.SimpleNamespace:
    """What a DataModule reads of its trainer (``training``, ``global_rank``), without a Trainer."""
    return types.SimpleNamespace(training=training, global_rank=rank)
