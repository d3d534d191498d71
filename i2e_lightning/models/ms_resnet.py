"""MS-ResNet18/34/50/101/152 (membrane-shortcut ResNet) on snnTorch LIF neurons, laid out like the official I2E code.

Module names follow the official SpikingJelly network (``Train Script/*/Network/MSNet_I2E.py``), so its
checkpoints load 1:1 (see :mod:`i2e_lightning.models.official`): ``conv1, bn1, maxpool, layer1..layer4``
(basic blocks with ``sn1, conv1, bn1, sn2, conv2, bn2``, bottleneck blocks with a third
``sn3, conv3, bn3``, and ``downsample = (LIF, conv1x1, BN)``), ``avgpool, sn1, fc``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..events.packed import PackedEvents, as_event_batch
from .layers import SeqAdaptiveAvgPool2d, SeqBatchNorm2d, SeqConv2d, SeqMaxPool2d, to_channels_last
from .neurons import MultiStepLeaky

__all__ = [
    "MSBasicBlock",
    "MSBottleneck",
    "MSResNet",
    "ms_resnet18",
    "ms_resnet34",
    "ms_resnet50",
    "ms_resnet101",
    "ms_resnet152",
]


def _conv3x3(cin: int, cout: int, stride: int = 1) -> SeqConv2d:
    return SeqConv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> SeqConv2d:
    return SeqConv2d(cin, cout, kernel_size=1, stride=stride, padding=0, bias=False)


class MSBasicBlock(nn.Module):
    """LIF -> conv3x3 -> BN -> LIF -> conv3x3 -> BN, plus the block input (membrane shortcut)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, **lif_kw):
        super().__init__()
        self.sn1 = MultiStepLeaky(**lif_kw)
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = SeqBatchNorm2d(planes)
        self.sn2 = MultiStepLeaky(**lif_kw)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = SeqBatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spikes = self.sn1(x)
        out = self.bn1(self.conv1(spikes))
        out = self.bn2(self.conv2(self.sn2(out)))
        return out + _shortcut(self, x, spikes)


class MSBottleneck(nn.Module):
    """LIF -> conv1x1 -> BN -> LIF -> conv3x3 (stride) -> BN -> LIF -> conv1x1 (x4) -> BN, plus the block input."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, **lif_kw):
        super().__init__()
        self.sn1 = MultiStepLeaky(**lif_kw)
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = SeqBatchNorm2d(planes)
        self.sn2 = MultiStepLeaky(**lif_kw)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = SeqBatchNorm2d(planes)
        self.sn3 = MultiStepLeaky(**lif_kw)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = SeqBatchNorm2d(planes * self.expansion)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spikes = self.sn1(x)
        out = self.bn1(self.conv1(spikes))
        out = self.bn2(self.conv2(self.sn2(out)))
        out = self.bn3(self.conv3(self.sn3(out)))
        return out + _shortcut(self, x, spikes)


def _shortcut(block: nn.Module, x: torch.Tensor, spikes: torch.Tensor) -> torch.Tensor:
    """The block input, or its downsample (LIF -> conv1x1 -> BN) given ``spikes = block.sn1(x)``."""
    ds = block.downsample
    if ds is None:
        return x
    lif = ds[0] if isinstance(ds, nn.Sequential) and len(ds) == 3 else None
    if lif is not None and isinstance(block.sn1, MultiStepLeaky) and block.sn1.same_dynamics(lif):
        # the shortcut's LIF sees the same input as sn1 and has the same constants: its spikes are
        # sn1's, so reuse them (one neuron loop less; gradients add up through sn1 exactly the same)
        if lif.record:
            lif.last_rate = block.sn1.last_rate
        return ds[2](ds[1](spikes))
    return ds(x)


class MSResNet(nn.Module):
    """Membrane-shortcut ResNet. Input events ``[T, B, C, H, W]`` (float), output logits ``[B, num_classes]``
    averaged over T.

    ``lif_kw`` go to every :class:`MultiStepLeaky` (``beta``, ``threshold``, ``spike_grad``, ...).
    ``channels_last`` (default) keeps conv weights and activations NHWC: mkldnn / cuDNN convolutions
    run faster on it than on NCHW, and weights then need no per-call layout conversion.
    """

    def __init__(
        self,
        layers: tuple[int, int, int, int] | list[int],
        num_classes: int = 10,
        in_channels: int = 2,
        zero_init_residual: bool = False,
        channels_last: bool = True,
        block: type[MSBasicBlock] | type[MSBottleneck] = MSBasicBlock,
        **lif_kw,
    ) -> None:
        super().__init__()
        if num_classes < 1 or in_channels < 1:
            raise ValueError(f"num_classes and in_channels must be >= 1, got {num_classes}, {in_channels}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.channels_last = channels_last
        self._lif_kw = dict(lif_kw)
        self.block = block
        self.inplanes = 64
        self.conv1 = SeqConv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = SeqBatchNorm2d(64)
        self.maxpool = SeqMaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = SeqAdaptiveAvgPool2d((1, 1))
        self.sn1 = MultiStepLeaky(**lif_kw)
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, MSBottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, MSBasicBlock):
                    nn.init.zeros_(m.bn2.weight)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        block = self.block
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                MultiStepLeaky(**self._lif_kw),
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                SeqBatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, **self._lif_kw)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, **self._lif_kw) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor | PackedEvents) -> torch.Tensor:
        x = as_event_batch(x, self.fc.weight.device)  # packed rows are unpacked where the weights are
        _check_input(x, self.in_channels, type(self).__name__)
        T, B = x.shape[:2]
        if self.channels_last:
            x = to_channels_last(x)
        x = self.maxpool(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.sn1(self.avgpool(x)).flatten(2)  # [T, B, 512 * expansion]
        return self.fc(x).mean(0)


def _check_input(x: torch.Tensor, in_channels: int, name: str) -> None:
    if x.dim() != 5 or x.shape[2] != in_channels:
        raise ValueError(
            f"{name} expects events [T, B, {in_channels}, H, W] (time first), got shape {tuple(x.shape)}; "
            "a [B, T, C, H, W] batch needs x.transpose(0, 1)"
        )
    if not x.is_floating_point():
        raise ValueError(f"{name} expects float events, got {x.dtype}; use events.float()")


def ms_resnet18(num_classes: int = 10, in_channels: int = 2, **kw) -> MSResNet:
    """MS-ResNet18 (blocks 2-2-2-2) as in the I2E paper."""
    return MSResNet((2, 2, 2, 2), num_classes=num_classes, in_channels=in_channels, **kw)


def ms_resnet34(num_classes: int = 10, in_channels: int = 2, **kw) -> MSResNet:
    """MS-ResNet34 (blocks 3-4-6-3) as in the I2E paper."""
    return MSResNet((3, 4, 6, 3), num_classes=num_classes, in_channels=in_channels, **kw)


def ms_resnet50(num_classes: int = 10, in_channels: int = 2, **kw) -> MSResNet:
    """MS-ResNet50 (bottleneck blocks 3-4-6-3), the official ``resnet50``."""
    return MSResNet((3, 4, 6, 3), num_classes=num_classes, in_channels=in_channels, block=MSBottleneck, **kw)


def ms_resnet101(num_classes: int = 10, in_channels: int = 2, **kw) -> MSResNet:
    """MS-ResNet101 (bottleneck blocks 3-4-23-3), the official ``resnet101``."""
    return MSResNet((3, 4, 23, 3), num_classes=num_classes, in_channels=in_channels, block=MSBottleneck, **kw)


def ms_resnet152(num_classes: int = 10, in_channels: int = 2, **kw) -> MSResNet:
    """MS-ResNet152 (bottleneck blocks 3-8-36-3), the official ``resnet152``."""
    return MSResNet((3, 8, 36, 3), num_classes=num_classes, in_channels=in_channels, block=MSBottleneck, **kw)
