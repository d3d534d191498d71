"""Shared helpers of the training/CLI/DDP/fault tests (imported by them), plus a check of the helpers.

``make_idx_dir`` writes a small, learnable Fashion-MNIST look-alike (gzipped idx files) so the CLI
tests never depend on the real dataset being installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from i2e_lightning.data.idx import IDX_FILES, write_idx

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tests" / "tiny.yaml"


def make_idx_dir(path: Path, n_train: int = 160, n_test: int = 48, size: int = 28, seed: int = 0) -> Path:
    """idx files of a 10-class toy dataset: class k is a bright bar at row 2 + 2k, plus noise."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(labels)
        images = rng.integers(0, 60, size=(n, size, size), dtype=np.uint8)
        for i, k in enumerate(labels):
            r = 2 + 2 * int(k)
            images[i, r : r + 2, 4 : size - 4] = 230
        img_stem, lbl_stem = IDX_FILES[split]
        write_idx(path / f"{img_stem}.gz", images)
        write_idx(path / f"{lbl_stem}.gz", labels)
    return path


def cli_env(extra_pythonpath: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(extra_pythonpath) if extra_pythonpath else "", str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("I2E_DEBUG", None)
    return env


def run_cli(args: list[str], cwd: Path, timeout: float = 120, extra_pythonpath: Path | None = None):
    """``python -m i2e_lightning ARGS`` in a subprocess; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "i2e_lightning", *args],
        cwd=cwd,
        env=cli_env(extra_pythonpath),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("size", [28, 17])
def test_toy_idx_dataset_loads(tmp_path: Path, size: int) -> None:
    from i2e_lightning.data import FashionMNISTDataModule

    make_idx_dir(tmp_path, n_train=40, n_test=20, size=size)
    dm = FashionMNISTDataModule(data_dir=str(tmp_path), val_size=10, batch_size=8)
    dm.setup("fit")
    image, label = dm.split_dataset("train")[0]
    assert image.shape == (1, 32, 32) and 0 <= label < 10
    assert len(dm.split_dataset("train")) == 30 and len(dm.split_dataset("val")) == 10


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

    def on_train_end(self, trainer, pl_module):
        Path(self.out_dir).mkdir(parents=True, exist_ok=True)
        out = {"rank": trainer.global_rank, "world": trainer.world_size, "seed": self.seed, "draws": self.draws,
               "steps": trainer.global_step, "val_acc": float(trainer.callback_metrics.get("val/acc", -1))}
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
