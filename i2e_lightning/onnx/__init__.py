"""ONNX export of the I2E converter and of trained spiking classifiers, and their ONNX Runtime runtime.

Needs the ``onnx`` extra (``onnx``, ``onnxruntime``). Names load lazily, so importing the package
does not import onnx:

* :func:`export_converter` / :func:`build_converter_model` - images -> events, bit-exact to ``I2E().eval()``;
* :func:`export_classifier` - images -> converter -> SNN unrolled over T -> logits;
* :class:`I2ERuntime` - the torch-free runtime (``runtime.py``; ``export/i2e_runtime.py`` is its one-file copy).
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "build_converter_model": "graph",
    "export_converter": "export",
    "export_classifier": "export",
    "load_checkpoint_model": "export",
    "ExportLIF": "snn",
    "make_exportable": "snn",
    "I2ERuntime": "runtime",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(f".{_NAMES[name]}", __name__)
    except ImportError as exc:
        if exc.name in ("onnx", "onnxruntime"):
            raise ImportError(
                f"i2e_lightning.onnx needs {exc.name}: pip install 'i2e_lightning[onnx]' (onnx, onnxruntime)"
            ) from exc
        raise
    return getattr(module, name)
