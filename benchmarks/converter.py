"""Converter speed: I2E (eager, torch.compile, ONNX Runtime) vs the official formulation and a memory bound.

For every resolution (32, 128, 224 px) all candidates run interleaved in the same
rounds on the same float32 images ``[B, 3, H, W]`` in [0, 1]; medians are reported.

Candidates
    official f32        ``official_convert``: replicate pad -> conv2d with the 8 kernels -> float masks
                        (the paper's code path), float32 events. The baseline of every ratio.
    I2E eval/train      ``I2E`` eager, bool and float32 output; train mode with random pairs per call
                        and per sample.
    I2E compiled        ``torch.compile(I2E)`` (eval), or a note when compiling fails.
    ONNX Runtime        the onnx helper's exported converter (eval), CPU provider, when available.
    bound               the memory-copy bound of the same output: read the input bytes once and write the
                        output bytes once (a byte copy of the input into the head of an output-sized buffer
                        plus a fill of the rest). "fresh" allocates the output buffer every call, as every
                        converter above does; "prealloc" reuses one buffer. "copy_ same-size" is
                        ``out.copy_(src)`` of two output-sized tensors (reads the output size, not the input).

Run ``python -m benchmarks.converter --env_compare`` to repeat the 224 px set under
``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` (glibc keeps freed big blocks, so a fresh
output stops page-faulting) and ``THP_MEM_ALLOC_ENABLE=1`` (PyTorch's CPU allocator asks for
transparent huge pages): every candidate of a run shares its environment.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from jsonargparse import Namespace

from benchmarks._args import BenchParser, parse_bench, rename, square, usage_error
from benchmarks._common import (
    REPO_ROOT,
    console,
    median,
    paired_ratio,
    print_table,
    setup_threads,
    time_interleaved,
    write_json,
)
from i2e_lightning.converter import I2E, official_convert

DEFAULT_BATCH = {32: 256, 128: 64, 224: 32}
ENV_VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "malloc-keep": {"MALLOC_MMAP_THRESHOLD_": str(1 << 32), "MALLOC_TRIM_THRESHOLD_": str(1 << 36)},
    "thp": {"THP_MEM_ALLOC_ENABLE": "1"},
}


@dataclass
class Candidate:
    name: str
    fn: Callable[[], Any]
    kind: str  # official | eager | compiled | onnx | bound
    mode: str = "eval"
    dtype: str = "float32"
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def make_images(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """Float32 test images in [0, 1] with structure at several scales (events are content dependent)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, max(size // 8, 1), max(size // 8, 1), generator=g)
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return (0.8 * smooth + 0.2 * torch.rand(batch, 3, size, size, generator=g)).clamp_(0, 1)


def out_nbytes(batch: int, size: int, timesteps: int, dtype: torch.dtype) -> int:
    return timesteps * batch * 2 * size * size * torch.empty((), dtype=dtype).element_size()


def bound_fns(x: torch.Tensor, nbytes: int) -> dict[str, Callable[[], Any]]:
    """Memory-copy bounds for an output of ``nbytes`` bytes from input ``x`` (see the module doc)."""
    src = x.contiguous().view(torch.uint8).view(-1)
    n_in = src.numel()
    if n_in > nbytes:
        raise ValueError(f"input ({n_in} B) larger than output ({nbytes} B): the bound formula assumes otherwise")
    dev = x.device
    pre = torch.empty(nbytes, dtype=torch.uint8, device=dev)
    same_src = torch.zeros(nbytes, dtype=torch.uint8, device=dev)

    def read_write(buf: torch.Tensor) -> torch.Tensor:
        buf[:n_in].copy_(src)
        buf[n_in:].fill_(0)
        return buf

    return {
        "fresh": lambda: read_write(torch.empty(nbytes, dtype=torch.uint8, device=dev)),
        "prealloc": lambda: read_write(pre),
        "copy_ same-size fresh": lambda: torch.empty(nbytes, dtype=torch.uint8, device=dev).copy_(same_src),
        "copy_ same-size prealloc": lambda: pre.copy_(same_src),
    }


def _compile(module: torch.nn.Module, x: torch.Tensor) -> tuple[Callable[[], Any] | None, str]:
    try:
        import torch._dynamo  # noqa: F401

        # the input check's .item() is a graph break by design; its multi-line warning is noise here
        logging.getLogger("torch._dynamo").setLevel(logging.ERROR)
        compiled = torch.compile(module, dynamic=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = module(x)
            got = compiled(x)
        if not torch.equal(ref, got):
            return None, "torch.compile output differs from eager: not timed"
        return (lambda: compiled(x)), ""
    except Exception as exc:  # compile needs a C++ toolchain on CPU; report instead of failing the whole run
        return None, f"torch.compile unavailable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"


def _onnx_session(x: torch.Tensor, dtype: str, threads: int) -> tuple[Callable[[], Any] | None, str]:
    """Export the converter with the onnx helper's function and time it in ONNX Runtime (CPU)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None, "onnxruntime not installed"
    try:
        from i2e_lightning.onnx import export_converter  # type: ignore[attr-defined]
    except ImportError:
        return None, "i2e_lightning.onnx.export_converter not available yet"
    tmp = Path(tempfile.mkdtemp(prefix="i2e_onnx_bench_")) / f"i2e_{dtype}.onnx"
    try:
        export_converter(tmp, ratio=0.12, order=4, timesteps=8, input_dtype="float32", output_dtype=dtype)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # ORT's pool spins for a while after each run; interleaved, that steals the cores of
        # whichever candidate runs next, so it is switched off (a few % slower for ORT itself)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(str(tmp), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        return None, f"ONNX export/session failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    name = sess.get_inputs()[0].name
    feed = {name: x.numpy()}
    ref = I2E().eval()(x).numpy()
    got = sess.run(None, feed)[0]
    if got.shape != ref.shape or not (got.astype(bool) == ref).all():
        return None, "ONNX Runtime events differ from the eager converter: not timed"
    return (lambda: sess.run(None, feed)), ""


def build_candidates(
    x: torch.Tensor,
    timesteps: int = 8,
    compile_: bool = True,
    onnx: bool = True,
    threads: int = 2,
    prealloc_i2e: bool = True,
) -> tuple[list[Candidate], list[str]]:
    """Every candidate for one batch of images, plus notes on those that could not run."""
    b, _, h, w = x.shape
    if h != w:
        raise ValueError("the benchmark uses square images")
    notes: list[str] = []
    cands = [Candidate("official f32", lambda: official_convert(x, timesteps=timesteps), "official")]
    for dtype in (torch.bool, torch.float32):
        dname = "bool" if dtype == torch.bool else "float32"
        m_eval = I2E(timesteps=timesteps, dtype=dtype).eval()
        m_call = I2E(timesteps=timesteps, dtype=dtype).train()
        m_samp = I2E(timesteps=timesteps, dtype=dtype, per_sample=True).train()
        cands += [
            Candidate(f"I2E eval {dname}", lambda m=m_eval: m(x), "eager", "eval", dname),
            Candidate(f"I2E train/call {dname}", lambda m=m_call: m(x), "eager", "train-call", dname),
            Candidate(f"I2E train/sample {dname}", lambda m=m_samp: m(x), "eager", "train-sample", dname),
        ]
        if prealloc_i2e:
            # the same kernels writing into one reused output: separates page-fault cost from compute
            out = torch.empty((timesteps, b, 2, h, w), dtype=dtype, device=x.device)
            cands.append(
                Candidate(
                    f"I2E eval {dname} prealloc",
                    lambda m=m_eval, o=out: m(x, out=o),
                    "eager-prealloc",
                    "eval",
                    dname,
                    note="I2E(x, out=...) into one reused output",
                )
            )
        if compile_:
            fn, note = _compile(I2E(timesteps=timesteps, dtype=dtype).eval(), x)
            if fn is None:
                notes.append(f"compiled {dname}: {note}")
            else:
                cands.append(Candidate(f"I2E compiled {dname}", fn, "compiled", "eval", dname))
        if onnx:
            fn, note = _onnx_session(x, dname, threads)
            if fn is None:
                notes.append(f"ONNX Runtime {dname}: {note}")
            else:
                cands.append(Candidate(f"ONNX Runtime {dname}", fn, "onnx", "eval", dname))
        for bname, bfn in bound_fns(x, out_nbytes(b, h, timesteps, dtype)).items():
            cands.append(Candidate(f"bound {dname} {bname}", bfn, "bound", "-", dname, extra={"variant": bname}))
    return cands, notes


def run_size(
    size: int,
    batch: int,
    repeats: int,
    threads: int,
    compile_: bool,
    onnx: bool,
    timesteps: int = 8,
    device: str = "cpu",
) -> dict[str, Any]:
    x = make_images(batch, size).to(device)
    if device != "cpu" and onnx:
        onnx = False  # the CUDA provider is timed by benchmarks/onnx_speed.py --device cuda
    cands, notes = build_candidates(x, timesteps, compile_, onnx, threads)
    sync = torch.cuda.synchronize if x.device.type == "cuda" else None
    times = time_interleaved(
        {c.name: c.fn for c in cands}, repeats=repeats, warmup=3, description=f"{size}px x{batch}", sync=sync
    )
    base = times["official f32"]
    bounds = {(c.dtype, c.extra["variant"]): times[c.name] for c in cands if c.kind == "bound"}
    rows = []
    for c in cands:
        t = times[c.name]
        ms = median(t) * 1e3
        row: dict[str, Any] = {
            "name": c.name,
            "kind": c.kind,
            "mode": c.mode,
            "dtype": c.dtype,
            "ms_per_call": ms,
            "ms_per_call_min": min(t) * 1e3,
            "ms_per_image": ms / batch,
            "images_per_s": batch / (ms / 1e3),
            "speedup_vs_official_f32": paired_ratio(base, t),
        }
        if c.kind != "bound":
            row["x_bound_fresh"] = paired_ratio(t, bounds[(c.dtype, "fresh")])
            row["x_bound_prealloc"] = paired_ratio(t, bounds[(c.dtype, "prealloc")])
        if c.note:
            row["note"] = c.note
        rows.append(row)
    return {"size": size, "batch": batch, "repeats": repeats, "device": str(x.device), "rows": rows, "notes": notes}


def print_size(res: dict[str, Any], title_extra: str = "") -> None:
    print_table(
        f"I2E converter, {res['size']}x{res['size']} px, batch {res['batch']}, {res['repeats']} interleaved rounds"
        + title_extra,
        [
            "candidate",
            "ms/call",
            "min ms",
            "ms/image",
            "images/s",
            "x official f32",
            "/ bound fresh",
            "/ bound prealloc",
        ],
        [
            (
                r["name"],
                r["ms_per_call"],
                r["ms_per_call_min"],
                r["ms_per_image"],
                r["images_per_s"],
                r["speedup_vs_official_f32"],
                r.get("x_bound_fresh", "-"),
                r.get("x_bound_prealloc", "-"),
            )
            for r in res["rows"]
        ],
        caption="x official f32 = median per-round speed-up over official_convert; / bound = time over the "
        "memory-copy bound of the same output dtype (fresh = new output each call, as the converters do)",
    )
    for n in res["notes"]:
        console.print(f"[yellow]note:[/yellow] {n}")


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 6 converter targets, read at the largest size measured (224 px by default).

    CPU: >= 8x the official formulation (float32 output) and within 3x of the memory-copy bound.
    GPU: >= 10x the official formulation on the same card and < 0.01 ms per 224x224 image (H100).
    """
    res = max(results, key=lambda r: r["size"])
    by = {r["name"]: r for r in res["rows"]}
    f32 = by["I2E eval float32"]
    size = res["size"]
    if res.get("device", "cpu").startswith("cuda"):
        best = min(
            (r for r in res["rows"] if r["kind"] in ("eager", "compiled") and r["mode"] == "eval"),
            key=lambda r: r["ms_per_image"],
        )
        return [
            {
                "target": "GPU converter >= 10x official (float32 output, eager)",
                "size": size,
                "value": f32["speedup_vs_official_f32"],
                "met": f32["speedup_vs_official_f32"] >= 10,
            },
            {
                "target": f"GPU converter < 0.01 ms per image at 224 px (best eval: {best['name']})",
                "size": size,
                "value": best["ms_per_image"],
                "met": size >= 224 and best["ms_per_image"] < 0.01,
            },
        ]
    return [
        {
            "target": "CPU converter >= 8x official (float32 output)",
            "size": size,
            "value": f32["speedup_vs_official_f32"],
            "met": f32["speedup_vs_official_f32"] >= 8,
        },
        {
            "target": "CPU converter within 3x of the memory-copy bound (fresh output, float32)",
            "size": size,
            "value": f32["x_bound_fresh"],
            "met": f32["x_bound_fresh"] <= 3,
        },
        {
            "target": "CPU converter within 3x of the memory-copy bound (preallocated output, float32)",
            "size": size,
            "value": f32["x_bound_prealloc"],
            "met": f32["x_bound_prealloc"] <= 3,
        },
    ]


def env_compare(args: Namespace) -> dict[str, Any]:
    """Re-run this benchmark at one size under each allocator environment, in subprocesses."""
    runs = {}
    for name, extra in ENV_VARIANTS.items():
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "r.json"
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.converter",
                "--resolutions",
                str(args.env_resolution),
                "--repeats",
                str(args.repeats),
                "--threads",
                str(args.threads),
                "--no_compile",
                "--no_onnx",
                "--json",
                str(out),
            ]
            if args.batch:
                cmd += ["--batch", str(args.batch)]
            console.rule(f"environment {name}: {extra or '(unchanged)'}")
            env = {k: v for k, v in os.environ.items() if k not in {k2 for v2 in ENV_VARIANTS.values() for k2 in v2}}
            env.update(extra)
            subprocess.run(cmd, check=True, env=env, cwd=REPO_ROOT)
            runs[name] = {"env": extra, **json.loads(out.read_text())}
    rows = []
    for name, r in runs.items():
        by = {row["name"]: row for row in r["results"][0]["rows"]}
        rows.append(
            (
                name,
                by["official f32"]["ms_per_call"],
                by["I2E eval float32"]["ms_per_call"],
                by["I2E eval bool"]["ms_per_call"],
                by["bound float32 fresh"]["ms_per_call"],
                by["bound float32 prealloc"]["ms_per_call"],
                by["I2E eval float32"]["speedup_vs_official_f32"],
                by["I2E eval float32"]["x_bound_fresh"],
                by["I2E eval float32"]["x_bound_prealloc"],
            )
        )
    print_table(
        f"Allocator environments, {args.env_resolution} px (ms per call; ratios per run)",
        [
            "environment",
            "official f32",
            "I2E f32",
            "I2E bool",
            "bound f32 fresh",
            "bound f32 prealloc",
            "I2E f32 x official",
            "I2E f32 / bound fresh",
            "I2E f32 / bound prealloc",
        ],
        rows,
    )
    return {"env_compare": runs}


def main(argv: list[str] | None = None) -> int:
    p = BenchParser("converter", description=__doc__.split("\n\n")[0])
    p.add_common(repeats=15)
    p.add_list("--resolutions", int, [32, 128, 224], "square resolutions in px")
    p.add_argument("--batch", type=int | None, default=None, help=f"batch for every size (default {DEFAULT_BATCH})")
    p.add_argument("--timesteps", type=int, default=8)
    p.add_flag("--compile", True, "time torch.compile (--no_compile skips it)")
    p.add_flag("--onnx", True, "time ONNX Runtime (--no_onnx skips it)")
    p.add_argument("--device", type=str, default="cpu", help="cpu or cuda (GPU targets are read at 224 px)")
    p.add_flag("--env_compare", False, "compare allocator environments (subprocesses)")
    p.add_resolution(224, "resolution for --env_compare", name="--env_resolution")
    args = parse_bench(p, argv, {"--sizes": rename("--resolutions"), "--env-size": rename("--env_resolution")})
    if any(s < 1 for s in args.resolutions):
        usage_error(f"--resolutions must be >= 1 px, got {args.resolutions}")
    if args.batch is not None and args.batch < 1:
        usage_error(f"--batch must be >= 1, got {args.batch}")
    args.env_resolution = square(args.env_resolution, "--env_resolution")
    setup_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        usage_error("--device cuda but torch sees no CUDA device; run with --device cpu or on a machine with a GPU")
    if args.env_compare:
        write_json(args.json, env_compare(args))
        return 0
    results = []
    for size in args.resolutions:
        batch = args.batch or DEFAULT_BATCH.get(size, max(1, (32 * 224 * 224) // (size * size)))
        res = run_size(size, batch, args.repeats, args.threads, args.compile, args.onnx, args.timesteps, args.device)
        print_size(res)
        results.append(res)
    tg = targets(results)
    print_table(
        f"Issue 6 targets ({args.device})",
        ["target", "px", "value", "met"],
        [(t["target"], t["size"], t["value"], "yes" if t["met"] else "NO") for t in tg],
    )
    write_json(args.json, {"benchmark": "converter", "results": results, "targets": tg})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
