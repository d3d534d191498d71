"""i2e_lightning: I2E image-to-event conversion and spiking-network training with Lightning."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["I2E", "__version__"]


def __getattr__(name: str) -> Any:
    # the converter (and torch with it) is imported on first use, so `python -m i2e_lightning --help` starts fast
    if name == "I2E":
        from .converter import I2E

        return I2E
    raise AttributeError(f"module 'i2e_lightning' has no attribute {name!r}")
