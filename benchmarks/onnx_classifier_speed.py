"""ONNX classifier (converter + spiking network in one graph) vs PyTorch, same run, interleaved.

    .venv/bin/python benchmarks/onnx_classifier_speed.py          # default Fashion-MNIST network, 256 images, 2 threads

The network is the default config's (spiking_cnn 64-128, stem stride 2, 32x32, T=4, ratio 0.15) with
random weights: speed does not depend on them. Both sides take the same uint8 images; the logits are
compared first (largest difference, same argmax).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks._args import BenchParser, parse_bench


def main(argv: list[str] | None = None) -> int:
    p = BenchParser("onnx_classifier_speed", description=__doc__)
    p.add_argument("--batch", type=int, default=256)
    p.add_threads(help="CPU threads of both")
    p.add_repeats(7)
    args = parse_bench(p, argv)

    from i2e_lightning.converter import I2E
    from i2e_lightning.models import create_model
    from i2e_lightning.onnx import export_classifier
    from i2e_lightning.onnx.runtime import I2ERuntime

    torch.set_num_threads(args.threads)
    net = create_model("spiking_cnn", num_classes=10, channels=(64, 128), stem_stride=2, input_size=(32, 32)).eval()
    conv = I2E(0.15, 4, 4).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = export_classifier(net, conv, Path(tmp) / "c.onnx", image_size=(32, 32), input_dtype="uint8")
        rt = I2ERuntime(path, threads=args.threads)
    x = np.random.default_rng(0).integers(0, 256, (args.batch, 1, 32, 32), dtype=np.uint8)
    xt = torch.from_numpy(x)

    def run_torch() -> torch.Tensor:
        with torch.no_grad():
            return net(conv(xt).float())

    a, b = rt.run(x), run_torch().numpy()
    print(f"max |logit diff| {float(np.abs(a - b).max()):.2e}, same argmax: {bool((a.argmax(1) == b.argmax(1)).all())}")
    t_ort, t_torch = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        rt.run(x)
        t1 = time.perf_counter()
        run_torch()
        t2 = time.perf_counter()
        t_ort.append(t1 - t0)
        t_torch.append(t2 - t1)
    for name, ts in (("onnxruntime", t_ort), ("torch eager", t_torch)):
        print(
            f"{name}  median {statistics.median(ts) * 1e3:8.1f} ms / {args.batch} images  min {min(ts) * 1e3:8.1f} ms"
        )
    print(f"speed-up of ORT over torch: {statistics.median(t_torch) / statistics.median(t_ort):.2f}x (medians)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
