"""The I2E converter: images -> event tensors. Depends on torch only."""

from .directions import DEFAULT_ORDER, DIRECTION_PAIRS, ORDER_PRESETS, cell_offset, resolve_order
from .i2e import I2E, parse_dtype
from .reference import official_convert, official_kernels

__all__ = [
    "DEFAULT_ORDER",
    "DIRECTION_PAIRS",
    "I2E",
    "ORDER_PRESETS",
    "cell_offset",
    "official_convert",
    "official_kernels",
    "parse_dtype",
    "resolve_order",
]
