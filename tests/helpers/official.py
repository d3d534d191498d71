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
