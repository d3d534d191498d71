"""Cost of ImageNet Baseline-II's random resized crop in the training process, per batch.

The official ``v2.RandomResizedCrop(224)`` draws its box over the whole image; the project does it in
``on_after_batch_transfer`` (box from the DataModule's checkpointed generator, torch's uint8 bilinear +
antialias resize on the CPU, serially). This times that on a list of ImageNet-sized images (375x500,
500x375, 333x500, 500x500, the common ImageNet shapes) against the same crop drawn inside a stacked
256x256 view (the project's former, cheaper approximation), interleaved in the same rounds::

    python benchmarks/random_resized_crop.py --threads 1
    python -m i2e_lightning bench random_resized_crop --batch 64 --json out.json
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks._args import BenchParser, parse_bench, rename, square
from benchmarks._common import (
    median,
    paired_ratio,
    print_table,
    setup_threads,
    time_interleaved,
    write_json,
)
from i2e_lightning.data.transforms import random_resized_crop

IMAGENET_SHAPES = [(375, 500), (500, 375), (333, 500), (500, 500)]


def main(argv: list[str] | None = None) -> int:
    p = BenchParser("random_resized_crop", description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128, help="images per batch (128: the official batch)")
    p.add_resolution(224, "output size")
    p.add_common(repeats=7)
    args = parse_bench(p, argv, {"--size": rename("--resolution")})
    args.size = square(args.resolution)
    threads = setup_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    shapes = [IMAGENET_SHAPES[i % len(IMAGENET_SHAPES)] for i in range(args.batch)]
    whole = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g) for h, w in shapes]
    view = torch.randint(0, 256, (args.batch, 3, 256, 256), dtype=torch.uint8, generator=g)
    aug = torch.Generator().manual_seed(1)
    times = time_interleaved(
        {
            "whole image (official)": lambda: random_resized_crop(whole, args.size, aug),
            "inside a 256x256 view": lambda: random_resized_crop(view, args.size, aug),
        },
        repeats=args.repeats,
        description="random resized crop",
    )
    whole_ms = 1e3 * median(times["whole image (official)"])
    view_ms = 1e3 * median(times["inside a 256x256 view"])
    ratio = paired_ratio(times["whole image (official)"], times["inside a 256x256 view"])
    print_table(
        f"random resized crop to {args.size}, batch {args.batch}, {threads} thread(s)",
        ["box drawn over", "median ms / batch", "ms / image"],
        [
            ("whole image (official)", whole_ms, whole_ms / args.batch),
            ("inside a 256x256 view", view_ms, view_ms / args.batch),
        ],
        caption=f"whole image / 256x256 view = {ratio:.2f}x (paired, same rounds)",
    )
    write_json(
        args.json,
        {
            "benchmark": "random_resized_crop",
            "batch": args.batch,
            "size": args.size,
            "shapes": IMAGENET_SHAPES,
            "median_whole_ms": whole_ms,
            "median_view_ms": view_ms,
            "whole_over_view": ratio,
            "times_s": times,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
