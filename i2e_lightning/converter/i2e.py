"""The I2E image-to-event converter (I2E_SPEC §1) as a ``torch.nn.Module``.

Each timestep is the thresholded difference of two one-pixel-shifted copies of
the replicate-padded intensity map. The official code does this with a conv2d
over eight 3x3 kernels; a kernel with one -1 and one +1 is exactly a float32
subtraction of two shifted views (the other seven products are exact zeros), so
slicing gives the same bits without the convolution and its temporaries.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .directions import DEFAULT_ORDER, DIRECTION_PAIRS, cell_offset, resolve_order

LAYOUTS = ("TBCHW", "BTCHW")
_U8_TO_UNIT = torch.arange(256, dtype=torch.float32) / 255  # computed on the CPU: true division
_DTYPE_NAMES = {
    "bool": torch.bool,
    "uint8": torch.uint8,
    "float32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
}


def _storage_use_count(t: Tensor) -> int:
    return torch._C._storage_Use_Count(t.untyped_storage()._cdata)


try:  # a private API: without it the cache stays off rather than guessing
    _IDLE_USE_COUNT = _storage_use_count(torch.empty(1))
except (AttributeError, RuntimeError):  # pragma: no cover - depends on the torch build
    _IDLE_USE_COUNT = None


class OutputCache:
    """Hands out CPU output buffers again once no tensor views them any more.

    On the CPU, glibc gives every large tensor fresh pages that the kernel zero-fills on first
    touch; for a 100 MB float32 event batch that costs more than the conversion itself. Like the
    CUDA caching allocator, this keeps the last ``max_buffers`` outputs and reuses one whose
    storage is referenced by nothing but the cache, so a caller that keeps its events never sees
    them overwritten.
    """

    min_bytes = 1 << 20  # below this malloc serves recycled heap memory anyway

    def __init__(self, max_buffers: int = 2) -> None:
        self.max_buffers = max_buffers
        self.buffers: list[Tensor] = []
        self._lock = threading.Lock()

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        if _IDLE_USE_COUNT is None or nbytes < self.min_bytes:
            return torch.empty(shape, dtype=dtype)
        with self._lock:  # the view below takes the buffer before another thread can
            for buf in self.buffers:
                if buf.numel() == nbytes and _storage_use_count(buf) == _IDLE_USE_COUNT:
                    return buf.view(dtype).view(shape)
            buf = torch.empty(nbytes, dtype=torch.uint8)
            self.buffers = [*self.buffers, buf][-self.max_buffers :]
            return buf.view(dtype).view(shape)

    def clear(self) -> None:
        with self._lock:
            self.buffers = []

    def __getstate__(self) -> dict[str, Any]:
        return {"max_buffers": self.max_buffers}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["max_buffers"])


def parse_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """Accept a torch dtype or its name (``"bool"``, ``"float32"``...), as YAML configs give it."""
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPE_NAMES.values():
            raise ValueError(f"output dtype {dtype} is not supported: use one of {sorted(_DTYPE_NAMES)}")
        return dtype
    name = str(dtype).removeprefix("torch.")
    if name not in _DTYPE_NAMES:
        raise ValueError(f"output dtype {dtype!r} is not supported: use one of {sorted(_DTYPE_NAMES)}")
    return _DTYPE_NAMES[name]


class I2E(nn.Module):
    """Convert images ``[B, C, H, W]`` (or one ``[C, H, W]``) to events ``[T, B, 2, H, W]``.

    Channel 0 of the events is ON, channel 1 OFF. ``.eval()`` uses the canonical
    pair of every direction (deterministic, as the published datasets);
    ``.train()`` draws a random equivalent pair per direction, once per call
    (as the official code) or per sample (``per_sample=True``).

    Args:
        ratio: threshold as a fraction of the image's intensity range (S_th0).
        order: timestep order, a preset number 0-5 or a list of 8 direction indices.
        timesteps: keep the first ``timesteps`` (1-8) directions of the order.
        per_sample: in training, draw the random pair per sample instead of per call.
        dtype: output dtype (bool, uint8, float32, float16, bfloat16 or their names).
        layout: ``"TBCHW"`` (time first, the spec) or ``"BTCHW"``.
        validate: check the input for NaN/Inf (one extra reduction; turn off for speed
            only where the input is known to be finite).
        generator: optional ``torch.Generator`` (CPU) for the training pair draws,
            e.g. seeded per DDP rank so that each rank draws its own pairs.
        cache_outputs: on the CPU, reuse the memory of earlier outputs that are no longer
            referenced (see ``OutputCache``); keeps up to two outputs' worth of memory.
            ``clear_cache()`` frees it.
    """

    def __init__(
        self,
        ratio: float = 0.12,
        order: int | Sequence[int] = DEFAULT_ORDER,
        timesteps: int = 8,
        *,
        per_sample: bool = False,
        dtype: torch.dtype | str = torch.bool,
        layout: str = "TBCHW",
        validate: bool = True,
        generator: torch.Generator | None = None,
        cache_outputs: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < float(ratio) < 1.0:
            raise ValueError(f"ratio must be a number in (0, 1) (the paper uses 0.07-0.15), got {ratio!r}")
        if isinstance(timesteps, bool) or not isinstance(timesteps, int) or not 1 <= timesteps <= 8:
            raise ValueError(f"timesteps must be an integer from 1 to 8, got {timesteps!r}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.ratio = float(ratio)
        self.order = resolve_order(order)
        self.timesteps = timesteps
        self.per_sample = bool(per_sample)
        self.dtype = parse_dtype(dtype)
        self.layout = layout
        self.validate = bool(validate)
        self.generator = generator
        self.cache_outputs = bool(cache_outputs)
        self._outputs = OutputCache()

    def clear_cache(self) -> None:
        """Free the CPU output buffers kept for reuse."""
        self._outputs.clear()

    @property
    def directions(self) -> tuple[int, ...]:
        """Direction index of every kept timestep."""
        return self.order[: self.timesteps]

    def extra_repr(self) -> str:
        return (
            f"ratio={self.ratio}, order={list(self.order)}, timesteps={self.timesteps}, "
            f"per_sample={self.per_sample}, dtype={self.dtype}, layout={self.layout!r}"
        )

    # -- input ----------------------------------------------------------------------------

    def intensity(self, images: Tensor) -> Tensor:
        """V = max(R, G, B) in float32, ``[B, H, W]``; uint8 input scaled as ``x.float() / 255``."""
        if images.dtype == torch.uint8:
            # max commutes with the monotonic x/255, so a table of the 256 exact quotients gives
            # amax(x.float() / 255) on every device (CUDA divides by a scalar as a multiply by
            # its reciprocal, which rounds differently from the CPU's true division)
            return _U8_TO_UNIT.to(images.device)[images.amax(dim=1).int()]
        return images.amax(dim=1).float()

    def _check(self, images: Tensor) -> tuple[Tensor, bool]:
        if not isinstance(images, Tensor):
            raise ValueError(f"images must be a torch.Tensor [B, C, H, W] or [C, H, W], got {type(images).__name__}")
        single = images.dim() == 3
        if images.dim() not in (3, 4):
            raise ValueError(
                f"images must have shape [B, C, H, W] or [C, H, W], got rank {images.dim()} "
                f"{tuple(images.shape)}: add or remove the batch dimension"
            )
        x = images.unsqueeze(0) if single else images
        if x.shape[1] not in (1, 3):
            raise ValueError(
                f"images must have 1 (grey) or 3 (RGB) channels in dimension {0 if single else 1}, "
                f"got {x.shape[1]} (shape {tuple(images.shape)}): convert to RGB or grey first, "
                "or permute HWC images to CHW"
            )
        if x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError(f"images must have a height and width of at least 1, got shape {tuple(images.shape)}")
        if x.dtype != torch.uint8 and not x.is_floating_point():
            raise ValueError(f"images must be float (any finite range) or uint8, got {x.dtype}: convert with .float()")
        if self.validate and x.is_floating_point() and x.numel() > 0:
            lo, hi = torch.aminmax(x)
            if not bool(torch.isfinite(lo) & torch.isfinite(hi)):
                raise ValueError("images contain NaN or Inf values: clean or clamp the input before conversion")
        return x, single

    # -- pairs ----------------------------------------------------------------------------

    def _draw_choices(self, batch: int) -> Tensor:
        """Index of the pair within each kept direction's set: ``[T]`` or ``[T, B]`` (per sample)."""
        sizes = torch.tensor([len(DIRECTION_PAIRS[d]) for d in self.directions], dtype=torch.float64)
        if not self.training:
            return torch.zeros(len(sizes), dtype=torch.long)
        shape = (len(sizes), batch) if self.per_sample else (len(sizes),)
        u = torch.rand(shape, dtype=torch.float64, generator=self.generator)
        sizes = sizes.view(-1, *([1] * (len(shape) - 1)))
        return (u * sizes).long().clamp_(max=sizes.long() - 1)

    # -- forward --------------------------------------------------------------------------

    def forward(self, images: Tensor, dtype: torch.dtype | str | None = None, out: Tensor | None = None) -> Tensor:
        """Events ``[T, B, 2, H, W]`` (``[T, 2, H, W]`` for one image; B first for ``BTCHW``).

        ``out``: optional preallocated ``[T, B, 2, H, W]`` tensor to write into (its dtype wins).
        """
        x, single = self._check(images)
        out_dtype = self.dtype if dtype is None else parse_dtype(dtype)
        v = self.intensity(x)
        b, h, w = v.shape
        steps = self.timesteps
        if out is None and self.cache_outputs and v.device.type == "cpu":
            out = self._outputs.empty((steps, b, 2, h, w), out_dtype)
        elif out is None:
            out = torch.empty((steps, b, 2, h, w), dtype=out_dtype, device=v.device)
        elif out.shape != (steps, b, 2, h, w) or out.device != v.device:
            raise ValueError(
                f"out must have shape {(steps, b, 2, h, w)} on {v.device} (time first), "
                f"got {tuple(out.shape)} on {out.device}"
            )
        if b > 0:
            self._convert_into(v, out)
        if self.layout == "BTCHW":
            out = out.transpose(0, 1)
        if single:
            out = out.squeeze(0) if self.layout == "BTCHW" else out.squeeze(1)
        return out

    def _convert_into(self, v: Tensor, out: Tensor) -> None:
        b, h, w = v.shape
        vmin, vmax = torch.aminmax(v.view(b, -1), dim=1)
        # threshold as the official code: ratio * (max - min) in float32; a flat image gets
        # +inf so it fires nothing (the official code fires every pixel there)
        th = torch.where(vmax > vmin, (vmax - vmin) * self.ratio, torch.full_like(vmax, float("inf")))
        th = th.view(b, 1, 1)
        neg_th = -th
        vpad = F.pad(v.unsqueeze(1), (1, 1, 1, 1), mode="replicate").squeeze(1)
        choices = self._draw_choices(b)

        def shifted(cell: int) -> Tensor:
            r, c = cell_offset(cell)
            return vpad[:, r : r + h, c : c + w]

        if choices.dim() == 2:  # per-sample pairs: gather from the nine shifted copies
            stack = torch.stack([shifted(c) for c in range(1, 10)])  # [9, B, H, W]
            rows = torch.arange(b, device=v.device)
        for t, d in enumerate(self.directions):
            pairs = DIRECTION_PAIRS[d]
            if choices.dim() == 1:
                a, bb = pairs[int(choices[t])]
                dv = shifted(bb) - shifted(a)
            else:
                table = torch.tensor(pairs, dtype=torch.long) - 1  # [P, 2] cell indices 0..8
                sel = table[choices[t]].to(v.device)  # [B, 2]
                dv = stack[sel[:, 1], rows] - stack[sel[:, 0], rows]
            # ON: dV >= th; OFF: -dV >= th, i.e. dV <= -th (negation is exact)
            torch.ge(dv, th, out=out[t, :, 0])
            torch.le(dv, neg_th, out=out[t, :, 1])
