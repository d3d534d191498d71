"""Checkpoint reading with clear errors, weight initialisation (ours or official), atomic writes."""

from __future__ import annotations

import copy
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn

from .. import models as _models


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load`` a checkpoint on the CPU; a missing, truncated or foreign file raises an error naming it."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} does not exist (looked at {p.resolve()}): check the path")
    if p.stat().st_size == 0:
        raise ValueError(f"checkpoint {p} is empty (0 bytes): it was not written completely; use another checkpoint")
    try:
        # our checkpoints hold hyper-parameters (plain python objects), hence weights_only=False;
        # only load checkpoints you trust
        ckpt = torch.load(p, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"checkpoint {p} is truncated or corrupt ({p.stat().st_size} bytes; torch.load said: {first}): "
            "it was probably cut off while being written; use another checkpoint (e.g. the best one) or retrain"
        ) from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"checkpoint {p} holds a {type(ckpt).__name__}, not a dict of weights")
    return ckpt


def is_lightning_checkpoint(ckpt: dict[str, Any]) -> bool:
    return "pytorch-lightning_version" in ckpt or (
        isinstance(ckpt.get("state_dict"), dict) and any(str(k).startswith("net.") for k in ckpt["state_dict"])
    )


def load_init_weights(net: nn.Module, source: str | Path | dict[str, Any], arch: str, num_classes: int) -> str:
    """Copy weights from ``source`` into ``net`` (in place); returns ``"lightning"`` or ``"official"``.

    ``source`` is one of our Lightning checkpoints (weights under ``net.``) or an official I2E
    checkpoint (``{"state_dict": ...}``, ``module.`` prefix allowed, ``i2e.weight`` ignored). When its
    class count differs from ``num_classes`` the head is replaced by a fresh one (fine-tuning).
    """
    name = str(source) if not isinstance(source, dict) else "<dict>"
    ckpt = read_checkpoint(source) if not isinstance(source, dict) else source
    if is_lightning_checkpoint(ckpt):
        kind = "lightning"
        hp = ckpt.get("hyper_parameters", {}) or {}
        src_arch = hp.get("arch", arch)
        if src_arch != arch:
            raise ValueError(
                f"init_from {name} holds a {src_arch!r} network but the model is {arch!r}: "
                f"set model.arch: {src_arch} or use a matching checkpoint"
            )
        state = {k[len("net.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
        state = {k.replace("_orig_mod.", ""): v for k, v in state.items()}
        src_classes = hp.get("num_classes")
        if src_classes is None:
            own = net.state_dict()
            diff = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
            src_classes = int(state[diff[0]].shape[0]) if diff else num_classes
        probe = copy.deepcopy(net)
        if src_classes != num_classes:
            _models.replace_head(probe, int(src_classes))
        _load_strict(probe, state, name)
    else:
        kind = "official"
        # strips module./_orig_mod. prefixes, drops the converter's i2e.weight
        state = _models.official_state_dict(ckpt)
        if "fc.weight" not in state:
            raise ValueError(
                f"init_from {name} is neither one of our Lightning checkpoints nor an official I2E checkpoint "
                f"(no 'fc.weight' in its state_dict; first keys: {list(state)[:5]})"
            )
        src_classes = int(state["fc.weight"].shape[0])
        probe = _models.load_official(state, arch=arch, num_classes=src_classes)
    if int(src_classes) != num_classes:
        _models.replace_head(probe, num_classes)
    _load_strict(net, probe.state_dict(), name)
    return kind


def _load_strict(net: nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
        if shapes:
            parts.append(f"shape mismatches (checkpoint vs model) {shapes[:8]}")
        raise ValueError(
            f"init_from {name} does not fit the model: "
            + "; ".join(parts)
            + ": check model.arch and model.model_kwargs"
        )
    net.load_state_dict(state, strict=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to a temporary file and rename it: a kill mid-write never leaves a truncated file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
