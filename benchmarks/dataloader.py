"""Data-loader throughput: uint8 images converted on the device vs pre-converted events from HDF5.

Same samples (Fashion-MNIST test, 32x32, ratio 0.15), same ``DataLoader`` settings, one full pass
per round, rounds interleaved; every pipeline ends with float32 events ``[T, B, 2, H, W]`` on the
device, as the training step consumes them:

    images -> I2E       the DataModule's dataset (uint8 [3, H, W]), collated, then the converter
                        on the batch (what ``on_after_batch_transfer`` does)
    images only         the same loader without conversion (the loader's own share)
    HDF5 events bool    ``EventFileDataset(file)``: rows unpacked per sample in the worker, bool
                        [T, 2, H, W] collated, then ``.float()``
    HDF5 events packed  ``EventFileDataset(file, packed=True)``: packed uint8 rows collated (8x fewer
                        bytes), unpacked per batch with ``unpack_events`` on the device

The HDF5 file is written once to a temporary folder with the events helper's ``EventH5Writer``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from benchmarks._args import BenchParser, parse_bench
from benchmarks._common import console, median, print_table, progress, setup_threads, write_json
from benchmarks._data import FASHION_MNIST_DIR, fashion_mnist, preprocess
from i2e_lightning.converter import I2E


def image_dataset(data_dir: Path, limit: int) -> tuple[Dataset, str]:
    """The data helper's Fashion-MNIST test dataset (uint8 at 32x32), or an equivalent in-memory one."""
    try:
        from i2e_lightning.data.mnist import FashionMNISTDataModule

        ds = FashionMNISTDataModule(data_dir=str(data_dir)).split_dataset("test")
        n = min(limit, len(ds))
        return torch.utils.data.Subset(ds, range(n)), "FashionMNISTDataModule.split_dataset('test')"
    except (ImportError, AttributeError, TypeError) as exc:
        imgs, labels = fashion_mnist("test", data_dir)
        x = preprocess(imgs[:limit], 32)
        return TensorDataset(x, torch.from_numpy(labels[:limit])), f"in-memory uint8 tensors ({type(exc).__name__})"


def write_h5(ds: Dataset, path: Path, ratio: float, batch: int = 500) -> None:
    from i2e_lightning.events import EventH5Writer, pack_events
    from i2e_lightning.events.hdf5 import EventFileMeta

    conv = I2E(ratio=ratio).eval()
    x0, _ = ds[0]
    h, w = x0.shape[-2:]
    meta = EventFileMeta(
        shape=(conv.timesteps, 2, h, w),
        ratio=ratio,
        order=conv.order,
        resolution=(h, w),
        source="bench",
        num_samples=len(ds),
    )
    loader = DataLoader(ds, batch_size=batch)
    with EventH5Writer(path, meta, overwrite=True) as wr, progress() as bar:
        task = bar.add_task("writing HDF5 events", total=len(ds))
        for images, labels in loader:
            ev = conv(images).transpose(0, 1).contiguous()  # [B, T, 2, H, W]
            wr.append(np.asarray(pack_events(ev.numpy())), labels.numpy())
            bar.advance(task, len(labels))
        wr.finish()


def main(argv: list[str] | None = None) -> int:
    p = BenchParser("dataloader", description="uint8 images + on-device conversion vs pre-converted HDF5 events")
    p.add_common(repeats=3)
    p.add_argument("--data_dir", type=Path, default=FASHION_MNIST_DIR, help="Fashion-MNIST idx folder")
    p.add_argument("--samples", type=int, default=10000)
    p.add_argument("--batch", type=int, default=128)
    p.add_list("--workers", int, [0, 1], "num_workers settings to compare")
    p.add_argument("--device", type=str, default="cpu")
    args = parse_bench(p, argv)
    setup_threads(args.threads)
    try:
        from i2e_lightning.events import EventFileDataset, unpack_events
    except ImportError as exc:
        raise SystemExit(f"error: the events package is not available ({exc})") from exc
    device = torch.device(args.device)
    ds, source = image_dataset(args.data_dir, args.samples)
    conv = I2E(ratio=0.15).eval()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        h5 = Path(tmp) / "fmnist_events.h5"
        write_h5(ds, h5, ratio=0.15)
        console.print(f"HDF5 file: {h5.stat().st_size / 2**20:.1f} MiB for {len(ds)} samples; images from {source}")
        ev_bool = EventFileDataset(h5)
        ev_packed = EventFileDataset(h5, packed=True)
        shape = ev_packed.shape
        for workers in args.workers:
            kw = {"batch_size": args.batch, "num_workers": workers, "persistent_workers": workers > 0}

            def make(dset: Dataset, kw: dict = kw) -> DataLoader:
                return DataLoader(dset, shuffle=False, **kw)

            loaders = {"images": make(ds), "bool": make(ev_bool), "packed": make(ev_packed)}

            def run(kind: str, loaders: dict = loaders) -> int:
                n = 0
                for x, _y in loaders[kind if kind != "images_only" else "images"]:
                    x = x.to(device)
                    if kind == "images":
                        out = conv(x, dtype=torch.float32)
                    elif kind == "images_only":
                        out = x
                    elif kind == "bool":
                        out = x.float().transpose(0, 1)
                    else:
                        out = unpack_events(x, shape, device).float().transpose(0, 1)
                    n += out.shape[1] if kind != "images_only" else out.shape[0]
                return n

            names = {
                "images -> I2E": "images",
                "images only (no conversion)": "images_only",
                "HDF5 events bool": "bool",
                "HDF5 events packed + unpack": "packed",
            }
            times: dict[str, list[float]] = {k: [] for k in names}
            for kind in names.values():  # warm-up pass (workers start, page cache)
                run(kind)
            with progress() as bar:
                task = bar.add_task(f"workers={workers}", total=args.repeats)
                for _ in range(args.repeats):
                    for label, kind in names.items():
                        t0 = time.perf_counter()
                        n = run(kind)
                        times[label].append(time.perf_counter() - t0)
                    bar.advance(task)
            for label, t in times.items():
                results.append(
                    {
                        "pipeline": label,
                        "workers": workers,
                        "samples": n,
                        "seconds": median(t),
                        "samples_per_s": n / median(t),
                    }
                )
            del loaders
    base = {r["workers"]: r["samples_per_s"] for r in results if r["pipeline"] == "images -> I2E"}
    print_table(
        f"Data-loader throughput, {args.samples} Fashion-MNIST samples 32x32, batch {args.batch}, device {args.device}",
        ["pipeline", "workers", "samples/s", "x images->I2E"],
        [(r["pipeline"], r["workers"], r["samples_per_s"], r["samples_per_s"] / base[r["workers"]]) for r in results],
        caption="every pipeline ends with float32 events [T, B, 2, H, W] on the device (except 'images only')",
    )
    write_json(args.json, {"benchmark": "dataloader", "source": source, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
