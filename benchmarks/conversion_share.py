"""Share of a training step spent on the on-device conversion (augment + I2E), for a config's recipe.

What a training step costs with our data flow: the datamodule's ``on_after_batch_transfer`` turns the
shipped uint8 image batch into events (training augmentation, resize, I2E with random pairs), then the
model does forward + loss + backward + optimizer step. Both parts are timed interleaved, round by round,
on the same batch size, and the report gives the median of ``conversion / model step`` over rounds
(target: < 5 %) and of ``conversion / (conversion + model step)``.

    python benchmarks/conversion_share.py                                  # configs/fashion_mnist.yaml, CPU
    python benchmarks/conversion_share.py --config configs/cifar10_baseline2.yaml --device cuda --batch 128
    python benchmarks/conversion_share.py --synthetic                      # random images, no dataset needed
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from torch.utils.data import default_collate

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._args import BenchParser, parse_bench
from benchmarks._common import (
    REPO_ROOT,
    console,
    median,
    paired_ratio,
    print_table,
    setup_threads,
    write_json,
)
from i2e_lightning.data.config import datamodule_from_config
from i2e_lightning.training import SpikingClassifier


def _image_batch(dm: Any, batch: int, synthetic: bool) -> torch.Tensor | list[torch.Tensor]:
    """A uint8 batch as the training dataloader ships it (real images unless ``synthetic``; ImageNet
    Baseline-II ships a list of whole images of their own sizes)."""
    if synthetic:
        channels = 3 if "CIFAR" in type(dm).__name__ or "ImageFolder" in type(dm).__name__ else 1
        return torch.randint(0, 256, (batch, channels, *dm.resolution), dtype=torch.uint8)
    ds = dm.loader_dataset("train")
    if len(ds) < batch:
        raise ValueError(f"the training split has {len(ds)} samples, fewer than --batch {batch}")
    collate = dm.collate_for("train") or default_collate  # None = the loader's default
    return collate([ds[i] for i in range(batch)])[0]


def main(argv: list[str] | None = None) -> int:
    p = BenchParser("conversion_share", description=__doc__.splitlines()[0])
    p.add_argument(
        "--training_config",
        type=str,
        default=str(REPO_ROOT / "configs" / "fashion_mnist.yaml"),
        help="the training config whose data and model are timed; a training config given to --config sets it",
    )
    p.training_config = "training_config"
    p.add_argument("--batch", type=int | None, default=None, help="batch size (default: the config's)")
    p.add_argument("--device", type=str, default="cpu", help="cpu or cuda")
    p.add_argument(
        "--amp", choices=["none", "bf16", "fp16"], default="none", help="autocast for the model step (GPU recipes)"
    )
    p.add_flag("--synthetic", False, "random uint8 images instead of the dataset")
    p.add_common(repeats=15)
    args = parse_bench(p, argv)
    setup_threads(args.threads)
    device = torch.device(args.device)

    cfg = yaml.safe_load(Path(args.training_config).read_text())
    overrides: dict[str, Any] = {"num_workers": 0}
    if args.batch:
        overrides["batch_size"] = args.batch
    dm = datamodule_from_config(args.training_config, **overrides)
    batch = dm.batch_size
    images = _image_batch(dm, batch, args.synthetic)
    images = [im.to(device) for im in images] if isinstance(images, list) else images.to(device)
    dm.converter.to(device)

    model_args = dict((cfg.get("model") or {}).get("init_args", cfg.get("model") or {}))
    model_args.pop("init_from", None)
    model_args.pop("compile", None)
    model_args.pop("num_classes", None)
    module = SpikingClassifier(**model_args)
    # as in training: classes, channels and (for spiking_cnn's head) the resolution from the datamodule
    module.build_network(dm.num_classes, dm.in_channels, tuple(dm.resolution))
    net = module.net.to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=module.hparams.lr, momentum=module.hparams.momentum)
    labels = torch.randint(0, dm.num_classes, (batch,), device=device)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    events = dm.convert_batch(images, train=True)

    def convert() -> None:
        dm.convert_batch(images, train=True)

    def step() -> None:
        ctx = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
        with ctx:
            loss = torch.nn.functional.cross_entropy(net(events), labels, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    # interleaved rounds, wall and process CPU time of every call; the progress bar is refreshed by
    # hand between rounds: rich's auto-refresh thread would compete for the GIL with the conversion's
    # many small ops and inflate them several-fold
    warmup = 2
    candidates = {"convert": convert, "step": step}
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in candidates}
    cpu: dict[str, list[float]] = {k: [] for k in candidates}
    with Progress(
        TextColumn("timing"), BarColumn(), MofNCompleteColumn(), console=console, auto_refresh=False, transient=True
    ) as bar:
        task = bar.add_task("timing", total=args.repeats)
        for _ in range(args.repeats):
            for name, fn in candidates.items():
                if sync is not None:
                    sync()
                wall0, cpu0 = time.perf_counter(), time.process_time()
                fn()
                if sync is not None:
                    sync()
                times[name].append(time.perf_counter() - wall0)
                cpu[name].append(time.process_time() - cpu0)
            bar.advance(task)
            bar.refresh()
    share_of_step = paired_ratio(times["convert"], times["step"])
    share_of_total = median([c / (c + s) for c, s in zip(times["convert"], times["step"], strict=True)])
    cpu_share = paired_ratio(cpu["convert"], cpu["step"]) if device.type == "cpu" else float("nan")
    conv_ms, step_ms = 1e3 * median(times["convert"]), 1e3 * median(times["step"])
    print_table(
        f"conversion share — {Path(args.training_config).name}, batch {batch}, {tuple(events.shape)} events, {device}",
        ["part", "median wall ms", "per image ms", "median CPU ms"],
        [
            ("augment + I2E (on device)", conv_ms, conv_ms / batch, 1e3 * median(cpu["convert"])),
            ("model step (fwd+bwd+SGD)", step_ms, step_ms / batch, 1e3 * median(cpu["step"])),
        ],
        caption=f"conversion / step = {100 * share_of_step:.2f} % wall, {100 * cpu_share:.2f} % CPU time "
        f"(target < 5 %); of the whole = {100 * share_of_total:.2f} % wall",
    )
    ok = share_of_step < 0.05
    console.print(
        f"[{'green' if ok else 'red'}]conversion = {100 * share_of_step:.2f} % of a training step[/] "
        f"({'meets' if ok else 'misses'} the 5 % target)"
    )
    write_json(
        args.json,
        {
            "benchmark": "conversion_share",
            "config": str(args.training_config),
            "device": str(device),
            "amp": args.amp,
            "batch": batch,
            "events_shape": list(events.shape),
            "synthetic": bool(args.synthetic),
            "median_convert_ms": conv_ms,
            "median_step_ms": step_ms,
            "share_of_step": share_of_step,
            "share_of_total": share_of_total,
            "cpu_share_of_step": cpu_share,
            "median_convert_cpu_ms": 1e3 * median(cpu["convert"]),
            "median_step_cpu_ms": 1e3 * median(cpu["step"]),
            "meets_target": ok,
            "times_s": times,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
