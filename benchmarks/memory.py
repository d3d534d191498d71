"""Peak memory per batch size: the converter and a training step.

What is measured (tracemalloc does not see torch's allocations; the profiler's ``profile_memory``
attributes frees to no op and under-counted the converter's output in a check, so it is not used):
    output MB       the events tensor's size, computed (T x B x 2 x H x W x element size)
    peak RSS MB     CPU: the process's peak resident memory (VmHWM, reset to the current RSS just before
                    the call through /proc/self/clear_refs) during the call minus its resident memory
                    just before; each configuration in its own fresh subprocess (pages actually touched)
    peak CUDA MB    GPU (``--device cuda``): ``torch.cuda.max_memory_allocated`` during the call minus
                    the memory allocated before it

Training step: forward + backward + SGD step (momentum, so its state counts) of ``ms_resnet18``
and the small CNN on T x B x 2 x H x W float32 events, after the model and data are built.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks._args import BenchParser, parse_bench, rename, square, usage_error
from benchmarks._common import REPO_ROOT, console, print_table, progress, setup_threads, write_json

MB = 1024 * 1024


def _rss_now() -> int:
    """Current resident set size in bytes (Linux /proc), else the peak as an approximation."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize()
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss_peak() -> int:
    """Peak RSS in bytes: VmHWM (resettable, see _reset_peak), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _converter_job(size: int, batch: int, dtype: str, device: str) -> tuple[Any, int]:
    from i2e_lightning.converter import I2E, official_convert

    x = torch.rand(batch, 3, size, size, device=device)
    if dtype == "official":  # the official formulation, float32 events
        return (lambda: official_convert(x)), 8 * batch * 2 * size * size * 4
    # no output cache: measure what one conversion allocates, not the cache's steady state
    conv = I2E(dtype=dtype, cache_outputs=False).eval()
    out_bytes = conv.timesteps * batch * 2 * size * size * torch.empty((), dtype=conv.dtype).element_size()
    return (lambda: conv(x)), out_bytes


def _train_job(model_name: str, size: int, batch: int, timesteps: int, device: str) -> tuple[Any, int]:
    import torch.nn.functional as F

    from i2e_lightning import models

    if model_name == "ms_resnet18":
        model = models.ms_resnet18(num_classes=10, in_channels=2)
    else:
        model = models.spiking_cnn(num_classes=10, in_channels=2)
    model = model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    ev = (torch.rand(timesteps, batch, 2, size, size, device=device) < 0.1).float()
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(ev), y)
        loss.backward()
        opt.step()

    return step, 0


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one configuration in this (fresh) process."""
    setup_threads(spec.get("threads", 2))
    device = spec.get("device", "cpu")
    # warm the libraries up (thread pools, kernels) on a tiny input so their one-off memory is not counted
    if spec["what"] == "converter":
        _converter_job(8, 1, spec["dtype"], device)[0]()
    else:
        _train_job(spec["model"], spec["size"], 2, 1, device)[0]()  # batch 2: BatchNorm needs > 1 value
    if spec["what"] == "converter":
        fn, out_bytes = _converter_job(spec["size"], spec["batch"], spec["dtype"], device)
    else:
        fn, out_bytes = _train_job(spec["model"], spec["size"], spec["batch"], spec["timesteps"], device)
    res: dict[str, Any] = {**spec, "output_mb": out_bytes / MB}
    if device == "cuda":
        fn()  # warm-up (cuDNN workspaces, optimizer state)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        res["peak_cuda_mb"] = (torch.cuda.max_memory_allocated() - before) / MB
        return res
    res["peak_reset"] = _reset_peak()  # else the high-water mark of model building may hide the call's
    before_rss = _rss_now()
    peak_before = _rss_peak()
    fn()
    res["peak_rss_mb"] = (max(_rss_peak(), peak_before) - before_rss) / MB
    res["rss_high_water_already_above"] = peak_before > before_rss
    return res


def run_child(spec: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.memory", "--child", json.dumps(spec)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return {**spec, "error": tail[0][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"] and len(argv) == 2:  # run_child's fresh process, not a user's command line
        print(json.dumps(child(json.loads(argv[1]))))
        return 0
    p = BenchParser("memory", description="Peak memory per batch size (converter, training step)")
    p.add_common(repeats=1)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_resolution(224, "converter resolution")
    p.add_list("--batches", int, [1, 8, 32, 64], "converter batch sizes")
    p.add_resolution(32, "training-step resolution", name="--train_resolution")
    p.add_list("--train_batches", int, [8, 16, 32], "training-step batch sizes")
    p.add_argument("--timesteps", type=int, default=8)
    p.add_list("--models", str, ["ms_resnet18", "spiking_cnn"], "networks of the training step")
    args = parse_bench(p, argv, {"--size": rename("--resolution"), "--train-size": rename("--train_resolution")})
    args.resolution = square(args.resolution)
    args.train_resolution = square(args.train_resolution, "--train_resolution")
    if args.device == "cuda" and not torch.cuda.is_available():
        usage_error("--device cuda but torch sees no CUDA device; run with --device cpu or on a machine with a GPU")
    specs: list[dict[str, Any]] = []
    for b in args.batches:
        for dt in ("bool", "float32", "official"):
            specs.append(
                {
                    "what": "converter",
                    "size": args.resolution,
                    "batch": b,
                    "dtype": dt,
                    "device": args.device,
                    "threads": args.threads,
                }
            )
    for m in args.models:
        for b in args.train_batches:
            specs.append(
                {
                    "what": "train_step",
                    "model": m,
                    "size": args.train_resolution,
                    "batch": b,
                    "timesteps": args.timesteps,
                    "device": args.device,
                    "threads": args.threads,
                }
            )
    results = []
    with progress() as bar:
        task = bar.add_task("memory (one subprocess each)", total=len(specs))
        for spec in specs:
            results.append(run_child(spec))
            bar.advance(task)
    peak_key = "peak_cuda_mb" if args.device == "cuda" else "peak_rss_mb"
    rows = []
    for r in results:
        label = (
            (f"I2E {r['dtype']}" if r["dtype"] != "official" else "official f32") + f" {r['size']}px"
            if r["what"] == "converter"
            else f"{r['model']} step {r['size']}px T{r['timesteps']}"
        )
        rows.append(
            (
                label,
                r["batch"],
                r.get("output_mb") if r["what"] == "converter" else "-",
                r.get(peak_key, "error"),
                r[peak_key] / r["output_mb"] if r["what"] == "converter" and peak_key in r else "-",
            )
        )
    print_table(
        f"Peak memory ({args.device}), MB",
        [
            "what",
            "batch",
            "output MB",
            "peak CUDA MB" if args.device == "cuda" else "peak RSS MB",
            "peak / output",
        ],
        rows,
        caption="peak RSS = VmHWM during the call (reset before it) - RSS just before (fresh subprocess per row); "
        "peak CUDA = max_memory_allocated during the call - allocated before",
    )
    for r in results:
        if "error" in r:
            console.print(f"[yellow]note:[/yellow] {r.get('model', r['what'])} batch {r['batch']}: {r['error']}")
    write_json(args.json, {"benchmark": "memory", "device": args.device, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
