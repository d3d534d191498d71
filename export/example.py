"""Preprocess images with an exported I2E model: numpy + onnxruntime (+ Pillow for files), no torch.

    python -m i2e_lightning export-onnx --out export/i2e.onnx --input_dtype uint8
    python export/example.py export/i2e.onnx photo1.jpg photo2.png --resolution 224
    python export/example.py export/i2e.onnx photo.jpg --resolution [224,320]   # height, width
    python export/example.py export/i2e.onnx            # random images when no files are given

The options are spelled as the i2e_lightning commands spell them (``--resolution N`` or ``[H,W]``,
``--batch_size``); the older ``--size H W`` and ``--batch-size`` still work.

Prints the model's settings, the execution providers in use, and each batch's shape and event rate.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from i2e_runtime import I2ERuntime, event_rate  # noqa: E402


def resolution(text: str) -> tuple[int, int]:
    """``224`` -> ``(224, 224)``; ``[32,48]`` -> ``(32, 48)``: the image-size syntax of the i2e_lightning commands."""
    body = text.strip()
    inner = body[1:-1] if body.startswith("[") and body.endswith("]") else body
    try:
        sides = [int(v) for v in inner.split(",")]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2) or min(sides) < 1 or ("," in inner) != body.startswith("["):
        raise argparse.ArgumentTypeError(f"expected N (square) or [H,W] with positive integers, got {text!r}")
    return (sides[0], sides[-1])


class OneLineErrors(argparse.ArgumentParser):
    """A bad command line is one line naming the problem (exit code 2), as in the i2e_lightning commands."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see: {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    p = OneLineErrors(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, nargs="?", default=Path("export/i2e.onnx"), help="exported .onnx file")
    p.add_argument("images", type=Path, nargs="*", help="image files (none: 4 random 64x64 images)")
    p.add_argument("--resolution", type=resolution, default=None, help="resize files to N (square) or [H,W]")
    p.add_argument("--size", type=int, nargs=2, dest="old_size", default=None, help=argparse.SUPPRESS)  # older H W
    p.add_argument("--batch_size", type=int, default=32, help="images per ONNX Runtime call")
    p.add_argument("--batch-size", type=int, dest="batch_size", help=argparse.SUPPRESS)  # the older spelling
    p.add_argument("--threads", type=int, default=None, help="CPU intra-op threads")
    p.add_argument("--providers", nargs="+", default=None, help="e.g. CUDAExecutionProvider CPUExecutionProvider")
    args = p.parse_args(argv)
    size = args.resolution or (tuple(args.old_size) if args.old_size else None)
    if size is not None and min(size) < 1:
        p.error(f"--size must be positive, got {args.old_size}")
    try:
        rt = I2ERuntime(args.model, providers=args.providers, threads=args.threads)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = rt.info
    print(f"model     {args.model} ({info.kind}, i2e_lightning {info.version})")
    print(f"settings  ratio={info.ratio} order={list(info.order)} timesteps={info.timesteps} layout={info.layout}")
    print(f"io        {info.input_dtype} images -> {info.output_dtype if info.kind == 'converter' else 'logits'}")
    print(f"providers {rt.providers}")
    try:
        if args.images:
            batches = rt.run_files(args.images, size=size, batch_size=args.batch_size)
        else:
            rng = np.random.default_rng(0)
            h, w = size or info.fixed_size or (64, 64)
            x = rng.integers(0, 256, (4, 3, h, w), dtype=np.uint8)
            if info.input_dtype == "float32":
                x = x.astype(np.float32) * np.float32(1.0 / 255)  # as ToDtype(scale=True)
            batches = iter([(["<random>"] * 4, rt.run(x))])
        for names, out in batches:
            shown = ", ".join(str(n) for n in names[:3]) + (" ..." if len(names) > 3 else "")
            if info.kind == "classifier":
                print(f"{len(names)} images [{shown}]: logits {tuple(out.shape)}, classes {out.argmax(1).tolist()}")
            else:
                print(
                    f"{len(names)} images [{shown}]: events {tuple(out.shape)} {out.dtype}, "
                    f"event rate {100 * event_rate(out):.2f} %"
                )
    except (FileNotFoundError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
