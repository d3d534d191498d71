"""Pick the threshold ratio for new data: event rate against ratio (the paper's Figure 4) and bisection.

The event rate is the fraction of set entries in the eval-mode event tensor ``[T, B, 2, H, W]``
(canonical pairs, as datasets are generated), averaged over all images. It never rises when the
ratio grows (every threshold ``ratio * (max - min)`` grows with it), so bisection on the ratio finds
the one that gives a target rate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .directions import DEFAULT_ORDER
from .i2e import I2E

RATIO_LO, RATIO_HI = 1e-3, 0.999  # I2E takes ratios in the open interval (0, 1)


@dataclass(frozen=True)
class CalibrationResult:
    """``ratio`` hits ``rate`` (closest to the target); ``curve`` is every (ratio, rate) evaluated, by ratio."""

    ratio: float
    rate: float
    target: float
    curve: list[tuple[float, float]] = field(default_factory=list)


def _as_images(images: Tensor) -> Tensor:
    if not isinstance(images, Tensor):
        raise ValueError(f"images must be a torch.Tensor [N, C, H, W], got {type(images).__name__}")
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty batch [N, 1|3, H, W], got shape {tuple(images.shape)}")
    return images


def _counter(
    images: Tensor, order: int | Sequence[int], timesteps: int, batch_size: int
) -> tuple[Callable[[float], float], int]:
    """A function ratio -> event rate over ``images`` (converted in chunks to bound memory)."""
    images = _as_images(images)
    n = images.shape[0]
    total = n * timesteps * 2 * images.shape[-2] * images.shape[-1]

    def rate(ratio: float) -> float:
        conv = I2E(float(ratio), order, timesteps, dtype=torch.bool, validate=False).eval()
        count = 0
        with torch.no_grad():
            for i in range(0, n, batch_size):
                count += int(conv(images[i : i + batch_size]).sum())
        return count / total

    # validate the order/timesteps once, with a clear error, before any work
    I2E(0.5, order, timesteps)
    if images.is_floating_point() and not bool(torch.isfinite(images).all()):
        raise ValueError("images contain NaN or Inf values: clean or clamp them before calibration")
    return rate, n


def event_rate(
    images: Tensor, ratio: float, order: int | Sequence[int] = DEFAULT_ORDER, timesteps: int = 8, batch_size: int = 256
) -> float:
    """Mean event rate of ``images`` [N, 1|3, H, W] (uint8 or float) converted with ``ratio`` (eval mode)."""
    rate, _ = _counter(images, order, timesteps, batch_size)
    return rate(ratio)


def rate_curve(
    images: Tensor,
    ratios: Sequence[float],
    order: int | Sequence[int] = DEFAULT_ORDER,
    timesteps: int = 8,
    batch_size: int = 256,
    progress: Any = None,
) -> list[tuple[float, float]]:
    """``[(ratio, event rate), ...]`` for each ratio (the paper's Figure 4), in the given order.

    ``progress`` is an optional callable invoked after each point (e.g. a rich progress advance).
    """
    if len(ratios) == 0:
        raise ValueError("ratios is empty: give at least one ratio in (0, 1)")
    rate, _ = _counter(images, order, timesteps, batch_size)
    curve = []
    for r in ratios:
        curve.append((float(r), rate(float(r))))
        if progress is not None:
            progress()
    return curve


def default_ratios(lo: float = 0.01, hi: float = 0.5, steps: int = 25) -> list[float]:
    """Evenly spaced ratios for a curve."""
    if steps < 2:
        return [lo]
    return [lo + (hi - lo) * i / (steps - 1) for i in range(steps)]


def calibrate_ratio(
    images: Tensor,
    target_rate: float,
    lo: float = RATIO_LO,
    hi: float = 0.5,
    tol: float = 1e-4,
    order: int | Sequence[int] = DEFAULT_ORDER,
    timesteps: int = 8,
    batch_size: int = 256,
    max_iter: int = 40,
    progress: Any = None,
) -> CalibrationResult:
    """The ratio in ``[lo, hi]`` whose event rate is closest to ``target_rate``, by bisection.

    Stops when the bracket is narrower than ``tol`` (in ratio) or after ``max_iter`` halvings. Raises
    ``ValueError`` when the target lies outside ``[rate(hi), rate(lo)]``, with the reachable range.
    """
    if not 0.0 < target_rate < 1.0:
        raise ValueError(f"target_rate must be a fraction in (0, 1), e.g. 0.05, got {target_rate!r}")
    if not 0.0 < lo < hi < 1.0:
        raise ValueError(f"need 0 < lo < hi < 1 for the ratio search, got lo={lo}, hi={hi}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    rate, _ = _counter(images, order, timesteps, batch_size)
    seen: dict[float, float] = {}

    def at(r: float) -> float:
        if r not in seen:
            seen[r] = rate(r)
            if progress is not None:
                progress()
        return seen[r]

    r_lo, r_hi = at(lo), at(hi)
    if not r_hi <= target_rate <= r_lo:
        raise ValueError(
            f"target rate {target_rate:g} is out of reach: ratios {lo:g}..{hi:g} give rates {r_hi:.4g}..{r_lo:.4g} "
            "(the rate falls as the ratio grows); pick a target inside that range or widen --lo/--hi"
        )
    a, b = lo, hi
    for _ in range(max_iter):
        if b - a <= tol:
            break
        mid = 0.5 * (a + b)
        if at(mid) > target_rate:
            a = mid  # still too many events: raise the threshold
        else:
            b = mid
    best = min(seen, key=lambda r: (abs(seen[r] - target_rate), r))
    curve = sorted(seen.items())
    return CalibrationResult(ratio=best, rate=seen[best], target=float(target_rate), curve=curve)


__all__ = ["CalibrationResult", "calibrate_ratio", "default_ratios", "event_rate", "rate_curve"]
