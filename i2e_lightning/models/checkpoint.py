"""The one checkpoint reader: our Lightning checkpoints and official I2E ``.pth`` files.

Every file a user names (``--ckpt_path``, ``--model.init_from``, ``export-onnx --ckpt``,
``load_classifier``, ``load_official``) is read by :func:`read_checkpoint` with
``torch.load(weights_only=True)``: tensors, plain containers and the few harmless types of
``SAFE_GLOBALS``, never arbitrary pickled objects (a crafted file could otherwise run a command).
:func:`network_state` takes the network's weights out of either layout and :func:`state_diff`
names the keys that do not fit a model.
"""

from __future__ import annotations

import os
import pathlib
import pickle
import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "SAFE_GLOBALS",
    "checkpoint_kind",
    "describe_state_diff",
    "network_state",
    "read_checkpoint",
    "safe_globals_context",
    "state_diff",
]

# Types a checkpoint may legitimately hold beside tensors and plain containers: paths in saved
# hyper-parameters, numpy scalars (e.g. an official file's best accuracy), Lightning's AttributeDict.
SAFE_GLOBALS: list[Any] = [
    pathlib.PosixPath,
    pathlib.WindowsPath,
    pathlib.PurePosixPath,
    pathlib.PureWindowsPath,
    np.dtype,
    np.ndarray,
    np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar,  # noqa: NPY201
    np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct,  # noqa: NPY201
    *{type(np.dtype(t)) for t in (np.float64, np.float32, np.float16, np.int64, np.int32, np.uint8, np.bool_)},
]
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile wrappers
_OFFICIAL_IGNORED = ("i2e.",)  # the official network's fixed converter kernels
_MAX_NAMES = 8


def safe_globals_context() -> Any:
    """``torch.serialization.safe_globals`` with ``SAFE_GLOBALS``: for Lightning's own ``weights_only`` loads."""
    return torch.serialization.safe_globals(_safe_globals())


def _safe_globals() -> list[Any]:
    extra: list[Any] = []
    try:  # a hyper-parameter dict saved from plain Python can be Lightning's dict subclass
        from lightning.fabric.utilities.data import AttributeDict

        extra.append(AttributeDict)
    except ImportError:  # pragma: no cover - lightning is a dependency
        pass
    return SAFE_GLOBALS + extra


def read_checkpoint(path: str | os.PathLike, *, trusted: bool = False) -> dict[str, Any]:
    """The dict in a checkpoint file, loaded on the CPU with ``weights_only=True``.

    A missing, empty, truncated or foreign file, and a file that pickles anything beyond tensors,
    containers and ``SAFE_GLOBALS``, raise an error naming the file (``FileNotFoundError`` /
    ``ValueError``). ``trusted=True`` loads any pickle (``weights_only=False``): only for files
    you made yourself.
    """
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"checkpoint {p} is a directory, not a file: give the path of a .ckpt or .pth file")
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} does not exist (looked at {p.resolve()}): check the path")
    size = p.stat().st_size
    if size == 0:
        raise ValueError(f"checkpoint {p} is empty (0 bytes): it was not written completely; use another checkpoint")
    try:
        with safe_globals_context():
            obj = torch.load(p, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if not trusted and ("Weights only load failed" in text or found):
            what = found.group(1) if found else "an object that is not a tensor or a plain container"
            raise ValueError(
                f"checkpoint {p} was not loaded: it asks to build {what}, which a checkpoint of weights never "
                "needs, and could run code (torch.load weights_only=True refused it); use checkpoints from sources "
                "you trust, and load a file you made yourself with read_checkpoint(path, trusted=True)"
            ) from None
        raise _corrupt(p, size, exc) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, AttributeError, ImportError) as exc:
        raise _corrupt(p, size, exc) from None
    if not isinstance(obj, Mapping):
        raise ValueError(f"checkpoint {p} holds a {type(obj).__name__}, not a dict of weights: is it a checkpoint?")
    return dict(obj)


def _corrupt(p: Path, size: int, exc: BaseException) -> ValueError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ValueError(
        f"checkpoint {p} is truncated or corrupt ({size} bytes; torch.load said: {first[:200]}): "
        "it was probably cut off while being written; use another checkpoint (e.g. the best one) or retrain"
    )


def checkpoint_kind(ckpt: Mapping[str, Any]) -> str:
    """``"lightning"`` (one of ours: weights under ``state_dict`` with ``net.`` keys) or ``"official"``."""
    if "pytorch-lightning_version" in ckpt:
        return "lightning"
    sd = ckpt.get("state_dict")
    if isinstance(sd, Mapping) and any(str(k).startswith("net.") for k in sd):
        return "lightning"
    return "official"


def _strip_wrappers(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for pre in _WRAPPER_PREFIXES:
            if key.startswith(pre):
                key, stripped = key[len(pre) :], True
    return key.replace("._orig_mod.", ".")


def network_state(
    ckpt: Mapping[str, Any], kind: str | None = None, name: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """The network's weights in a checkpoint dict, keyed as in our models.

    Lightning checkpoints: the ``net.`` entries of ``state_dict`` without that prefix. Official files:
    ``state_dict`` (or the dict itself) with ``module.`` / ``_orig_mod.`` prefixes stripped and the
    converter's ``i2e.*`` kernels dropped. ``name`` names the source in errors.
    """
    kind = kind or checkpoint_kind(ckpt)
    sd = ckpt.get("state_dict", ckpt if kind == "official" else None)
    if not isinstance(sd, Mapping):
        got = "nothing" if sd is None else f"a {type(sd).__name__}"
        raise ValueError(f"{name} has {got} under 'state_dict', expected a dict of tensors: is it a checkpoint?")
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        k = str(key)
        if kind == "lightning":
            if not k.startswith("net."):
                continue
            k = k[len("net.") :]
        k = _strip_wrappers(k)
        if kind == "official" and k.startswith(_OFFICIAL_IGNORED):
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{name}: entry {key!r} is a {type(value).__name__}, expected a tensor")
        out[k] = value
    if not out:
        where = "no 'net.' keys in its state_dict" if kind == "lightning" else "empty state_dict after dropping 'i2e.*'"
        raise ValueError(f"{name} holds no network weights ({where})")
    return out


def state_diff(
    own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], ignore: Iterable[str] = ()
) -> tuple[list[str], list[str], list[str]]:
    """``(missing, unexpected, shape mismatches)`` of ``state`` against a model's ``own`` state dict.

    Keys in ``ignore`` (e.g. neuron constants the checkpoint never holds) count as neither.
    """
    skip = set(ignore)
    expected = {k for k in own if k not in skip}
    missing = sorted(expected - state.keys())
    unexpected = sorted(state.keys() - expected - skip)
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in expected & state.keys()
        if tuple(state[k].shape) != tuple(own[k].shape)
    )
    return missing, unexpected, shapes


def _names(items: list[str]) -> str:
    more = f" ... (+{len(items) - _MAX_NAMES} more)" if len(items) > _MAX_NAMES else ""
    return ", ".join(items[:_MAX_NAMES]) + more


def describe_state_diff(
    own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], ignore: Iterable[str] = ()
) -> str | None:
    """One readable line of what does not fit (``None`` when everything fits)."""
    return format_state_diff(*state_diff(own, state, ignore))


def format_state_diff(missing: Iterable[str], unexpected: Iterable[str], shapes: Iterable[str]) -> str | None:
    """The three lists of :func:`state_diff` as one readable line (``None`` when all are empty)."""
    missing, unexpected, shapes = list(missing), list(unexpected), list(shapes)
    parts = []
    if missing:
        parts.append(f"missing in checkpoint: {_names(missing)}")
    if unexpected:
        parts.append(f"unexpected in checkpoint: {_names(unexpected)}")
    if shapes:
        parts.append(f"shape mismatch: {_names(shapes)}")
    return "; ".join(parts) or None
