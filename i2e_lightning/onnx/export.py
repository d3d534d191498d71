"""Export the I2E converter, or converter + trained spiking classifier, to one ONNX file."""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx
import torch
from onnx import helper
from torch import nn

from ..converter import I2E
from .graph import (
    DEFAULT_OPSET,
    INPUT_DTYPES,
    INPUT_NAME,
    METADATA_PREFIX,
    _check_settings,
    _Graph,
    add_converter_nodes,
    build_converter_model,
    converter_metadata,
    set_metadata,
)
from .snn import make_exportable

LOGITS_NAME = "logits"


def _write(model: onnx.ModelProto, path: str | Path) -> Path:
    out = Path(path)
    if out.suffix != ".onnx":
        raise ValueError(f"the output file must end in .onnx, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".onnx.tmp")
    tmp.write_bytes(model.SerializeToString())  # one self-contained file (no external data)
    tmp.replace(out)
    return out


def export_converter(
    path: str | Path,
    ratio: float = 0.12,
    order: int | Sequence[int] = 4,
    timesteps: int = 8,
    *,
    input_dtype: str = "float32",
    output_dtype: str = "bool",
    layout: str = "TBCHW",
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write the converter (``images`` [B, 1|3, H, W] -> ``events``) to ``path``; returns the path."""
    model = build_converter_model(
        ratio, order, timesteps, input_dtype=input_dtype, output_dtype=output_dtype, layout=layout, opset=opset
    )
    return _write(model, path)


class _EventsToLogits(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, events: torch.Tensor) -> torch.Tensor:
        return self.net(events)


def _accepts_other_sizes(net: nn.Module, timesteps: int, in_ch: int, size: tuple[int, int]) -> bool:
    """Whether the network runs at another resolution (global pooling) or needs exactly ``size`` (flatten + linear)."""
    h, w = size
    probe = torch.zeros(timesteps, 1, in_ch, h + 8, w + 8)
    try:
        with torch.no_grad():
            net(probe)
    except (RuntimeError, ValueError):
        return False
    return True


def _snn_graph(
    net: nn.Module, timesteps: int, in_ch: int, size: tuple[int, int], opset: int, dynamic_size: bool
) -> onnx.ModelProto:
    """Trace the exportable network ``events [T, B, C, H, W] -> logits [B, K]`` with the TorchScript exporter."""
    example = torch.rand(timesteps, 2, in_ch, *size).lt(0.2).float()
    axes = {1: "batch", 3: "height", 4: "width"} if dynamic_size else {1: "batch"}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated but needs no onnxscript; its tracer warnings are about
        # the Python loop over T, which is meant to be unrolled
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _EventsToLogits(net),
            (example,),
            buf,
            dynamo=False,
            input_names=["events"],
            output_names=[LOGITS_NAME],
            dynamic_axes={"events": axes, LOGITS_NAME: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
        )
    return onnx.load_from_string(buf.getvalue())


def export_classifier(
    model: nn.Module,
    converter: I2E,
    path: str | Path,
    *,
    image_size: tuple[int, int] = (32, 32),
    input_dtype: str = "float32",
    opset: int = DEFAULT_OPSET,
    extra_metadata: dict[str, Any] | None = None,
) -> Path:
    """Export ``images [B, 1|3, H, W] -> converter (eval, canonical pairs) -> SNN unrolled over T -> logits``.

    ``model`` is a spiking network of ``i2e_lightning.models`` taking float events ``[T, B, 2, H, W]``;
    its LIF neurons become plain, surrogate-free arithmetic (:class:`~i2e_lightning.onnx.snn.ExportLIF`).
    ``image_size`` is the resolution the network was trained at (the example input of the trace); the
    height and width stay dynamic when the network also runs at other sizes.
    """
    if not isinstance(converter, I2E):
        raise ValueError(f"converter must be an i2e_lightning.converter.I2E, got {type(converter).__name__}")
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if input_dtype not in INPUT_DTYPES:
        raise ValueError(f"input dtype must be one of {sorted(INPUT_DTYPES)}, got {input_dtype!r}")
    if converter.layout != "TBCHW":
        raise ValueError("export_classifier needs a converter with layout='TBCHW' (the networks take time first)")
    _check_settings(converter.ratio, converter.order, converter.timesteps, input_dtype, "float32", "TBCHW", opset)
    if len(image_size) != 2 or min(image_size) < 1:
        raise ValueError(f"image_size must be (height, width) >= 1, got {image_size!r}")
    size = (int(image_size[0]), int(image_size[1]))
    in_ch = int(getattr(model, "in_channels", 2))
    if in_ch != 2:
        raise ValueError(f"the network takes {in_ch} input channels; I2E events have 2 (ON, OFF)")
    net = make_exportable(model)
    # the probe and the trace run tiny inputs: one thread avoids thread start-up/contention costs
    # that dominate at this size (several times faster on a busy machine)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dynamic = _accepts_other_sizes(net, converter.timesteps, in_ch, size)
        snn = _snn_graph(net, converter.timesteps, in_ch, size, opset, dynamic)
    finally:
        torch.set_num_threads(threads)

    # put the converter's nodes in front; they write the tensor the SNN graph read as its input
    g = _Graph("i2e_", opset)
    add_converter_nodes(
        g,
        INPUT_NAME,
        ratio=converter.ratio,
        directions=converter.directions,
        input_dtype=input_dtype,
        output_dtype="float32",
        layout="TBCHW",
        out="events",
    )
    graph = snn.graph
    nodes = list(g.nodes) + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(g.inits)
    dims = ["batch", "channels", "height", "width"] if dynamic else ["batch", "channels", size[0], size[1]]
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(INPUT_NAME, INPUT_DTYPES[input_dtype], dims))
    graph.name = "i2e_classifier"

    meta = converter_metadata(converter.ratio, converter.order, converter.timesteps, input_dtype, "float32", "TBCHW")
    num_classes = int(graph.output[0].type.tensor_type.shape.dim[1].dim_value)
    meta.update(
        {
            f"{METADATA_PREFIX}kind": "classifier",
            f"{METADATA_PREFIX}num_classes": str(num_classes),
            f"{METADATA_PREFIX}image_size": json.dumps(list(size)),
            f"{METADATA_PREFIX}dynamic_size": "true" if dynamic else "false",
        }
    )
    for k, v in (extra_metadata or {}).items():
        meta[f"{METADATA_PREFIX}{k}"] = v if isinstance(v, str) else json.dumps(v)
    del snn.metadata_props[:]
    set_metadata(snn, meta)
    from .. import __version__

    snn.producer_name, snn.producer_version = "i2e_lightning", __version__
    snn.doc_string = (
        f"I2E converter + spiking classifier: images [B, 1|3, H, W] {input_dtype} -> logits [B, {num_classes}] "
        f"(ratio={converter.ratio}, directions={list(converter.directions)}, {type(model).__name__})."
    )
    onnx.checker.check_model(snn, full_check=True)
    return _write(snn, path)


def load_checkpoint_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The network of a ``SpikingClassifier`` Lightning checkpoint, and the datamodule's saved settings.

    Rebuilds the network with ``models.create_from_hparams`` from the
    checkpoint's hyper-parameters and loads the ``net.`` weights (strict). The second value holds
    ``ratio``/``order``/``timesteps``/``resolution`` when the checkpoint saved the datamodule's.
    """
    from .. import models
    from ..models.checkpoint import checkpoint_kind, describe_state_diff, network_state, read_checkpoint

    p = Path(path)
    ckpt = read_checkpoint(p)  # weights_only=True: a user-named file never runs code
    if checkpoint_kind(ckpt) != "lightning" or "hyper_parameters" not in ckpt:
        raise ValueError(
            f"{p} is not a SpikingClassifier Lightning checkpoint (no state_dict/hyper_parameters): "
            "for a plain model use i2e_lightning.onnx.export_classifier(model, converter, path)"
        )
    hp = ckpt["hyper_parameters"]
    arch, num_classes = hp.get("arch"), hp.get("num_classes")
    if arch is None or num_classes is None:
        raise ValueError(f"checkpoint {p} lacks the hyper-parameters 'arch' and 'num_classes'")
    net = models.create_from_hparams(hp)
    state = network_state(ckpt, "lightning", f"checkpoint {p}")
    problem = describe_state_diff(net.state_dict(), state)
    if problem:
        raise ValueError(f"checkpoint {p} does not fit {arch} as its hyper-parameters describe it: {problem}")
    net.load_state_dict(state, strict=True)
    dm = ckpt.get("datamodule_hyper_parameters") or {}
    settings = {k: dm[k] for k in ("ratio", "order", "timesteps", "resolution") if dm.get(k) is not None}
    settings["arch"] = arch
    return net.eval(), settings


__all__ = ["export_classifier", "export_converter", "load_checkpoint_model"]
