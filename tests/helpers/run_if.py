"""``RunIf``: skip a test unless its needs are met, and mark GPU tests ``gpu`` in the same decorator.

In the style of Lightning's and lightning-hydra-template's ``RunIf``::

    @RunIf(min_cuda_gpus=1)
    def test_on_cuda(): ...

    pytestmark = RunIf(min_cuda_gpus=1)  # a whole module

The ``gpu`` mark is added at collection (``tests/conftest.py``), so ``-m "not gpu"`` deselects these tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def _cuda_devices() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _ort_cuda() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def RunIf(  # noqa: N802 - reads as a marker
    *,
    min_cuda_gpus: int = 0,
    onnxruntime_cuda: bool = False,
    fashion_mnist: bool = False,
) -> pytest.MarkDecorator:
    """A ``skipif`` mark whose condition joins every need; GPU needs also tag the test ``gpu``.

    Args:
        min_cuda_gpus: the test needs at least this many CUDA devices (tags it ``gpu``).
        onnxruntime_cuda: the test needs onnxruntime-gpu's CUDA provider (tags it ``gpu``).
        fashion_mnist: the test needs the Debian package's Fashion-MNIST idx files.
    """
    reasons = []
    if min_cuda_gpus and _cuda_devices() < min_cuda_gpus:
        reasons.append(f"needs {min_cuda_gpus} CUDA device(s)")
    if onnxruntime_cuda and not _ort_cuda():
        reasons.append("needs onnxruntime-gpu's CUDA provider")
    if fashion_mnist and not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        reasons.append(f"needs Fashion-MNIST in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)")
    gpu = bool(min_cuda_gpus or onnxruntime_cuda)
    return pytest.mark.skipif(bool(reasons), reason="; ".join(reasons) or "all needs met", gpu=gpu)


def wants_gpu_mark(item: pytest.Item) -> bool:
    """Whether a collected test carries a ``RunIf`` with a GPU need."""
    return any(mark.kwargs.get("gpu") for mark in item.iter_markers(name="skipif"))
