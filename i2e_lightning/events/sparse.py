"""Dense event frames <-> sparse event lists as used by tonic (structured arrays with x, y, t, p).

Dense events are bool ``[T, 2, H, W]`` with channel 0 = ON and channel 1 = OFF. A sparse event is
``(x, y, t, p)`` with ``t = timestep * dt_us`` microseconds and ``p = 1`` for ON, ``0`` for OFF;
``sensor_size`` is ``(W, H, 2)`` as tonic expects. Both directions are loss-free for binary frames.

tonic's own default dtype is ``[("x", int16), ("y", int16), ("t", int64), ("p", bool)]``
(``tonic.io.events_struct``, the default here); its N-MNIST loader uses int64 for all four
fields (:data:`TONIC_INT64_DTYPE`). Any structured dtype with these four fields works.
Note that tonic's ``ToFrame`` puts polarity ``p`` into frame channel ``p``, so ON events land in
channel 1 there, while :func:`sparse_to_dense` restores this project's order (ON = channel 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

# tonic.io.events_struct: the dtype tonic's readers and transforms use by default
TONIC_DTYPE = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "?")])
# the all-int64 dtype of tonic's N-MNIST / MVSEC datasets
TONIC_INT64_DTYPE = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
DEFAULT_DT_US = 1000

_FIELDS = ("x", "y", "t", "p")


def _check_dtype(dtype: np.dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.names is None or any(f not in dtype.names for f in _FIELDS):
        raise ValueError(f"sparse events need a structured dtype with fields x, y, t, p; got {dtype}")
    return dtype


def sensor_size(shape: Sequence[int]) -> tuple[int, int, int]:
    """tonic's ``sensor_size`` ``(W, H, 2)`` for dense events of shape ``(T, 2, H, W)`` (or ``(2, H, W)``)."""
    dims = tuple(int(s) for s in shape)
    if len(dims) not in (3, 4) or dims[-3] != 2:
        raise ValueError(f"dense events must be [T, 2, H, W] (or [2, H, W]), got shape {dims}")
    return dims[-1], dims[-2], 2


def dense_to_sparse(
    events: np.ndarray | torch.Tensor,
    dt_us: int = DEFAULT_DT_US,
    dtype: np.dtype = TONIC_DTYPE,
) -> np.ndarray:
    """Bool ``[T, 2, H, W]`` -> structured array of events ``(x, y, t, p)`` sorted by time.

    Within a timestep, ON events come before OFF events, each in row-major pixel order.
    """
    if isinstance(events, torch.Tensor):
        events = events.detach().cpu().numpy()
    events = np.asarray(events)
    if events.ndim != 4 or events.shape[1] != 2:
        raise ValueError(f"dense events must be [T, 2, H, W] (T first, ON/OFF second), got shape {events.shape}")
    if isinstance(dt_us, bool) or not isinstance(dt_us, (int, np.integer)) or dt_us < 1:
        raise ValueError(f"dt_us must be a positive integer number of microseconds, got {dt_us!r}")
    dtype = _check_dtype(dtype)
    t_steps, _, h, w = events.shape
    for name, limit in (("x", w - 1), ("y", h - 1), ("t", (t_steps - 1) * int(dt_us))):
        info = np.iinfo(dtype[name]) if dtype[name].kind in "iu" else None
        if info is not None and limit > info.max:
            raise ValueError(f"field {name} of {dtype} cannot hold {limit}: use a wider dtype (e.g. int64)")
    # np.nonzero walks C order: time, then polarity channel, then y, then x -> already time-sorted
    ts, ch, ys, xs = np.nonzero(events)
    out = np.empty(len(ts), dtype=dtype)
    out["x"] = xs
    out["y"] = ys
    out["t"] = ts.astype(np.int64) * int(dt_us)
    out["p"] = ch == 0  # channel 0 is ON -> p = 1
    return out


def sparse_to_dense(
    events: np.ndarray,
    sensor_size: Sequence[int],
    timesteps: int | None = None,
    dt_us: int = DEFAULT_DT_US,
) -> np.ndarray:
    """Structured ``(x, y, t, p)`` events -> bool ``[T, 2, H, W]`` (channel 0 = ON = ``p == 1``).

    Args:
        events: structured array with fields x, y, t, p (any order, any integer/bool types).
        sensor_size: ``(W, H, 2)`` as tonic gives it.
        timesteps: T; default ``max(t) // dt_us + 1`` (at least 1).
        dt_us: microseconds per timestep; every ``t`` must be a multiple of it (else the frames
            would not round-trip and this raises).
    """
    events = np.asarray(events)
    _check_dtype(events.dtype)
    if len(sensor_size) != 3 or int(sensor_size[2]) != 2:
        raise ValueError(f"sensor_size must be (W, H, 2), got {tuple(sensor_size)}")
    w, h = int(sensor_size[0]), int(sensor_size[1])
    if isinstance(dt_us, bool) or not isinstance(dt_us, (int, np.integer)) or dt_us < 1:
        raise ValueError(f"dt_us must be a positive integer number of microseconds, got {dt_us!r}")
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    t = events["t"].astype(np.int64)
    p = events["p"].astype(np.int64)
    if len(events):
        if x.min() < 0 or x.max() >= w or y.min() < 0 or y.max() >= h:
            raise ValueError(
                f"events fall outside sensor_size (W={w}, H={h}): x in [{x.min()}, {x.max()}], "
                f"y in [{y.min()}, {y.max()}]"
            )
        if t.min() < 0:
            raise ValueError(f"event times must be >= 0, got t = {t.min()}")
        if np.any(t % dt_us):
            raise ValueError(f"event times must be multiples of dt_us={dt_us} to map onto timesteps")
        if not np.isin(p, (0, 1)).all():
            raise ValueError(f"polarity p must be 0 (OFF) or 1 (ON), got values {np.unique(p)[:5].tolist()}")
    step = t // dt_us
    if timesteps is None:
        timesteps = int(step.max()) + 1 if len(events) else 1
    if len(events) and step.max() >= timesteps:
        raise ValueError(f"an event at t={t.max()} us is past timestep {timesteps - 1} (dt_us={dt_us})")
    dense = np.zeros((int(timesteps), 2, h, w), dtype=np.bool_)
    dense[step, 1 - p, y, x] = True
    return dense
