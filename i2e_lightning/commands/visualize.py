"""``python -m i2e_lightning visualize``: images beside their I2E event frames as a GIF or a PNG strip."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ..converter import I2E
from ..converter.preprocess import resize_uint8
from ..events.hdf5 import EventH5Reader
from ..events.visualize import check_output, convert_images, load_image, save_visualization
from .arguments import (
    CommandParser,
    add_data_section,
    add_resolution,
    fail,
    instantiate_data,
    parse,
    resolution_pair,
    size_text,
)

ALIASES = {"--size": size_text()}


def build_parser() -> CommandParser:
    p = CommandParser(
        "visualize",
        description="Draw images beside their I2E event frames as an animated GIF or a PNG strip: image files, "
        "samples of an event file (--h5), or samples of the data section's dataset (--config FILE).",
    )
    add_data_section(p, required=False)
    p.add_argument("images", nargs="*", type=str, default=[], help="image files to convert and draw (one row each)")
    p.add_argument("--out", type=str, required=True, help="output FILE.gif (one frame per timestep) or FILE.png")
    p.add_argument("--h5", type=str | None, default=None, help="draw samples of this HDF5 event file instead")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="split of the data section")
    p.add_argument("--index", type=int, nargs="+", default=[0], help="sample indices for --h5 or the data section")
    p.add_argument("--ratio", type=float | None, default=None, help="threshold ratio (default 0.12; data: its own)")
    p.add_argument("--order", type=int | None, default=None, help="order preset 0-5 (default 4)")
    p.add_argument("--timesteps", type=int | None, default=None, help="timesteps 1-8 (default 8)")
    add_resolution(p, "resize images first (bicubic)")
    p.add_argument("--scale", type=int | None, default=None, help="pixel magnification (default: panels >= 128 px)")
    p.add_argument("--duration", type=int, default=250, help="GIF milliseconds per timestep")
    p.add_argument("--columns", type=int, default=1, help="samples side by side per row")
    p.aliases = ALIASES
    return p


def _collect(parser: CommandParser, args) -> list[tuple[torch.Tensor | None, np.ndarray]]:
    modes = [bool(args.images), args.h5 is not None, args.get("data") is not None]
    if sum(modes) != 1:
        raise ValueError("give image files, or --h5 FILE --index N, or --config FILE --index N (exactly one)")
    size = resolution_pair(args.resolution)
    if args.h5 is not None:
        if args.ratio is not None or args.order is not None or size is not None:
            raise ValueError("--ratio/--order/--resolution do not apply to --h5: the events are already in the file")
        reader = EventH5Reader(args.h5)
        samples = []
        for i in args.index:
            if not 0 <= i < len(reader):
                raise ValueError(f"--index {i} is out of range: {args.h5} holds {len(reader)} samples")
            ev = reader.events(i)
            samples.append((None, ev[: args.timesteps] if args.timesteps else ev))
        return samples
    if args.data is not None:
        for key in ("ratio", "order", "timesteps"):  # the command line's converter settings win over the config's
            if args[key] is not None:
                args.data.init_args[key] = args[key]
        dm = instantiate_data(parser, args)
        dataset = dm.split_dataset(args.split)
        images = []
        for i in args.index:
            if not 0 <= i < len(dataset):
                raise ValueError(f"--index {i} is out of range: the {args.split} split has {len(dataset)} samples")
            item = dataset[i]
            if item is None:  # skip_corrupt dropped it (the dataset warned, naming the file)
                continue
            img = item[0]
            images.append(resize_uint8(img, size) if size else img)
        if not images:
            raise ValueError(f"every requested --index of the {args.split} split is a corrupt image (skipped)")
        return list(zip(images, convert_images(images, dm.converter), strict=True))
    converter = I2E(
        ratio=0.12 if args.ratio is None else args.ratio,
        order=4 if args.order is None else args.order,
        timesteps=8 if args.timesteps is None else args.timesteps,
    )
    images = [load_image(p) for p in args.images]
    if size is not None:
        images = [resize_uint8(img, size) for img in images]
    return list(zip(images, convert_images(images, converter), strict=True))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parse(parser, list(sys.argv[1:] if argv is None else argv))
        check_output(args.out)  # fail before converting anything
        if args.scale is not None and args.scale < 1:
            raise ValueError(f"--scale must be >= 1, got {args.scale}")
        if args.columns < 1:
            raise ValueError(f"--columns must be >= 1, got {args.columns}")
        if args.duration < 1:
            raise ValueError(f"--duration must be >= 1 ms, got {args.duration}")
        samples = _collect(parser, args)
        largest = max(max(ev.shape[-2:]) for _, ev in samples)
        scale = args.scale if args.scale is not None else max(1, math.ceil(128 / largest))
        out = save_visualization(samples, args.out, scale=scale, duration_ms=args.duration, columns=args.columns)
    except (ValueError, OSError, ImportError) as exc:
        return fail(exc)
    steps = max(ev.shape[0] for _, ev in samples)
    with Image.open(out) as im:
        w, h = im.size
    kind = f"{steps} frames" if out.suffix.lower() == ".gif" else f"strip of {steps} timesteps"
    print(f"wrote {out}: {len(samples)} sample(s), {kind}, {w}x{h} px")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
