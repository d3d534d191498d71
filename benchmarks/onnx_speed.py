"""ONNX Runtime converter vs the PyTorch eager converter, same run, interleaved, median.

    .venv/bin/python benchmarks/onnx_speed.py                       # CPU: 224x224, batch 32, 2 threads, float32 and uint8
    .venv/bin/python benchmarks/onnx_speed.py --device cuda         # CUDA provider vs torch on the GPU

Both sides get the same images and the same thread count (torch.set_num_threads and ONNX Runtime's
intra-op threads). Each repeat times one ORT call and one torch call back to back, so machine load
hits both alike; the medians and minima and the ratio of the medians are printed, per input dtype. The
events are compared bit for bit first. The minimum is the figure least disturbed by other processes on a
shared machine (PyTorch's OpenMP threads suffer more from a busy core than ONNX Runtime's pool).
On CUDA both sides keep input and output on the GPU (ORT through I/O binding).

ONNX Runtime runs with the options of ``I2ERuntime(threads=N)``: intra-op threads N, one inter-op
thread, sequential execution, every graph optimization (ORT's default level), plus
``session.intra_op.allow_spinning = 0`` unless ``--ort_spinning``: a spinning pool steals the core of
the next timed call, and on a busy machine it slows ORT itself (its default is to spin). The load
average before and after each measurement is printed: on a shared machine it decides the figures.
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
            result, equal = measure(args, ort, input_dtype, output_dtype)
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


def measure(args: Namespace, ort, input_dtype: str, output_dtype: str) -> tuple[dict, bool]:
    """Time ORT and torch eager on one input / output dtype; returns the figures and whether the events agree."""
    from i2e_lightning.converter import I2E
    from i2e_lightning.events import convert_packed
    from i2e_lightning.onnx import export_converter

    g = torch.Generator().manual_seed(0)
    shape = (args.batch, 3, args.resolution, args.resolution)
    x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
    if input_dtype == "float32":
        x = x.float() / 255
    packed = output_dtype == "packed"
    conv = I2E(args.ratio, 4, args.timesteps, dtype="bool" if packed else output_dtype, validate=False).eval()

    def convert(module: I2E, images: torch.Tensor) -> torch.Tensor:
        return convert_packed(module, images).rows if packed else module(images)

    with tempfile.TemporaryDirectory() as tmp:
        path = export_converter(
            Path(tmp) / "i2e.onnx",
            args.ratio,
            4,
            args.timesteps,
            input_dtype=input_dtype,
            output_dtype=output_dtype,
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

        def run_ort():
            sess.run_with_iobinding(binding)
            return binding.get_outputs()[0]

        def run_torch():
            out = convert(conv, xd)
            torch.cuda.synchronize()
            return out

        run_ort()
        ort_events = binding.copy_outputs_to_cpu()[0]
        torch_events = run_torch().cpu().numpy()
    else:

        def run_ort():
            return sess.run(None, {"images": xn})[0]

        def run_torch():
            return convert(conv, x)

        ort_events, torch_events = run_ort(), run_torch().numpy()
    equal = bool(np.array_equal(ort_events, torch_events))
    cpu_ref = convert(I2E(args.ratio, 4, args.timesteps, dtype="bool" if packed else output_dtype).eval(), x).numpy()
    equal_cpu = bool(np.array_equal(ort_events, cpu_ref))

    for _ in range(args.warmup):
        run_ort(), run_torch()
    t_ort, t_torch = [], []
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        run_ort()
        t1 = time.perf_counter()
        run_torch()
        t2 = time.perf_counter()
        t_ort.append(t1 - t0)
        t_torch.append(t2 - t1)
    load_after = os.getloadavg()[0]
    m_ort, m_torch = statistics.median(t_ort) * 1e3, statistics.median(t_torch) * 1e3
    print(
        f"device={args.device} providers={used} batch={args.batch} size={args.resolution}x{args.resolution} "
        f"threads={args.threads} ort_spinning={args.ort_spinning} load_average={load_before:.2f}->{load_after:.2f} "
        f"input={input_dtype} output={output_dtype} T={args.timesteps} "
        f"repeats={args.repeats} torch={torch.__version__} onnxruntime={ort.__version__}"
    )
    print(f"events equal (ORT vs torch same device): {equal}; ORT vs torch CPU: {equal_cpu}")
    print(
        f"onnxruntime  median {m_ort:8.2f} ms/batch  {m_ort / args.batch:7.3f} ms/image  min {min(t_ort) * 1e3:8.2f} ms"
    )
    print(
        f"torch eager  median {m_torch:8.2f} ms/batch  {m_torch / args.batch:7.3f} ms/image  min {min(t_torch) * 1e3:8.2f} ms"
    )
    print(
        f"speed-up of ORT over torch eager: {m_torch / m_ort:.2f}x (medians), {min(t_torch) / min(t_ort):.2f}x (minima)"
    )
    return (
        {
            "input_dtype": input_dtype,
            "output_dtype": output_dtype,
            "providers": used,
            "events_equal_same_device": equal,
            "events_equal_cpu_reference": equal_cpu,
            "ort_ms_per_batch": m_ort,
            "torch_ms_per_batch": m_torch,
            "ort_ms_per_image": m_ort / args.batch,
            "torch_ms_per_image": m_torch / args.batch,
            "ort_min_ms_per_batch": min(t_ort) * 1e3,
            "torch_min_ms_per_batch": min(t_torch) * 1e3,
            "speedup_ort_over_torch": m_torch / m_ort,
            "speedup_of_minima": min(t_torch) / min(t_ort),
            "load_average_before": load_before,
            "load_average_after": load_after,
        },
        equal,
    )


if __name__ == "__main__":
    raise SystemExit(main())
