"""Image files -> the uint8 images the converter takes, decoded faithfully or refused.

Pillow's ``convert("RGB")`` clips 16-bit grey PNGs (a 0..65535 gradient comes out almost all 255)
and float TIFFs; :func:`decode_image_file` scales 16-bit images to 8 bits (``round(v * 255 / 65535)``),
takes float images in [0, 1] (``round(v * 255)``) and refuses other ranges, and turns Pillow's
decompression-bomb warning into an error naming the file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

__all__ = ["ImageDecodeError", "decode_image_file"]


class ImageDecodeError(ValueError):
    """An image file that cannot be decoded faithfully (corrupt, unsupported depth, bomb); names the file."""


def _to_uint8_from_16(a: np.ndarray) -> np.ndarray:
    return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def decode_image_file(path: str | Path, mode: str = "RGB") -> np.ndarray:
    """uint8 ``[H, W, 3]`` (``mode="RGB"``) or ``[H, W]`` (``"L"``) of an image file.

    Raises :class:`ImageDecodeError` (a ``ValueError``) naming the file when it is corrupt, truncated,
    larger than Pillow's ``Image.MAX_IMAGE_PIXELS`` (a possible decompression bomb), a float image
    outside [0, 1], or a 32-bit integer image; ``FileNotFoundError`` when it does not exist.
    """
    from PIL import Image, UnidentifiedImageError

    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image file {p} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                return _decode(im, p, mode)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(
            f"image file {p} is too large to decode safely ({exc}); it may be a decompression bomb: if you trust "
            "it, raise PIL.Image.MAX_IMAGE_PIXELS"
        ) from None
    except ImageDecodeError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"cannot read image: corrupt or unreadable image file {p}: {exc}") from None


def _decode(im, p: Path, mode: str) -> np.ndarray:
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N") or (im.mode == "I" and im.format == "PNG"):
        grey = _to_uint8_from_16(np.clip(np.asarray(im), 0, 65535))  # PNG 16-bit grey, opened as I;16 or I
    elif im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0.0 or hi > 1.0:
            raise ImageDecodeError(
                f"image file {p} is a float image with values in [{lo:.4g}, {hi:.4g}]; only [0, 1] maps to 8 bits "
                "unambiguously: save it as 8-bit, or scale it to [0, 1]"
            )
        grey = np.rint(a * 255.0).astype(np.uint8)
    elif im.mode == "I":
        raise ImageDecodeError(
            f"image file {p} holds 32-bit integers ({im.format}), whose range maps to 8 bits in no standard way: "
            "save it as an 8- or 16-bit image"
        )
    else:  # every 8-bit mode (1, L, P, RGB, RGBA, CMYK, YCbCr, LA...): Pillow converts exactly
        return np.array(im.convert(mode), dtype=np.uint8)
    return grey if mode == "L" else np.repeat(grey[:, :, None], 3, axis=2)
