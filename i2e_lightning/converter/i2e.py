"""The I2E image-to-event converter (docs/spec.md §1) as a ``torch.nn.Module``.

Each timestep is the thresholded difference of two one-pixel-shifted copies of
the replicate-padded intensity map. The official code does this with a conv2d
over eight 3x3 kernels; a kernel with one -1 and one +1 is exactly a float32
subtraction of two shifted views (the other seven products are exact zeros), so
slicing gives the same bits without the convolution and its temporaries.
"""

from __future__ import annotations

import math
import numbers
import sys
import threading
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .directions import DEFAULT_ORDER, DIRECTION_PAIRS, cell_offset, resolve_order

LAYOUTS = ("TBCHW", "BTCHW")
_CPU_CHUNK_ELEMENTS = 1 << 19  # dV of one CPU chunk: 2 MB of float32, about one core's L2
_FLOAT32_MAX = float(torch.finfo(torch.float32).max)
# uint8 -> [0, 1] as torchvision's v2.ToDtype(torch.float32, scale=True), which every official script
# uses: x.float() * float32(1 / 255), a multiplication (x / 255 differs by one ulp for 126 values)
U8_SCALE = 1.0 / 255
_DTYPE_NAMES = {
    "bool": torch.bool,
    "uint8": torch.uint8,
    "float32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
}


def _storage_refs(t: Tensor) -> tuple[int, int]:
    """(C++ references, Python references) of ``t``'s storage: a caller may hold either, a tensor
    sharing it counts in the first, an ``untyped_storage()`` object it kept only in the second."""
    storage = t.untyped_storage()
    return torch._C._storage_Use_Count(storage._cdata), sys.getrefcount(storage)


try:  # a private API: without it the cache stays off rather than guessing
    _IDLE_REFS: tuple[int, int] | None = _storage_refs(torch.empty(1))
except (AttributeError, RuntimeError):  # pragma: no cover - depends on the torch build
    _IDLE_REFS = None


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
        if _IDLE_REFS is None or nbytes < self.min_bytes:
            return torch.empty(shape, dtype=dtype)
        with self._lock:  # the view below takes the buffer before another thread can
            for buf in self.buffers:
                if buf.numel() == nbytes and _storage_refs(buf) == _IDLE_REFS:
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
            referenced (see ``OutputCache``) and of the float32 scratch buffers (the padded
            intensity map and a few MB per chunk); keeps up to two outputs' worth of memory
            plus one padded map. ``clear_cache()`` frees it.
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
        # numbers.Real / Integral: numpy scalars (np.float32(0.15), np.int64(8)) count as numbers
        real = isinstance(ratio, numbers.Real) and not isinstance(ratio, bool)
        if not real or not 0.0 < float(ratio) < 1.0:
            raise ValueError(f"ratio must be a number in (0, 1) (the paper uses 0.07-0.15), got {ratio!r}")
        if isinstance(timesteps, bool) or not isinstance(timesteps, numbers.Integral):
            raise ValueError(f"timesteps must be an integer from 1 to 8, got {timesteps!r}")
        timesteps = int(timesteps)
        if not 1 <= timesteps <= 8:
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
        self._scratch = OutputCache(max_buffers=4)

    def clear_cache(self) -> None:
        """Free the CPU output buffers kept for reuse."""
        self._outputs.clear()
        self._scratch.clear()

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
        """V = max(R, G, B) in float32, ``[B, H, W]``; uint8 input scaled as ``ToDtype(scale=True)``."""
        if images.dtype == torch.uint8:
            # max commutes with the monotonic scaling, so the max is taken in uint8
            return u8_to_unit(images.amax(dim=1))
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
        x = x.detach()  # thresholding has no gradient; out= writes refuse inputs that require one
        if self.validate and x.is_floating_point() and x.numel() > 0 and x.device.type != "meta":
            lo, hi = torch.aminmax(x)
            if not bool(torch.isfinite(lo) & torch.isfinite(hi)):
                raise ValueError("images contain NaN or Inf values: clean or clamp the input before conversion")
            if x.dtype == torch.float64 and max(-float(lo), float(hi)) > _FLOAT32_MAX:
                raise ValueError(
                    f"images hold float64 values up to {max(-float(lo), float(hi)):.3g}, beyond float32's range "
                    f"({_FLOAT32_MAX:.3g}) in which events are computed: rescale them first, e.g. to [0, 1]"
                )
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
        b, _, h, w = x.shape
        steps = self.timesteps
        on_cpu = x.device.type == "cpu"
        if out is None and self.cache_outputs and on_cpu:
            out = self._outputs.empty((steps, b, 2, h, w), out_dtype)
        elif out is None:
            out = torch.empty((steps, b, 2, h, w), dtype=out_dtype, device=x.device)
        elif out.shape != (steps, b, 2, h, w) or out.device != x.device:
            raise ValueError(
                f"out must have shape {(steps, b, 2, h, w)} on {x.device} (time first), "
                f"got {tuple(out.shape)} on {out.device}"
            )
        if b > 0 and x.device.type != "meta":  # meta tensors: shapes and dtypes only (tracing, planning)
            self._convert_into(self._padded_intensity(x), out)
        if self.layout == "BTCHW":
            out = out.transpose(0, 1)
        if single:
            out = out.squeeze(0) if self.layout == "BTCHW" else out.squeeze(1)
        return out

    def _empty(self, shape: tuple[int, ...], device: torch.device) -> Tensor:
        """Float32 scratch memory; on the CPU recycled between calls (no page faults)."""
        if self.cache_outputs and device.type == "cpu":
            return self._scratch.empty(shape, torch.float32)
        return torch.empty(shape, dtype=torch.float32, device=device)

    def _padded_intensity(self, x: Tensor) -> Tensor:
        """V replicate-padded by one pixel, ``[B, H + 2, W + 2]`` float32 (the official code's pad)."""
        b, _, h, w = x.shape
        vpad = self._empty((b, h + 2, w + 2), x.device)
        inner = vpad[:, 1 : h + 1, 1 : w + 1]
        if x.dtype == torch.float32:
            torch.amax(x, dim=1, out=inner)  # straight into the padded buffer: one pass fewer
        elif x.dtype == torch.uint8 and x.device.type == "cpu":
            inner.copy_(x.amax(dim=1)).mul_(U8_SCALE)  # see u8_to_unit
        else:
            inner.copy_(self.intensity(x))
        # replicate: columns first (interior rows), then whole rows, which carries the corners
        vpad[:, 1 : h + 1, 0] = vpad[:, 1 : h + 1, 1]
        vpad[:, 1 : h + 1, w + 1] = vpad[:, 1 : h + 1, w]
        vpad[:, 0] = vpad[:, 1]
        vpad[:, h + 1] = vpad[:, h]
        return vpad

    def _convert_into(self, vpad: Tensor, out: Tensor) -> None:
        b, h, w = vpad.shape[0], vpad.shape[1] - 2, vpad.shape[2] - 2
        flat = vpad.view(b, -1)  # the pad replicates values, so its min and max are V's
        vmin, vmax = flat.amin(dim=1), flat.amax(dim=1)  # two reductions beat one aminmax on CPU
        # threshold as the official code: ratio * (max - min) in float32; a flat image gets
        # +inf so it fires nothing (the official code fires every pixel there)
        th = torch.where(vmax > vmin, (vmax - vmin) * self.ratio, torch.full_like(vmax, float("inf")))
        th = th.view(b, 1, 1)
        neg_th = -th
        choices = self._draw_choices(b)
        on_cpu = vpad.device.type == "cpu"
        # CPU: convert a few samples at a time so that dV stays in cache while its two masks are
        # written; CUDA: one launch per op over the whole batch
        chunk = max(1, _CPU_CHUNK_ELEMENTS // (h * w)) if on_cpu else b
        chunk = min(chunk, b)
        dv_buf = self._empty((chunk, h, w), vpad.device)
        mask_buf = self._empty((chunk, h, w), vpad.device) if _compare_via_float32(out, on_cpu) else None
        per_sample = choices.dim() == 2
        if per_sample:  # every allowed pair's dV for the chunk, then each sample picks its own
            most_pairs = max(len(DIRECTION_PAIRS[d]) for d in self.directions)
            diffs_buf = self._empty((most_pairs * chunk, h, w), vpad.device)

        for s in range(0, b, chunk):
            e = min(s + chunk, b)
            n = e - s
            vp, dv = vpad[s:e], dv_buf[:n]
            th_c, neg_th_c = th[s:e], neg_th[s:e]
            for t, d in enumerate(self.directions):
                pairs = DIRECTION_PAIRS[d]
                if per_sample:
                    picks = choices[t, s:e]
                    for p in sorted(set(picks.tolist())):  # only the pairs some sample drew
                        a, bb = pairs[p]
                        torch.sub(_shifted(vp, bb, h, w), _shifted(vp, a, h, w), out=diffs_buf[p * n : (p + 1) * n])
                    rows = (picks * n + torch.arange(n)).to(vp.device)
                    torch.index_select(diffs_buf[: len(pairs) * n], 0, rows, out=dv)
                else:
                    a, bb = pairs[int(choices[t])]
                    torch.sub(_shifted(vp, bb, h, w), _shifted(vp, a, h, w), out=dv)
                # ON: dV >= th; OFF: -dV >= th, i.e. dV <= -th (negation is exact)
                on, off = out[t, s:e, 0], out[t, s:e, 1]
                if mask_buf is None:
                    torch.ge(dv, th_c, out=on)
                    torch.le(dv, neg_th_c, out=off)
                else:
                    mask = mask_buf[:n]
                    on.copy_(torch.ge(dv, th_c, out=mask))
                    off.copy_(torch.le(dv, neg_th_c, out=mask))


def _compare_via_float32(out: Tensor, on_cpu: bool) -> bool:
    """Whether to compare into a float32 mask and cast it into ``out``.

    torch compares into bool with a scalar loop but into float32 with SIMD: on the CPU a float32
    mask plus a cast is faster than writing bool (or uint8, f16...) directly. CUDA writes directly.
    """
    return on_cpu and out.dtype != torch.float32


def u8_to_unit(m: Tensor) -> Tensor:
    """uint8 to float32 in [0, 1] as ``v2.ToDtype(torch.float32, scale=True)``, bit for bit on every device.

    torch casts the Python scalar to float32 and multiplies; an IEEE multiply rounds the same on
    every device (unlike a division by a scalar, which CUDA turns into a reciprocal multiply).
    """
    return m.float().mul_(U8_SCALE)


def _shifted(vpad: Tensor, cell: int, h: int, w: int) -> Tensor:
    """The ``[.., H, W]`` window of the padded map at 3x3 cell ``cell`` (1..9)."""
    r, c = cell_offset(cell)
    return vpad[:, r : r + h, c : c + w]
