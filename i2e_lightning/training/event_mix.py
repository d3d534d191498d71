"""Training-time batch augmentation on events, as the official training scripts do it.

The official ``train.py`` applies, per training batch and after the events are made:

* random temporal deletion (``--t_train k``): keep ``k`` of the ``T`` timesteps, drawn without
  replacement and kept in time order, the same ones for the whole batch;
* mixup / cutmix (``--mixup``, for the first 2/3 of the epochs): torchvision's
  ``v2.RandomChoice([v2.CutMix(num_classes), v2.MixUp(num_classes)])`` with ``alpha=1``: the batch is
  mixed with itself rolled by one sample and the loss takes the mixed one-hot targets.

Events here are ``[T, B, C, H, W]`` (the official layout is ``[B, T, C, H, W]``; the same operations).
Random draws come from torch's global generator (``seed_everything``) unless a generator is given.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cutmix", "mixup", "mixup_or_cutmix", "random_temporal_deletion"]


def random_temporal_deletion(events: Tensor, keep: int, generator: torch.Generator | None = None) -> Tensor:
    """Keep ``keep`` random timesteps of ``[T, B, ...]`` in time order (all of them if ``keep`` is 0 or >= T)."""
    steps = events.shape[0]
    if keep <= 0 or keep >= steps:
        return events
    chosen = torch.randperm(steps, generator=generator)[:keep].sort().values
    return events.index_select(0, chosen.to(events.device))


def _beta1(generator: torch.Generator | None) -> float:
    # Beta(1, 1) is the uniform distribution: torchvision's default alpha=1.0
    return float(torch.rand((), generator=generator, dtype=torch.float64))


def _one_hot(labels: Tensor, num_classes: int) -> Tensor:
    return F.one_hot(labels.long(), num_classes).float()


def mixup(
    events: Tensor, labels: Tensor, num_classes: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """torchvision ``v2.MixUp``: ``lam * x + (1 - lam) * x.roll(1)`` over the batch, targets likewise."""
    lam = _beta1(generator)
    target = _one_hot(labels, num_classes)
    mixed = events.roll(1, 1).mul(1.0 - lam).add_(events, alpha=lam)
    return mixed, target.roll(1, 0).mul_(1.0 - lam).add_(target, alpha=lam)


def cutmix(
    events: Tensor, labels: Tensor, num_classes: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """torchvision ``v2.CutMix``: paste a box of the batch rolled by one; targets weighted by the box area."""
    lam = _beta1(generator)
    h, w = events.shape[-2:]
    centre = torch.rand(2, generator=generator, dtype=torch.float64)
    r_x, r_y = int(centre[0] * w), int(centre[1] * h)
    r = 0.5 * math.sqrt(1.0 - lam)
    r_w_half, r_h_half = int(r * w), int(r * h)
    x1, y1 = max(r_x - r_w_half, 0), max(r_y - r_h_half, 0)
    x2, y2 = min(r_x + r_w_half, w), min(r_y + r_h_half, h)
    mixed = events.clone()
    mixed[..., y1:y2, x1:x2] = events.roll(1, 1)[..., y1:y2, x1:x2]
    lam_area = 1.0 - (x2 - x1) * (y2 - y1) / (w * h)
    target = _one_hot(labels, num_classes)
    return mixed, target.roll(1, 0).mul_(1.0 - lam_area).add_(target, alpha=lam_area)


def mixup_or_cutmix(
    events: Tensor, labels: Tensor, num_classes: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """One of cutmix and mixup with equal probability (``v2.RandomChoice([cutmix, mixup])``)."""
    pick_cutmix = bool(torch.rand((), generator=generator) < 0.5)
    return (cutmix if pick_cutmix else mixup)(events, labels, num_classes, generator)
