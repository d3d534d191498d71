"""ODG (ES-ImageNet's converter) re-implemented from its paper, timed side by side with I2E.

ODG, "Omnidirectional Discrete Gradient" (Lin et al. 2021, "ES-ImageNet: A Million Event-Stream
Classification Dataset for Spiking Neural Networks", Algorithm 1), as the paper describes it:
per image, take the V channel of HSV, resize it to (H+2) x (W+2), move an H x W window along a
fixed 9-point trace of one-pixel offsets, and threshold the difference of consecutive positions
with a *fixed* threshold: 8 event frames, ON where the change >= threshold, OFF where <= -threshold.
The published dataset stores the events as sparse (x, y, t, p) records.

The exact trace is not reproduced bit-for-bit here (the cost does not depend on it: every step
is one shifted window, one subtraction and two comparisons); ``TRACE`` below visits offsets in
{0, 1, 2} x {0, 1, 2} with single-pixel moves in all directions, as the paper draws it.

Timed per image in numpy, as the paper's pipeline runs (image by image):
    ODG core            V channel -> trace -> thresholded differences (input already (H+2)x(W+2) V)
    ODG full            + V channel of the RGB image, resize to (H+2)x(W+2) (PIL bilinear),
                        + sparse (x, y, t, p) event list
against I2E on the same images (224 px by default): eager per image (batch 1), eager batched,
and the official formulation batched. The paper of I2E reports ODG at 29.47 ms per image and I2E
">300x" faster (on a GPU); this script measures both on this machine's CPU.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from PIL import Image

from benchmarks._args import BenchParser, parse_bench, rename, square, usage_error
from benchmarks._common import (
    console,
    median,
    paired_ratio,
    print_table,
    setup_threads,
    time_interleaved,
    write_json,
)
from benchmarks._data import FASHION_MNIST_DIR, fashion_mnist, preprocess
from i2e_lightning.converter import I2E, official_convert

# (row, col) offsets of the 9 window positions (8 moves -> 8 event frames)
TRACE: tuple[tuple[int, int], ...] = ((1, 1), (0, 2), (2, 1), (0, 0), (1, 2), (2, 0), (0, 1), (2, 2), (1, 0))
ODG_THRESHOLD = 0.18  # fixed threshold on V in [0, 1]


def odg_frames(vpad: np.ndarray, threshold: float = ODG_THRESHOLD, trace=TRACE) -> np.ndarray:
    """ODG events of one image: ``vpad`` float32 ``[H+2, W+2]`` V channel -> bool ``[8, 2, H, W]``."""
    if vpad.ndim != 2 or vpad.shape[0] < 3 or vpad.shape[1] < 3:
        raise ValueError(f"vpad must be a 2-D V channel of at least 3x3 (image + 2 px border), got {vpad.shape}")
    h, w = vpad.shape[0] - 2, vpad.shape[1] - 2
    out = np.empty((len(trace) - 1, 2, h, w), dtype=bool)
    prev = vpad[trace[0][0] : trace[0][0] + h, trace[0][1] : trace[0][1] + w]
    for t, (r, c) in enumerate(trace[1:]):
        cur = vpad[r : r + h, c : c + w]
        diff = cur - prev
        np.greater_equal(diff, threshold, out=out[t, 0])
        np.less_equal(diff, -threshold, out=out[t, 1])
        prev = cur
    return out


def odg_full(rgb: np.ndarray, size: int, threshold: float = ODG_THRESHOLD) -> np.ndarray:
    """The whole ODG pipeline of one uint8 RGB image ``[H, W, 3]``: events as ``int32 [N, 4]`` (x, y, t, p)."""
    v = rgb.max(axis=2)  # HSV value channel
    vpad = np.asarray(Image.fromarray(v).resize((size + 2, size + 2), Image.BILINEAR), dtype=np.float32) / 255.0
    frames = odg_frames(vpad, threshold)
    t, p, y, x = np.nonzero(frames)
    return np.stack([x, y, t, p], axis=1).astype(np.int32)


def load_images(n: int, size: int, data_dir: Path) -> tuple[torch.Tensor, str]:
    """``uint8 [n, 3, size, size]`` test images: Fashion-MNIST upscaled, or structured noise without it."""
    try:
        imgs, _ = fashion_mnist("test", data_dir)
        return preprocess(imgs[:n], size), f"Fashion-MNIST test[:{n}] resized bicubic to {size}px (RGB)"
    except FileNotFoundError:
        g = torch.Generator().manual_seed(0)
        coarse = torch.rand(n, 3, size // 8, size // 8, generator=g)
        x = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear") * 255
        return x.round().to(torch.uint8), f"synthetic smooth images {size}px (Fashion-MNIST not found)"


def main(argv: list[str] | None = None) -> int:
    p = BenchParser("odg", description="ODG (ES-ImageNet) vs I2E on the same images")
    p.add_common(repeats=5)
    p.add_resolution(224, "image size")
    p.add_argument("--images", type=int, default=32, help="images per round (the batch of the batched I2E)")
    p.add_argument("--data_dir", type=Path, default=FASHION_MNIST_DIR, help="Fashion-MNIST idx folder")
    args = parse_bench(p, argv, {"--size": rename("--resolution")})
    args.size = square(args.resolution)
    if args.size < 2 or args.images < 1:
        usage_error("--resolution must be >= 2 and --images >= 1")
    setup_threads(args.threads)
    u8, source = load_images(args.images, args.size, args.data_dir)
    x = u8.float().div_(255)
    rgb_np = [im.permute(1, 2, 0).numpy().copy() for im in u8]
    # ODG core input: V channel resized to (H+2)x(W+2), prepared outside the timing
    vpads = [
        np.asarray(Image.fromarray(im.max(axis=2)).resize((args.size + 2,) * 2, Image.BILINEAR), np.float32) / 255
        for im in rgb_np
    ]
    i2e = I2E(ratio=0.12).eval()
    n = args.images

    def odg_core_all() -> None:
        for v in vpads:
            odg_frames(v)

    def odg_full_all() -> None:
        for im in rgb_np:
            odg_full(im, args.size)

    def i2e_single_all() -> None:
        for i in range(n):
            i2e(x[i : i + 1])

    def i2e_single_1thread() -> None:
        # per-image calls are tiny: two threads only add fork/join (and, on a loaded machine, waits)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for i in range(n):
                i2e(x[i : i + 1])
        finally:
            torch.set_num_threads(threads)

    cands = {
        "ODG core (numpy, per image)": odg_core_all,
        "ODG full (V+resize+events list)": odg_full_all,
        "I2E eager, per image (batch 1)": i2e_single_all,
        "I2E eager, per image, 1 thread": i2e_single_1thread,
        f"I2E eager, batch {n}": lambda: i2e(x),
        f"I2E eager uint8 in, batch {n}": lambda: i2e(u8),
        f"official f32, batch {n}": lambda: official_convert(x),
    }
    times = time_interleaved(cands, repeats=args.repeats, warmup=1, description="ODG vs I2E")
    base = times["ODG core (numpy, per image)"]
    full = times["ODG full (V+resize+events list)"]
    rows, table = [], []
    for name, t in times.items():
        ms_img = median(t) * 1e3 / n
        row = {
            "name": name,
            "ms_per_image": ms_img,
            "images_per_s": 1e3 / ms_img,
            "odg_core_over_this": paired_ratio(base, t),
            "odg_full_over_this": paired_ratio(full, t),
        }
        rows.append(row)
        table.append((name, ms_img, row["images_per_s"], row["odg_core_over_this"], row["odg_full_over_this"]))
    print_table(
        f"ODG vs I2E, {args.size}px, {n} images per round, {args.repeats} interleaved rounds",
        ["converter", "ms/image", "images/s", "ODG core time / this", "ODG full time / this"],
        table,
        caption=f"images: {source}; ODG threshold {ODG_THRESHOLD}, I2E ratio 0.12 (bool output)",
    )
    ev = [odg_full(im, args.size) for im in rgb_np[: min(n, 8)]]
    odg_rate = float(np.mean([len(e) for e in ev])) / (8 * 2 * args.size * args.size)
    i2e_rate = float(i2e(x[: min(n, 8)]).float().mean())
    console.print(f"event rate on these images: ODG {odg_rate:.4f}, I2E {i2e_rate:.4f} (events per pixel per frame)")
    payload: dict[str, Any] = {
        "benchmark": "odg",
        "size": args.size,
        "images": n,
        "source": source,
        "rows": rows,
        "event_rate": {"odg": odg_rate, "i2e": i2e_rate},
        "paper": {"odg_ms_per_image": 29.47, "claim": "I2E >300x faster than ODG (GPU)"},
    }
    write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
