"""Image preprocessing and batched, per-sample-random augmentation on uint8 image batches.

Everything here works on ``[B, C, H, W]`` uint8 tensors on any device and returns uint8, so the
converter sees exactly the pixel grid the published datasets were made from (torchvision's uint8
resize, per dataset bilinear or bicubic with antialias: docs/official.md). Random parameters come from an explicit CPU
``torch.Generator`` (one per DDP rank), never from the global RNG that ``seed_everything`` makes
identical on every rank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import kornia.augmentation as K
import torch
from torch import Tensor

from ..converter.preprocess import INTERPOLATIONS, resize_uint8
from ..converter.preprocess import check_uint8 as _check_uint8
from ..converter.preprocess import to_size as _to_size

__all__ = [
    "INTERPOLATIONS",
    "center_crop",
    "pad_random_crop",
    "random_hflip",
    "random_resized_crop",
    "random_resized_crop_boxes",
    "resize_shorter_uint8",
    "resize_uint8",
]


def resize_shorter_uint8(x: Tensor, shorter: int, interpolation: str = "bicubic") -> Tensor:
    """Resize so the shorter side is ``shorter`` keeping the aspect ratio (torchvision ``Resize(int)``)."""
    h, w = x.shape[-2:]
    size = (shorter, max(1, int(shorter * w / h))) if h <= w else (max(1, int(shorter * h / w)), shorter)
    return resize_uint8(x, size, interpolation)


def center_crop(x: Tensor, size: int | tuple[int, int] | list[int]) -> Tensor:
    """Centre crop (torchvision rounding: top = round((H - h) / 2)); the image must be at least ``size``."""
    th, tw = _to_size(size)
    h, w = x.shape[-2:]
    if h < th or w < tw:
        raise ValueError(f"cannot centre-crop {th}x{tw} from an image of {h}x{w}: resize it first")
    top = int(round((h - th) / 2.0))
    left = int(round((w - tw) / 2.0))
    return x[..., top : top + th, left : left + tw]


# kornia applies the flips and crops; the random parameters are drawn here, from the caller's generator, and
# handed to kornia as ``params``: kornia's own samplers use the global RNG, which ``seed_everything`` makes equal
# on every DDP rank and which no checkpoint holds (exact resume needs the DataModule's generators).
_HFLIP = K.RandomHorizontalFlip(p=0.5)  # p is unused with given params (p=1.0 would flip all)


def _as_float(x: Tensor) -> Tensor:
    return x.float()  # kornia's augmentations take float images; uint8 values are exact in float32


def _to_uint8(x: Tensor) -> Tensor:
    return x.round_().clamp_(0, 255).to(torch.uint8)


def _corners(left: Tensor, top: Tensor, width: Tensor, height: Tensor) -> Tensor:
    """Boxes ``[B, 4, 2]`` (x, y) clockwise from the top-left, inclusive pixel corners, as kornia wants."""
    x0, y0 = left.float(), top.float()
    x1, y1 = (left + width - 1).float(), (top + height - 1).float()
    return torch.stack(
        [torch.stack([x0, y0], -1), torch.stack([x1, y0], -1), torch.stack([x1, y1], -1), torch.stack([x0, y1], -1)],
        dim=1,
    )


def _crop_params(src: Tensor, in_hw: tuple[int, int], out_hw: tuple[int, int], device: torch.device) -> dict:
    b = src.shape[0]
    full = torch.ones(b, dtype=torch.long)
    dst = _corners(full * 0, full * 0, full * out_hw[1], full * out_hw[0])
    return {
        "src": src.to(device),
        "dst": dst.to(device),
        "input_size": torch.tensor([in_hw] * b, device=device),
        "output_size": torch.tensor([out_hw] * b, device=device),
        "batch_prob": torch.ones(b, dtype=torch.bool, device=device),
        "forward_input_shape": torch.tensor((b, 0, *in_hw), device=device),
    }


def random_hflip(x: Tensor, generator: torch.Generator | None, p: float = 0.5) -> Tensor:
    """Flip each sample horizontally with probability ``p`` (own draw per sample)."""
    _check_uint8(x)
    if x.dim() == 3 or x.shape[0] == 0 or p <= 0:
        return x
    flip = (torch.rand(x.shape[0], generator=generator) < p).to(x.device)
    params = {"batch_prob": flip, "forward_input_shape": torch.tensor(x.shape, device=x.device)}
    return _to_uint8(_HFLIP(_as_float(x), params=params))


def pad_random_crop(x: Tensor, padding: int, generator: torch.Generator | None, mode: str = "replicate") -> Tensor:
    """Pad every side by ``padding`` and crop back to the input size at a random offset per sample.

    ``mode="replicate"`` is the edge padding of the paper's CIFAR Baseline-II, ``"constant"`` pads with 0.
    kornia crops by slicing, so the kept pixels are bit-identical to the input.
    """
    _check_uint8(x)
    if padding <= 0 or x.shape[0] == 0:
        return x
    b, _, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator)  # rows, cols
    size = torch.full((b,), 1, dtype=torch.long)
    params = _crop_params(
        _corners(offsets[1], offsets[0], size * w, size * h), (h + 2 * padding, w + 2 * padding), (h, w), x.device
    )
    params["padding_size"] = torch.tensor([[padding] * 4] * b, device=x.device)
    crop = K.RandomCrop((h, w), padding=padding, padding_mode=mode, fill=0, cropping_mode="slice")
    return _to_uint8(crop(_as_float(x), params=params))


def random_resized_crop_boxes(
    sizes: Sequence[tuple[int, int]],
    generator: torch.Generator | None,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
) -> Tensor:
    """torchvision's ``RandomResizedCrop`` box for each image of height/width ``sizes``: int64 ``[B, 4]``
    rows ``(top, left, height, width)``.

    The rule of torchvision (10 tries of an area fraction uniform in ``scale`` and a log-uniform aspect
    ratio in ``ratio``; the first box that fits is placed uniformly; if none fits, a centre crop of the
    whole image clamped to ``ratio``), vectorised over the batch with the caller's generator: the same
    distribution as torchvision, not its random stream.
    """
    b = len(sizes)
    hw = torch.tensor([(int(h), int(w)) for h, w in sizes], dtype=torch.long).view(b, 2)
    h, w = hw[:, 0], hw[:, 1]
    if b and bool((hw < 1).any()):
        raise ValueError(f"random_resized_crop needs images of at least 1x1 pixels, got sizes {sizes}")
    area = (h * w).double().view(b, 1)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    tries = 10
    target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(b, tries, generator=generator, dtype=torch.float64))
    aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(b, tries, generator=generator, dtype=torch.float64))
    cw = torch.sqrt(target * aspect).round().long()  # round half to even, as Python's round()
    ch = torch.sqrt(target / aspect).round().long()
    ok = (cw > 0) & (ch > 0) & (cw <= w.view(b, 1)) & (ch <= h.view(b, 1))
    found = ok.any(1)
    first = ok.long().argmax(1).view(b, 1)  # the first try that fits
    # fallback: the whole image, cut to the nearest allowed aspect ratio, centred
    in_ratio = w.double() / h.double()
    lo, hi = min(ratio), max(ratio)
    fw = torch.where(in_ratio > hi, (h.double() * hi).round().long(), w)
    fh = torch.where(in_ratio < lo, (w.double() / lo).round().long(), h)
    bw = torch.where(found, cw.gather(1, first).squeeze(1), fw)
    bh = torch.where(found, ch.gather(1, first).squeeze(1), fh)
    u = torch.rand(2, b, generator=generator, dtype=torch.float64)  # randint(0, n + 1) as a scaled uniform
    top = torch.where(found, (u[0] * (h - bh + 1).double()).long(), (h - bh) // 2)
    left = torch.where(found, (u[1] * (w - bw + 1).double()).long(), (w - bw) // 2)
    return torch.stack([top, left, bh, bw], 1)


def random_resized_crop(
    x: Tensor | Sequence[Tensor],
    size: int | tuple[int, int] | list[int],
    generator: torch.Generator | None,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
) -> Tensor:
    """torchvision's ``v2.RandomResizedCrop(size)`` with an own box per sample -> uint8 ``[B, C, *size]``.

    ``x`` is a uint8 batch ``[B, C, H, W]`` or a sequence of uint8 images ``[C, H_i, W_i]`` of their own
    sizes (each box is drawn over its whole image, :func:`random_resized_crop_boxes`). Each box is sliced
    and resized with :func:`resize_uint8` (bilinear, antialias), as ``v2.RandomResizedCrop`` on a uint8
    tensor. The result is on the images' device.
    """
    images = _as_image_list(x)
    out_h, out_w = _to_size(size)
    if not images:
        if isinstance(x, Tensor):
            return x.new_zeros((0, x.shape[1], out_h, out_w))
        raise ValueError("random_resized_crop got no images")
    boxes = random_resized_crop_boxes([tuple(im.shape[-2:]) for im in images], generator, scale, ratio)
    # hand-written rather than kornia's crop_and_resize: the official v2.RandomResizedCrop slices the box and
    # resizes it with torchvision's uint8 bilinear + antialias, which kornia's float resampling does not match
    crops = []
    for im, (top, left, h, w) in zip(images, boxes.tolist(), strict=True):
        crops.append(resize_uint8(im[None, :, top : top + h, left : left + w], (out_h, out_w), "bilinear"))
    return torch.cat(crops)


def _as_image_list(x: Tensor | Sequence[Tensor]) -> list[Tensor]:
    """A uint8 batch or a sequence of uint8 ``[C, H, W]`` images -> a list of ``[C, H, W]``; ``ValueError`` else."""
    if isinstance(x, Tensor):
        _check_uint8(x)
        return list(x) if x.dim() == 4 else [x]
    images = list(x)
    for i, im in enumerate(images):
        if not isinstance(im, Tensor) or im.dim() != 3:
            got = f"{im.dtype} {tuple(im.shape)}" if isinstance(im, Tensor) else type(im).__name__
            raise ValueError(f"image {i} of the sequence must be a uint8 tensor [C, H, W], got {got}")
        _check_uint8(im, f"image {i} of the sequence")
    channels = sorted({im.shape[0] for im in images})
    if len(channels) > 1:
        raise ValueError(f"images of one batch must have the same channels, got channel counts {channels}")
    return images
