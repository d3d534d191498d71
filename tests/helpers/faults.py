"""Crafted bad inputs for the fault-injection suite (``tests/faults/``).

``write_code_running_checkpoint`` writes a checkpoint whose pickle, when loaded without
``weights_only``, runs a shell command that creates ``marker``: a test passes when the file is
refused and ``marker`` never appears.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import torch


class _RunsCommand:
    """Unpickling this calls ``os.system(command)``, as a malicious checkpoint would."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


def write_code_running_checkpoint(path: Path, marker: Path, layout: str = "lightning") -> Path:
    """A checkpoint in our Lightning ``layout`` or the ``"official"`` ``.pth`` one that runs ``touch marker``."""
    payload = _RunsCommand(f"touch {shlex.quote(str(marker))}")
    if layout == "lightning":
        ckpt = {
            "pytorch-lightning_version": "2.6.0",
            "epoch": 0,
            "global_step": 1,
            "state_dict": {"net.fc.weight": torch.zeros(10, 4)},
            "hyper_parameters": {"arch": "spiking_cnn", "num_classes": 10, "note": payload},
        }
    elif layout == "official":
        ckpt = {"epoch": 3, "state_dict": {"module.fc.weight": torch.zeros(10, 512)}, "best_acc1": payload}
    else:
        raise ValueError(f"layout must be 'lightning' or 'official', got {layout!r}")
    torch.save(ckpt, path)
    return path
