"""Choosing the converter's threshold ratio for a dataset (the library behind ``python -m i2e_lightning calibrate``).

A random sample of a split's images, and the rate-against-ratio curve drawn as the paper's Figure 4.
The measurement itself is :mod:`i2e_lightning.converter.calibrate`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor


def sample_images(dataset, samples: int, seed: int = 0, progress=None) -> Tensor:
    """Stack ``samples`` randomly drawn images (all of them if fewer) of a ``(image, label)`` dataset."""
    n = len(dataset)
    if n == 0:
        raise ValueError("the split is empty: nothing to calibrate on")
    k = min(samples, n)
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k].tolist()
    images = []
    for i in idx:
        item = dataset[i]
        if item is None:  # a corrupt image that the dataset's skip_corrupt dropped
            if progress is not None:
                progress()
            continue
        img = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(img, Tensor) or img.dim() != 3:
            raise ValueError(
                f"the dataset yields {type(img).__name__} {getattr(img, 'shape', '')}, not image tensors [C, H, W]: "
                "calibration applies to image datasets (pre-converted event datasets have no ratio to choose)"
            )
        images.append(img)
        if progress is not None:
            progress()
    if not images:
        raise ValueError(f"all {k} drawn images were corrupt (skipped): check the dataset")
    return torch.stack(images)


def plot_curve(
    result_curve: list[tuple[float, float]],
    path: Path,
    target: float | None,
    chosen: float | None,
    current: float | None,
    title: str,
) -> Path:
    """Rate against ratio as an image (the paper's Figure 4); needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("--plot needs matplotlib: pip install 'i2e_lightning[plots]' (or drop --plot)") from None
    xs = [r for r, _ in result_curve]
    ys = [100 * v for _, v in result_curve]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot(xs, ys, marker="o", markersize=3, label="event rate")
    if target is not None:
        ax.axhline(100 * target, color="grey", linestyle="--", linewidth=1, label=f"target {100 * target:.3g}%")
    if chosen is not None:
        ax.axvline(chosen, color="tab:red", linewidth=1, label=f"chosen ratio {chosen:.4g}")
    if current is not None:
        ax.axvline(current, color="tab:green", linestyle=":", linewidth=1, label=f"config ratio {current:.4g}")
    ax.set_xlabel("threshold ratio $S_{th0}$")
    ax.set_ylabel("event rate (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
