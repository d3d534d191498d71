"""Callbacks for runs in a subprocess, written as a module ``i2e_probe`` that the subprocess imports.

``PairProbe`` records the converter's training pair draws per rank; ``Slow`` stretches a run so that a
test can kill it mid-epoch.
"""

from __future__ import annotations

from pathlib import Path

PROBE_SRC = '''
import json, os, time
from pathlib import Path
import lightning as L


class PairProbe(L.Callback):
    """Records the converter's training pair draws of this rank to <out_dir>/rank<r>.json."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.draws = []

    def on_train_start(self, trainer, pl_module):
        conv = trainer.datamodule.converter
        original = conv._draw_choices

        def recording(batch):
            choices = original(batch)
            if conv.training:
                self.draws.append(choices.tolist())
            return choices

        conv._draw_choices = recording
        self.seed = conv.generator.initial_seed()
        self.streams = {name: g.initial_seed() for name, g in trainer.datamodule.random_streams().items()}

    def on_train_end(self, trainer, pl_module):
        Path(self.out_dir).mkdir(parents=True, exist_ok=True)
        out = {"rank": trainer.global_rank, "world": trainer.world_size, "seed": self.seed, "draws": self.draws,
               "streams": self.streams, "steps": trainer.global_step, "val_acc": float(trainer.callback_metrics.get("val/acc", -1))}
        Path(self.out_dir, f"rank{trainer.global_rank}.json").write_text(json.dumps(out))


class Slow(L.Callback):
    """Sleeps after every training batch (to make a run long enough to be killed mid-epoch)."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, *args, **kwargs):
        time.sleep(self.seconds)
'''


def write_probe(folder: Path) -> Path:
    """A module ``i2e_probe`` (PairProbe, Slow callbacks) in ``folder``, for subprocess runs."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "i2e_probe.py").write_text(PROBE_SRC)
    return folder
