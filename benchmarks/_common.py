"""Shared helpers of the benchmark scripts: interleaved timing, rich tables, JSON reports.

The machine the figures come from is shared and noisy, so every benchmark times its
candidates *interleaved* (one call of each per round, rounds repeated) and reports
medians, and every claim is a ratio against a baseline measured in the same rounds.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

REPO_ROOT = Path(__file__).resolve().parents[1]
console = Console(width=160)


def setup_threads(threads: int = 2) -> int:
    """Pin torch's intra-op threads (the figures are for 2 shared cores unless told otherwise)."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    return torch.get_num_threads()


def progress(transient: bool = True, auto_refresh: bool = True) -> Progress:
    """A rich progress bar for the long loops of the benchmarks.

    Timing loops pass ``auto_refresh=False`` and refresh between timed calls: rich's refresh
    thread would otherwise compete with the timed code for the CPU.
    """
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
        auto_refresh=auto_refresh,
    )


def time_interleaved(
    candidates: dict[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 1,
    description: str = "timing",
    sync: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of every candidate, one call of each per round, ``repeats`` rounds.

    Interleaving spreads the machine's noise (other processes, frequency changes)
    evenly over the candidates, so their medians and per-round ratios compare fairly.
    ``sync`` (e.g. ``torch.cuda.synchronize``) runs before and after every timed call.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    if sync is not None:
        sync()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    with progress(auto_refresh=False) as bar:
        task = bar.add_task(description, total=repeats)
        for _ in range(repeats):
            for name, fn in candidates.items():
                if sync is not None:
                    sync()
                start = time.perf_counter()
                fn()
                if sync is not None:
                    sync()
                times[name].append(time.perf_counter() - start)
            bar.advance(task)
            bar.refresh()
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def paired_ratio(slow: Sequence[float], fast: Sequence[float]) -> float:
    """Median over rounds of ``slow[i] / fast[i]``: a speed-up robust to slow rounds."""
    if len(slow) != len(fast) or not slow:
        raise ValueError("paired_ratio needs two equally long, non-empty series from the same rounds")
    return float(statistics.median(s / f for s, f in zip(slow, fast, strict=True)))


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or value != value:  # NaN
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.{digits}g}"


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], caption: str | None = None) -> None:
    table = Table(title=title, caption=caption, show_lines=False)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[fmt(v) if isinstance(v, float) else str(v) for v in row])
    console.print(table)


def environment() -> dict[str, Any]:
    """What the figures were measured on (recorded in every JSON report)."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    env: dict[str, Any] = {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "env": {
            k: os.environ[k]
            for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "THP_MEM_ALLOC_ENABLE")
            if k in os.environ
        },
    }
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def write_json(path: str | Path | None, payload: dict[str, Any]) -> None:
    """Write ``payload`` plus the environment to ``path`` (no-op when path is None)."""
    if path is None:
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {"environment": environment(), **payload}
    out.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    console.print(f"[dim]wrote {out}[/dim]")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (torch.dtype, torch.device, Path)):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
