"""Model registry: ``create_model("ms_resnet18", num_classes=10)``.

Each entry declares what the network needs to know about its input beyond ``num_classes`` and
``in_channels`` (as timm's registry declares a model's defaults), so callers pass the input size only
to the networks that are sized by it instead of trying and catching errors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from .cnn import spiking_cnn
from .ms_resnet import ms_resnet18, ms_resnet34, ms_resnet50, ms_resnet101, ms_resnet152

__all__ = ["ModelEntry", "create_model", "create_from_hparams", "list_models", "model_entry", "register_model"]


@dataclass(frozen=True)
class ModelEntry:
    """A registered network factory and what it needs.

    Attributes:
        factory: builds the network from keyword arguments (``num_classes``, ``in_channels``, ...).
        needs_input_size: the factory takes ``input_size=(H, W)`` and sizes layers by it (a flattening
            head); networks with a global pool take any input size and do not accept the argument.
    """

    factory: Callable[..., nn.Module]
    needs_input_size: bool = False


_MODELS: dict[str, ModelEntry] = {
    "ms_resnet18": ModelEntry(ms_resnet18),
    "ms_resnet34": ModelEntry(ms_resnet34),
    "ms_resnet50": ModelEntry(ms_resnet50),
    "ms_resnet101": ModelEntry(ms_resnet101),
    "ms_resnet152": ModelEntry(ms_resnet152),
    "spiking_cnn": ModelEntry(spiking_cnn, needs_input_size=True),
}


def _key(name: str) -> str:
    return name.lower().replace("-", "_")


def register_model(name: str, fn: Callable[..., nn.Module] | None = None, *, needs_input_size: bool = False):
    """Register a model factory under ``name`` (usable as a decorator).

    ``needs_input_size=True`` when the factory takes ``input_size=(H, W)`` (the training module then passes
    the datamodule's resolution).
    """

    def deco(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = _key(name)
        if key in _MODELS and _MODELS[key].factory is not f:
            raise ValueError(f"a model named {name!r} is already registered")
        _MODELS[key] = ModelEntry(f, needs_input_size=needs_input_size)
        return f

    return deco(fn) if fn is not None else deco


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(_MODELS)


def model_entry(name: str) -> ModelEntry:
    """The registry entry of ``name`` (``-`` and case ignored); a clear error names the known models."""
    key = _key(name)
    if key not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _MODELS[key]


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model by name; ``kwargs`` go to its factory (``num_classes``, ``in_channels``, ...)."""
    entry = model_entry(name)
    try:
        return entry.factory(**kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for model {name!r}: {e}") from None


def create_from_hparams(hparams: Mapping[str, Any]) -> nn.Module:
    """The network a ``SpikingClassifier`` with these hyper-parameters builds (the module and the exporters).

    Reads ``arch``, ``num_classes``, ``in_channels`` (default 2), ``model_kwargs`` and, for networks that
    need it, ``input_size``.
    """
    kwargs = dict(hparams.get("model_kwargs") or {})
    in_channels = int(hparams.get("in_channels") or kwargs.pop("in_channels", 2))
    kwargs.pop("in_channels", None)
    arch = str(hparams["arch"])
    size = hparams.get("input_size")
    if size is not None and "input_size" not in kwargs and model_entry(arch).needs_input_size:
        kwargs["input_size"] = [int(s) for s in ([size] * 2 if isinstance(size, int) else size)]
    return create_model(arch, num_classes=int(hparams["num_classes"]), in_channels=in_channels, **kwargs)
