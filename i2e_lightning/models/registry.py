"""Model registry: ``create_model("ms_resnet18", num_classes=10)``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .cnn import spiking_cnn
from .ms_resnet import ms_resnet18, ms_resnet34, ms_resnet50, ms_resnet101, ms_resnet152

__all__ = ["create_model", "list_models", "register_model"]

_MODELS: dict[str, Callable[..., nn.Module]] = {
    "ms_resnet18": ms_resnet18,
    "ms_resnet34": ms_resnet34,
    "ms_resnet50": ms_resnet50,
    "ms_resnet101": ms_resnet101,
    "ms_resnet152": ms_resnet152,
    "spiking_cnn": spiking_cnn,
}


def register_model(name: str, fn: Callable[..., nn.Module] | None = None):
    """Register a model factory under ``name`` (usable as a decorator)."""

    def deco(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS and _MODELS[name] is not f:
            raise ValueError(f"a model named {name!r} is already registered")
        _MODELS[name] = f
        return f

    return deco(fn) if fn is not None else deco


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(_MODELS)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model by name; ``kwargs`` go to its factory (``num_classes``, ``in_channels``, ...)."""
    key = name.lower().replace("-", "_")
    if key not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    try:
        return _MODELS[key](**kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for model {name!r}: {e}") from None
