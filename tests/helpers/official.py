"""The official pipeline's rules, written out here so tests never compare the project with itself.

Every official script and dataset notebook (github Ruichen0424/I2E) scales uint8 images with torchvision's
``v2.ToDtype(torch.float32, scale=True)``. torchvision's ``to_dtype_image`` does that as
``image.to(torch.float32).mul_(1.0 / 255)``: torch casts the Python scalar to float32 and multiplies,
so the result is ``float32(x) * float32(1/255)`` rounded once -- not ``x / 255``.
"""

from __future__ import annotations

import numpy as np
import torch

TO_DTYPE_SCALE = np.float32(1.0 / 255)  # the float32 factor ToDtype(scale=True) multiplies by


def to_dtype_scale_np(x: np.ndarray) -> np.ndarray:
    """``v2.ToDtype(torch.float32, scale=True)`` on uint8, in numpy (one float32 multiply)."""
    assert x.dtype == np.uint8
    return x.astype(np.float32) * TO_DTYPE_SCALE


def to_dtype_scale(x: torch.Tensor) -> torch.Tensor:
    """``v2.ToDtype(torch.float32, scale=True)`` on a uint8 tensor, computed with numpy on the CPU."""
    return torch.from_numpy(to_dtype_scale_np(x.cpu().numpy()))


def tv_resize_uint8(x: torch.Tensor, size: tuple[int, int], interpolation: str = "bilinear", avx2: bool = True):
    """torchvision's ``v2.Resize(size, interpolation, antialias=True)`` on a uint8 CPU tensor, written out.

    torchvision's ``resize_image`` keeps uint8 for bicubic, and for bilinear when the CPU has AVX2 (the
    official scripts resize in CPU DataLoader workers on AVX2 machines), and calls torch's ``interpolate``
    on it: torch's native uint8 resampler. Otherwise it resizes float32, clamps (bicubic), rounds, casts.
    """
    assert x.dtype == torch.uint8 and x.device.type == "cpu"
    native = interpolation == "bicubic" or avx2
    y = torch.nn.functional.interpolate(
        x if native else x.float(), size=size, mode=interpolation, antialias=True, align_corners=False
    )
    if native:
        return y
    if interpolation == "bicubic":
        y = y.clamp_(0, 255)
    return y.round_().to(torch.uint8)


# the official ``selectable_directions``' first pair of each direction (eval mode), (from cell, to cell)
OFFICIAL_EVAL_PAIRS = [(5, 6), (5, 2), (5, 3), (5, 1), (9, 4), (4, 3), (3, 8), (8, 1)]


def official_i2e(img: torch.Tensor, ratio: float, shuffle: tuple[int, ...] = (4, 5, 6, 7, 0, 1, 2, 3)) -> torch.Tensor:
    """The official ``I2E.forward`` in eval mode on float ``[B, C, H, W]`` -> float events ``[8, B, 2, H, W]``."""
    w = torch.zeros(8, 1, 3, 3)
    for i, (a, b) in enumerate(OFFICIAL_EVAL_PAIRS):
        w[i, 0, (a - 1) // 3, (a - 1) % 3] = -1
        w[i, 0, (b - 1) // 3, (b - 1) % 3] = 1
    w = w[list(shuffle)]
    v = torch.nn.functional.pad(img.max(1, keepdim=True)[0], (1, 1, 1, 1), mode="replicate")
    rng = (v.amax(dim=(2, 3), keepdim=True) - v.amin(dim=(2, 3), keepdim=True)).unsqueeze(0)
    dv = torch.nn.functional.conv2d(v, w).permute(1, 0, 2, 3)
    out = torch.stack([dv * dv.ge(0).float(), -dv * dv.lt(0).float()], dim=2)
    return out.ge(rng * ratio).float()


def tv_random_resized_crop_params(
    height: int,
    width: int,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
) -> tuple[int, int, int, int]:
    """torchvision's ``v2.RandomResizedCrop`` box ``(top, left, height, width)``, written out (its float32
    draws, one try at a time, 10 tries, then the centre fallback), with an explicit generator."""
    import math

    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = torch.exp(
            torch.empty(1).uniform_(log_ratio[0].item(), log_ratio[1].item(), generator=generator)
        ).item()
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = int(torch.randint(0, height - h + 1, size=(1,), generator=generator).item())
            j = int(torch.randint(0, width - w + 1, size=(1,), generator=generator).item())
            return i, j, h, w
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def tv_resized_crop_uint8(image: torch.Tensor, box: tuple[int, int, int, int], size: tuple[int, int]) -> torch.Tensor:
    """``v2.functional.resized_crop`` on a uint8 CPU image ``[C, H, W]`` (box inside it): slice the box, then
    ``v2.Resize(size)`` (bilinear + antialias)."""
    top, left, h, w = box
    return tv_resize_uint8(image[None, :, top : top + h, left : left + w].contiguous(), size, "bilinear")[0]
