"""Bottleneck MS-ResNet-50/101/152 (the official ``resnet50/101/152`` of Train Script/*/Network/MSNet_I2E.py)."""

from __future__ import annotations

import pytest
import torch

from i2e_lightning.models import MSBottleneck, create_model, list_models

# torchvision's resnet50/101/152 parameter counts (3 input channels, 1000 classes): the membrane-shortcut
# network has the same convolutions, BN layers and head (its LIF neurons hold no parameters)
RESNET_PARAMS = {"ms_resnet50": 25_557_032, "ms_resnet101": 44_549_160, "ms_resnet152": 60_192_808}
BLOCKS = {"ms_resnet50": (3, 4, 6, 3), "ms_resnet101": (3, 4, 23, 3), "ms_resnet152": (3, 8, 36, 3)}


@pytest.mark.parametrize("name", sorted(RESNET_PARAMS))
def test_registered_with_the_official_layout(name: str) -> None:
    assert name in list_models()
    model = create_model(name, num_classes=1000, in_channels=3)
    assert sum(p.numel() for p in model.parameters()) == RESNET_PARAMS[name]
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == list(BLOCKS[name])
    keys = model.state_dict().keys()
    # the official module names: blocks with sn1..sn3 / conv1..conv3 / bn1..bn3, downsample (LIF, conv, BN)
    for key in ("layer1.0.conv3.weight", "layer1.0.bn3.running_var", "layer1.0.downsample.1.weight", "fc.weight"):
        assert key in keys, key
    assert model.fc.weight.shape == (1000, 2048)
    assert model.layer2[0].conv2.stride == (2, 2) and model.layer2[0].conv1.stride == (1, 1)  # stride on the 3x3
    assert isinstance(model.layer4[-1], MSBottleneck) and hasattr(model.layer4[-1], "sn3")


def _every_parameter_gets_a_gradient(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, in_channels=2, zero_init_residual=False)
    events = (torch.rand(2, 2, 2, 32, 32) < 0.3).float()
    logits = model(events)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([1, 3])).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing
    zero = [n for n, p in model.named_parameters() if not p.grad.any()]
    assert not zero, zero


def test_ms_resnet50_every_parameter_gets_a_gradient() -> None:
    _every_parameter_gets_a_gradient("ms_resnet50")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ms_resnet101", "ms_resnet152"])
def test_deep_bottlenecks_every_parameter_gets_a_gradient(name: str) -> None:
    _every_parameter_gets_a_gradient(name)


def test_zero_init_residual_zeroes_bn3() -> None:
    model = create_model("ms_resnet50", num_classes=3, zero_init_residual=True)
    assert all(not block.bn3.weight.any() for layer in (model.layer1, model.layer4) for block in layer)
