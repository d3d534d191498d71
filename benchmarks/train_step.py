"""Training-step speed: our snnTorch models vs the same networks on SpikingJelly's multi-step LIF.

One step = forward + cross-entropy + backward + SGD step on random binary events ``[T, B, 2, H, W]``.
Both networks run in the same process, interleaved repeat by repeat, so machine noise hits both
alike; the report gives median ms/step, images/s and the ratio (SpikingJelly time / ours).

    python benchmarks/train_step.py                       # ms_resnet18 and the small CNN, T=8, batch 16, 32x32, CPU
    python benchmarks/train_step.py --arch ms_resnet18 --repeats 15 --json out.json
    python benchmarks/train_step.py --device cuda --amp bf16 --batch 64 --resolution 128

Needs ``pip install --no-deps spikingjelly==0.0.0.0.14``.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

# Idle OpenMP threads sleep instead of spinning: on a shared, oversubscribed CPU spinning threads
# steal the cores the other thread needs, and a 2-thread step can get 5x slower (for both networks).
# Must be set before torch loads OpenMP; an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

if __package__ in (None, ""):  # run as a file: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from jsonargparse import Namespace  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks._args import BenchParser, parse_bench, rename, square, usage_error  # noqa: E402
from i2e_lightning.models import create_model  # noqa: E402

ARCHS = ("ms_resnet18", "ms_resnet34", "spiking_cnn")


def _sj_factory(arch: str) -> Callable[..., torch.nn.Module]:
    try:
        from i2e_lightning.models import spikingjelly_ref as sj
    except ImportError as e:
        raise SystemExit(str(e)) from None
    return {"ms_resnet18": sj.sj_ms_resnet18, "ms_resnet34": sj.sj_ms_resnet34, "spiking_cnn": sj.sj_spiking_cnn}[arch]


def build_pair(arch: str, num_classes: int, size: int, channels_last: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Our model and its SpikingJelly twin with identical weights."""
    kw = {"input_size": (size, size)} if arch == "spiking_cnn" else {}
    torch.manual_seed(0)
    ours = create_model(arch, num_classes=num_classes, channels_last=channels_last, **kw)
    ref = _sj_factory(arch)(num_classes=num_classes, **kw)
    ref_keys = set(ref.state_dict())
    ref.load_state_dict({k: v for k, v in ours.state_dict().items() if k in ref_keys}, strict=True)
    return ours, ref


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, amp: str | None, device: torch.device):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp or "")

    def step() -> float:
        _sync(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        ctx = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with ctx:
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        _sync(device)
        return time.perf_counter() - t0

    return step


def bench_arch(args: Namespace, arch: str, progress: Progress) -> dict:
    device = torch.device(args.device)
    ours, ref = build_pair(arch, args.num_classes, args.size, channels_last=not args.nchw)
    ours, ref = ours.to(device).train(), ref.to(device).train()
    if args.compile:
        ours = torch.compile(ours)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(args.T, args.batch, 2, args.size, args.size, generator=g) < args.density).float().to(device)
    y = torch.randint(0, args.num_classes, (args.batch,), generator=g).to(device)
    steps = {
        "ours (snnTorch)": make_step(ours, x, y, args.amp, device),
        "SpikingJelly": make_step(ref, x, y, args.amp, device),
    }
    task = progress.add_task(f"{arch}: warm-up", total=args.warmup + args.repeats)
    for _ in range(args.warmup):  # includes torch.compile time when --compile
        for fn in steps.values():
            fn()
        progress.advance(task)
    times: dict[str, list[float]] = {k: [] for k in steps}
    progress.update(task, description=f"{arch}: timing")
    for r in range(args.repeats):
        order = list(steps) if r % 2 == 0 else list(reversed(steps))  # alternate who goes first
        for k in order:
            times[k].append(steps[k]())
        progress.advance(task)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "arch": arch,
        "ms_per_step": {k: 1e3 * v for k, v in med.items()},
        "images_per_s": {k: args.batch / v for k, v in med.items()},
        "all_ms": {k: [round(1e3 * t, 2) for t in v] for k, v in times.items()},
        "ratio_sj_over_ours": med["SpikingJelly"] / med["ours (snnTorch)"],
    }


def main(argv: list[str] | None = None) -> int:
    p = BenchParser("train_step", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", choices=(*ARCHS, "all"), default="all", help="'all': ms_resnet18 and spiking_cnn")
    p.add_argument("--timesteps", type=int, default=8, help="T, the timesteps of the events")
    p.add_argument("--batch", type=int, default=16)
    p.add_resolution(32, "event frame size")
    p.add_argument("--num_classes", type=int, default=10)
    p.add_argument("--density", type=float, default=0.1, help="fraction of events that are 1")
    p.add_argument("--device", type=str, default="cpu")
    p.add_threads(help="torch.set_num_threads on CPU")
    p.add_argument("--amp", type=Literal["bf16", "fp16"] | None, default=None, help="autocast both networks")
    p.add_flag("--compile", False, "torch.compile our model (SpikingJelly stays eager)")
    p.add_flag("--nchw", False, "our model in NCHW instead of its default channels_last")
    p.add_argument("--warmup", type=int, default=2)
    p.add_repeats(10)
    p.add_json(help="write the results to this file")
    args = parse_bench(p, argv, {"--T": rename("--timesteps"), "--size": rename("--resolution")})
    # the measuring code below reads the names it always had
    args.T, args.size = args.timesteps, square(args.resolution)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        usage_error("--device cuda but torch sees no CUDA device; run with --device cpu or on a machine with a GPU")
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    archs = ["ms_resnet18", "spiking_cnn"] if args.arch == "all" else [args.arch]
    console = Console()
    results = []
    with Progress(console=console, transient=True) as progress:
        for arch in archs:
            results.append(bench_arch(args, arch, progress))
    table = Table(
        title=f"training step, T={args.T} batch={args.batch} 2x{args.size}x{args.size} on {args.device}"
        + (f" ({args.threads} threads)" if args.device == "cpu" else "")
        + (f", amp {args.amp}" if args.amp else "")
        + (", compiled" if args.compile else "")
        + (", ours NCHW" if args.nchw else "")
    )
    for col in ("arch", "ours ms/step", "SJ ms/step", "ours img/s", "SJ img/s", "SJ / ours"):
        table.add_column(col, justify="right")
    for r in results:
        o, s = r["ms_per_step"]["ours (snnTorch)"], r["ms_per_step"]["SpikingJelly"]
        table.add_row(
            r["arch"], f"{o:.1f}", f"{s:.1f}", f"{r['images_per_s']['ours (snnTorch)']:.0f}",
            f"{r['images_per_s']['SpikingJelly']:.0f}", f"{r['ratio_sj_over_ours']:.2f}x",
        )  # fmt: skip
    console.print(table)
    if args.json:
        payload = {
            "args": {k: v for k, v in vars(args).items() if k != "config"},
            "torch": torch.__version__,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "results": results,
        }
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=2)
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
