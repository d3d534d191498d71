"""A small, fast spiking CNN for quick CPU runs (e.g. I2E Fashion-MNIST / MNIST at 32x32)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..events.packed import PackedEvents, as_event_batch
from .layers import SeqAvgPool2d, SeqBatchNorm2d, SeqConv2d, SeqMaxPool2d, to_channels_last
from .ms_resnet import _check_input
from .neurons import MultiStepLeaky

__all__ = ["SpikingCNN", "spiking_cnn"]


class ConvStage(nn.Module):
    """conv kxk -> BN -> pool 2x2 -> LIF. Pooling the BN output before the neuron makes the LIF loop
    run on a quarter of the elements (max-pooling spikes afterwards would cost 4x more neuron work)."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int, pool: str, **lif_kw) -> None:
        super().__init__()
        self.conv = SeqConv2d(cin, cout, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
        self.bn = SeqBatchNorm2d(cout)
        if pool == "max":
            self.pool: nn.Module = SeqMaxPool2d(2)
        elif pool == "avg":
            self.pool = SeqAvgPool2d(2)
        elif pool == "none":
            self.pool = nn.Identity()
        else:
            raise ValueError(f"pool must be 'max', 'avg' or 'none', got {pool!r}")
        self.sn = MultiStepLeaky(**lif_kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sn(self.pool(self.bn(self.conv(x))))


class SpikingCNN(nn.Module):
    """``len(channels)`` conv stages, then global or flattened features -> [fc_hidden -> LIF] -> fc.

    Input events ``[T, B, C, H, W]`` float, output logits ``[B, num_classes]`` averaged over T.

    Args:
        channels: output channels of each conv stage (each stage halves H and W unless ``pool="none"``).
        hidden: width of a spiking hidden linear layer before the classifier (0: none).
        kernel_size: conv kernel size of every stage.
        stem_stride: stride of the first conv (2 halves the input at the cost of little accuracy).
        pool: ``"max"``, ``"avg"`` or ``"none"`` pooling in every stage.
        global_pool: average the last feature map over H, W (any input size) instead of flattening it
            (flattening keeps where features are, usually more accurate on small centred images; the
            head is then sized for ``input_size``).
        input_size: ``(H, W)`` of the events when ``global_pool=False``.
        dropout: dropout on the features before the classifier (training only).
        channels_last: keep conv weights and activations NHWC (faster convolutions).
        **lif_kw: passed to every :class:`MultiStepLeaky` (``beta``, ``threshold``, ``spike_grad``, ...).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 2,
        channels: Sequence[int] = (32, 64),
        hidden: int = 0,
        kernel_size: int = 3,
        stem_stride: int = 1,
        pool: str = "max",
        global_pool: bool = False,
        input_size: Sequence[int] = (32, 32),
        dropout: float = 0.0,
        channels_last: bool = True,
        **lif_kw,
    ) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if num_classes < 1 or in_channels < 1 or not channels or min(channels) < 1:
            raise ValueError(
                f"need num_classes >= 1, in_channels >= 1 and a non-empty positive channels list, "
                f"got num_classes={num_classes}, in_channels={in_channels}, channels={channels}"
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.channels_last = channels_last
        self.global_pool = global_pool
        cins = [in_channels, *channels[:-1]]
        self.stages = nn.Sequential(
            *[
                ConvStage(ci, co, kernel_size, stem_stride if i == 0 else 1, pool, **lif_kw)
                for i, (ci, co) in enumerate(zip(cins, channels, strict=True))
            ]
        )
        self.dropout = nn.Dropout(dropout)
        self.input_size = tuple(int(s) for s in input_size)
        self.feature_size = self._feature_size()
        feat = channels[-1] if global_pool else channels[-1] * self.feature_size[0] * self.feature_size[1]
        self.fc_hidden = nn.Linear(feat, hidden) if hidden else None
        self.sn_hidden = MultiStepLeaky(**lif_kw) if hidden else None
        self.fc = nn.Linear(hidden or feat, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def _feature_size(self) -> tuple[int, int]:
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise ValueError(f"input_size must be (H, W) with positive sizes, got {self.input_size}")
        probe = torch.zeros(1, 1, self.in_channels, *self.input_size)
        self.stages.eval()  # a probe must not touch the BN running statistics
        try:
            with torch.no_grad():
                out = self.stages(probe)
        except RuntimeError as e:
            raise ValueError(
                f"input_size {self.input_size} is too small for {len(self.stages)} conv stages: {e}"
            ) from None
        finally:
            self.stages.train()
        if out.shape[-1] < 1 or out.shape[-2] < 1:
            raise ValueError(f"input_size {self.input_size} is too small for {len(self.stages)} conv stages")
        return int(out.shape[-2]), int(out.shape[-1])

    def forward(self, x: torch.Tensor | PackedEvents) -> torch.Tensor:
        x = as_event_batch(x, self.fc.weight.device)  # packed rows are unpacked where the weights are
        _check_input(x, self.in_channels, type(self).__name__)
        if not self.global_pool and tuple(x.shape[-2:]) != self.input_size:
            raise ValueError(
                f"SpikingCNN was built for {self.input_size[0]}x{self.input_size[1]} events (input_size), got "
                f"{x.shape[-2]}x{x.shape[-1]}; build it with input_size={tuple(x.shape[-2:])} or global_pool=True"
            )
        if self.channels_last:
            x = to_channels_last(x)
        x = self.stages(x)
        x = x.mean((3, 4)) if self.global_pool else x.flatten(2)  # [T, B, F]
        x = self.dropout(x)
        if self.fc_hidden is not None:
            x = self.sn_hidden(self.fc_hidden(x))
        return self.fc(x).mean(0)


def spiking_cnn(num_classes: int = 10, in_channels: int = 2, channels: Sequence[int] = (32, 64), **kw) -> SpikingCNN:
    """Small spiking CNN (see :class:`SpikingCNN` for the options)."""
    return SpikingCNN(num_classes=num_classes, in_channels=in_channels, channels=channels, **kw)
