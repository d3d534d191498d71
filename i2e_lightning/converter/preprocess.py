"""Image preprocessing as the published datasets did it (docs/official.md), below every user: data, events, export."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["INTERPOLATIONS", "check_uint8", "resize_uint8", "to_size"]


def to_size(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``N`` -> ``(N, N)``; ``(H, W)`` -> ``(H, W)`` as ints."""
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


def check_uint8(x: Tensor, name: str = "images") -> None:
    """Raise a ``ValueError`` naming the dtype and shape unless ``x`` is uint8 ``[B, C, H, W]`` or ``[C, H, W]``."""
    if not isinstance(x, Tensor) or x.dtype != torch.uint8 or x.dim() not in (3, 4):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        dtype = x.dtype if isinstance(x, Tensor) else None
        raise ValueError(f"{name} must be a uint8 tensor [B, C, H, W] or [C, H, W], got {dtype} {shape}")


INTERPOLATIONS = ("bilinear", "bicubic")


def resize_uint8(x: Tensor, size: int | tuple[int, int] | list[int], interpolation: str = "bicubic") -> Tensor:
    """torchvision's ``v2.Resize(size, interpolation, antialias=True)`` on uint8 tensors, bit for bit.

    On the CPU, where the official scripts resize (in their DataLoader workers), torchvision hands
    uint8 bicubic and, on AVX2 CPUs, uint8 bilinear straight to torch's native uint8 resampler
    (fixed-point weights, rounding as Pillow); its float path (resize, clamp, round) differs by one
    grey level on many pixels. So this always uses the native uint8 path; tensors on another device
    make the round trip through the CPU, which keeps the result identical on every device.
    A no-op when the size already matches.
    """
    check_uint8(x)
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {list(INTERPOLATIONS)}, got {interpolation!r}")
    size = to_size(size)
    single = x.dim() == 3
    xb = x.unsqueeze(0) if single else x
    if tuple(xb.shape[-2:]) == size:
        return x
    # torch's native uint8 kernel, not kornia's float resize: the one bit-exact with the official pipeline
    src = xb if xb.device.type == "cpu" else xb.cpu()
    out = F.interpolate(src, size=size, mode=interpolation, antialias=True, align_corners=False)
    out = out.to(xb.device, non_blocking=True)
    return out.squeeze(0) if single else out
