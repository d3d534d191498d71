"""Official I2E checkpoints (SpikingJelly MS-ResNet18/34) in and out of our snnTorch models.

Official files are ``torch.load``-able dicts with the weights under ``state_dict``, keys usually prefixed
``module.`` (DataParallel / DDP) and an ``i2e.weight`` entry (the converter's fixed kernels). Neurons
hold no weights there; ours hold their constants (``beta``, ``threshold``, ...) as buffers, which are
kept from the freshly built model.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .ms_resnet import MSResNet, ms_resnet18, ms_resnet34
from .neurons import MultiStepLeaky
from .utils import replace_head as _replace_head

__all__ = ["OFFICIAL_ARCHS", "load_official", "official_state_dict", "save_official", "to_official_state_dict"]

OFFICIAL_ARCHS = {"ms_resnet18": ms_resnet18, "ms_resnet34": ms_resnet34}
_IGNORED_PREFIXES = ("i2e.",)
_STRIP_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile wrappers
_MAX_NAMES = 12


def _read(path: str | os.PathLike, weights_only: bool) -> Mapping:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"official checkpoint not found: {p} (download it from the I2E model zoo)")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as e:
        if weights_only:
            raise ValueError(
                f"{p}: holds objects beyond tensors and plain containers ({e}); if you trust the file, "
                "load it with weights_only=False"
            ) from None
        raise ValueError(f"{p}: not a readable torch checkpoint ({e})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{p}: not a readable torch checkpoint (truncated or corrupt?): {e}") from None
    if not isinstance(obj, Mapping):
        raise ValueError(f"{p}: expected a dict of weights, got {type(obj).__name__}")
    return obj


def official_state_dict(
    path_or_dict: str | os.PathLike | Mapping, weights_only: bool = True
) -> dict[str, torch.Tensor]:
    """The weights of an official checkpoint with wrapper prefixes stripped and ``i2e.*`` dropped."""
    src = _read(path_or_dict, weights_only) if isinstance(path_or_dict, (str, os.PathLike)) else path_or_dict
    if not isinstance(src, Mapping):
        raise ValueError(f"expected a path or a dict of weights, got {type(src).__name__}")
    sd = src.get("state_dict", src)
    if not isinstance(sd, Mapping):
        raise ValueError(f"checkpoint 'state_dict' is a {type(sd).__name__}, expected a dict of tensors")
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        k = str(key)
        stripped = True
        while stripped:
            stripped = False
            for pre in _STRIP_PREFIXES:
                if k.startswith(pre):
                    k, stripped = k[len(pre) :], True
        if k.startswith(_IGNORED_PREFIXES):
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"checkpoint entry {key!r} is a {type(value).__name__}, expected a tensor")
        out[k] = value
    if not out:
        raise ValueError("checkpoint holds no weights (empty state_dict after dropping 'i2e.*')")
    return out


def _neuron_buffer_names(model: nn.Module) -> set[str]:
    names = set()
    for mname, m in model.named_modules():
        if isinstance(m, MultiStepLeaky):
            for bname, _ in m.named_buffers(recurse=False):
                names.add(f"{mname}.{bname}" if mname else bname)
            for pname, _ in m.named_parameters(recurse=False):
                names.add(f"{mname}.{pname}" if mname else pname)
    return names


def _names(keys: list[str]) -> str:
    keys = sorted(keys)
    more = f" ... (+{len(keys) - _MAX_NAMES} more)" if len(keys) > _MAX_NAMES else ""
    return ", ".join(keys[:_MAX_NAMES]) + more


def _guess_arch(sd: Mapping[str, torch.Tensor]) -> str | None:
    blocks = {k.split(".")[0] + "." + k.split(".")[1] for k in sd if k.startswith("layer") and k.count(".") >= 2}
    per_layer = tuple(len({b for b in blocks if b.startswith(f"layer{i}.")}) for i in range(1, 5))
    return {(2, 2, 2, 2): "ms_resnet18", (3, 4, 6, 3): "ms_resnet34"}.get(per_layer)


def load_official(
    path_or_dict: str | os.PathLike | Mapping,
    arch: str = "ms_resnet18",
    num_classes: int | None = None,
    strict: bool = True,
    replace_head: bool = False,
    weights_only: bool = True,
    **model_kw,
) -> MSResNet:
    """Our snnTorch MS-ResNet with the weights of an official I2E checkpoint.

    Args:
        path_or_dict: a ``.pth`` file, or the loaded dict (weights under ``state_dict``, or the dict itself).
        arch: ``"ms_resnet18"`` or ``"ms_resnet34"``.
        num_classes: classes of the model; ``None`` takes them from ``fc.weight``. A different count is an
            error unless ``replace_head=True``, which loads the backbone and puts a fresh head on top.
        strict: missing / unexpected keys and shape mismatches raise a ``ValueError`` naming them; with
            ``strict=False`` the matching tensors are loaded and the rest is reported in a warning.
        weights_only: ``torch.load`` safety; set False only for trusted files that pickle other objects.
        **model_kw: passed to the model factory (``channels_last``, LIF options, ...).
    """
    if arch not in OFFICIAL_ARCHS:
        raise ValueError(f"unknown arch {arch!r}; official checkpoints exist for {', '.join(OFFICIAL_ARCHS)}")
    sd = official_state_dict(path_or_dict, weights_only=weights_only)

    fc_w = sd.get("fc.weight")
    ckpt_classes = int(fc_w.shape[0]) if fc_w is not None and fc_w.dim() == 2 else None
    conv_w = sd.get("conv1.weight")
    in_channels = int(conv_w.shape[1]) if conv_w is not None and conv_w.dim() == 4 else model_kw.pop("in_channels", 2)
    model_kw.pop("in_channels", None)
    if ckpt_classes is None and num_classes is None:
        raise ValueError("checkpoint has no 'fc.weight' [classes, 512] to infer num_classes from; pass num_classes")
    build_classes = ckpt_classes if ckpt_classes is not None else num_classes
    head_differs = num_classes is not None and ckpt_classes is not None and num_classes != ckpt_classes
    if head_differs and not replace_head:
        raise ValueError(
            f"checkpoint has a {ckpt_classes}-class head (fc.weight {tuple(fc_w.shape)}) but num_classes={num_classes}; "
            f"pass num_classes=None to keep it, or replace_head=True to fine-tune with a fresh {num_classes}-class head"
        )

    model = OFFICIAL_ARCHS[arch](num_classes=build_classes, in_channels=in_channels, **model_kw)
    own = model.state_dict()
    neuron_keys = _neuron_buffer_names(model)
    expected = {k for k in own if k not in neuron_keys}
    missing = sorted(k for k in expected - sd.keys() if not k.endswith("num_batches_tracked"))
    unexpected = sorted(sd.keys() - expected)
    mismatched = sorted(
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in expected & sd.keys()
        if sd[k].shape != own[k].shape
    )
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing in checkpoint: {_names(missing)}")
        if unexpected:
            parts.append(f"unexpected in checkpoint: {_names(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatch: {_names(mismatched)}")
        guess = _guess_arch(sd)
        hint = f" (the checkpoint looks like {guess}; pass arch={guess!r})" if guess and guess != arch else ""
        msg = f"official checkpoint does not fit {arch}{hint}: " + "; ".join(parts)
        if strict:
            raise ValueError(msg)
        import warnings

        warnings.warn(msg + " -- loading the matching tensors only (strict=False)", stacklevel=2)

    mismatched_keys = {m.split(":")[0] for m in mismatched}
    merged = dict(own)
    for k in expected & sd.keys():
        if k not in mismatched_keys:
            merged[k] = sd[k].to(dtype=own[k].dtype)
    model.load_state_dict(merged, strict=True)
    if head_differs:
        _replace_head(model, num_classes)
    return model


def to_official_state_dict(model: nn.Module, prefix: str = "module.", i2e_weight: torch.Tensor | None = None) -> dict:
    """Our weights in the official layout: ``{prefix + name: tensor}`` without neuron constants.

    ``i2e_weight`` (e.g. ``i2e_lightning.converter.official_kernels()``, ``[8, 1, 3, 3]``) is added as
    ``i2e.weight`` so the official network loads the result with ``strict=True``.
    """
    base = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    neuron_keys = _neuron_buffer_names(base)
    out = {prefix + k: v.detach().cpu().clone() for k, v in base.state_dict().items() if k not in neuron_keys}
    if i2e_weight is not None:
        out[prefix + "i2e.weight"] = i2e_weight.detach().cpu().clone()
    return out


def save_official(
    model: nn.Module, path: str | os.PathLike, prefix: str = "module.", i2e_weight: torch.Tensor | None = None
) -> Path:
    """Write ``{"state_dict": to_official_state_dict(model)}`` to ``path`` (the official file layout)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": to_official_state_dict(model, prefix, i2e_weight)}, p)
    return p
