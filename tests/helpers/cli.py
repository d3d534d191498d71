"""The real command line in a subprocess, as a user runs it (exit codes, stderr)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "tests" / "tiny.yaml"


def cli_env(extra_pythonpath: Path | None = None) -> dict[str, str]:
    """The environment of a subprocess: the checkout importable, one OpenMP thread, no debug tracebacks."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(extra_pythonpath) if extra_pythonpath else "", str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("I2E_DEBUG", None)
    return env


def run_cli(
    args: list[str], cwd: Path, timeout: float = 120, extra_pythonpath: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m i2e_lightning ARGS`` in a subprocess; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "i2e_lightning", *args],
        cwd=cwd,
        env=cli_env(extra_pythonpath),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_checkpoints(root: Path, run: str = "tiny", version: int | None = None) -> Path:
    """``<root>/lightning_logs/<run>/version_N/checkpoints`` of a CLI run (``root`` = its default_root_dir).

    ``version=None``: the newest version folder that exists (or ``version_0`` when none does yet).
    """
    runs = root / "lightning_logs" / run
    if version is None:
        found = sorted(int(p.name.split("_")[1]) for p in runs.glob("version_*") if p.name.split("_")[1].isdigit())
        version = found[-1] if found else 0
    return runs / f"version_{version}" / "checkpoints"
