"""i2e_lightning: I2E image-to-event conversion and spiking-network training with Lightning."""

from .converter import I2E

__version__ = "0.1.0"

__all__ = ["I2E", "__version__"]
