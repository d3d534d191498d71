"""The I2E converter as an ONNX graph, built node by node with ``onnx.helper`` (no torch needed).

Building the graph by hand keeps every step exactly the float32 arithmetic of
:class:`i2e_lightning.converter.I2E` in eval mode (canonical pairs):

* ``V = ReduceMax`` over channels (uint8 input: max and replicate pad in uint8, then
  ``Cast`` and ``Mul`` by float32(1/255) — torchvision's ``ToDtype(scale=True)``, which the
  official code uses; max and padding commute with the monotonic scaling, as in torch);
* replicate padding is ``Pad(mode="edge")``;
* each timestep's difference is ``Sub`` of two ``Slice`` views of the padded map:
  the same single float32 subtraction the official 3x3 conv computes (its other
  seven products are exact zeros);
* the threshold is ``ratio * (max - min)`` per image in float32, ``+inf`` for a flat
  image (no events), compared inclusively (``GreaterOrEqual`` / ``LessOrEqual``).

All of it runs per chunk of a few images inside one ``Scan`` (see ``_add_chunked_scan``), so
each image is read from memory once and its events written once. Batch, height and width (and
the channel count, 1 or 3) are symbolic, so one file serves every image size.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..converter.directions import DEFAULT_ORDER, DIRECTION_PAIRS, cell_offset, resolve_order

INPUT_DTYPES = {"uint8": TensorProto.UINT8, "float32": TensorProto.FLOAT}
OUTPUT_DTYPES = {
    "bool": TensorProto.BOOL,
    "uint8": TensorProto.UINT8,
    "float32": TensorProto.FLOAT,
    "packed": TensorProto.UINT8,  # rows [B, ceil(T*2*H*W / 8)]: np.packbits of each sample's [T, 2, H, W]
}
LAYOUTS = ("TBCHW", "BTCHW")
MIN_OPSET = 13  # Slice/Unsqueeze/Pad with tensor inputs, GreaterOrEqual
MAX_OPSET = 21  # newest opset tested (ONNX Runtime 1.32); older runtimes need an older --opset
DEFAULT_OPSET = 17
INPUT_NAME = "images"
EVENTS_NAME = "events"
METADATA_PREFIX = "i2e."
_INT64_MAX = np.iinfo(np.int64).max
CHUNK_PIXELS = 1 << 15  # most pixels per Scan step of several small images (larger images go one per step)


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


@dataclass(frozen=True)
class _Settings:
    """What every part of the converter graph reads: the converter's settings and the channel picks."""

    ratio: float
    directions: Sequence[int]
    input_dtype: str
    layout: str
    packed: bool
    picks: list[tuple[str, str]]  # (start, end) of the channels whose max is V, see _channel_picks


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

    def if_(self, cond: str, then: onnx.GraphProto, other: onnx.GraphProto, hint: str, out: str | None = None) -> str:
        out = out or self.name(hint)
        self.nodes.append(
            helper.make_node("If", [cond], [out], name=self.name("If"), then_branch=then, else_branch=other)
        )
        return out


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
    direct = output_dtype in ("bool", "packed")
    packed = output_dtype == "packed"
    events = _add_events(g, images, ratio, directions, input_dtype, layout, out if direct else None, packed)
    if direct:
        return events
    return g.op("Cast", [events], to=OUTPUT_DTYPES[output_dtype], out=out)


def _add_events(
    g: _Graph,
    images: str,
    ratio: float,
    directions: Sequence[int],
    input_dtype: str,
    layout: str,
    out: str | None,
    packed: bool = False,
) -> str:
    """Bool events in ``layout`` (or packed rows), chosen in the graph among four ways:

    * an empty batch gives an empty result (a ``Scan`` of zero steps fails in ONNX Runtime);
    * one image runs straight through, no ``Scan``: its last ``Concat`` writes the result (a ``Scan``
      writes its first step to a buffer and copies it; the threaded runtime converts one image per run
      for ``TBCHW``);
    * images of more than ``CHUNK_PIXELS`` pixels go one per ``Scan`` step, whose output is the result
      for ``BTCHW`` and packed rows (written in place, no copy afterwards);
    * smaller images go in chunks of several per step, so the per-node overhead stays small next to the work.

    ``TBCHW`` from a ``Scan`` ends in one ``Concat`` of the timesteps (a ``Transpose`` or a ``Reshape`` of
    the result would be a single-threaded copy as well).
    """
    i64 = np.int64
    steps = len(directions)
    shape = g.op("Shape", [images], "images_shape")  # [B, C, H, W]
    batch = g.op("Slice", [shape, g.const("s0", np.array([0], i64)), g.const("e1", np.array([1], i64))], "batch")
    hw = g.op("Slice", [shape, g.const("s2", np.array([2], i64)), g.const("e4", np.array([4], i64))], "hw")
    many = _Graph(g.prefix + "many_", g.opset)  # more than one image, or none (nodes only the Scans need)
    rows = None
    if packed:  # [B, ceil(2T H W / 8)]
        pixels = many.op("ReduceProd", [hw], "pixels_all", keepdims=1)
        bits = many.op("Mul", [pixels, many.const("2t", np.array([2 * steps], i64))])
        rows = many.op("Concat", [batch, _bytes_of(many, bits)], "rows_shape", axis=0)
    events_shape = None
    if layout == "BTCHW" and not packed:  # [B, T, 2, H, W]: the chunked Scan's result and the empty batch
        events_shape = many.op("Concat", [batch, many.const("t2", np.array([steps, 2], i64)), hw], "shape", axis=0)
    if packed:  # [B, bytes]
        dims, out_type = ["batch", "bytes"], TensorProto.UINT8
    elif layout == "BTCHW":  # [B, T, 2, H, W]
        dims, out_type = ["batch", steps, 2, "h", "w"], TensorProto.BOOL
    else:  # [T, B, 2, H, W]
        dims, out_type = [steps, "batch", 2, "h", "w"], TensorProto.BOOL
    settings = _Settings(ratio, directions, input_dtype, layout, packed, _channel_picks(g, images))

    def branch(sub: _Graph, result: str) -> onnx.GraphProto:
        info = helper.make_tensor_value_info(result, out_type, dims)
        return helper.make_graph(sub.nodes, sub.name("branch"), [], [info], initializer=sub.inits)

    def scan(sub: _Graph, xs: str, per_image: bool) -> list[str]:
        body = _scan_body(sub, settings, per_image=per_image)
        outs = [sub.name(f"scanned{t}") for t in range(len(body.output))]
        sub.nodes.append(helper.make_node("Scan", [xs], outs, name=sub.name("Scan"), body=body, num_scan_inputs=1))
        return outs

    def time_major(sub: _Graph, per_step: list[str]) -> str:  # [B / c, c, 2, H, W] per timestep -> [T, B, 2, H, W]
        step_shape = sub.op("Concat", [sub.const("lead", np.array([1, -1, 2], i64)), hw], "step_shape", axis=0)
        # a Reshape that feeds a Concat is a view (as a branch's or the graph's result it would be a copy)
        reshaped = [sub.op("Reshape", [e, step_shape], f"events{t}") for t, e in enumerate(per_step)]
        return sub.op("Concat", reshaped, "events", axis=0)

    # one image: no Scan (whose first step goes through a buffer); the last Concat writes the result
    one = _Graph(g.prefix + "one_", g.opset)
    one_result = _one_image(one, images, settings)

    # one image per step
    single = _Graph(g.prefix + "single_", g.opset)
    scanned = scan(single, images, per_image=True)
    single_result = time_major(single, scanned) if layout == "TBCHW" and not packed else scanned[0]

    # several images per step; the events reshaped to the result (a copy, of small images)
    several = _Graph(g.prefix + "chunked_", g.opset)
    chunk = _chunk_size(many, batch, hw)
    scanned = scan(several, _chunked(several, images, chunk, "images"), per_image=False)  # of [B / c, c, C, H, W]
    if packed:
        several_result = several.op("Reshape", [scanned[0], rows], "rows")
    elif layout == "BTCHW":
        several_result = several.op("Reshape", [scanned[0], events_shape], "events")
    else:
        several_result = time_major(several, scanned)

    empty = _Graph(g.prefix + "empty_", g.opset)  # a Scan of zero steps fails in ONNX Runtime
    if packed:  # [0, bytes]
        none_shape = rows
    elif layout == "BTCHW":  # [0, T, 2, H, W]
        none_shape = events_shape
    else:  # [T, 0, 2, H, W]
        lead, two = empty.const("t", np.array([steps], i64)), empty.const("two", np.array([2], i64))
        none_shape = empty.op("Concat", [lead, batch, two, hw], "none_shape", axis=0)
    value = helper.make_tensor("f", out_type, [1], [0])
    none = empty.op("ConstantOfShape", [none_shape], "none", value=value)

    batch_s = g.op("Squeeze", [batch], "batch_s")
    is_one = g.op("Equal", [batch_s, g.const("one_s", np.array(1, i64))], "one_image")
    chunk_s = many.op("Squeeze", [chunk], "chunk_s")
    is_single = many.op("Equal", [chunk_s, many.const("one_s", np.array(1, i64))], "per_image")
    some = many.op("Greater", [batch_s, many.const("zero_s", np.array(0, i64))], "some")
    # one image first: the fewest subgraphs to enter for the threaded runtime's one-image runs
    full = _Graph(g.prefix + "full_", g.opset)
    full_result = full.if_(is_single, branch(single, single_result), branch(several, several_result), "events")
    many_result = many.if_(some, branch(full, full_result), branch(empty, none), "events")
    return g.if_(is_one, branch(one, one_result), branch(many, many_result), "events", out=out)


def _one_image(g: _Graph, images: str, settings: _Settings) -> str:
    """The events of a batch of one image ``[1, C, H, W]``, in the result's shape."""
    masks = _event_masks(g, images, settings, pairs=not settings.packed)
    if settings.packed:  # [1, bytes]
        return _add_packing(g, masks, per_image=False)
    axis = 0 if settings.layout == "TBCHW" else 1  # [T, 1, 2, H, W] or [1, T, 2, H, W]
    per_step = [g.unsqueeze(pair, axis, f"step{t}_") for t, pair in enumerate(masks)]
    return g.op("Concat", per_step, "events", axis=axis)


def _bytes_of(g: _Graph, nbits: str) -> str:
    """``ceil(nbits / 8)`` (int64): the bytes of a packed row."""
    i64 = np.int64
    bits7 = g.op("Add", [nbits, g.const("seven", np.array([7], i64))], "bits7")
    return g.op("Div", [bits7, g.const("eight", np.array([8], i64))], "nbytes")


def _chunk_size(g: _Graph, batch: str, hw: str) -> str:
    """Images per ``Scan`` step ``[1]``: the largest divisor of the batch with at most ``CHUNK_PIXELS`` pixels."""
    i64 = np.int64
    one = g.const("one", np.array([1], i64))
    pixels = g.op("Max", [one, g.op("ReduceProd", [hw], "pixels0", keepdims=1)], "pixels")
    fits = g.op("Max", [one, g.op("Div", [g.const("chunk_pixels", np.array([CHUNK_PIXELS], i64)), pixels])], "fits")
    most = g.op("Max", [one, g.op("Min", [fits, batch], "most0")], "most")
    stop = g.op("Add", [g.op("Squeeze", [most], "most_s"), g.const("one_s", np.array(1, i64))], "stop")
    cands = g.op("Range", [g.const("start", np.array(1, i64)), stop, g.const("delta", np.array(1, i64))], "cands")
    divides = g.op("Equal", [g.op("Mod", [batch, cands], "rem"), g.const("zero", np.array([0], i64))], "divides")
    return g.reduce("ReduceMax", g.op("Where", [divides, cands, one], "divisors"), [0], "chunk")


def _chunked(g: _Graph, x: str, chunk: str, hint: str) -> str:
    """``[B, ...]`` -> ``[B / c, c, ...]``."""
    i64 = np.int64
    rest = g.op(
        "Slice",
        [g.op("Shape", [x]), g.const("one", np.array([1], i64)), g.const("end", np.array([_INT64_MAX], i64))],
        hint + "_rest",
    )
    new_shape = g.op("Concat", [g.const("m1", np.array([-1], i64)), chunk, rest], hint + "_chunks_shape", axis=0)
    return g.op("Reshape", [x, new_shape], hint + "_chunks")


def _channel_picks(g: _Graph, images: str) -> list[tuple[str, str]]:
    """(start, end) of channels 0, C // 2 and C - 1: all three channels of RGB, three times the one of grey."""
    i64 = np.int64
    one = g.const("one", np.array([1], i64))
    channels = g.op("Slice", [g.op("Shape", [images]), one, g.const("two", np.array([2], i64))], "channels")
    mid = g.op("Div", [channels, g.const("two_", np.array([2], i64))], "mid")
    last = g.op("Sub", [channels, one], "last")
    return [(g.const("zero", np.array([0], i64)), one), (mid, g.op("Add", [mid, one])), (last, channels)]


def _add_intensity(
    body: _Graph, x: str, input_dtype: str, ratio: float, picks: list[tuple[str, str]]
) -> tuple[str | None, str, str, str]:
    """V, the replicate-padded V, and the thresholds +th / -th of images ``x`` [c, C, H, W].

    V is ``Max`` of three channel slices (see ``_channel_picks``): ONNX Runtime's ``ReduceMax`` over
    the channels is several times slower than these copies (float32 and uint8).
    """
    axis = body.const("channel_axis", np.array([1], np.int64))
    m = body.op("Max", [body.op("Slice", [x, start, end, axis], "channel") for start, end in picks], "m")
    pads = body.const("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64))
    if input_dtype == "uint8":
        # max and pad in uint8 (they commute with the monotonic scaling), then one Cast and Mul
        # (torchvision's ToDtype(scale=True)) over the padded map
        scale = body.const("u8_scale", np.array(1.0 / 255, dtype=np.float32))
        mpad = body.op("Cast", [body.op("Pad", [m, pads], "mpad", mode="edge")], "mpad_float", to=TensorProto.FLOAT)
        vpad = body.op("Mul", [mpad, scale], "vpad")
        v = None
        extrema_of = vpad  # the pad repeats values: the padded map has V's min and max
    else:
        v = m
        vpad = body.op("Pad", [v, pads], "vpad", mode="edge")
        extrema_of = v
    vmax = body.reduce("ReduceMax", extrema_of, [1, 2, 3], "vmax")
    vmin = body.reduce("ReduceMin", extrema_of, [1, 2, 3], "vmin")
    # per-image threshold ratio * (max - min) in float32, +inf where the image is flat (no events)
    rng = body.op("Sub", [vmax, vmin], "range")
    th = body.op("Mul", [rng, body.const("ratio", np.array(ratio, dtype=np.float32))], "th0")
    inf = body.const("inf", np.array(np.inf, dtype=np.float32))
    th = body.op("Where", [body.op("Greater", [vmax, vmin], "varies"), th, inf], "th")  # [c, 1, 1, 1]
    return v, vpad, th, body.op("Neg", [th], "neg_th")


def _event_masks(g: _Graph, x: str, settings: _Settings, pairs: bool = False) -> list[str]:
    """ON and OFF masks ``[c, 1, H, W]`` of each timestep in turn, of images ``x`` ``[c, C, H, W]``;
    ``pairs``: each timestep's two joined, ``[c, 2, H, W]`` (right away: the masks stay in cache)."""
    i64 = np.int64
    v, vpad, th, neg_th = _add_intensity(g, x, settings.input_dtype, settings.ratio, settings.picks)
    views: dict[int, str] = {5: v} if v is not None else {}  # the centre window of the padded map is V itself

    def view(cell: int) -> str:  # rows r..H+r, columns c..W+c of the padded map (end -2, -1 or "to the end")
        if cell not in views:
            r, c = cell_offset(cell)
            starts = g.const("starts", np.array([r, c], dtype=i64))
            ends = g.const("ends", np.array([r - 2 if r < 2 else _INT64_MAX, c - 2 if c < 2 else _INT64_MAX], i64))
            views[cell] = g.op("Slice", [vpad, starts, ends, g.const("axes", np.array([2, 3], i64))], f"cell{cell}")
        return views[cell]

    masks = []
    for t, d in enumerate(settings.directions):
        a, b = DIRECTION_PAIRS[d][0]  # canonical pair (eval mode): dV = V[b] - V[a], one float32 subtraction
        dv = g.op("Sub", [view(b), view(a)], f"dv{t}")
        # ON: dV >= th; OFF: -dV >= th, i.e. dV <= -th (negation is exact)
        on_off = [g.op("GreaterOrEqual", [dv, th], f"on{t}"), g.op("LessOrEqual", [dv, neg_th], f"off{t}")]
        masks += [g.op("Concat", on_off, f"events{t}", axis=1)] if pairs else on_off
    return masks


def _scan_body(g: _Graph, settings: _Settings, per_image: bool) -> onnx.GraphProto:
    """The ``Scan`` body: one image ``[C, H, W]`` (``per_image``) or a chunk ``[c, C, H, W]`` -> its events.

    Outputs: packed rows (``[bytes]`` per image, ``[c, bytes]`` per chunk); for ``BTCHW`` the
    events ``[T, 2, H, W]`` per image or ``[c, T, 2, H, W]`` per chunk; for ``TBCHW`` one ``[c, 2, H, W]``
    per timestep. Everything derived from the images stays in cache until its event bytes are written.
    """
    body = _Graph(g.prefix + "scan_", g.opset)
    b_x = body.name("images")
    x = body.unsqueeze(b_x, 0, "image") if per_image else b_x  # [c, C, H, W]
    masks = _event_masks(body, x, settings, pairs=not settings.packed)
    x_dims = ["channels", "h", "w"] if per_image else ["c", "channels", "h", "w"]
    in_info = helper.make_tensor_value_info(b_x, INPUT_DTYPES[settings.input_dtype], x_dims)
    steps = len(settings.directions)
    if settings.packed:
        outs, out_type = [_add_packing(body, masks, per_image)], TensorProto.UINT8
        out_dims = [["bytes"] if per_image else ["c", "bytes"]]
    else:
        out_type = TensorProto.BOOL
        per_step = masks  # [c, 2, H, W] each
        if settings.layout == "TBCHW":  # one [c, 2, H, W] output per timestep, ON then OFF
            outs, out_dims = per_step, [["c", 2, "h", "w"]] * steps
        elif per_image:  # c = 1: the steps [1, 2, H, W] joined along the first axis are [T, 2, H, W]
            # (one Concat of all 2T masks would need a Reshape, which copies a graph output)
            outs, out_dims = [body.op("Concat", per_step, "events", axis=0)], [[steps, 2, "h", "w"]]
        else:
            per_step = [body.unsqueeze(s, 1, f"events{t}_") for t, s in enumerate(per_step)]
            outs, out_dims = [body.op("Concat", per_step, "events", axis=1)], [["c", steps, 2, "h", "w"]]
    infos = [helper.make_tensor_value_info(o, out_type, d) for o, d in zip(outs, out_dims, strict=True)]
    # ranks given: before opset 16 ONNX Runtime needs them
    return helper.make_graph(body.nodes, body.name("body"), [in_info], infos, initializer=body.inits)


# bytes per row of the packing product: ONNX Runtime multiplies [n, 64] x [64, 8] ~3x faster than [n, 8] x [8, 1]
_PACK_GROUP = 8


def _add_packing(body: _Graph, masks: list[str], per_image: bool) -> str:
    """Each image's events (``masks``: ``[c, 1, H, W]`` each, in order) as np.packbits rows (zero bits pad the
    last byte): ``[c, bytes]``, or ``[bytes]`` for one image; packed while they are in cache."""
    i64 = np.int64
    flat_shape = body.const("flat_shape", np.array([0, -1], i64))
    flats = [body.op("Reshape", [m, flat_shape], "mask_flat") for m in masks]  # views: they feed a Concat
    shape = body.op("Shape", [flats[0]])  # [c, H W]
    one = body.const("one", np.array([1], i64))
    nbits = body.op(
        "Mul",
        [
            body.op("Slice", [shape, one, body.const("two", np.array([2], i64))], "hw"),
            body.const("n", np.array([len(masks)], i64)),
        ],
    )
    group = body.const("group_bits", np.array([8 * _PACK_GROUP], i64))
    nbytes = _bytes_of(body, nbits)
    fill = body.op("Mod", [body.op("Sub", [group, body.op("Mod", [nbits, group], "over")], "fill0"), group], "fill")
    zeros_shape = body.op(
        "Concat", [body.op("Slice", [shape, body.const("zero_", np.array([0], i64)), one], "c"), fill], axis=0
    )
    zeros = body.op(
        "ConstantOfShape", [zeros_shape], "zero_bits", value=helper.make_tensor("f", TensorProto.BOOL, [1], [0])
    )
    # the masks and the padding bits joined in one copy, then bytes
    padded = body.op("Cast", [body.op("Concat", [*flats, zeros], "bits", axis=1)], "bits_u8", to=TensorProto.UINT8)
    groups = body.op("Reshape", [padded, body.const("groups", np.array([0, -1, 8 * _PACK_GROUP], i64))], "groups")
    # bit i of byte j times 2^(7 - i), summed: an integer matrix product with block-diagonal weights
    # (uint8 x uint8 -> int32), exact on every provider
    weights = np.zeros((8 * _PACK_GROUP, _PACK_GROUP), np.uint8)
    for j in range(_PACK_GROUP):
        weights[8 * j : 8 * j + 8, j] = 2 ** np.arange(7, -1, -1)
    values = body.op("MatMulInteger", [groups, body.const("bit_weights", weights)], "byte_values")
    # the padding bytes cut off by the last op, which writes the result ([bytes] for one image, no Reshape after)
    shape = body.const("row_shape", np.array([-1] if per_image else [0, -1], i64))
    padded_rows = body.op("Reshape", [body.op("Cast", [values], "bytes", to=TensorProto.UINT8), shape], "padded")
    axis = body.const("axis", np.array([0 if per_image else 1], i64))
    return body.op("Slice", [padded_rows, body.const("zero", np.array([0], i64)), nbytes, axis], "rows")


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
    out_shape: list = [timesteps, "batch", 2, "height", "width"]
    if layout == "BTCHW":
        out_shape[0], out_shape[1] = out_shape[1], out_shape[0]
    if output_dtype == "packed":  # one row per sample whatever the layout
        out_shape = ["batch", "bytes"]
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
