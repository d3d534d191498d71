"""ONNX Runtime converter vs the PyTorch eager converter, same run, interleaved, median.

    .venv/bin/python benchmarks/onnx_speed.py                       # CPU: 224x224, batch 32, 2 threads, float32 and uint8
    .venv/bin/python benchmarks/onnx_speed.py --device cuda         # CUDA provider vs torch on the GPU

Three contenders get the same images and the same number of threads N, on the CPU:

* ``runtime``: ``I2ERuntime(path, threads=N)``, the project's ONNX Runtime deployment path: pieces of
  the batch run side by side, each a single-threaded run writing straight into its part of the result;
* ``session``: a plain ``onnxruntime.InferenceSession`` on the same file with N intra-op threads (what
  any other ONNX Runtime host does), spinning off unless ``--ort_spinning``;
* ``eager``: ``I2E(...)`` in PyTorch with ``torch.set_num_threads(N)``.

Both sides check their input for NaN/Inf as they do by default. Each repeat times one call of each,
after an idle ``--gap_ms`` (default 20 ms): PyTorch's OpenMP workers spin for a while after a parallel
region, and a pool that spins steals the core of whatever is timed next, so back-to-back calls would
charge one side's spinning to the other. Medians and minima and the ratios of the medians are printed
per input dtype, output dtype and layout; the events are compared bit for bit first. The load average
before and after each measurement is printed: on a shared machine it decides the figures.
On CUDA both sides keep input and output on the GPU (ORT through I/O binding of a session).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

if __package__ in (None, ""):  # run as a file: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from jsonargparse import Namespace

from benchmarks._args import BenchParser, parse_bench, rename, square


def parse_args(argv: list[str] | None) -> Namespace:
    p = BenchParser("onnx_speed", description=__doc__)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--batch", type=int, default=32)
    p.add_resolution(224, "image size")
    p.add_threads(help="CPU threads of both")
    p.add_repeats(15, help="timed rounds; medians are reported")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--ratio", type=float, default=0.12)
    p.add_argument("--timesteps", type=int, default=8)
    p.add_list("--input_dtype", Literal["float32", "uint8"], ["float32", "uint8"], "image dtypes to time")
    p.add_list(
        "--output_dtype",
        Literal["bool", "packed", "uint8", "float32"],
        ["bool", "packed"],
        "event outputs to time (packed: HDF5-layout bit rows, events.convert_packed on the torch side)",
    )
    p.add_list("--layout", Literal["TBCHW", "BTCHW"], ["TBCHW", "BTCHW"], "event layouts to time")
    p.add_argument("--gap_ms", type=float, default=20.0, help="idle milliseconds before each timed call (see above)")
    p.add_flag(
        "--ort_spinning",
        False,
        "leave ONNX Runtime's thread pool spinning between ops (its default; off here, see above). "
        "The ratio is then NOT a fair figure: the spinning threads slow the eager call timed next (quiet machine, "
        "2026-12-02: ORT 27 ms either way, eager 14 -> 39 ms)",
    )
    p.add_json()
    args = parse_bench(p, argv, {"--size": rename("--resolution")})
    args.resolution = square(args.resolution)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import onnxruntime as ort

    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("error: --device cuda: torch sees no CUDA device; run with --device cpu", file=sys.stderr)
            return 2
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            print(
                f"error: --device cuda: onnxruntime has no CUDAExecutionProvider ({ort.get_available_providers()}): "
                "install onnxruntime-gpu",
                file=sys.stderr,
            )
            return 2
    torch.set_num_threads(args.threads)
    results, all_equal = [], True
    for input_dtype in args.input_dtype:
        for output_dtype in args.output_dtype:
            # packed rows are one row per sample whatever the layout: timed once
            for layout in args.layout if output_dtype != "packed" else args.layout[:1]:
                result, equal = measure(args, ort, input_dtype, output_dtype, layout)
                results.append(result)
                all_equal &= equal
    if args.json:
        from benchmarks._common import write_json

        settings = {k: v for k, v in vars(args).items() if k not in ("json", "config")}
        write_json(
            args.json,
            {"benchmark": "onnx_speed", "settings": settings, "onnxruntime": ort.__version__, "results": results},
        )
    return 0 if all_equal else 1


def measure(args: Namespace, ort, input_dtype: str, output_dtype: str, layout: str) -> tuple[dict, bool]:
    """Time ORT and torch eager on one input dtype, output dtype and layout; returns the figures and whether
    the events agree."""
    from i2e_lightning.converter import I2E
    from i2e_lightning.events import convert_packed
    from i2e_lightning.onnx import I2ERuntime, export_converter

    g = torch.Generator().manual_seed(0)
    shape = (args.batch, 3, args.resolution, args.resolution)
    x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
    if input_dtype == "float32":
        x = x.float() / 255
    packed = output_dtype == "packed"
    conv = I2E(args.ratio, 4, args.timesteps, dtype="bool" if packed else output_dtype, layout=layout).eval()

    def convert(module: I2E, images: torch.Tensor) -> torch.Tensor:
        return convert_packed(module, images).rows if packed else module(images)

    tmp = tempfile.TemporaryDirectory()
    path = export_converter(
        Path(tmp.name) / "i2e.onnx",
        args.ratio,
        4,
        args.timesteps,
        input_dtype=input_dtype,
        output_dtype=output_dtype,
        layout=layout,
    )
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if args.ort_spinning else "0")
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if args.device == "cuda" else None
    sess = ort.InferenceSession(str(path), so, providers=providers or ["CPUExecutionProvider"])
    used = sess.get_providers()
    if args.device == "cuda" and used[0] != "CUDAExecutionProvider":
        print(f"error: the CUDA provider could not start (session uses {used})", file=sys.stderr)
        raise SystemExit(2)

    xn = x.numpy()
    if args.device == "cuda":
        xd = x.cuda()
        x_ort = ort.OrtValue.ortvalue_from_numpy(xn, "cuda", 0)
        binding = sess.io_binding()
        binding.bind_ortvalue_input("images", x_ort)
        binding.bind_output("events", "cuda", 0)

        def run_session():
            sess.run_with_iobinding(binding)
            return binding.get_outputs()[0]

        def run_torch():
            out = convert(conv, xd)
            torch.cuda.synchronize()
            return out

        run_session()
        contenders = {"session": run_session, "eager": run_torch}
        ort_events = {"session": binding.copy_outputs_to_cpu()[0]}
        torch_events = run_torch().cpu().numpy()
    else:
        runtime = I2ERuntime(path, threads=args.threads)

        def run_runtime():
            return runtime.run(xn)

        def run_session():
            return sess.run(None, {"images": xn})[0]

        def run_torch():
            return convert(conv, x)

        contenders = {"runtime": run_runtime, "session": run_session, "eager": run_torch}
        ort_events = {"runtime": run_runtime(), "session": run_session()}
        torch_events = run_torch().numpy()
    equal = all(np.array_equal(e, torch_events) for e in ort_events.values())
    cpu_ref = convert(
        I2E(args.ratio, 4, args.timesteps, dtype="bool" if packed else output_dtype, layout=layout).eval(), x
    )
    equal_cpu = all(np.array_equal(e, cpu_ref.numpy()) for e in ort_events.values())
    del ort_events, torch_events, cpu_ref  # released: the runtime and eager reuse their output memory

    for _ in range(args.warmup):
        for run in contenders.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        for name, run in contenders.items():
            time.sleep(args.gap_ms / 1e3)
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    load_after = os.getloadavg()[0]
    tmp.cleanup()
    med = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    low = {name: min(t) * 1e3 for name, t in times.items()}
    print(
        f"device={args.device} providers={used} batch={args.batch} size={args.resolution}x{args.resolution} "
        f"threads={args.threads} ort_spinning={args.ort_spinning} gap_ms={args.gap_ms} "
        f"load_average={load_before:.2f}->{load_after:.2f} input={input_dtype} output={output_dtype} layout={layout} "
        f"T={args.timesteps} repeats={args.repeats} torch={torch.__version__} onnxruntime={ort.__version__}"
    )
    print(f"events equal (ORT vs torch same device): {equal}; ORT vs torch CPU: {equal_cpu}")
    for name in contenders:
        print(
            f"{name:<8} median {med[name]:8.2f} ms/batch  {med[name] / args.batch:7.3f} ms/image  min {low[name]:8.2f} ms"
        )
    for name in contenders:
        if name != "eager":
            print(
                f"speed-up of ORT {name} over torch eager: {med['eager'] / med[name]:.2f}x (medians), "
                f"{low['eager'] / low[name]:.2f}x (minima)"
            )
    best = "runtime" if "runtime" in contenders else "session"
    result = {
        "input_dtype": input_dtype,
        "output_dtype": output_dtype,
        "layout": layout,
        "providers": used,
        "events_equal_same_device": equal,
        "events_equal_cpu_reference": equal_cpu,
        "ort_ms_per_batch": med[best],
        "torch_ms_per_batch": med["eager"],
        "ort_ms_per_image": med[best] / args.batch,
        "torch_ms_per_image": med["eager"] / args.batch,
        "ort_min_ms_per_batch": low[best],
        "torch_min_ms_per_batch": low["eager"],
        "speedup_ort_over_torch": med["eager"] / med[best],
        "speedup_of_minima": low["eager"] / low[best],
        "session_ms_per_batch": med["session"],
        "speedup_session_over_torch": med["eager"] / med["session"],
        "load_average_before": load_before,
        "load_average_after": load_after,
    }
    return result, equal


if __name__ == "__main__":
    raise SystemExit(main())
