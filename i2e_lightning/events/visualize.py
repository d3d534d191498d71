"""Pictures of I2E events (the library behind ``python -m i2e_lightning visualize``): a GIF or a PNG strip.

Every row shows the source image beside its T event frames, ON events in one colour and OFF
events in another on black. Sources: image files (converted here), samples of an HDF5 event file
(the left panel then shows the events summed over time), or samples of a configured dataset.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
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


def convert_images(images: Sequence[torch.Tensor], converter: I2E) -> list[np.ndarray]:
    """Canonical-pair events ``[T, 2, H, W]`` of each uint8 image ``[C, H, W]``."""
    was_training = converter.training
    converter.eval()
    try:
        with torch.inference_mode():
            return [converter(img[None], dtype=torch.bool)[:, 0].numpy() for img in images]
    finally:
        converter.train(was_training)
