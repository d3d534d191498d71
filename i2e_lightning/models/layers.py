"""Stateless layers that fold time into the batch: ``[T, B, ...] -> [T*B, ...] -> layer -> [T, B, ...]``.

They subclass the plain ``torch.nn`` layers, so parameter / buffer names (``conv1.weight``,
``bn1.running_mean``, ...) are exactly those of the official SpikingJelly checkpoints.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SeqAdaptiveAvgPool2d", "SeqAvgPool2d", "SeqBatchNorm2d", "SeqConv2d", "SeqMaxPool2d", "fold"]


def fold(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply a per-frame function to ``[T, B, ...]`` by folding T into the batch."""
    T, B = x.shape[:2]
    y = fn(x.flatten(0, 1))
    return y.view(T, B, *y.shape[1:])


class SeqConv2d(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fold(super().forward, x)


class SeqBatchNorm2d(nn.BatchNorm2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fold(super().forward, x)


class SeqMaxPool2d(nn.MaxPool2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fold(super().forward, x)


class SeqAdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fold(super().forward, x)


class SeqAvgPool2d(nn.AvgPool2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fold(super().forward, x)
