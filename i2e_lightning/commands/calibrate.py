"""``python -m i2e_lightning calibrate``: event rate against threshold ratio, and the ratio for a target rate.

Measures the event rate against the ratio on a random sample of a split (the paper's Figure 4),
prints the curve, optionally plots it, and reports the ratio that hits ``--target_rate`` (bisection;
the rate falls monotonically as the ratio grows).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..converter.calibrate import RATIO_LO, CalibrationResult, calibrate_ratio, default_ratios, rate_curve
from ..data.calibrate import plot_curve, sample_images
from ..events.convert import resolve_device
from .arguments import CommandParser, add_data_section, fail, instantiate_data, parse, rename

ALIASES = {"--target-rate": rename("--target_rate"), "--batch-size": rename("--batch_size")}


def build_parser() -> CommandParser:
    p = CommandParser(
        "calibrate",
        description="Event rate against threshold ratio on a sample of the data section's dataset, and the ratio "
        "for a target rate.",
    )
    add_data_section(p, required=True)
    p.add_argument(
        "--target_rate", type=float | None, default=None, help="wanted mean event rate, e.g. 0.05 (fraction)"
    )
    p.add_argument("--samples", type=int, default=1024, help="images drawn from the split")
    p.add_argument("--split", choices=("train", "val", "test"), default="train", help="split drawn from")
    p.add_argument("--plot", type=str | None, default=None, help="write the curve as an image (needs matplotlib)")
    p.add_argument("--lo", type=float, default=RATIO_LO, help="smallest ratio searched")
    p.add_argument("--hi", type=float, default=0.5, help="largest ratio searched")
    p.add_argument("--tol", type=float, default=1e-4, help="bisection stops at this ratio width")
    p.add_argument("--points", type=int, default=20, help="evenly spaced curve points")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample draw")
    p.add_argument("--batch_size", type=int, default=256, help="images converted at once")
    p.add_argument("--device", type=str, default="cpu", help="device of the conversion (cpu, cuda, cuda:N or auto)")
    p.aliases = ALIASES
    return p


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    console = Console()
    try:
        parser = build_parser()
        args = parse(parser, sys.argv[1:] if argv is None else argv)
        if args.samples < 1:
            raise ValueError(f"--samples must be >= 1, got {args.samples}")
        if args.points < 2:
            raise ValueError(f"--points must be >= 2, got {args.points}")
        if not 0 < args.lo < args.hi < 1:
            raise ValueError(f"need 0 < --lo < --hi < 1, got {args.lo}, {args.hi}")
        if args.target_rate is not None and not 0 < args.target_rate < 1:
            raise ValueError(f"--target_rate is a fraction in (0, 1), e.g. 0.05 for 5 %, got {args.target_rate}")
        dm = instantiate_data(parser, args)
        conv = getattr(dm, "converter", None)
        if conv is None:
            raise ValueError(
                f"{type(dm).__name__} ships recorded or pre-converted events: there is no threshold ratio to calibrate"
            )
        order, timesteps, current = conv.order, conv.timesteps, float(conv.ratio)
        dataset = dm.split_dataset(args.split)
        device = resolve_device(args.device)  # an unknown or absent device: one line, not a torch traceback
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            k = min(args.samples, len(dataset))
            task = bar.add_task(f"loading {k} {args.split} images", total=k)
            images = sample_images(dataset, args.samples, args.seed, lambda: bar.advance(task)).to(device)
            ratios = sorted(set(default_ratios(args.lo, args.hi, args.points)) | {current})
            task = bar.add_task("rate curve", total=len(ratios))
            curve = rate_curve(images, ratios, order, timesteps, args.batch_size, lambda: bar.advance(task))
            result: CalibrationResult | None = None
            if args.target_rate is not None:
                task = bar.add_task(f"bisection for rate {args.target_rate:g}", total=None)
                result = calibrate_ratio(
                    images,
                    args.target_rate,
                    lo=args.lo,
                    hi=args.hi,
                    tol=args.tol,
                    order=order,
                    timesteps=timesteps,
                    batch_size=args.batch_size,
                    progress=lambda: bar.advance(task),
                )
        points = dict(curve)
        if result is not None:
            points[result.ratio] = result.rate
        full = sorted(points.items())

        h, w = images.shape[-2:]
        title = f"{type(dm).__name__} {args.split}: {images.shape[0]} images {h}x{w}, T={timesteps}"
        table = Table(title=f"event rate vs ratio ({title})")
        table.add_column("ratio", justify="right")
        table.add_column("event rate", justify="right")
        table.add_column("")
        for r, v in full:
            marks = []
            if r == current:
                marks.append("config")
            if result is not None and r == result.ratio:
                marks.append("[bold red]chosen[/]")
            table.add_row(f"{r:.4f}", f"{100 * v:.3f} %", ", ".join(marks))
        console.print(table)
        console.print(f"config ratio {current:g} gives an event rate of {100 * points[current]:.3f} %")
        if result is not None:
            console.print(
                f"[bold]ratio {result.ratio:.4f}[/] gives {100 * result.rate:.3f} % (target {100 * result.target:.3g} %)"
                f" - set it in the config as  data.init_args.ratio: {result.ratio:.4f}"
            )
        if args.plot is not None:
            out = plot_curve(full, Path(args.plot), args.target_rate, result.ratio if result else None, current, title)
            console.print(f"plot written to {out}")
        return 0
    except (ValueError, OSError, ImportError) as exc:
        return fail(exc)


if __name__ == "__main__":
    raise SystemExit(main())
