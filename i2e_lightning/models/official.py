"""Official I2E checkpoints (SpikingJelly MS-ResNet18/34) in and out of our snnTorch models.

Official files are ``torch.load``-able dicts with the weights under ``state_dict``, keys usually prefixed
``module.`` (DataParallel / DDP) and an ``i2e.weight`` entry (the converter's fixed kernels). Neurons
hold no weights there; ours hold their constants (``beta``, ``threshold``, ...) as buffers, which are
kept from the freshly built model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .checkpoint import format_state_diff, network_state, read_checkpoint, state_diff
from .ms_resnet import MSResNet, ms_resnet18, ms_resnet34
from .neurons import MultiStepLeaky
from .utils import replace_head as _replace_head

__all__ = ["OFFICIAL_ARCHS", "load_official", "official_state_dict", "save_official", "to_official_state_dict"]

OFFICIAL_ARCHS = {"ms_resnet18": ms_resnet18, "ms_resnet34": ms_resnet34}


def official_state_dict(
    path_or_dict: str | os.PathLike | Mapping, weights_only: bool = True
) -> dict[str, torch.Tensor]:
    """The weights of an official checkpoint with wrapper prefixes stripped and ``i2e.*`` dropped.

    A path is read by :func:`i2e_lightning.models.checkpoint.read_checkpoint` (``weights_only=True``
    unless ``weights_only=False`` is passed for a trusted file).
    """
    if isinstance(path_or_dict, (str, os.PathLike)):
        return network_state(read_checkpoint(path_or_dict, trusted=not weights_only), "official", str(path_or_dict))
    if not isinstance(path_or_dict, Mapping):
        raise ValueError(f"expected a path or a dict of weights, got {type(path_or_dict).__name__}")
    return network_state(path_or_dict, "official", "official checkpoint")


def _neuron_buffer_names(model: nn.Module) -> set[str]:
    names = set()
    for mname, m in model.named_modules():
        if isinstance(m, MultiStepLeaky):
            for bname, _ in m.named_buffers(recurse=False):
                names.add(f"{mname}.{bname}" if mname else bname)
            for pname, _ in m.named_parameters(recurse=False):
                names.add(f"{mname}.{pname}" if mname else pname)
    return names


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
    missing, unexpected, mismatched = state_diff(own, sd, ignore=neuron_keys)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    problem = format_state_diff(missing, unexpected, mismatched)
    if problem:
        guess = _guess_arch(sd)
        hint = f" (the checkpoint looks like {guess}; pass arch={guess!r})" if guess and guess != arch else ""
        msg = f"official checkpoint does not fit {arch}{hint}: {problem}"
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
