"""Model helpers: spike-rate recording, head replacement."""

from __future__ import annotations

import torch
from torch import nn

from .neurons import MultiStepLeaky

__all__ = ["lif_layers", "replace_head", "set_spike_recording", "spike_rates"]


def lif_layers(model: nn.Module) -> dict[str, MultiStepLeaky]:
    """All LIF layers of ``model`` by module name (``"layer1.0.sn1"``, ...)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, MultiStepLeaky)}


def set_spike_recording(model: nn.Module, on: bool = True) -> nn.Module:
    """Turn per-layer firing-rate recording on or off (off costs nothing; on costs one mean per layer)."""
    for m in lif_layers(model).values():
        m.record = bool(on)
        m.last_rate = None
    return model


def spike_rates(model: nn.Module) -> dict[str, float]:
    """Mean firing rate (spikes per neuron per timestep, in [0, 1]) of every LIF layer in the last forward.

    Only layers that recorded something appear: call :func:`set_spike_recording` first.
    """
    rates = {name: m.last_rate for name, m in lif_layers(model).items() if m.last_rate is not None}
    if not rates:
        return {}
    # one device->host copy for all layers instead of one sync per layer
    values = torch.stack([r.float() for r in rates.values()]).cpu().tolist()
    return dict(zip(rates.keys(), values, strict=True))


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Give ``model`` a fresh ``num_classes``-way classifier (``model.fc``), e.g. to fine-tune on a new dataset.

    The new layer sits on the old one's device and dtype; nothing happens when the class count already matches.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    fc = getattr(model, "fc", None)
    if not isinstance(fc, nn.Linear):
        raise ValueError(f"{type(model).__name__} has no linear classifier 'fc' to replace")
    if fc.out_features != num_classes:
        model.fc = nn.Linear(
            fc.in_features, num_classes, bias=fc.bias is not None, device=fc.weight.device, dtype=fc.weight.dtype
        )
    if hasattr(model, "num_classes"):
        model.num_classes = num_classes
    return model
