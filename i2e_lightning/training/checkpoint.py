"""Weight initialisation from a checkpoint (ours or official) and atomic checkpoint writes.

Reading goes through the one reader, :mod:`i2e_lightning.models.checkpoint` (``weights_only=True``).
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn

from .. import models as _models
from ..models.checkpoint import checkpoint_kind, describe_state_diff, network_state, read_checkpoint

__all__ = [
    "AtomicCheckpointIO",
    "find_run_checkpoint",
    "is_lightning_checkpoint",
    "load_init_weights",
    "next_version",
    "read_checkpoint",
]


def is_lightning_checkpoint(ckpt: dict[str, Any]) -> bool:
    return checkpoint_kind(ckpt) == "lightning"


def load_init_weights(net: nn.Module, source: str | Path | dict[str, Any], arch: str, num_classes: int) -> str:
    """Copy weights from ``source`` into ``net`` (in place); returns ``"lightning"`` or ``"official"``.

    ``source`` is one of our Lightning checkpoints (weights under ``net.``) or an official I2E
    checkpoint (``{"state_dict": ...}``, ``module.`` prefix allowed, ``i2e.weight`` ignored). When its
    class count differs from ``num_classes`` the head is replaced by a fresh one (fine-tuning).
    """
    name = str(source) if not isinstance(source, dict) else "<dict>"
    ckpt = read_checkpoint(source) if not isinstance(source, dict) else source
    kind = checkpoint_kind(ckpt)
    if kind == "lightning":
        hp = ckpt.get("hyper_parameters", {}) or {}
        src_arch = hp.get("arch", arch)
        if src_arch != arch:
            raise ValueError(
                f"init_from {name} holds a {src_arch!r} network but the model is {arch!r}: "
                f"set model.arch: {src_arch} or use a matching checkpoint"
            )
        state = network_state(ckpt, "lightning", f"init_from {name}")
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
        # strips module./_orig_mod. prefixes, drops the converter's i2e.weight
        state = network_state(ckpt, "official", f"init_from {name}")
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
    problem = describe_state_diff(net.state_dict(), state)
    if problem:
        raise ValueError(f"init_from {name} does not fit the model: {problem}: check model.arch and model.model_kwargs")
    net.load_state_dict(state, strict=True)


class CheckpointWriteError(OSError):
    """A checkpoint cannot be written (full disk, file-size limit, read-only folder); the message names file and fix."""


def _write_error(path: Path, exc: OSError) -> CheckpointWriteError:
    reason = exc.strerror or str(exc)
    return CheckpointWriteError(
        f"cannot write checkpoint {path}: {reason}: free space there or choose another folder "
        "(--trainer.default_root_dir, or --checkpoint.dirpath)"
    )


def _os_error_in_chain(exc: BaseException | None) -> OSError | None:
    while exc is not None and not isinstance(exc, OSError):
        exc = exc.__cause__ or exc.__context__
    return exc


def ensure_writable_dir(folder: str | Path) -> None:
    """Create ``folder`` and prove a file can be written in it, before any training time is spent."""
    folder = Path(folder)
    probe = folder / f".write-test{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise _write_error(folder, exc) from None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to a temporary file and rename it: a kill mid-write never leaves a truncated file.

    Kept instead of Lightning's own save, which writes the temporary file in /tmp and moves it across file
    systems: on a full checkpoint disk that truncates the previous ``last.ckpt`` (test_checkpoint_writes.py
    shows both); here the temporary file sits beside the target, is fsynced, and a failure is one line.

    Reads (resume, ``test --ckpt_path``) go through :func:`read_checkpoint`: ``weights_only=True``
    unless the caller passes ``weights_only=False``.
    """

    def load_checkpoint(
        self, path: _PATH, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        ckpt = read_checkpoint(path, trusted=weights_only is False)
        if checkpoint_kind(ckpt) != "lightning" or "state_dict" not in ckpt:
            raise ValueError(
                f"{path} is not a Lightning checkpoint of this project (no 'pytorch-lightning_version'; an official "
                f"I2E .pth?): --ckpt_path restores a whole training state; load its weights with --model.init_from {path}"
            )
        return ckpt

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        target = Path(path)
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except (OSError, RuntimeError) as exc:  # the previous file stays whole; say why this one was not written
            cause = _os_error_in_chain(exc)  # torch.save wraps a failed write in a RuntimeError
            if cause is None:
                raise
            raise _write_error(target, cause) from None
        finally:
            if tmp.exists():
                tmp.unlink()


def _versions(runs_dir: Path) -> list[tuple[int, Path]]:
    """``version_N`` folders of a run, newest (highest N) first."""
    found = []
    for child in runs_dir.glob("version_*") if runs_dir.is_dir() else []:
        match = re.fullmatch(r"version_(\d+)", child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found, reverse=True)


def next_version(runs_dir: str | Path) -> int:
    """The number of a run's next ``version_N`` folder (as Lightning's loggers count)."""
    versions = _versions(Path(runs_dir))
    return versions[0][0] + 1 if versions else 0


def find_run_checkpoint(runs_dir: str | Path, which: str) -> Path | None:
    """``last.ckpt`` or the recorded best checkpoint of the newest version of a run that has one.

    ``runs_dir`` holds ``version_N/checkpoints/``. ``which="best"`` reads the ModelCheckpoint state saved
    in the version's newest checkpoint (its ``best_model_path``, decided by the monitored score), not
    file dates. ``None`` when no version has such a checkpoint.
    """
    if which not in ("last", "best"):
        raise ValueError(f"which must be 'last' or 'best', got {which!r}")
    for _, version in _versions(Path(runs_dir)):
        folder = version / "checkpoints"
        if which == "last":
            if (folder / "last.ckpt").is_file():
                return folder / "last.ckpt"
            continue
        best = _recorded_best(folder)
        if best is not None:
            return best
    return None


def _recorded_best(folder: Path) -> Path | None:
    newest: tuple[int, dict[str, Any]] | None = None
    # last.ckpt is written after the best is decided (epoch ends, every N steps): one read when it exists
    last = folder / "last.ckpt"
    for path in [last] if last.is_file() else folder.glob("*.ckpt"):
        ckpt = read_checkpoint(path)
        step = int(ckpt.get("global_step") or 0)
        if newest is None or step > newest[0]:
            newest = (step, ckpt)
    if newest is None:
        return None
    for state in (newest[1].get("callbacks") or {}).values():
        if isinstance(state, dict) and state.get("monitor") and state.get("best_model_path"):
            # by name in this folder: the run folder may have moved since it was written
            path = folder / Path(str(state["best_model_path"])).name
            if not path.is_file():
                raise FileNotFoundError(
                    f"--ckpt_path best: the best checkpoint recorded in {folder} ({path.name}, "
                    f"{state['monitor']}={float(state['best_model_score']):.4f}) is gone; give a path"
                )
            return path
    return None
