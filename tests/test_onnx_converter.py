"""The converter exported to ONNX: checker, metadata, CLI, and bit-exact parity with I2E(...).eval()."""

from __future__ import annotations

import functools
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from i2e_lightning import __version__
from i2e_lightning.commands.export_onnx import main as export_main
from i2e_lightning.converter import I2E
from i2e_lightning.events import convert_packed
from i2e_lightning.onnx import build_converter_model, export_converter
from i2e_lightning.onnx.graph import INPUT_NAME

SHAPES = [(1, 3, 1, 1), (2, 3, 1, 7), (1, 3, 6, 1), (3, 3, 5, 9), (2, 3, 16, 11), (1, 1, 4, 5), (2, 1, 1, 1)]


@functools.cache
def session(ratio=0.12, order=4, timesteps=8, input_dtype="float32", output_dtype="bool", layout="TBCHW", opset=17):
    order_arg = list(order) if isinstance(order, tuple) else order
    model = build_converter_model(
        ratio, order_arg, timesteps, input_dtype=input_dtype, output_dtype=output_dtype, layout=layout, opset=opset
    )
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1  # tiny inputs: no worker threads to spin on a busy CPU
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def images(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    if dtype == "uint8":
        return torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
    return torch.rand(shape, generator=g)


def assert_parity(
    x, ratio=0.12, order=4, timesteps=8, input_dtype="float32", output_dtype="bool", layout="TBCHW", opset=17
):
    sess = session(
        ratio, tuple(order) if isinstance(order, list) else order, timesteps, input_dtype, output_dtype, layout, opset
    )
    got = sess.run(None, {"images": x.numpy()})[0]
    ref = I2E(ratio, order, timesteps, dtype=output_dtype, layout=layout).eval()(x).numpy()
    assert got.dtype == ref.dtype
    assert got.shape == ref.shape
    assert np.array_equal(got, ref), f"{int((got != ref).sum())} of {got.size} entries differ"
    return got


def spec_events(v: np.ndarray, ratio: float, directions) -> np.ndarray:
    """Independent numpy reading of docs/spec.md §1 (canonical pairs, float32) on V [B, H, W] -> [T, B, 2, H, W] bool."""
    from i2e_lightning.converter import DIRECTION_PAIRS

    v = v.astype(np.float32)
    b, h, w = v.shape
    pad = np.pad(v, ((0, 0), (1, 1), (1, 1)), mode="edge")
    rng = v.reshape(b, -1).max(1) - v.reshape(b, -1).min(1)
    th = (np.float32(ratio) * rng).astype(np.float32).reshape(b, 1, 1)
    out = np.zeros((len(directions), b, 2, h, w), dtype=bool)
    for t, d in enumerate(directions):
        (fa, fb) = DIRECTION_PAIRS[d][0]
        ra, ca = (fa - 1) // 3, (fa - 1) % 3
        rb, cb = (fb - 1) // 3, (fb - 1) % 3
        dv = pad[:, rb : rb + h, cb : cb + w] - pad[:, ra : ra + h, ca : ca + w]
        flat = (rng == 0).reshape(b, 1, 1)
        out[t, :, 0] = (dv >= th) & ~flat
        out[t, :, 1] = (-dv >= th) & ~flat
    return out


@pytest.mark.parametrize("layout", ["TBCHW", "BTCHW"])
@pytest.mark.parametrize("output_dtype", ["bool", "uint8", "float32"])
@pytest.mark.parametrize("input_dtype", ["float32", "uint8"])
def test_parity_dtypes_layouts_shapes(input_dtype, output_dtype, layout):
    for i, shape in enumerate(SHAPES):
        assert_parity(
            images(shape, input_dtype, seed=i), input_dtype=input_dtype, output_dtype=output_dtype, layout=layout
        )


@pytest.mark.parametrize(
    "order,timesteps",
    [(0, 8), (1, 8), (2, 3), (3, 6), (4, 2), (5, 1), ([7, 6, 5, 4, 3, 2, 1, 0], 5), ([3, 1, 4, 0, 5, 2, 7, 6], 8)],
)
@pytest.mark.parametrize("ratio", [0.07, 0.15, 0.5])
def test_parity_orders_timesteps_ratios(order, timesteps, ratio):
    for input_dtype in ("float32", "uint8"):
        x = images((2, 3, 13, 10), input_dtype, seed=timesteps)
        assert_parity(x, ratio=ratio, order=order, timesteps=timesteps, input_dtype=input_dtype)


def test_matches_independent_spec_reading():
    x = images((3, 3, 9, 12), "float32", seed=5)
    dirs = I2E().directions
    got = session().run(None, {"images": x.numpy()})[0]
    assert np.array_equal(got, spec_events(x.numpy().max(1), 0.12, dirs))


@pytest.mark.parametrize("input_dtype", ["float32", "uint8"])
def test_flat_images_give_no_events(input_dtype):
    x = images((4, 3, 7, 6), input_dtype, seed=3)
    x[1] = x[1, 0, 0, 0]  # constant image
    x[2] = 0  # black image
    x[3, :, :, :] = x[3, :1, :1, :1]
    got = assert_parity(x, input_dtype=input_dtype, output_dtype="uint8")
    assert got[:, 0].any() and not got[:, 1:].any()


def test_flat_in_max_channel_only_is_flat():
    # V = max over channels is constant although the channels vary: no events
    x = torch.rand(1, 3, 5, 5) * 0.5
    x[:, 1] = 0.9
    got = assert_parity(x)
    assert not got.any()


def test_float_input_of_any_range():
    x = (torch.randn(3, 3, 8, 8) * 100).float()
    x[1] = x[1] - 1e4
    assert_parity(x)


def test_every_uint8_value_scales_exactly():
    # one image with all 256 values: V must round as torchvision's ToDtype(scale=True)
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).repeat(2, 3, 1, 1)
    x[1] = x[1].flip(-1).transpose(-1, -2)
    for ratio in (0.001, 0.003, 0.0039, 0.004, 0.0041, 0.12):
        assert_parity(x, ratio=ratio, input_dtype="uint8")


@pytest.mark.parametrize("opset", [13, 18, 21])
def test_other_opsets(opset):
    for input_dtype in ("float32", "uint8"):
        assert_parity(images((2, 3, 6, 7), input_dtype), input_dtype=input_dtype, opset=opset)


def test_dynamic_batch_height_width_in_one_file():
    sess = session()
    inp = sess.get_inputs()[0]
    assert inp.shape == ["batch", "channels", "height", "width"]
    assert sess.get_outputs()[0].shape == [8, "batch", 2, "height", "width"]
    for shape in [(1, 3, 3, 3), (5, 3, 31, 2), (2, 3, 64, 48)]:
        assert_parity(images(shape, "float32"))


def test_checker_metadata_and_file(tmp_path):
    path = export_converter(
        tmp_path / "sub" / "c.onnx",
        0.1,
        [0, 1, 2, 3, 4, 5, 6, 7],
        3,
        input_dtype="uint8",
        output_dtype="uint8",
        layout="BTCHW",
    )
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["i2e.kind"] == "converter"
    assert float(meta["i2e.ratio"]) == 0.1
    assert json.loads(meta["i2e.order"]) == [0, 1, 2, 3, 4, 5, 6, 7]
    assert json.loads(meta["i2e.directions"]) == [0, 1, 2]
    assert meta["i2e.timesteps"] == "3"
    assert (meta["i2e.input_dtype"], meta["i2e.output_dtype"], meta["i2e.layout"]) == ("uint8", "uint8", "BTCHW")
    assert meta["i2e.version"] == __version__ == model.producer_version


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"ratio": 0.0}, "ratio"),
        ({"ratio": 1.5}, "ratio"),
        ({"timesteps": 9}, "timesteps"),
        ({"order": 6}, "preset"),
        ({"order": [0, 1, 2]}, "permutation"),
        ({"input_dtype": "float16"}, "input dtype"),
        ({"output_dtype": "int8"}, "output dtype"),
        ({"layout": "BCHW"}, "layout"),
        ({"opset": 11}, "opset"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_converter_model(**kwargs)


def test_cli_export_and_check(tmp_path, capsys):
    out = tmp_path / "i2e.onnx"
    argv = ["--out", str(out), "--ratio", "0.07", "--order", "2", "--timesteps", "4", "--input_dtype", "uint8"]
    assert export_main([*argv, "--output_dtype", "float32", "--layout", "BTCHW", "--check"]) == 0
    text = capsys.readouterr().out
    assert "bit for bit: True" in text
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["i2e.ratio"] == "0.07" and meta["i2e.timesteps"] == "4" and meta["i2e.layout"] == "BTCHW"
    x = images((2, 3, 9, 9), "uint8")
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})[0]
    assert np.array_equal(got, I2E(0.07, 2, 4, dtype=torch.float32, layout="BTCHW").eval()(x).numpy())


def test_cli_order_list_and_errors(tmp_path, capsys):
    out = tmp_path / "o.onnx"
    assert export_main(["--out", str(out), "--order", "7,6,5,4,3,2,1,0"]) == 0
    assert json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["i2e.order"]) == list(
        range(7, -1, -1)
    )
    assert export_main(["--out", str(tmp_path / "bad.onnx"), "--ratio", "2"]) == 2
    assert "ratio must be a number in (0, 1)" in capsys.readouterr().err
    assert export_main(["--out", str(tmp_path / "bad.txt")]) == 2
    assert ".onnx" in capsys.readouterr().err
    assert export_main(["--out", str(out), "--order", "a,b"]) == 2
    assert "--order" in capsys.readouterr().err
    assert export_main(["--out", str(out), "--order", "[7,6,5,4,3,2,1,0]"]) == 0


def test_cli_takes_settings_from_a_training_config(tmp_path):
    cfg = tmp_path / "fm.yaml"
    cfg.write_text(
        "data:\n  class_path: i2e_lightning.data.FashionMNISTDataModule\n"
        "  init_args:\n    order: 2\n    timesteps: 5\n    data_dir: /nonexistent\n"
    )
    out = tmp_path / "fm.onnx"
    assert export_main(["--config", str(cfg), "--out", str(out)]) == 0
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    # the dataset's published ratio (0.15) resolved by the DataModule; the command line still wins
    assert (meta["i2e.ratio"], meta["i2e.timesteps"], json.loads(meta["i2e.order"])) == (
        "0.15",
        "5",
        [2, 3, 0, 1, 4, 5, 6, 7],
    )
    assert export_main(["--config", str(cfg), "--out", str(out), "--ratio", "0.3"]) == 0
    assert {p.key: p.value for p in onnx.load(str(out)).metadata_props}["i2e.ratio"] == "0.3"


@pytest.mark.parametrize("chunk_pixels", [1, 60, 130, 10_000])
@pytest.mark.parametrize("batch", [0, 1, 6, 7])
def test_chunked_scan_any_batch(monkeypatch, chunk_pixels, batch):
    """The graph converts the batch in chunks (the largest divisor that fits): every split is exact."""
    from i2e_lightning.onnx import graph

    monkeypatch.setattr(graph, "CHUNK_PIXELS", chunk_pixels)
    for input_dtype in ("float32", "uint8"):
        model = build_converter_model(0.1, 4, 8, input_dtype=input_dtype)
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        x = images((batch, 3, 5, 6), input_dtype, seed=batch)
        got = sess.run(None, {"images": x.numpy()})[0]
        ref = I2E(0.1, 4, 8).eval()(x).numpy()
        assert got.shape == ref.shape
        assert np.array_equal(got, ref)


@pytest.mark.parametrize("timesteps", [1, 3, 8])
@pytest.mark.parametrize("input_dtype", ["float32", "uint8"])
def test_packed_rows_output(timesteps, input_dtype):
    """output_dtype='packed': each sample's np.packbits row, bit for bit I2E(...).packed (HDF5 layout)."""
    sess = session(timesteps=timesteps, input_dtype=input_dtype, output_dtype="packed")
    assert sess.get_outputs()[0].shape == ["batch", "bytes"]
    for i, shape in enumerate([*SHAPES, (0, 3, 4, 5), (5, 3, 7, 3)]):
        x = images(shape, input_dtype, seed=i)
        got = sess.run(None, {"images": x.numpy()})[0]
        conv = I2E(0.12, 4, timesteps).eval()
        assert np.array_equal(got, convert_packed(conv, x).rows.numpy())
        if shape[0]:
            bits = np.unpackbits(got, axis=1, count=timesteps * 2 * shape[2] * shape[3]).astype(bool)
            assert np.array_equal(bits.reshape(shape[0], timesteps, 2, *shape[2:]), conv(x).transpose(0, 1).numpy())


def _branches(node):
    return {a.name: a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH}


def _ways(model):
    """The graphs of the converter's four ways: {"empty", "chunked", "one", "per_image"} (see graph._add_events)."""
    (last,) = [n for n in model.graph.node if "events" in n.output]
    assert last.op_type == "If"  # one image or not
    top = _branches(last)
    many = top["else_branch"].node[-1]  # empty batch or not
    outer = _branches(many)
    (full,) = outer["then_branch"].node  # one image per step or several
    per_step = _branches(full)
    return {
        "one": top["then_branch"],
        "empty": outer["else_branch"],
        "per_image": per_step["then_branch"],
        "chunked": per_step["else_branch"],
    }


def _all_nodes(graph):
    for node in graph.node:
        yield node
        for sub in _branches(node).values():
            yield from _all_nodes(sub)


@pytest.mark.parametrize("layout,output_dtype", [("BTCHW", "bool"), ("TBCHW", "packed"), ("BTCHW", "packed")])
def test_events_are_the_scan_output(layout, output_dtype):
    """Above CHUNK_PIXELS one image per Scan step: the Scan's output is already the result (BTCHW events,
    packed rows), so no Concat, Reshape or Transpose copies every event byte afterwards."""
    single = _ways(build_converter_model(0.12, 4, 8, layout=layout, output_dtype=output_dtype))["per_image"]
    assert [n.op_type for n in single.node] == ["Scan"] and single.node[0].output[0] == single.output[0].name
    assert single.node[0].input == [INPUT_NAME]


def test_tbchw_events_written_by_one_concat_over_time():
    """TBCHW: the per-timestep Scan outputs are joined by one Concat along the time axis, which writes the
    result: no Transpose and no Reshape of the output (each a single-threaded copy of every event byte)."""
    model = build_converter_model(0.12, 4, 8, layout="TBCHW")
    single = _ways(model)["per_image"]
    last = single.node[-1]
    assert last.op_type == "Concat" and len(last.input) == 8 and last.output[0] == single.output[0].name
    assert onnx.helper.get_attribute_value(last.attribute[0]) == 0
    assert not [n for n in _all_nodes(model.graph) if n.op_type == "Transpose"]


@pytest.mark.parametrize("layout,output_dtype", [("TBCHW", "bool"), ("BTCHW", "bool"), ("BTCHW", "packed")])
def test_one_image_runs_without_scan(layout, output_dtype):
    """A batch of one image (what the threaded runtime runs for TBCHW) goes straight through: no Scan,
    whose first step is written to a buffer and copied; the last Concat (bool) writes the result."""
    one = _ways(build_converter_model(0.12, 4, 8, layout=layout, output_dtype=output_dtype))["one"]
    assert not [n for n in _all_nodes(one) if n.op_type in ("Scan", "Loop", "Transpose")]
    assert one.node[-1].output[0] == one.output[0].name
    assert one.node[-1].op_type == ("Slice" if output_dtype == "packed" else "Concat")


@pytest.mark.parametrize("layout,output_dtype", [("TBCHW", "bool"), ("BTCHW", "bool"), ("BTCHW", "packed")])
@pytest.mark.parametrize("chunk_pixels", [1, 60, 10_000])
def test_one_image_and_chunked_steps_agree(monkeypatch, chunk_pixels, layout, output_dtype):
    """All four ways (empty batch, one image, one image per Scan step, several per step), every layout: exact."""
    from i2e_lightning.onnx import graph

    monkeypatch.setattr(graph, "CHUNK_PIXELS", chunk_pixels)
    for input_dtype in ("float32", "uint8"):
        model = build_converter_model(0.1, 4, 8, input_dtype=input_dtype, layout=layout, output_dtype=output_dtype)
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        conv = I2E(0.1, 4, 8, layout=layout).eval()
        for batch in (0, 1, 6):
            x = images((batch, 3, 5, 6), input_dtype, seed=batch)
            got = sess.run(None, {"images": x.numpy()})[0]
            ref = convert_packed(conv, x).rows.numpy() if output_dtype == "packed" else conv(x).numpy()
            assert got.shape == ref.shape and np.array_equal(got, ref), (input_dtype, batch)
