"""DDP on CPU (gloo), 2 processes, through the real CLI in a subprocess (Lightning's ddp re-launches
the command line, so it must not run inside pytest's own process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers.cli import TINY, run_checkpoints, run_cli
from tests.helpers.datasets import make_idx_dir
from tests.helpers.probe import write_probe


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    data = make_idx_dir(tmp_path / "data", n_train=160, n_test=48)
    probe_dir = write_probe(tmp_path / "probe")
    extra = tmp_path / "probe.yaml"
    extra.write_text(
        "trainer:\n  callbacks:\n    - class_path: i2e_probe.PairProbe\n"
        f"      init_args:\n        out_dir: {tmp_path / 'draws'}\n"
    )
    args = [
        "fit",
        "--config", str(TINY),
        "--config", str(extra),
        "--data.init_args.data_dir", str(data),
        "--data.init_args.seed", "7",
        "--trainer.default_root_dir", str(tmp_path / "ckpts"),
        "--trainer.accelerator", "cpu",
        "--trainer.devices", "2",
        "--trainer.strategy", "ddp",
        "--trainer.logger", "false",
    ]  # fmt: skip
    proc = run_cli(args, cwd=tmp_path, timeout=150, extra_pythonpath=probe_dir)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]

    ranks = [json.loads((tmp_path / "draws" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    # the data module seeds each rank's converter with seed + global_rank: own random pairs per rank
    assert [r["seed"] for r in ranks] == [7, 8]
    assert len(ranks[0]["draws"]) == len(ranks[1]["draws"]) == 4
    assert ranks[0]["draws"] != ranks[1]["draws"]
    # the logged val/acc is synced: both ranks report the same figure
    assert ranks[0]["val_acc"] == ranks[1]["val_acc"] >= 0

    folder = run_checkpoints(tmp_path / "ckpts", "tiny", version=0)
    files = sorted(p.name for p in folder.iterdir())
    assert "last.ckpt" in files and sum(n.startswith("best") for n in files) == 1
    assert not [n for n in files if ".tmp" in n]  # written once, atomically, by rank 0
    ck = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=False)
    assert ck["global_step"] == 4
