"""Preprocess images with an exported I2E model: numpy + onnxruntime (+ Pillow for files), no torch.

    python -m i2e_lightning export-onnx --out export/i2e.onnx --input-dtype uint8
    python export/example.py export/i2e.onnx photo1.jpg photo2.png --size 224 224
    python export/example.py export/i2e.onnx            # random images when no files are given

Prints the model's settings, the execution providers in use, and each batch's shape and event rate.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from i2e_runtime import I2ERuntime, event_rate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, nargs="?", default=Path("export/i2e.onnx"), help="exported .onnx file")
    p.add_argument("images", type=Path, nargs="*", help="image files (none: 4 random 64x64 images)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None, help="resize files to H x W")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=None, help="CPU intra-op threads")
    p.add_argument("--providers", nargs="+", default=None, help="e.g. CUDAExecutionProvider CPUExecutionProvider")
    args = p.parse_args(argv)
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
            batches = rt.run_files(
                args.images, size=tuple(args.size) if args.size else None, batch_size=args.batch_size
            )
        else:
            rng = np.random.default_rng(0)
            h, w = args.size or info.fixed_size or (64, 64)
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
