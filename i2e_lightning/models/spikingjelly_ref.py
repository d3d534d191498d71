"""Reference networks on SpikingJelly's multi-step LIF (optional dependency), for tests and benchmarks.

The MS-ResNets here have the official I2E module names and neuron settings
(``LIFNode(tau=2, decay_input=False, v_reset=0, v_threshold=1, detach_reset=True, ATan)``,
multi-step, torch backend), so their state dicts are in the official checkpoint layout.
Install with ``pip install --no-deps spikingjelly==0.0.0.0.14`` (only ``activation_based`` is used).
"""

from __future__ import annotations

import torch
from torch import nn

try:
    from spikingjelly.activation_based import functional, layer, neuron, surrogate
except ImportError as e:  # pragma: no cover - exercised only without spikingjelly
    raise ImportError(
        "i2e_lightning.models.spikingjelly_ref needs SpikingJelly: "
        "pip install --no-deps spikingjelly==0.0.0.0.14 (or the 'dev' extra)"
    ) from e

__all__ = ["sj_ms_resnet18", "sj_ms_resnet34", "sj_spiking_cnn", "SJMSResNet", "SJSpikingCNN"]


def _lif() -> nn.Module:
    return neuron.LIFNode(
        tau=2.0,
        decay_input=False,
        v_reset=0.0,
        v_threshold=1.0,
        detach_reset=True,
        surrogate_function=surrogate.ATan(),
        step_mode="m",
        backend="torch",
    )


def _conv(cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, bias: bool = False) -> nn.Module:
    return layer.Conv2d(cin, cout, kernel_size=k, stride=stride, padding=padding, bias=bias, step_mode="m")


def _bn(c: int) -> nn.Module:
    return layer.BatchNorm2d(c, step_mode="m")


class SJBasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.sn1 = _lif()
        self.conv1 = _conv(inplanes, planes, 3, stride, 1)
        self.bn1 = _bn(planes)
        self.sn2 = _lif()
        self.conv2 = _conv(planes, planes, 3, 1, 1)
        self.bn2 = _bn(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.conv1(self.sn1(x)))
        out = self.bn2(self.conv2(self.sn2(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class SJMSResNet(nn.Module):
    """The official MS-ResNet on SpikingJelly; input ``[T, B, C, H, W]``, logits ``[B, K]`` (mean over T).

    Neuron states are reset at the start of every forward (``functional.reset_net``).
    """

    def __init__(self, layers: tuple[int, ...], num_classes: int = 10, in_channels: int = 2) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = _conv(in_channels, 64, 7, 2, 3)
        self.bn1 = _bn(64)
        self.maxpool = layer.MaxPool2d(kernel_size=3, stride=2, padding=1, step_mode="m")
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], 2)
        self.layer3 = self._make_layer(256, layers[2], 2)
        self.layer4 = self._make_layer(512, layers[3], 2)
        self.avgpool = layer.AdaptiveAvgPool2d((1, 1), step_mode="m")
        self.sn1 = _lif()
        self.fc = layer.Linear(512, num_classes, step_mode="m")
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(_lif(), _conv(self.inplanes, planes, 1, stride), _bn(planes))
        mods = [SJBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        mods += [SJBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        functional.reset_net(self)
        x = self.maxpool(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.sn1(self.avgpool(x)).flatten(2)
        return self.fc(x).mean(0)


def sj_ms_resnet18(num_classes: int = 10, in_channels: int = 2) -> SJMSResNet:
    return SJMSResNet((2, 2, 2, 2), num_classes, in_channels)


def sj_ms_resnet34(num_classes: int = 10, in_channels: int = 2) -> SJMSResNet:
    return SJMSResNet((3, 4, 6, 3), num_classes, in_channels)


class SJConvStage(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int, pool: str) -> None:
        super().__init__()
        self.conv = _conv(cin, cout, kernel_size, stride, kernel_size // 2)
        self.bn = _bn(cout)
        if pool == "max":
            self.pool: nn.Module = layer.MaxPool2d(2, step_mode="m")
        elif pool == "avg":
            self.pool = layer.AvgPool2d(2, step_mode="m")
        else:
            self.pool = nn.Identity()
        self.sn = _lif()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sn(self.pool(self.bn(self.conv(x))))


class SJSpikingCNN(nn.Module):
    """SpikingJelly twin of :class:`i2e_lightning.models.SpikingCNN` (same options and state-dict names)."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 2,
        channels: tuple[int, ...] = (32, 64),
        hidden: int = 0,
        kernel_size: int = 3,
        stem_stride: int = 1,
        pool: str = "max",
        global_pool: bool = False,
        input_size: tuple[int, int] = (32, 32),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        cins = [in_channels, *channels[:-1]]
        self.global_pool = global_pool
        self.stages = nn.Sequential(
            *[
                SJConvStage(ci, co, kernel_size, stem_stride if i == 0 else 1, pool)
                for i, (ci, co) in enumerate(zip(cins, channels, strict=True))
            ]
        )
        self.stages.eval()
        with torch.no_grad():
            functional.reset_net(self.stages)
            fh, fw = self.stages(torch.zeros(1, 1, in_channels, *input_size)).shape[-2:]
        self.stages.train()
        feat = channels[-1] if global_pool else channels[-1] * fh * fw
        self.dropout = nn.Dropout(dropout)
        self.fc_hidden = nn.Linear(feat, hidden) if hidden else None
        self.sn_hidden = _lif() if hidden else None
        self.fc = nn.Linear(hidden or feat, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        functional.reset_net(self)
        x = self.stages(x)
        x = x.mean((3, 4)) if self.global_pool else x.flatten(2)
        x = self.dropout(x)
        if self.fc_hidden is not None:
            x = self.sn_hidden(self.fc_hidden(x))
        return self.fc(x).mean(0)


def sj_spiking_cnn(num_classes: int = 10, in_channels: int = 2, **kw) -> SJSpikingCNN:
    return SJSpikingCNN(num_classes=num_classes, in_channels=in_channels, **kw)
