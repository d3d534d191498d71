"""The torch-free ONNX Runtime runtime, offered from the package.

The implementation is the single deployable file ``export/i2e_runtime.py`` (numpy + onnxruntime,
no torch), so there is exactly one copy of it. This module loads that file and re-exports its
names: ``from i2e_lightning.onnx.runtime import I2ERuntime``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

RUNTIME_FILE = Path(__file__).resolve().parents[2] / "export" / "i2e_runtime.py"
_MODULE_NAME = "i2e_runtime"


def _load() -> ModuleType:
    # reuse an already imported copy of the same file, so isinstance checks agree
    mod = sys.modules.get(_MODULE_NAME)
    if mod is not None and Path(getattr(mod, "__file__", "") or "").resolve() == RUNTIME_FILE:
        return mod
    if not RUNTIME_FILE.is_file():
        raise ImportError(
            f"the ONNX runtime module {RUNTIME_FILE} is missing: it ships in the source tree's export/ folder; "
            "use a checkout of the repository (pip install -e .) or copy export/i2e_runtime.py next to your code"
        )
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, RUNTIME_FILE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE_NAME] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[_MODULE_NAME]
        raise
    return mod


_runtime = _load()
I2ERuntime = _runtime.I2ERuntime
RuntimeInfo = _runtime.RuntimeInfo
choose_providers = _runtime.choose_providers
event_rate = _runtime.event_rate
find_images = _runtime.find_images
load_images = _runtime.load_images
CPU = _runtime.CPU
CUDA = _runtime.CUDA

__all__ = [
    "CPU",
    "CUDA",
    "RUNTIME_FILE",
    "I2ERuntime",
    "RuntimeInfo",
    "choose_providers",
    "event_rate",
    "find_images",
    "load_images",
]
