"""``python -m i2e_lightning convert``: a configured image dataset -> an HDF5 event file (canonical pairs, resumable).

The library call is :func:`i2e_lightning.events.convert.convert_dataset`; this module parses, shows the
progress bar it reports to, and prints the statistics.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from jsonargparse import ActionYesNo
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ..events.convert import SPLITS, ConvertResult, convert_dataset
from ..events.formats import FORMATS, write_format
from .arguments import CommandParser, UsageError, add_data_section, fail, instantiate_data, parse, rename


class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} img/s" if speed else "-- img/s", style="progress.data.speed")


class _ProgressBar:
    """A rich bar fed by ``convert_dataset``'s ``on_progress(rows_in_file, total)``; says when it resumes a file."""

    def __init__(self, console: Console, description: str, enabled: bool = True) -> None:
        self.console = console
        self.description = description
        columns = (
            TextColumn("[bold]converting[/bold] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        self.bar = Progress(*columns, console=console, disable=not enabled)
        self.task = None

    def __enter__(self) -> _ProgressBar:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def update(self, done: int, total: int) -> None:
        if self.task is None:
            if done:
                self.console.print(f"resuming at sample {done:,} of {total:,}")
            self.task = self.bar.add_task(self.description, total=total, completed=done)
        else:
            self.bar.update(self.task, completed=done)


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GB"


def print_summary(result: ConvertResult, console: Console) -> None:
    """The statistics the convert command prints."""
    r = result
    console.print(
        f"[green]wrote[/green] {r.path}: {r.num_rows:,} rows of shape {r.shape}"
        + (f" (resumed at sample {r.resumed_from:,})" if r.resumed_from else "")
        + (f", {r.skipped:,} corrupt images skipped" if r.skipped else "")
    )
    if r.converted == 0:
        console.print("nothing left to convert")
        return
    per_t = " ".join(f"{x * 100:.2f}" for x in r.rate_per_timestep)
    console.print(f"mean event rate     {r.event_rate * 100:.3f} %  (of T*2*H*W sites, {r.converted:,} samples)")
    console.print(f"rate per timestep   {per_t}  (%)")
    console.print(f"ON / OFF balance    {r.on_fraction * 100:.1f} % ON, {(1 - r.on_fraction) * 100:.1f} % OFF")
    console.print(f"bytes written       {_fmt_bytes(r.bytes_written)} (file {_fmt_bytes(r.file_bytes)})")
    console.print(
        f"throughput          {r.throughput:,.0f} images/s ({r.seconds:.1f} s, "
        f"{_fmt_bytes(r.bytes_written / max(r.seconds, 1e-9))}/s)"
    )


ALIASES = {
    "--batch-size": rename("--batch_size"),
    "--num-workers": rename("--num_workers"),
    "--no-progress": rename("--no_progress"),
    "--set": ("--data.init_args", 1, lambda v: _set_override(v[0])),
}


def _set_override(item: str) -> list[str]:
    """The old ``--set KEY=VALUE`` as the dotted override ``--data.init_args.KEY VALUE``."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--set expects KEY=VALUE, got {item!r} (now spelled --data.init_args.KEY VALUE)")
    return [f"--data.init_args.{key.strip()}", value]


def build_parser() -> CommandParser:
    p = CommandParser(
        "convert",
        description="Convert the data section's image dataset to an event file (canonical pairs, resumable). "
        "Example: --config configs/fashion_mnist.yaml --data.init_args.val_size 0 --split train --out fm.h5",
    )
    add_data_section(p, required=True)
    p.add_argument("--split", default="train", choices=SPLITS, help="which split to convert")
    p.add_argument("--out", type=str, required=True, help="output: .h5 file, .parquet file, or a folder for npz")
    p.add_argument(
        "--format",
        type=Literal[FORMATS] | None,  # type: ignore[valid-type]
        default=None,
        help="h5 (resumable, default), parquet (the published Hugging Face layout) or npz (root/<label>/<i>.npz); "
        "default: from --out's suffix (.parquet -> parquet, .h5/.hdf5 -> h5, no suffix -> npz)",
    )
    p.add_argument(
        "--batch_size", type=int | None, default=None, help="images per batch (default: ~256 MB of events, 64-4096)"
    )
    p.add_argument("--device", type=str, default="auto", help="auto (GPU when available), cpu, cuda or cuda:N")
    p.add_argument(
        "--num_workers",
        type=int | None,
        default=None,
        help="DataLoader workers decoding images (default: 0 on CPU, 8 GPU)",
    )
    p.add_argument(
        "--overwrite", action=ActionYesNo, default=False, help="replace an existing file instead of resuming it"
    )
    p.add_argument("--limit", type=int | None, default=None, help="convert only the first N samples")
    p.add_argument("--compression", type=Literal["gzip", "lzf"] | None, default=None, help="HDF5 filter for events")
    p.add_argument("--progress", action=ActionYesNo(yes_prefix="", no_prefix="no_"), default=True, help="progress bar")
    p.aliases = ALIASES
    return p


def main(argv: Sequence[str] | None = None) -> int:
    console = Console(stderr=True)
    out = Console()
    h5_out = None
    try:
        parser = build_parser()
        args = parse(parser, list(sys.argv[1:] if argv is None else argv))
        fmt = args.format or _format_from_suffix(args.out)
        # parquet and npz are written from the finished HDF5 file, which keeps the conversion resumable
        h5_out = args.out if fmt == "h5" else f"{args.out}.convert.h5"
        if fmt != "h5" and Path(args.out).exists() and not args.overwrite:
            raise ValueError(f"{args.out} exists: pass --overwrite to replace it")
        dm = instantiate_data(parser, args)
        dataset = dm.split_dataset(args.split)
        source = f"{type(dm).__name__}"
        data_dir = getattr(dm, "data_dir", None)
        if data_dir:
            source += f":{data_dir}"
        configs = ",".join(str(c) for c in (args.get("config") or []) if c is not None)
        extra = {"num_classes": int(dm.num_classes), "config": configs}
        progress = _ProgressBar(console, f"{args.split} -> {Path(args.out).name}", enabled=args.progress)
        with progress:
            result = convert_dataset(
                dataset,
                dm.converter,
                h5_out,
                batch_size=args.batch_size,
                device=args.device,
                num_workers=args.num_workers,
                overwrite=args.overwrite,
                limit=args.limit,
                source=source,
                split=args.split,
                extra_attrs=extra,
                compression=args.compression,
                on_progress=progress.update,
            )
        if fmt != "h5":
            write_format(h5_out, args.out, fmt, overwrite=args.overwrite)
            Path(h5_out).unlink()
    except KeyboardInterrupt:
        console.print(
            f"[yellow]interrupted[/yellow]: {h5_out} keeps every row flushed so far; "
            "run the same command again to resume"
        )
        return 130
    except (ValueError, OSError, ImportError) as exc:  # OSError: also a full disk while writing
        return fail(exc)
    print_summary(result, out)
    if fmt != "h5":
        out.print(f"format              {fmt}: {args.out}")
    return 0


def _format_from_suffix(out: str) -> str:
    suffix = Path(out).suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix in (".h5", ".hdf5", ".he5"):
        return "h5"
    if suffix == "":
        return "npz"
    raise ValueError(f"cannot tell the format of --out {out!r}: end it in .h5 or .parquet, or pass --format")


if __name__ == "__main__":
    raise SystemExit(main())
