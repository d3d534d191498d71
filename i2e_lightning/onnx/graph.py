"""The I2E converter as an ONNX graph, built node by node with ``onnx.helper`` (no torch needed).

Building the graph by hand keeps every step exactly the float32 arithmetic of
:class:`i2e_lightning.converter.I2E` in eval mode (canonical pairs):

* ``V = ReduceMax`` over channels (uint8 input: max in uint8, then ``Cast`` and
  ``Div`` by 255 — max commutes with the monotonic ``x / 255``, as in torch);
* replicate padding is ``Pad(mode="edge")``;
* each timestep's difference is ``Sub`` of two ``Slice`` views of the padded map:
  the same single float32 subtraction the official 3x3 conv computes (its other
  seven products are exact zeros);
* the threshold is ``ratio * (max - min)`` per image in float32, ``+inf`` for a flat
  image (no events), compared inclusively (``GreaterOrEqual`` / ``LessOrEqual``).

Batch, height and width (and the channel count, 1 or 3) are symbolic, so one file
serves every image size.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..converter.directions import DEFAULT_ORDER, DIRECTION_PAIRS, cell_offset, resolve_order

INPUT_DTYPES = {"uint8": TensorProto.UINT8, "float32": TensorProto.FLOAT}
OUTPUT_DTYPES = {"bool": TensorProto.BOOL, "uint8": TensorProto.UINT8, "float32": TensorProto.FLOAT}
LAYOUTS = ("TBCHW", "BTCHW")
MIN_OPSET = 13  # Slice/Unsqueeze/Pad with tensor inputs, GreaterOrEqual
MAX_OPSET = 21  # newest opset tested (ONNX Runtime 1.32); older runtimes need an older --opset
DEFAULT_OPSET = 17
INPUT_NAME = "images"
EVENTS_NAME = "events"
METADATA_PREFIX = "i2e."
_INT64_MAX = np.iinfo(np.int64).max


def _check_settings(
    ratio: float,
    order: int | Sequence[int],
    timesteps: int,
    input_dtype: str,
    output_dtype: str,
    layout: str,
    opset: int,
) -> tuple[int, ...]:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < float(ratio) < 1.0:
        raise ValueError(f"ratio must be a number in (0, 1) (the paper uses 0.07-0.15), got {ratio!r}")
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or not 1 <= timesteps <= 8:
        raise ValueError(f"timesteps must be an integer from 1 to 8, got {timesteps!r}")
    if input_dtype not in INPUT_DTYPES:
        raise ValueError(f"input dtype must be one of {sorted(INPUT_DTYPES)}, got {input_dtype!r}")
    if output_dtype not in OUTPUT_DTYPES:
        raise ValueError(f"output dtype must be one of {sorted(OUTPUT_DTYPES)}, got {output_dtype!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"opset must be an integer from {MIN_OPSET} to {MAX_OPSET}, got {opset!r}")
    return resolve_order(order)


class _Graph:
    """Tiny node/initializer accumulator with unique names."""

    def __init__(self, prefix: str, opset: int) -> None:
        self.prefix = prefix
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{self.prefix}{hint}_{self._n}"

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, out: str | None = None, **attrs) -> str:
        out = out or self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=self.name(op_type), **attrs))
        return out

    def reduce(self, op_type: str, x: str, axes: Sequence[int], hint: str) -> str:
        # ReduceMax/Min take axes as an attribute before opset 18 and as an input from 18 on
        if self.opset >= 18:
            return self.op(op_type, [x, self.const("axes", np.array(axes, dtype=np.int64))], hint, keepdims=1)
        return self.op(op_type, [x], hint, axes=list(axes), keepdims=1)

    def unsqueeze(self, x: str, axis: int, hint: str) -> str:
        return self.op("Unsqueeze", [x, self.const("axis", np.array([axis], dtype=np.int64))], hint)


def add_converter_nodes(
    g: _Graph,
    images: str,
    *,
    ratio: float,
    directions: Sequence[int],
    input_dtype: str,
    output_dtype: str,
    layout: str,
    out: str | None = None,
) -> str:
    """Append the converter's nodes reading ``images`` [B, C, H, W]; return the events' name."""
    # intensity V [B, 1, H, W] in float32
    v = g.reduce("ReduceMax", images, [1], "v_raw" if input_dtype == "uint8" else "v")
    if input_dtype == "uint8":
        v = g.op("Cast", [v], "v_float", to=TensorProto.FLOAT)
        v = g.op("Div", [v, g.const("c255", np.array(255.0, dtype=np.float32))], "v")

    # per-image threshold ratio * (max - min), +inf where the image is flat
    vmax = g.reduce("ReduceMax", v, [1, 2, 3], "vmax")
    vmin = g.reduce("ReduceMin", v, [1, 2, 3], "vmin")
    th = g.op("Mul", [g.op("Sub", [vmax, vmin], "range"), g.const("ratio", np.array(ratio, dtype=np.float32))], "th0")
    varies = g.op("Greater", [vmax, vmin], "varies")
    th = g.op("Where", [varies, th, g.const("inf", np.array(np.inf, dtype=np.float32))], "th")  # [B, 1, 1, 1]

    # replicate pad, then lift to 5-D with the time axis where the layout wants it
    pads = g.const("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64))
    vpad = g.op("Pad", [v, pads], "vpad", mode="edge")  # [B, 1, H+2, W+2]
    t_axis = 0 if layout == "TBCHW" else 1
    vpad = g.unsqueeze(vpad, t_axis, "vpad5")
    th = g.unsqueeze(th, t_axis, "th5")
    neg_th = g.op("Neg", [th], "neg_th")

    # one Slice per 3x3 cell used: rows r..H+r, columns c..W+c of the padded map (end -2, -1 or "to the end")
    views: dict[int, str] = {}

    def view(cell: int) -> str:
        if cell not in views:
            r, c = cell_offset(cell)
            starts = g.const("starts", np.array([r, c], dtype=np.int64))
            ends = g.const("ends", np.array([r - 2 if r < 2 else _INT64_MAX, c - 2 if c < 2 else _INT64_MAX], np.int64))
            axes = g.const("axes", np.array([3, 4], dtype=np.int64))
            views[cell] = g.op("Slice", [vpad, starts, ends, axes], f"cell{cell}")
        return views[cell]

    diffs = []
    for t, d in enumerate(directions):
        a, b = DIRECTION_PAIRS[d][0]  # canonical pair (eval mode)
        diffs.append(g.op("Sub", [view(b), view(a)], f"dv{t}"))
    dv = diffs[0] if len(diffs) == 1 else g.op("Concat", diffs, "dv", axis=t_axis)  # [T,B,1,H,W] or [B,T,1,H,W]

    on = g.op("GreaterOrEqual", [dv, th], "on")
    off = g.op("LessOrEqual", [dv, neg_th], "off")  # -dV >= th  <=>  dV <= -th (negation is exact)
    if output_dtype == "bool":
        return g.op("Concat", [on, off], axis=2, out=out)
    events = g.op("Concat", [on, off], "events_bool", axis=2)
    return g.op("Cast", [events], to=OUTPUT_DTYPES[output_dtype], out=out)


def converter_metadata(
    ratio: float, order: Sequence[int], timesteps: int, input_dtype: str, output_dtype: str, layout: str
) -> dict[str, str]:
    """The settings every exported file carries (``metadata_props``), all prefixed ``i2e.``."""
    from .. import __version__

    meta = {
        "ratio": repr(float(ratio)),
        "order": json.dumps(list(order)),
        "timesteps": str(timesteps),
        "directions": json.dumps(list(order[:timesteps])),
        "input_dtype": input_dtype,
        "output_dtype": output_dtype,
        "layout": layout,
        "channels": "1,3",
        "version": __version__,
    }
    return {METADATA_PREFIX + k: v for k, v in meta.items()}


def set_metadata(model: onnx.ModelProto, meta: dict[str, str]) -> None:
    existing = {p.key: p for p in model.metadata_props}
    for key, value in meta.items():
        if key in existing:
            existing[key].value = value
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value


def finish_model(graph: onnx.GraphProto, opset: int, meta: dict[str, str], doc: str) -> onnx.ModelProto:
    """Wrap ``graph`` with the opset, the lowest IR version it needs (older runtimes load it) and metadata."""
    from .. import __version__

    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        graph,
        opset_imports=opsets,
        producer_name="i2e_lightning",
        producer_version=__version__,
        doc_string=doc,
        ir_version=helper.find_min_ir_version_for(opsets),
    )
    set_metadata(model, meta)
    return model


def build_converter_model(
    ratio: float = 0.12,
    order: int | Sequence[int] = DEFAULT_ORDER,
    timesteps: int = 8,
    *,
    input_dtype: str = "float32",
    output_dtype: str = "bool",
    layout: str = "TBCHW",
    opset: int = DEFAULT_OPSET,
) -> onnx.ModelProto:
    """The converter as a self-contained ONNX model: ``images`` [B, C, H, W] -> ``events``.

    ``events`` is ``[T, B, 2, H, W]`` (``TBCHW``) or ``[B, T, 2, H, W]`` (``BTCHW``), channel 0 ON,
    channel 1 OFF, bit for bit what ``I2E(ratio, order, timesteps).eval()`` returns.
    """
    dirs_all = _check_settings(ratio, order, timesteps, input_dtype, output_dtype, layout, opset)
    dirs = dirs_all[:timesteps]
    g = _Graph("", opset)
    add_converter_nodes(
        g,
        INPUT_NAME,
        ratio=float(ratio),
        directions=dirs,
        input_dtype=input_dtype,
        output_dtype=output_dtype,
        layout=layout,
        out=EVENTS_NAME,
    )
    x_info = helper.make_tensor_value_info(
        INPUT_NAME, INPUT_DTYPES[input_dtype], ["batch", "channels", "height", "width"]
    )
    out_shape = [timesteps, "batch", 2, "height", "width"]
    if layout == "BTCHW":
        out_shape[0], out_shape[1] = out_shape[1], out_shape[0]
    y_info = helper.make_tensor_value_info(EVENTS_NAME, OUTPUT_DTYPES[output_dtype], out_shape)
    graph = helper.make_graph(g.nodes, "i2e_converter", [x_info], [y_info], initializer=g.inits)
    meta = converter_metadata(ratio, dirs_all, timesteps, input_dtype, output_dtype, layout)
    meta[METADATA_PREFIX + "kind"] = "converter"
    doc = (
        f"I2E image-to-event converter: images [B, 1|3, H, W] {input_dtype} -> events {layout} {output_dtype} "
        f"(ratio={ratio}, directions={list(dirs)}). Channel 0 ON, 1 OFF."
    )
    model = finish_model(graph, opset, meta, doc)
    onnx.checker.check_model(model, full_check=True)
    return model
