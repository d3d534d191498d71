"""Pictures of I2E events (``python -m i2e_lightning visualize``): an animated GIF or a PNG strip.

Every row shows the source image beside its T event frames, ON events in one colour and OFF
events in another on black. Sources: image files (converted here), samples of an HDF5 event file
(the left panel then shows the events summed over time), or samples of a configured dataset.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..converter import I2E
from ..converter.images import decode_image_file

ON_COLOR = (255, 96, 32)  # orange
OFF_COLOR = (48, 160, 255)  # blue
GAP_COLOR = (40, 40, 40)
FORMATS = (".gif", ".png")


def load_image(path: str | Path) -> torch.Tensor:
    """An image file as uint8 RGB ``[3, H, W]``; the error names the file when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    rgb = decode_image_file(path, "RGB")  # 16-bit / float images scaled or refused, bombs refused
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 ``[C, H, W]`` -> uint8 ``[C, *size]`` with the spec's bicubic resize (antialias, rounded)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    x = F.interpolate(image[None].float(), size=size, mode="bicubic", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8)[0]


def event_panel(frame: np.ndarray, on_color=ON_COLOR, off_color=OFF_COLOR) -> np.ndarray:
    """Bool ``[2, H, W]`` (ON, OFF) -> uint8 RGB ``[H, W, 3]`` on black."""
    h, w = frame.shape[-2:]
    rgb = np.zeros((h, w, 3), dtype=np.uint8)
    rgb[frame[1]] = off_color
    rgb[frame[0]] = on_color  # a pixel is never ON and OFF in one timestep (threshold > 0)
    return rgb


def image_panel(image: torch.Tensor | None, events: np.ndarray) -> np.ndarray:
    """The left panel: the source image (RGB) or, without one, the event count over time in grey."""
    if image is not None:
        arr = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        if arr.shape[0] == 1:
            arr = np.repeat(arr, 3, axis=0)
        return np.ascontiguousarray(arr.transpose(1, 2, 0)).astype(np.uint8)
    count = events.sum(axis=(0, 1)).astype(np.float32)
    grey = (255 * count / max(float(count.max()), 1.0)).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _upscale(rgb: np.ndarray, scale: int) -> np.ndarray:
    return rgb.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else rgb


def _compose(rows: list[list[np.ndarray]], gap: int) -> Image.Image:
    """Rows of equal-height panels -> one image with ``gap`` pixels between panels and rows."""
    heights = [max(p.shape[0] for p in row) for row in rows]
    widths = [sum(p.shape[1] for p in row) + gap * (len(row) - 1) for row in rows]
    canvas = np.empty((sum(heights) + gap * (len(rows) - 1), max(widths), 3), dtype=np.uint8)
    canvas[:] = GAP_COLOR
    y = 0
    for row, hgt in zip(rows, heights, strict=True):
        x = 0
        for p in row:
            canvas[y : y + p.shape[0], x : x + p.shape[1]] = p
            x += p.shape[1] + gap
        y += hgt + gap
    return Image.fromarray(canvas)


def _grid(blocks: list[list[np.ndarray]], columns: int) -> list[list[np.ndarray]]:
    """Put the samples' panel lists ``columns`` to a row (side by side)."""
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    return [sum(blocks[i : i + columns], []) for i in range(0, len(blocks), columns)]


def render_gif_frames(
    samples: Sequence[tuple[torch.Tensor | None, np.ndarray]],
    scale: int = 4,
    gap: int | None = None,
    columns: int = 1,
) -> list[Image.Image]:
    """One frame per timestep; every sample is ``[source | events at t]``, ``columns`` samples per row."""
    if not samples:
        raise ValueError("nothing to draw: give at least one sample")
    gap = max(2, scale) if gap is None else gap
    steps = max(ev.shape[0] for _, ev in samples)
    lefts = [_upscale(image_panel(img, ev), scale) for img, ev in samples]
    frames = []
    for t in range(steps):
        blocks = [
            [left, _upscale(event_panel(ev[min(t, ev.shape[0] - 1)]), scale)]
            for (_, ev), left in zip(samples, lefts, strict=True)
        ]
        frames.append(_compose(_grid(blocks, columns), gap))
    return frames


def render_strip(
    samples: Sequence[tuple[torch.Tensor | None, np.ndarray]],
    scale: int = 4,
    gap: int | None = None,
    columns: int = 1,
) -> Image.Image:
    """One image; every sample is ``[source | t=0 | t=1 | ... | t=T-1]``, ``columns`` samples per row."""
    if not samples:
        raise ValueError("nothing to draw: give at least one sample")
    gap = max(2, scale) if gap is None else gap
    blocks = [
        [_upscale(image_panel(img, ev), scale)] + [_upscale(event_panel(f), scale) for f in ev] for img, ev in samples
    ]
    return _compose(_grid(blocks, columns), gap)


def check_output(path: str | Path) -> Path:
    """The output must end in .gif/.png and its folder must exist; the error says why it cannot be written."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"output {path} must end in .gif (animation) or .png (strip), got {path.suffix or 'none'!r}")
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the folder {parent} does not exist")
    return path


MAX_PICTURE_PIXELS = 1 << 28  # 268 M pixels (0.8 GB of RGB): far beyond any screen, still fits in memory


def _check_picture_size(samples: Sequence, scale: int, columns: int, out: Path) -> None:
    """Refuse a picture too large to render (e.g. ``--scale 100000``) before allocating it."""
    if scale < 1 or columns < 1:
        raise ValueError(f"scale and columns must be >= 1, got scale={scale}, columns={columns}")
    if not samples:
        raise ValueError("nothing to draw: no samples")
    t = max(int(ev.shape[0]) for _, ev in samples)
    h = max(int(ev.shape[-2]) for _, ev in samples)
    w = max(int(ev.shape[-1]) for _, ev in samples)
    rows = math.ceil(len(samples) / columns)
    per_frame = columns * (2 if out.suffix.lower() == ".gif" else t + 1)
    pixels = (rows * h * scale) * (per_frame * w * scale)
    frames = t if out.suffix.lower() == ".gif" else 1
    if pixels * frames > MAX_PICTURE_PIXELS:
        largest = max(1, int(math.sqrt(MAX_PICTURE_PIXELS / max(1, rows * h * per_frame * w * frames))))
        raise ValueError(
            f"--scale {scale} would draw {pixels * frames * 3 / 2**40:.1f} TiB of RGB pixels "
            f"({pixels * frames:,} > {MAX_PICTURE_PIXELS:,}): use --scale {largest} or less"
            if pixels * frames * 3 >= 2**40
            else f"--scale {scale} would draw {pixels * frames:,} pixels (> {MAX_PICTURE_PIXELS:,}): "
            f"use --scale {largest} or less"
        )


def save_visualization(
    samples: Sequence[tuple[torch.Tensor | None, np.ndarray]],
    out: str | Path,
    *,
    scale: int = 4,
    duration_ms: int = 250,
    columns: int = 1,
) -> Path:
    """Write ``samples`` (source image or None, bool events ``[T, 2, H, W]``) as a GIF or PNG strip."""
    out = check_output(out)
    _check_picture_size(samples, scale, columns, out)
    try:
        if out.suffix.lower() == ".gif":
            frames = render_gif_frames(samples, scale, columns=columns)
            frames[0].save(out, save_all=True, append_images=frames[1:], duration=duration_ms, loop=0, optimize=False)
        else:
            render_strip(samples, scale, columns=columns).save(out)
    except OSError as exc:
        raise PermissionError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out


def _parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().replace("x", " ").replace(",", " ").split()
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) not in (1, 2) or min(nums) < 1:
        raise ValueError(f"--size must be N or HxW (positive integers), got {text!r}")
    return (nums[0], nums[0]) if len(nums) == 1 else (nums[0], nums[1])


def convert_images(images: Sequence[torch.Tensor], converter: I2E) -> list[np.ndarray]:
    """Canonical-pair events ``[T, 2, H, W]`` of each uint8 image ``[C, H, W]``."""
    was_training = converter.training
    converter.eval()
    try:
        with torch.inference_mode():
            return [converter(img[None], dtype=torch.bool)[:, 0].numpy() for img in images]
    finally:
        converter.train(was_training)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m i2e_lightning visualize",
        description="Draw images beside their I2E event frames as an animated GIF or a PNG strip.",
    )
    p.add_argument("images", nargs="*", help="image files to convert and draw (one row each)")
    p.add_argument("--out", required=True, help="output FILE.gif (one frame per timestep) or FILE.png (strip)")
    p.add_argument("--h5", help="draw samples of this HDF5 event file instead of images")
    p.add_argument("--config", help="draw samples of this config's dataset (its preprocessing and converter)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="split for --config")
    p.add_argument("--index", type=int, nargs="+", default=[0], help="sample indices for --h5/--config")
    p.add_argument("--ratio", type=float, default=None, help="threshold ratio (default 0.12; --config: its own)")
    p.add_argument("--order", type=int, default=None, help="order preset 0-5 (default 4)")
    p.add_argument("--timesteps", type=int, default=None, help="timesteps 1-8 (default 8)")
    p.add_argument("--size", default=None, help="resize images to N or HxW first (bicubic), e.g. 32 or 128x96")
    p.add_argument("--scale", type=int, default=None, help="pixel magnification (default: panels >= 128 px)")
    p.add_argument("--duration", type=int, default=250, help="GIF milliseconds per timestep (default 250)")
    p.add_argument("--columns", type=int, default=1, help="samples side by side per row (default 1)")
    return p


def _collect(args) -> list[tuple[torch.Tensor | None, np.ndarray]]:
    modes = [bool(args.images), args.h5 is not None, args.config is not None]
    if sum(modes) != 1:
        raise ValueError("give image files, or --h5 FILE --index N, or --config FILE --index N (exactly one)")
    size = _parse_size(args.size)
    if args.h5 is not None:
        from .hdf5 import EventH5Reader

        if args.ratio is not None or args.order is not None or size is not None:
            raise ValueError("--ratio/--order/--size do not apply to --h5: the events are already in the file")
        reader = EventH5Reader(args.h5)
        samples = []
        for i in args.index:
            if not 0 <= i < len(reader):
                raise ValueError(f"--index {i} is out of range: {args.h5} holds {len(reader)} samples")
            ev = reader.events(i)
            samples.append((None, ev[: args.timesteps] if args.timesteps else ev))
        return samples
    if args.config is not None:
        from ..data.config import datamodule_from_config  # lazy: data/ sits above events/

        overrides = {k: v for k, v in (("ratio", args.ratio), ("order", args.order)) if v is not None}
        if args.timesteps is not None:
            overrides["timesteps"] = args.timesteps
        dm = datamodule_from_config(args.config, **overrides)
        dataset = dm.split_dataset(args.split)
        images = []
        for i in args.index:
            if not 0 <= i < len(dataset):
                raise ValueError(f"--index {i} is out of range: the {args.split} split has {len(dataset)} samples")
            item = dataset[i]
            if item is None:  # skip_corrupt dropped it (the dataset warned, naming the file)
                continue
            img = item[0]
            images.append(resize_image(img, size) if size else img)
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
        images = [resize_image(img, size) for img in images]
    return list(zip(images, convert_images(images, converter), strict=True))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        check_output(args.out)  # fail before converting anything
        if args.scale is not None and args.scale < 1:
            raise ValueError(f"--scale must be >= 1, got {args.scale}")
        if args.columns < 1:
            raise ValueError(f"--columns must be >= 1, got {args.columns}")
        if args.duration < 1:
            raise ValueError(f"--duration must be >= 1 ms, got {args.duration}")
        samples = _collect(args)
        largest = max(max(ev.shape[-2:]) for _, ev in samples)
        scale = args.scale if args.scale is not None else max(1, math.ceil(128 / largest))
        out = save_visualization(samples, args.out, scale=scale, duration_ms=args.duration, columns=args.columns)
    except (ValueError, FileNotFoundError, PermissionError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    steps = max(ev.shape[0] for _, ev in samples)
    with Image.open(out) as im:
        w, h = im.size
    kind = f"{steps} frames" if out.suffix.lower() == ".gif" else f"strip of {steps} timesteps"
    print(f"wrote {out}: {len(samples)} sample(s), {kind}, {w}x{h} px")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
