"""The torch-free runtime (i2e_lightning/onnx/runtime.py, copied as export/i2e_runtime.py): no torch import,
input checks, providers, files, batching."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from i2e_lightning.converter import I2E
from i2e_lightning.events import convert_packed
from i2e_lightning.onnx import export_converter
from i2e_lightning.onnx import runtime as pkg_runtime
from i2e_lightning.onnx.runtime import CPU, CUDA, I2ERuntime, choose_providers
from tests.helpers.official import to_dtype_scale
from tests.helpers.run_if import RunIf

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {
        "float": export_converter(d / "f.onnx", 0.12, 4, 8),
        "uint8": export_converter(d / "u.onnx", 0.1, 2, 5, input_dtype="uint8", output_dtype="uint8", layout="BTCHW"),
    }


PACKAGE_RUNTIME = Path(pkg_runtime.__file__)
EXPORT_COPY = REPO / "export" / "i2e_runtime.py"


def test_export_copy_is_the_package_runtime():
    # the runtime lives in the package (so a wheel has it); export/ keeps a one-file copy for deployment
    assert PACKAGE_RUNTIME.parent == REPO / "i2e_lightning" / "onnx"
    assert EXPORT_COPY.read_bytes() == PACKAGE_RUNTIME.read_bytes(), (
        "export/i2e_runtime.py differs from i2e_lightning/onnx/runtime.py: run `make docs` (it copies the runtime)"
    )
    assert pkg_runtime.I2ERuntime.__module__ == "i2e_lightning.onnx.runtime"
    from i2e_lightning.onnx import I2ERuntime as lazy

    assert lazy is I2ERuntime


@pytest.mark.slow
@pytest.mark.parametrize("runtime_file", [EXPORT_COPY, PACKAGE_RUNTIME], ids=["export-copy", "package-file"])
def test_runs_without_torch_in_a_subprocess(models, runtime_file, tmp_path):
    # the file alone, as deployed: copied into an empty folder, torch and i2e_lightning blocked
    (tmp_path / "i2e_runtime.py").write_bytes(runtime_file.read_bytes())
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        sys.modules["i2e_lightning"] = None
        sys.path.insert(0, {str(tmp_path)!r})
        import numpy as np
        from i2e_runtime import I2ERuntime, event_rate
        rt = I2ERuntime({str(models["uint8"])!r}, threads=1)
        x = np.random.default_rng(0).integers(0, 256, (2, 3, 9, 7), dtype=np.uint8)
        ev = rt.run(x)
        assert ev.shape == (2, 5, 2, 9, 7) and ev.dtype == np.uint8, ev.shape
        assert not any(k.split(".")[0] == "torch" and v is not None for k, v in sys.modules.items())
        print("OK", rt.providers, rt.info.ratio, round(event_rate(ev), 4))
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("OK ['CPUExecutionProvider'] 0.1")


def test_events_equal_torch_and_metadata(models):
    rt = I2ERuntime(models["float"], threads=1)
    assert rt.providers == [CPU]
    assert rt.info.kind == "converter" and rt.info.ratio == 0.12 and rt.info.timesteps == 8
    assert rt.info.order == (4, 5, 6, 7, 0, 1, 2, 3) and rt.info.layout == "TBCHW"
    assert rt.metadata["version"] and rt.metadata["directions"] == [4, 5, 6, 7, 0, 1, 2, 3]
    x = torch.rand(5, 3, 11, 6)
    ref = I2E(0.12).eval()(x).numpy()
    assert np.array_equal(rt.run(x.numpy()), ref)
    assert np.array_equal(rt.run(x.numpy(), batch_size=2), ref)  # chunks joined on the batch axis
    assert np.array_equal(rt.run(x[0].numpy()), ref[:, 0])  # one [C, H, W] image
    assert np.array_equal(rt.run([a.numpy() for a in x]), ref)  # a list of images
    assert np.array_equal(rt.run(x.numpy().astype(np.float64)), ref)
    # uint8 into a float model: scaled as torchvision's ToDtype(scale=True), every value
    u = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).repeat(2, 1, 1, 1)
    u[1] = u[1].flip(-1).transpose(-1, -2)
    assert np.array_equal(rt.run(u.numpy()), I2E(0.12).eval()(to_dtype_scale(u)).numpy())


def test_uint8_btchw_model_batches(models):
    rt = I2ERuntime(models["uint8"])
    x = torch.randint(0, 256, (7, 3, 4, 9), dtype=torch.uint8)
    ref = I2E(0.1, 2, 5, dtype=torch.uint8, layout="BTCHW").eval()(x).numpy()
    assert np.array_equal(rt.run(x.numpy(), batch_size=3), ref)
    assert np.array_equal(rt(x[3].numpy()), ref[3])
    empty = rt.run(np.zeros((0, 3, 4, 9), np.uint8))
    assert empty.shape == (0, 5, 2, 4, 9) and empty.dtype == np.uint8


@pytest.mark.parametrize(
    "which,array,match",
    [
        ("float", np.zeros((4, 4), np.float32), "rank 2"),
        ("float", np.zeros((1, 1, 3, 4, 4), np.float32), "rank 5"),
        ("float", np.zeros((2, 4, 5, 5), np.float32), "1 or 3 channels"),
        ("float", np.zeros((2, 5, 5, 3), np.float32), "channels-last"),
        ("float", np.zeros((5, 5, 3), np.float32), "channels-last"),
        ("float", np.zeros((1, 3, 0, 5), np.float32), "at least 1"),
        ("float", np.zeros((1, 3, 4, 4), np.int32), "float or uint8"),
        ("float", np.zeros((1, 3, 4, 4), bool), "float or uint8"),
        ("float", np.full((1, 3, 2, 2), np.nan, np.float32), "NaN"),
        ("uint8", np.zeros((1, 3, 4, 4), np.float32), "takes uint8"),
        ("uint8", np.zeros((1, 3, 4, 4), np.int64), "takes uint8"),
    ],
)
def test_bad_input_is_rejected_before_onnxruntime(models, monkeypatch, which, array, match):
    rt = I2ERuntime(models[which])

    def boom(*a, **k):  # pragma: no cover - must not be reached
        raise AssertionError("ONNX Runtime was called with bad input")

    monkeypatch.setattr(rt.session, "run", boom)
    with pytest.raises(ValueError, match=match):
        rt.run(array)


def test_other_bad_calls(models, tmp_path):
    rt = I2ERuntime(models["float"])
    with pytest.raises(ValueError, match="different shapes"):
        rt.run([np.zeros((3, 4, 4), np.float32), np.zeros((3, 5, 4), np.float32)])
    with pytest.raises(ValueError, match="numpy array"):
        rt.run(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="batch_size"):
        rt.run(np.zeros((1, 3, 4, 4), np.float32), batch_size=0)
    with pytest.raises(ValueError, match="threads"):
        I2ERuntime(models["float"], threads=0)
    with pytest.raises(FileNotFoundError, match="export-onnx"):
        I2ERuntime(tmp_path / "missing.onnx")
    # an ONNX file that is not ours
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(
        helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()
    )
    with pytest.raises(ValueError, match="not an i2e_lightning export"):
        I2ERuntime(foreign)


class FakeSession:
    """Stands in for ort.InferenceSession: records the providers asked for, runs on the CPU."""

    calls: list[list[str]] = []
    gpu_works = True

    def __init__(self, path, sess_options=None, providers=None):
        FakeSession.calls.append(list(providers))
        self._real = REAL_SESSION(path, sess_options=sess_options, providers=[CPU])
        self._providers = list(providers) if self.gpu_works else [CPU]

    def get_providers(self):
        return self._providers

    def __getattr__(self, name):
        return getattr(self._real, name)


REAL_SESSION = ort.InferenceSession


@pytest.mark.parametrize("gpu_works", [True, False])
def test_cuda_chosen_when_available(models, monkeypatch, gpu_works):
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(ort, "InferenceSession", FakeSession)
    monkeypatch.setattr(FakeSession, "gpu_works", gpu_works)
    FakeSession.calls.clear()
    rt = I2ERuntime(models["float"])
    assert FakeSession.calls == [[CUDA, CPU]]
    # the providers reported are those the session uses: CUDA only when the GPU could be used
    assert rt.providers == ([CUDA, CPU] if gpu_works else [CPU])
    assert rt.uses_gpu is gpu_works
    x = np.random.default_rng(0).random((1, 3, 5, 5), dtype=np.float32)
    assert np.array_equal(rt.run(x), I2E(0.12).eval()(torch.from_numpy(x)).numpy())
    # an explicit CPU request is honoured
    FakeSession.calls.clear()
    I2ERuntime(models["float"], providers=[CPU])
    assert FakeSession.calls == [[CPU]]


def test_choose_providers(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["AzureExecutionProvider", CPU])
    assert choose_providers() == [CPU]
    assert choose_providers(CPU) == [CPU]
    with pytest.raises(ValueError, match="onnxruntime-gpu"):
        choose_providers([CUDA])
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    assert choose_providers() == [CUDA, CPU]
    assert choose_providers([CUDA]) == [CUDA, CPU]  # the CPU stays as the fallback


def test_files_in_batches(models, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (6, 8, 3), dtype=np.uint8) for _ in range(5)]
    paths = []
    for i, a in enumerate(arrays):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(a).save(p)
        paths.append(p)
    Image.fromarray(arrays[0][:, :, 0]).save(tmp_path / "grey.png")
    rt = I2ERuntime(models["uint8"])
    batches = list(rt.run_files(paths, batch_size=2))
    assert [len(b) for b, _ in batches] == [2, 2, 1]
    got = np.concatenate([e for _, e in batches], axis=0)
    ref = rt.run(np.stack([a.transpose(2, 0, 1) for a in arrays]))
    assert np.array_equal(got, ref)
    with pytest.raises(ValueError, match="different sizes"):
        list(rt.run_files([paths[0], tmp_path / "grey.png", *_resized(tmp_path, arrays[1])]))
    ((_, ev),) = rt.run_files([paths[0], _resized(tmp_path, arrays[1])[0]], size=(12, 10))
    assert ev.shape == (2, 5, 2, 12, 10)
    with pytest.raises(FileNotFoundError):
        list(rt.run_files([tmp_path / "nope.png"]))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="not a readable image"):
        list(rt.run_files([tmp_path / "bad.png"]))


def _resized(tmp_path, a):
    from PIL import Image

    p = tmp_path / "big.png"
    Image.fromarray(np.repeat(a, 2, axis=0)).save(p)
    return [p]


@pytest.mark.slow
def test_example_script(models, tmp_path):
    from PIL import Image

    Image.fromarray(np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    cmd = [sys.executable, str(REPO / "export" / "example.py"), str(models["uint8"]), str(tmp_path / "a.png")]
    res = subprocess.run([*cmd, "--resolution", "16", "--threads", "1"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "providers" in res.stdout and "event rate" in res.stdout and "(1, 5, 2, 16, 16)" in res.stdout
    # [H,W] as the i2e_lightning commands take it; the older --size H W still works
    for size in (["--resolution", "[16,24]"], ["--size", "16", "24"]):
        res = subprocess.run([*cmd, *size, "--threads", "1"], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0 and "(1, 5, 2, 16, 24)" in res.stdout, res.stderr
    res = subprocess.run([*cmd, "--resolution", "[16,0]"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "--resolution" in res.stderr
    res = subprocess.run(
        [sys.executable, str(REPO / "export" / "example.py"), str(tmp_path / "none.onnx")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "export-onnx" in res.stderr


@RunIf(min_cuda_gpus=1, onnxruntime_cuda=True)
def test_cuda_provider_events_equal_cpu_reference(models):
    for which in ("float", "uint8"):
        rt = I2ERuntime(models[which])
        assert rt.uses_gpu, rt.providers
        x = torch.randint(0, 256, (4, 3, 37, 50), dtype=torch.uint8)
        if which == "float":
            ref = I2E(0.12).eval()(x.float() / 255).numpy()
            got = rt.run(x.float().numpy() / np.float32(255))
        else:
            ref = I2E(0.1, 2, 5, dtype=torch.uint8, layout="BTCHW").eval()(x).numpy()
            got = rt.run(x.numpy())
        assert np.array_equal(got, ref)


def test_packed_rows_and_unpack(tmp_path):
    path = export_converter(tmp_path / "p.onnx", 0.12, 4, 3, input_dtype="uint8", output_dtype="packed")
    rt = I2ERuntime(path, threads=1)
    assert rt.packed and rt.event_shape(5, 7) == (3, 2, 5, 7)
    x = np.random.default_rng(1).integers(0, 256, (4, 3, 5, 7), dtype=np.uint8)
    rows = rt.run(x, batch_size=3)  # batches of packed rows join along the sample axis
    conv = I2E(0.12, 4, 3).eval()
    assert rows.shape == rt.output_shape(4, 5, 7) == (4, 27)
    assert np.array_equal(rows, convert_packed(conv, torch.from_numpy(x)).rows.numpy())
    assert np.array_equal(rt.unpack(rows, 5, 7), conv(torch.from_numpy(x)).transpose(0, 1).numpy())
    assert rt.run(x[0]).shape == (27,)
    assert rt.run(x[:0]).shape == (0, 27)
    with pytest.raises(ValueError, match="do not hold"):
        rt.unpack(rows, 6, 7)


def test_run_on_device_binds_host_memory_on_the_cpu(models):
    rt = I2ERuntime(models["float"], threads=1)
    x = np.random.default_rng(2).random((3, 3, 6, 5), dtype=np.float32)
    ref = rt.run(x)
    got = rt.run_on_device(x)  # numpy in: one copy to the device (here the host), OrtValue out
    assert isinstance(got, ort.OrtValue) and np.array_equal(got.numpy(), ref)
    value = ort.OrtValue.ortvalue_from_numpy(x, "cpu", 0)
    assert np.array_equal(rt.run_on_device(value).numpy(), ref)
    xt = torch.from_numpy(x.copy())
    out = torch.zeros(rt.output_shape(3, 6, 5), dtype=torch.bool)
    assert rt.run_on_device(xt, out=out) is out  # bound by pointer: written in place
    assert np.array_equal(out.numpy(), ref)
    with pytest.raises(ValueError, match="out must have shape"):
        rt.run_on_device(xt, out=torch.zeros(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="OrtValue"):
        rt.run_on_device([1, 2])


class _RecordingBinding:
    """Stands in for onnxruntime's IOBinding: records what is bound where, fails on any host copy."""

    def __init__(self, log):
        self.log = log

    def bind_ortvalue_input(self, name, value):
        self.log.append(("input_ortvalue", name, value.device_name()))

    def bind_input(self, name, device, device_id, dtype, shape, ptr):
        self.log.append(("input_ptr", name, device, device_id, np.dtype(dtype).name, tuple(shape), ptr))

    def bind_output(self, name, device, device_id=0, dtype=None, shape=None, ptr=None):
        self.log.append(("output", name, device, device_id, None if dtype is None else np.dtype(dtype).name, ptr))

    def get_outputs(self):
        return ["device-output"]

    def copy_outputs_to_cpu(self):  # pragma: no cover - the point is that nothing calls it
        raise AssertionError("a host copy was made")


class _FakeCudaTensor:
    def __init__(self, shape, ptr):
        self.shape, self._ptr = shape, ptr

    def data_ptr(self):
        return self._ptr

    def numpy(self):  # pragma: no cover
        raise AssertionError("the device tensor was read on the host")


def test_run_on_device_keeps_cuda_buffers_on_the_gpu(models, monkeypatch):
    """With the CUDA provider every binding names the GPU and the result is not copied back (mocked)."""
    rt = I2ERuntime(models["uint8"], threads=1)
    log: list = []
    runs: list = []
    monkeypatch.setattr(I2ERuntime, "uses_gpu", property(lambda self: True))
    monkeypatch.setattr(
        rt,
        "session",
        type(
            "S",
            (),
            {
                "io_binding": lambda self: _RecordingBinding(log),
                "run_with_iobinding": lambda self, b: runs.append(b),
            },
        )(),
    )
    images = _FakeCudaTensor((2, 3, 9, 7), 0x7F00)
    assert rt.run_on_device(images, device_id=1) == "device-output"
    assert log == [
        ("input_ptr", "images", "cuda", 1, "uint8", (2, 3, 9, 7), 0x7F00),
        ("output", "events", "cuda", 1, None, None),
    ]
    log.clear()
    out = _FakeCudaTensor(rt.output_shape(2, 9, 7), 0x9000)
    assert rt.run_on_device(images, out=out) is out
    assert log[1] == ("output", "events", "cuda", 0, "uint8", 0x9000)
    assert len(runs) == 2


@RunIf(min_cuda_gpus=1, onnxruntime_cuda=True)
def test_run_on_device_cuda_equals_cpu_reference(models):
    rt = I2ERuntime(models["float"])
    assert rt.uses_gpu, rt.providers
    x = torch.rand(4, 3, 37, 50, device="cuda")
    out = torch.empty(rt.output_shape(4, 37, 50), dtype=torch.bool, device="cuda")
    rt.run_on_device(x, out=out)
    ref = I2E(0.12).eval()(x.cpu()).numpy()
    assert np.array_equal(out.cpu().numpy(), ref)
    value = rt.run_on_device(x.cpu().numpy())  # numpy in, result stays on the GPU
    assert value.device_name().lower() == "cuda" and np.array_equal(value.numpy(), ref)


@pytest.mark.parametrize("layout,output_dtype", [("TBCHW", "bool"), ("BTCHW", "bool"), ("TBCHW", "packed")])
@pytest.mark.parametrize("input_dtype", ["float32", "uint8"])
def test_sharded_runs_equal_one_run(tmp_path, layout, output_dtype, input_dtype):
    """threads=N runs pieces of the batch side by side: the same bits as one run, any batch, piece size, grey."""
    path = export_converter(
        tmp_path / "m.onnx", 0.1, 2, 6, input_dtype=input_dtype, output_dtype=output_dtype, layout=layout
    )
    one, sharded = I2ERuntime(path, threads=1), I2ERuntime(path, threads=3)
    assert sharded._shards == 3 and one._shards == 1
    assert sharded.session.get_session_options().intra_op_num_threads == 1
    rng = np.random.default_rng(0)
    for shape in [(1, 3, 5, 4), (2, 3, 9, 7), (7, 3, 6, 11), (5, 1, 8, 8), (3, 3, 1, 1)]:
        x = rng.integers(0, 256, shape, dtype=np.uint8)
        if input_dtype == "float32":
            x = (x / 255).astype(np.float32)
        want = one.run(x)
        for batch_size in (None, 2):
            got = sharded.run(x, batch_size=batch_size)
            assert got.shape == want.shape and np.array_equal(got, want), (shape, batch_size)
    assert sharded.run(x[0]).shape == one.run(x[0]).shape  # one [C, H, W] image


def test_sharded_run_refuses_nan_in_any_piece(tmp_path):
    rt = I2ERuntime(export_converter(tmp_path / "m.onnx", 0.1, 4, 8), threads=2)
    x = np.random.default_rng(0).random((6, 3, 4, 4), dtype=np.float32)
    x[5, 1, 2, 3] = np.nan  # in the last piece, run by a helper thread
    with pytest.raises(ValueError, match="NaN or Inf"):
        rt.run(x)
    x[5, 1, 2, 3] = -np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        rt.run(x)


@pytest.mark.parametrize("layout", ["BTCHW", "TBCHW"])
def test_sharded_outputs_reused_only_when_released(tmp_path, layout):
    """The result's memory comes back for a later batch once the caller dropped it (no zero-filled pages per
    batch); a result the caller keeps, or a view of it, is never written again. TBCHW results are the
    time-major view of a batch-major buffer (each one-image run writes its block in place)."""
    rt = I2ERuntime(export_converter(tmp_path / "m.onnx", 0.1, 4, 8, layout=layout), threads=2)
    rng = np.random.default_rng(1)
    x1, x2 = rng.random((4, 3, 6, 6), dtype=np.float32), rng.random((4, 3, 6, 6), dtype=np.float32)
    kept = rt.run(x1)
    if layout == "TBCHW":
        assert kept.shape == (8, 4, 2, 6, 6) and kept.base.shape == (4, 8, 2, 6, 6)
        assert np.array_equal(kept, I2ERuntime(rt.model_path).run(x1))
    snapshot = kept.copy()
    view = rt.run(x1)[1:]  # only a view of the second result is held
    third = rt.run(x2)
    assert np.array_equal(kept, snapshot) and np.array_equal(view, snapshot[1:])
    shared = np.shares_memory(third, kept) or np.shares_memory(third, view)  # outside an assert: pytest's
    assert not shared  # assertion rewriting would keep `third` referenced
    buffer = third if layout == "BTCHW" else third.base
    released = weakref.ref(buffer)
    del third, buffer
    again = rt.run(x2)
    assert (again if layout == "BTCHW" else again.base) is released()  # released: its memory serves the next batch


def test_threaded_converter_is_sharded(tmp_path):
    """threads=N on a converter on the CPU: one single-threaded session, N pieces at once (a classifier keeps
    ONNX Runtime's own N threads: tests/test_onnx_classifier.py)."""
    rt = I2ERuntime(export_converter(tmp_path / "c.onnx", 0.1, 4, 8), threads=3)
    assert rt._shards == 3 and rt.session.get_session_options().intra_op_num_threads == 1
