"""Direction tables of I2E (docs/spec.md §1.3-1.5).

Cells of the 3x3 grid are numbered 1..9 row-major; a pair (from, to) is the
kernel with -1 at ``from`` and +1 at ``to``.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

# Equivalent (from, to) pairs per direction; the first one is canonical.
DIRECTION_PAIRS: tuple[tuple[tuple[int, int], ...], ...] = (
    ((5, 6), (1, 2), (2, 3), (4, 5), (7, 8), (8, 9)),  # 0 alpha
    ((5, 2), (4, 1), (6, 3), (7, 4), (8, 5), (9, 6)),  # 1 alpha
    ((5, 3), (4, 2), (7, 5), (8, 6)),  # 2 beta
    ((5, 1), (6, 2), (8, 4), (9, 5)),  # 3 beta
    ((9, 4), (6, 1)),  # 4 gamma
    ((4, 3), (7, 6)),  # 5 gamma
    ((3, 8), (2, 7)),  # 6 gamma
    ((8, 1), (9, 2)),  # 7 gamma
)

# Timestep orders of the paper's Table 5, by the official script's preset number.
ORDER_PRESETS: tuple[tuple[int, ...], ...] = (
    (0, 1, 2, 3, 4, 5, 6, 7),
    (0, 1, 4, 5, 6, 7, 2, 3),
    (2, 3, 0, 1, 4, 5, 6, 7),
    (2, 3, 4, 5, 6, 7, 0, 1),
    (4, 5, 6, 7, 0, 1, 2, 3),
    (4, 5, 6, 7, 2, 3, 0, 1),
)
DEFAULT_ORDER = 4


def cell_offset(cell: int) -> tuple[int, int]:
    """(row, column) of a 3x3 cell numbered 1..9 row-major."""
    return (cell - 1) // 3, (cell - 1) % 3


def resolve_order(order: int | Sequence[int]) -> tuple[int, ...]:
    """Turn a preset number (0-5) or a list of 8 direction indices into a tuple."""
    if isinstance(order, bool):
        raise ValueError(f"order must be a preset number 0-5 or a permutation of 0-7, got {order!r}")
    if not isinstance(order, (str, bytes)) and hasattr(order, "__index__") and getattr(order, "ndim", 0) == 0:
        order = operator.index(order)  # numpy / 0-d tensor integers are preset numbers too
    if isinstance(order, int):
        if not 0 <= order < len(ORDER_PRESETS):
            raise ValueError(
                f"order preset {order} does not exist: use a preset number 0-5 or a list of the 8 direction indices 0-7"
            )
        return ORDER_PRESETS[order]
    try:
        seq = tuple(int(d) for d in order)
    except (TypeError, ValueError):
        raise ValueError(
            f"order must be a preset number 0-5 or a list of the 8 direction indices 0-7, got {order!r}"
        ) from None
    if sorted(seq) != list(range(8)):
        raise ValueError(f"order {list(seq)} is not a permutation of 0-7: give each direction index 0..7 exactly once")
    return seq


def direction_kernels(pairs: Sequence[tuple[int, int]]) -> list[list[list[float]]]:
    """3x3 kernels (-1 at ``from``, +1 at ``to``) of the given pairs, for reference code."""
    kernels = []
    for a, b in pairs:
        k = [[0.0] * 3 for _ in range(3)]
        ra, ca = cell_offset(a)
        rb, cb = cell_offset(b)
        k[ra][ca] = -1.0
        k[rb][cb] = 1.0
        kernels.append(k)
    return kernels
