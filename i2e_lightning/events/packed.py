"""Bit-packed event rows: ``np.packbits`` of bool ``[T, 2, H, W]`` in C order (docs/spec.md §2).

One sample becomes ``ceil(T*2*H*W / 8)`` bytes, most significant bit first (numpy's
``bitorder="big"``); the padding bits of the last byte are written as zeros and ignored
on reading. The same bytes are produced by the numpy path (fast on the CPU) and by the
torch path (runs on whatever device the tensor lives on, e.g. to unpack a batch on the GPU).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

ArrayLike = np.ndarray | Tensor

# bit weights of one byte, most significant first (np.packbits' default "big" bit order)
_SHIFTS = (7, 6, 5, 4, 3, 2, 1, 0)


def event_shape(shape: Sequence[int]) -> tuple[int, int, int, int]:
    """Validate and normalise a per-sample event shape ``(T, C, H, W)``."""
    try:
        dims = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"event shape must be four integers (T, C, H, W), got {shape!r}") from None
    if len(dims) != 4 or any(d < 1 for d in dims):
        raise ValueError(f"event shape must be four positive integers (T, C, H, W), got {shape!r}")
    return dims  # type: ignore[return-value]


def packed_size(shape: Sequence[int]) -> int:
    """Bytes of one packed sample of shape ``(T, C, H, W)``: ``ceil(T*C*H*W / 8)``."""
    return math.ceil(math.prod(event_shape(shape)) / 8)


def _split_batch(x: ArrayLike, what: str) -> tuple[bool, tuple[int, ...]]:
    """Whether ``x`` is a batch ``[N, T, C, H, W]`` (else one sample ``[T, C, H, W]``) and its sample shape."""
    if x.ndim == 4:
        return False, tuple(x.shape)
    if x.ndim == 5:
        return True, tuple(x.shape[1:])
    raise ValueError(f"{what} must be bool [T, C, H, W] or [N, T, C, H, W], got shape {tuple(x.shape)}")


def pack_events(events: ArrayLike) -> ArrayLike:
    """Pack bool events ``[T, C, H, W]`` -> uint8 ``[nbytes]`` or ``[N, T, C, H, W]`` -> ``[N, nbytes]``.

    A numpy array gives a numpy array (``np.packbits``); a torch tensor gives a uint8 tensor on
    the same device, bit-identical to ``np.packbits``. Any nonzero value counts as an event.
    """
    if isinstance(events, np.ndarray):
        batched, _ = _split_batch(events, "events")
        flat = events.reshape(events.shape[0], -1) if batched else events.reshape(-1)
        if flat.dtype != np.bool_:
            flat = flat != 0
        return np.packbits(flat, axis=-1)
    if isinstance(events, Tensor):
        batched, _ = _split_batch(events, "events")
        n = events.shape[0] if batched else 1
        flat = events.reshape(n, -1)
        flat = (flat != 0) if flat.dtype != torch.bool else flat
        nbits = flat.shape[1]
        pad = (-nbits) % 8
        if pad:
            flat = torch.cat([flat, flat.new_zeros((n, pad))], dim=1)
        bits = flat.view(n, -1, 8).to(torch.uint8)
        out = bits[:, :, 0] << 7
        for i in range(1, 8):
            out |= bits[:, :, i] << _SHIFTS[i]
        return out if batched else out[0]
    raise ValueError(f"events must be a numpy array or torch tensor, got {type(events).__name__}")


def _check_packed(packed: ArrayLike, shape: Sequence[int]) -> tuple[tuple[int, int, int, int], int, bool]:
    dims = event_shape(shape)
    nbytes = packed_size(dims)
    if packed.ndim not in (1, 2):
        raise ValueError(f"packed events must be uint8 [nbytes] or [N, nbytes], got shape {tuple(packed.shape)}")
    if packed.shape[-1] != nbytes:
        raise ValueError(
            f"packed row has {packed.shape[-1]} bytes but shape {dims} needs ceil({math.prod(dims)}/8) = {nbytes}: "
            "the shape does not belong to these bytes"
        )
    return dims, nbytes, packed.ndim == 2


def unpack_events_np(packed: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Unpack uint8 ``[nbytes]`` / ``[N, nbytes]`` to numpy bool ``[T, C, H, W]`` / ``[N, T, C, H, W]``."""
    packed = np.asarray(packed)
    if packed.dtype != np.uint8:
        raise ValueError(f"packed events must be uint8, got {packed.dtype}")
    dims, _, batched = _check_packed(packed, shape)
    nbits = math.prod(dims)
    bits = np.unpackbits(packed, axis=-1, count=nbits).view(np.bool_)
    return bits.reshape((packed.shape[0], *dims) if batched else dims)


def unpack_events(packed: ArrayLike, shape: Sequence[int], device: torch.device | str | None = None) -> Tensor:
    """Unpack uint8 ``[nbytes]`` / ``[N, nbytes]`` to a torch bool tensor ``[T, C, H, W]`` / ``[N, T, C, H, W]``.

    The bytes are moved to ``device`` first (default: where they are; CPU for numpy input), so
    unpacking a batch of rows on the GPU only transfers the packed bytes (8x less than bool).
    Padding bits after the last event are ignored.
    """
    if isinstance(packed, np.ndarray):
        arr = np.ascontiguousarray(packed)
        # torch refuses to share read-only memory (e.g. np.frombuffer of bytes): copy those
        packed = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    if not isinstance(packed, Tensor):
        raise ValueError(f"packed events must be a numpy array or torch tensor, got {type(packed).__name__}")
    if packed.dtype != torch.uint8:
        raise ValueError(f"packed events must be uint8, got {packed.dtype}")
    dims, nbytes, batched = _check_packed(packed, shape)
    if device is not None:
        packed = packed.to(device, non_blocking=True)
    rows = packed.reshape(-1, nbytes)
    shifts = torch.tensor(_SHIFTS, dtype=torch.uint8, device=rows.device)
    bits = (rows.unsqueeze(-1) >> shifts).bitwise_and_(1).view(torch.bool)
    nbits = math.prod(dims)
    bits = bits.reshape(rows.shape[0], nbytes * 8)[:, :nbits]
    return bits.reshape(rows.shape[0], *dims) if batched else bits.reshape(dims)


_PACK_MAGIC = 0x8040201008040201 - (1 << 64)  # as int64: gathers the low bit of 8 bytes into the top byte, MSB first


def pack_rows(events: Tensor) -> Tensor:
    """Pack bool events ``[N, T, C, H, W]`` into HDF5-layout rows ``[N, ceil(T*C*H*W / 8)]`` (uint8).

    Same bytes as :func:`pack_events`. When a row is a whole number of 64-bit words (``T*C*H*W``
    divisible by 64) eight event bytes are read as one int64 and one multiply gathers their bits
    (``0x8040201008040201``: each byte's bit lands in its own place of the top byte, no carries),
    about 10x less memory traffic than shifting bytes one by one.
    """
    if not isinstance(events, Tensor) or events.dim() != 5:
        raise ValueError(f"events must be a torch tensor [N, T, C, H, W], got {getattr(events, 'shape', events)!r}")
    n = events.shape[0]
    nbits = math.prod(events.shape[1:])
    if n == 0:
        return torch.empty((0, math.ceil(nbits / 8)), dtype=torch.uint8, device=events.device)
    if events.dtype != torch.bool or nbits % 64:
        return pack_events(events)
    words = events.contiguous().view(torch.uint8).view(n, nbits // 8, 8).view(torch.int64).view(n, nbits // 8)
    gathered = words * _PACK_MAGIC
    return gathered.bitwise_right_shift_(56).to(torch.uint8)


class PackedEvents(NamedTuple):
    """A batch of events as packed rows: ``rows`` uint8 ``[B, nbytes]``, ``shape`` ``(T, C, H, W)`` per sample.

    What :func:`convert_packed` makes of a converter's events (and the ONNX converter
    with ``output_dtype="packed"``): 8x fewer bytes than bool to keep, transfer or store (the rows are
    the HDF5 file's). The models of :mod:`i2e_lightning.models` take it in place of a float batch and
    unpack it on their own device.
    """

    rows: Tensor
    shape: tuple[int, int, int, int]

    def unpack(self, device: torch.device | str | None = None) -> Tensor:
        """Bool events ``[T, B, C, H, W]`` (time first, as the networks take them) on ``device``."""
        return unpack_events(self.rows, self.shape, device).transpose(0, 1)

    def to(self, device: torch.device | str) -> PackedEvents:
        return PackedEvents(self.rows.to(device), tuple(self.shape))  # type: ignore[arg-type]


def convert_packed(converter: Any, images: Tensor) -> PackedEvents:
    """Events of an :class:`~i2e_lightning.converter.I2E` as packed rows: ``PackedEvents(rows [B, nbytes], (T, 2, H, W))``.

    Each row is ``np.packbits`` of one sample's bool ``[T, 2, H, W]`` (C order, most significant bit first),
    8x fewer bytes than bool. The converter writes straight into a sample-major bool buffer, which is then
    packed on the input's device. One image ``[C, H, W]`` gives one row ``[nbytes]``.
    """
    single = isinstance(images, Tensor) and images.dim() == 3
    x = images.unsqueeze(0) if single else images
    b, _, h, w = x.shape if isinstance(x, Tensor) and x.dim() == 4 else (0, 0, 0, 0)
    steps = int(converter.timesteps)
    sample_major = torch.empty((b, steps, 2, h, w), dtype=torch.bool, device=getattr(x, "device", None))
    converter(x, dtype=torch.bool, out=sample_major.transpose(0, 1))  # the converter checks the input first
    rows = pack_rows(sample_major)
    return PackedEvents(rows[0] if single else rows, (steps, 2, h, w))


def as_event_batch(x: Tensor | PackedEvents, device: torch.device | str | None = None) -> Tensor:
    """Float events ``[T, B, C, H, W]``: ``x`` itself, or ``x`` unpacked when it is :class:`PackedEvents`."""
    if isinstance(x, PackedEvents):
        return x.unpack(device).float()
    return x
