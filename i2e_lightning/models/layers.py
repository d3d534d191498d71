"""Stateless layers that fold time into the batch: ``[T, B, ...] -> [T*B, ...] -> layer -> [T, B, ...]``.

They subclass the plain ``torch.nn`` layers, so parameter / buffer names (``conv1.weight``,
``bn1.running_mean``, ...) are exactly those of the official SpikingJelly checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "SeqAdaptiveAvgPool2d",
    "SeqAvgPool2d",
    "SeqBatchNorm2d",
    "SeqConv2d",
    "SeqMaxPool2d",
    "fold",
    "to_channels_last",
]


def fold(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply a per-frame function to ``[T, B, ...]`` by folding T into the batch."""
    T, B = x.shape[:2]
    y = fn(x.flatten(0, 1))
    return y.view(T, B, *y.shape[1:])


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``[T, B, C, H, W]`` with every frame stored NHWC, so the folded ``[T*B, C, H, W]`` views are channels_last."""
    frames = x.flatten(0, 1)
    if frames.is_contiguous(memory_format=torch.channels_last):
        return x
    return frames.contiguous(memory_format=torch.channels_last).view(x.shape)


class SeqConv2d(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a trace (TorchScript / ONNX export) records one path for every input size: keep the general one
        tracing = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
        crop = None if tracing else self._single_output_crop(x.shape[-2], x.shape[-1])
        if crop is not None:
            # The output map is 1x1 (last MS-ResNet stage on small inputs such as 32x32): the conv is
            # then one linear layer over the kernel taps that land inside the input; the other taps
            # only ever read zero padding. Same sum, a fraction of the work (1/9 for a 3x3 'same' conv).
            (ih, iw), (kh, kw) = crop
            w = self.weight[:, :, kh, kw].flatten(1)
            y = F.linear(x[..., ih, iw].flatten(2), w, self.bias)  # [T, B, C_out]
            return y[..., None, None]
        return fold(super().forward, x)

    def _single_output_crop(self, h: int, w: int) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
        """Input and kernel slices of the taps that read real pixels, if the output is 1x1; else None."""
        if self.groups != 1 or self.dilation != (1, 1) or self.padding_mode != "zeros":
            return None
        if not isinstance(self.padding, tuple):  # 'same' / 'valid' strings
            return None
        in_slices, k_slices = [], []
        for n, k, p, st in zip((h, w), self.kernel_size, self.padding, self.stride, strict=True):
            if (n + 2 * p - k) // st + 1 != 1:
                return None
            # output 0 reads input index j - p with tap j; keep the taps with 0 <= j - p < n
            j0, j1 = p, min(k - 1, p + n - 1)
            if j0 > j1:
                return None
            in_slices.append(slice(j0 - p, j1 - p + 1))
            k_slices.append(slice(j0, j1 + 1))
        return (in_slices[0], in_slices[1]), (k_slices[0], k_slices[1])


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
