"""The official formulation (pad -> conv2d with the 8 kernels -> float masks).

Kept as the baseline that benchmarks compare against; tests write their own copy
from the spec so that they do not trust this one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .directions import DEFAULT_ORDER, DIRECTION_PAIRS, direction_kernels, resolve_order


def official_kernels(order: int | Sequence[int] = DEFAULT_ORDER, timesteps: int = 8) -> Tensor:
    """Canonical kernels of the kept timesteps, ``[T, 1, 3, 3]`` float32."""
    dirs = resolve_order(order)[:timesteps]
    return torch.tensor(direction_kernels([DIRECTION_PAIRS[d][0] for d in dirs])).unsqueeze(1)


def official_convert(
    images: Tensor,
    ratio: float = 0.12,
    order: int | Sequence[int] = DEFAULT_ORDER,
    timesteps: int = 8,
    kernels: Tensor | None = None,
    fire_on_flat: bool = False,
) -> Tensor:
    """Float32 events ``[T, B, 2, H, W]`` of float images ``[B, 3, H, W]`` in [0, 1].

    ``fire_on_flat=True`` reproduces the official bug where a flat image fires every pixel.
    """
    if kernels is None:
        kernels = official_kernels(order, timesteps).to(images.device)
    v = images.float().amax(dim=1, keepdim=True)
    th = ratio * (v.amax(dim=(1, 2, 3), keepdim=True) - v.amin(dim=(1, 2, 3), keepdim=True))
    dv = F.conv2d(F.pad(v, (1, 1, 1, 1), mode="replicate"), kernels)  # [B, T, H, W]
    on = (dv >= th).float()
    off = (-dv >= th).float()
    if not fire_on_flat:
        flat = (th == 0).float()
        on, off = on * (1 - flat), off * (1 - flat)
    return torch.stack([on, off], dim=2).transpose(0, 1)
