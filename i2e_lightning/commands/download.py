"""``python -m i2e_lightning download``: the image datasets from their official URLs, with MD5 checks.

    python -m i2e_lightning download fashion_mnist --ensure   # installed? else apt-get, else download
    python -m i2e_lightning download fashion_mnist --dir data/fashion-mnist
    python -m i2e_lightning download mnist --dir data/mnist
    python -m i2e_lightning download cifar10 --dir data      # -> data/cifar-10-batches-py/
    python -m i2e_lightning download cifar100 --dir data     # -> data/cifar-100-python/

Files are written to a ``.part`` name and renamed only after the checksum matched (see
:mod:`i2e_lightning.data.download`). CIFAR10-DVS and ImageNet are not downloaded (licence/size): see docs/data.md.
"""

from __future__ import annotations

import sys

from jsonargparse import ActionYesNo
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from ..data.download import DATASETS, download, ensure
from .arguments import CommandParser, UsageError, fail, parse, rename


class _DownloadBars:
    """One rich bar per file, fed by the library's ``on_progress(file name, bytes, total)``."""

    def __init__(self, enabled: bool) -> None:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        self.bar = Progress(*columns, console=Console(stderr=True), disable=not enabled)
        self.tasks: dict[str, object] = {}

    def __enter__(self) -> _DownloadBars:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def update(self, name: str, done: int, total: int | None) -> None:
        if name not in self.tasks or done == 0:
            self.tasks[name] = self.bar.add_task(name, total=total)
        self.bar.update(self.tasks[name], completed=done)


ALIASES = {"--no-apt": rename("--no_apt")}


def build_parser() -> CommandParser:
    parser = CommandParser("download", description="Download an image dataset (MD5-checked).")
    parser.add_argument("dataset", choices=sorted(DATASETS), help="which dataset")
    parser.add_argument("--dir", type=str | None, default=None, help="target directory (then use it as data_dir)")
    parser.add_argument(
        "--ensure",
        action=ActionYesNo,
        default=False,
        help="fashion_mnist/mnist: do nothing if installed, else apt-get install the Debian package where "
        "possible, else download to the DataModule's fallback folder (or --dir)",
    )
    parser.add_argument(
        "--apt", action=ActionYesNo(yes_prefix="", no_prefix="no_"), default=True, help="with --ensure: may run apt-get"
    )
    parser.add_argument("--quiet", action=ActionYesNo, default=False, help="no progress bar")
    parser.aliases = ALIASES
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(build_parser(), sys.argv[1:] if argv is None else argv)
        if not args.ensure and args.dir is None:
            raise UsageError("download: give --dir DIR, or --ensure (see: python -m i2e_lightning download --help)")
    except UsageError as exc:
        return fail(exc)

    def say(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr)

    try:
        with _DownloadBars(enabled=not args.quiet) as bars:
            if args.ensure:
                out = ensure(args.dataset, args.dir, use_apt=args.apt, on_message=say, on_progress=bars.update)
            else:
                out = download(args.dataset, args.dir, on_progress=bars.update)
    except (OSError, ValueError) as exc:
        return fail(exc)
    print(f"{args.dataset} is in {out}" + ("" if args.ensure else f": set data_dir: {out}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
