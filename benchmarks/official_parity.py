"""Events of the project vs the official pipeline, sample by sample (target: 0 samples differ).

The official pipeline is written out here from the official code (github Ruichen0424/I2E: the README's
preprocessing protocol and ``i2e.py`` as the dataset notebooks run it, in eval mode), with torchvision's
rules spelled out because torchvision is not a dependency:

* ``Image.convert("RGB")`` of a grey image: three equal channels;
* ``v2.PILToTensor()``: uint8 ``[3, H, W]``;
* ``v2.Resize((H, W), interpolation)``: on a uint8 CPU tensor torchvision keeps uint8 for bicubic (and
  for bilinear on AVX2 CPUs) and calls ``torch.nn.functional.interpolate(..., antialias=True)``;
* ``v2.ToDtype(torch.float32, scale=True)``: ``x.to(float32) * float32(1 / 255)``;
* ``I2E.forward``: V = channel max, replicate pad, ``conv2d`` with the 8 direction kernels (canonical
  pairs, order ``shuffle``), ``range = max - min`` of the padded V, events ``dV >= range * ratio`` and
  ``-dV >= range * ratio`` (float32 scalar multiply), as float masks ``[8, B, 2, H, W]``.

The project's side is ``FashionMNISTDataModule`` (its resize) and its converter in eval mode.

Usage (the published I2E-FashionMNIST: train split, ratio 0.15, T=8, 32x32, bicubic)::

    python -m benchmarks.official_parity --split train --json out.json
    python -m benchmarks.official_parity --interpolation bilinear  # the event rate with v2.Resize's default
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks._args import BenchParser, parse_bench

# the official selectable_directions' first (eval) pair of each direction, as (from cell, to cell)
OFFICIAL_EVAL_PAIRS = [(5, 6), (5, 2), (5, 3), (5, 1), (9, 4), (4, 3), (3, 8), (8, 1)]
OFFICIAL_DEFAULT_SHUFFLE = [4, 5, 6, 7, 0, 1, 2, 3]


def official_kernels(shuffle: list[int]) -> torch.Tensor:
    """The official ``set_weight`` in eval mode: -1 at the 'from' cell, +1 at the 'to' cell, rows shuffled."""
    w = torch.zeros(8, 1, 3, 3)
    for i, (a, b) in enumerate(OFFICIAL_EVAL_PAIRS):
        w[i, 0, (a - 1) // 3, (a - 1) % 3] = -1
        w[i, 0, (b - 1) // 3, (b - 1) % 3] = 1
    return w[shuffle]


def official_preprocess(grey: np.ndarray, size: tuple[int, int], interpolation: str) -> torch.Tensor:
    """convert('RGB') -> PILToTensor -> Resize -> ToDtype(scale=True), one image as the DataLoader workers do."""
    x = torch.from_numpy(np.ascontiguousarray(grey)).unsqueeze(0).expand(3, -1, -1).contiguous()
    x = F.interpolate(x.unsqueeze(0), size=size, mode=interpolation, antialias=True, align_corners=False)[0]
    return x.to(torch.float32) * np.float32(1.0 / 255)


def official_i2e(img: torch.Tensor, kernels: torch.Tensor, ratio: float) -> torch.Tensor:
    """The official ``I2E.forward`` on ``[B, 3, H, W]`` float images -> float events ``[8, B, 2, H, W]``."""
    img_v, _ = torch.max(img, 1, keepdim=True)
    img_v = F.pad(img_v, (1, 1, 1, 1), mode="replicate")
    img_range = (
        torch.max(torch.max(img_v, 3, True)[0], 2, True)[0] - torch.min(torch.min(img_v, 3, True)[0], 2, True)[0]
    ).unsqueeze(0)
    all_v = F.conv2d(img_v, kernels).permute(1, 0, 2, 3)
    pos_v = all_v * all_v.ge(0).float()
    neg_v = -all_v * all_v.lt(0).float()
    out = torch.stack([pos_v, neg_v], dim=2)
    return out.ge(img_range * ratio).float()


def run(split: str, ratio: float, timesteps: int, interpolation: str, limit: int | None, batch: int) -> dict:
    from i2e_lightning.data import FashionMNISTDataModule
    from i2e_lightning.data.mnist import load_idx_split

    dm = FashionMNISTDataModule(ratio=ratio, timesteps=timesteps, interpolation=interpolation, num_workers=0)
    raw, _ = load_idx_split(dm._find_dir()[0], split)
    ours_images = dm.load_source(split).images  # the DataModule's resized uint8 [N, 1, 32, 32]
    n = len(raw) if limit is None else min(limit, len(raw))
    converter = dm.converter.eval()
    kernels = official_kernels(OFFICIAL_DEFAULT_SHUFFLE)
    differ = differ_pixels = 0
    events_ours = events_official = 0
    total = 0
    t0 = time.perf_counter()
    for s in range(0, n, batch):
        e = min(s + batch, n)
        official_in = torch.stack([official_preprocess(raw[i], dm.resolution, interpolation) for i in range(s, e)])
        with torch.no_grad():
            off = official_i2e(official_in, kernels, ratio)[:timesteps].bool()
            ours = converter(ours_images[s:e])
        bad = (ours != off).flatten(2).any(-1).any(0)  # [B]: any differing event
        differ += int(bad.sum())
        differ_pixels += int((ours != off).sum())
        events_ours += int(ours.sum())
        events_official += int(off.sum())
        total += ours.numel()
        print(f"\r{e}/{n} samples, {differ} differ", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return {
        "dataset": "Fashion-MNIST",
        "split": split,
        "samples": n,
        "ratio": ratio,
        "timesteps": timesteps,
        "interpolation": interpolation,
        "event_rate_official": events_official / total,
        "event_rate_ours": events_ours / total,
        "samples_differing": differ,
        "events_differing": differ_pixels,
        "seconds": round(time.perf_counter() - t0, 1),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def main(argv: list[str] | None = None) -> int:
    p = BenchParser("official_parity", description=__doc__.split("\n")[0])
    p.add_argument("--split", choices=["train", "test"], default="train")
    p.add_argument("--ratio", type=float, default=0.15, help="I2E-FashionMNIST's published ratio (default 0.15)")
    p.add_argument("--timesteps", type=int, default=8)
    p.add_argument("--interpolation", choices=["bicubic", "bilinear"], default="bicubic")
    p.add_argument("--limit", type=int | None, default=None, help="first N samples only")
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--json", type=Path | None, default=None, help="also write the result here")
    args = parse_bench(p, argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    result = run(args.split, args.ratio, args.timesteps, args.interpolation, args.limit, args.batch)
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["samples_differing"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
