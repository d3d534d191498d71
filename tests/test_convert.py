"""Dataset -> HDF5 conversion: exact rows, resume after an exception or a kill -9 (byte-identical), refusals, CLI."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from i2e_lightning.commands.arguments import parse
from i2e_lightning.commands.convert import build_parser, main
from i2e_lightning.converter import I2E
from i2e_lightning.events.convert import _events_to_rows, auto_batch_size, convert_dataset
from tests.helpers.run_if import RunIf

ROOT = Path(__file__).resolve().parents[1]


class Images(Dataset):
    """Deterministic random uint8 images ``[C, H, W]`` with labels; optionally fails from index ``fail_at``."""

    def __init__(self, n=300, h=9, w=11, c=3, seed=0, fail_at=None, exc=RuntimeError):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)
        self.labels = torch.randint(0, 10, (n,), generator=g)
        self.fail_at = fail_at
        self.exc = exc

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if self.fail_at is not None and i >= self.fail_at:
            raise self.exc(f"injected failure at sample {i}")
        return self.images[i], int(self.labels[i])


def reference_rows(images: torch.Tensor, conv: I2E) -> np.ndarray:
    with torch.no_grad():
        ev = conv.eval()(images)  # [T, N, 2, H, W]
    n = ev.shape[1]
    return np.packbits(ev.permute(1, 0, 2, 3, 4).reshape(n, -1).numpy(), axis=-1)


def read(path: Path):
    with h5py.File(path, "r") as f:
        return f["events"][:], f["labels"][:], dict(f.attrs)


@pytest.mark.parametrize(("h", "w"), [(1, 1), (4, 6), (5, 7), (32, 32), (3, 8)])
@pytest.mark.parametrize("t", [1, 3, 8])
def test_rows_match_reference_packing(h, w, t):
    conv = I2E(ratio=0.1, timesteps=t).eval()
    imgs = torch.randint(0, 256, (5, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(h * w))
    with torch.no_grad():
        ev = conv(imgs)
    ref = reference_rows(imgs, conv)
    for in_torch in (False, True):  # the numpy path (CPU) and the torch path (used on GPUs)
        rows, counts = _events_to_rows(ev, in_torch=in_torch)
        np.testing.assert_array_equal(rows, ref)
        np.testing.assert_array_equal(counts, ev.sum(dim=(1, 3, 4)).numpy())


def test_convert_writes_exact_rows_and_stats(tmp_path):
    ds = Images(n=130)
    conv = I2E(ratio=0.12, order=2, timesteps=5).train()
    res = convert_dataset(ds, conv, tmp_path / "a.h5", batch_size=32, split="val", source="Images")
    assert conv.training  # the caller's mode is restored; conversion used canonical pairs
    events, labels, attrs = read(tmp_path / "a.h5")
    np.testing.assert_array_equal(events, reference_rows(ds.images, conv))
    np.testing.assert_array_equal(labels, ds.labels.numpy())
    assert tuple(attrs["shape"]) == (5, 2, 9, 11) and tuple(attrs["order"]) == (2, 3, 0, 1, 4, 5, 6, 7)
    assert attrs["split"] == "val" and attrs["source"] == "Images" and bool(attrs["complete"])
    assert res.num_rows == res.converted == 130 and res.resumed_from == 0
    total_bits = np.unpackbits(events, axis=1)[:, : 5 * 2 * 9 * 11].sum()
    assert res.event_rate == pytest.approx(total_bits / (130 * 5 * 2 * 9 * 11))
    assert len(res.rate_per_timestep) == 5 and 0 < res.on_fraction < 1
    assert res.bytes_written == 130 * (events.shape[1] + 8)


def test_limit_converts_a_prefix(tmp_path):
    ds = Images(n=50)
    conv = I2E(ratio=0.2)
    convert_dataset(ds, conv, tmp_path / "l.h5", batch_size=16, limit=20)
    events, labels, attrs = read(tmp_path / "l.h5")
    assert events.shape[0] == 20 and attrs["num_samples"] == 20
    np.testing.assert_array_equal(events, reference_rows(ds.images[:20], conv))


def test_resume_after_exception_is_byte_identical(tmp_path):
    conv = I2E(ratio=0.15)
    convert_dataset(Images(n=230), conv, tmp_path / "full.h5", batch_size=40)
    broken = Images(n=230, fail_at=130)  # batches 0-2 (120 rows) get written, batch 3 fails
    with pytest.raises(RuntimeError, match="injected"):
        convert_dataset(broken, conv, tmp_path / "resumed.h5", batch_size=40)
    events, _, attrs = read(tmp_path / "resumed.h5")
    assert attrs["num_written"] == 120 and events.shape[0] == 120 and not attrs["complete"]
    res = convert_dataset(Images(n=230), conv, tmp_path / "resumed.h5", batch_size=40)
    assert res.resumed_from == 120 and res.converted == 110
    a, b = read(tmp_path / "full.h5"), read(tmp_path / "resumed.h5")
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()


KILL_SCRIPT = """
import sys, time, torch
from torch.utils.data import Dataset
from i2e_lightning.converter import I2E
from i2e_lightning.events.convert import convert_dataset

N, STOP, SLOW, BATCH = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])


class Images(Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (N, 3, 9, 11), dtype=torch.uint8, generator=g)
        self.labels = torch.randint(0, 10, (N,), generator=g)
    def __len__(self):
        return N
    def __getitem__(self, i):
        if i == STOP:
            print("reached", flush=True)
            time.sleep(120)
        if SLOW:
            time.sleep(SLOW)
        return self.images[i], int(self.labels[i])

print("started", flush=True)
convert_dataset(Images(), I2E(ratio=0.15), sys.argv[1], batch_size=BATCH)
"""


def run_and_kill(out: Path, n: int, batch: int, stop: int = -1, slow: float = 0.0, kill_after: float = 0.0) -> None:
    code = textwrap.dedent(KILL_SCRIPT)
    cmd = [sys.executable, "-c", code, str(out), str(n), str(stop), str(slow), str(batch)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        wanted = "reached" if stop >= 0 else "started"
        for line in proc.stdout:
            if line.strip() == wanted:
                break
        time.sleep(kill_after)
        proc.kill()  # SIGKILL: no cleanup at all
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()


@pytest.mark.slow
def test_resume_after_kill_is_byte_identical(tmp_path):
    n, batch = 230, 50
    conv = I2E(ratio=0.15)
    reference = Images(n=n, h=9, w=11)
    convert_dataset(reference, conv, tmp_path / "full.h5", batch_size=batch)
    run_and_kill(tmp_path / "killed.h5", n, batch, stop=170)  # killed while fetching batch 3
    events, labels, attrs = read(tmp_path / "killed.h5")
    assert attrs["num_written"] == 150 and not attrs["complete"]
    res = convert_dataset(reference, conv, tmp_path / "killed.h5", batch_size=batch)
    assert res.resumed_from == 150
    a, b = read(tmp_path / "full.h5"), read(tmp_path / "killed.h5")
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()


@pytest.mark.slow
def test_random_kills_never_lose_or_repeat_rows(tmp_path):
    n, batch = 3000, 64
    conv = I2E(ratio=0.15)
    reference = Images(n=n, h=9, w=11)
    convert_dataset(reference, conv, tmp_path / "full.h5", batch_size=batch)
    out = tmp_path / "k.h5"
    rng = random.Random(0)
    seen = []
    for _ in range(4):  # kill at random moments, mid-write included; every restart resumes
        run_and_kill(out, n, batch, slow=0.0003, kill_after=rng.uniform(0.2, 0.9))
        if not out.exists():  # killed before the file was created
            continue
        with h5py.File(out, "r") as f:
            done = int(f.attrs["num_written"])
            if bool(f.attrs["complete"]):
                break
        assert done % batch == 0
        seen.append(done)
    if not read(out)[2]["complete"]:
        convert_dataset(reference, conv, out, batch_size=batch)
    a, b = read(tmp_path / "full.h5"), read(out)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    assert seen == sorted(seen) and any(0 < s < n for s in seen)


def test_complete_file_is_not_overwritten_and_mismatch_refused(tmp_path):
    ds = Images(n=40)
    out = tmp_path / "c.h5"
    convert_dataset(ds, I2E(ratio=0.15), out, batch_size=16)
    before = out.read_bytes()
    with pytest.raises(FileExistsError, match="already complete"):
        convert_dataset(ds, I2E(ratio=0.15), out, batch_size=16)
    assert out.read_bytes() == before
    convert_dataset(ds, I2E(ratio=0.3), out, batch_size=16, overwrite=True)
    assert read(out)[2]["ratio"] == pytest.approx(0.3)
    # a partial file made with other settings is not appended to
    with pytest.raises(RuntimeError):
        convert_dataset(Images(n=40, fail_at=20), I2E(ratio=0.15), out, batch_size=16, overwrite=True)
    for conv, kw in [(I2E(ratio=0.2), {}), (I2E(ratio=0.15, order=0), {}), (I2E(ratio=0.15, timesteps=4), {})]:
        with pytest.raises(ValueError, match="other settings|uint8 rows"):
            convert_dataset(ds, conv, out, batch_size=16, **kw)
    with pytest.raises(ValueError, match="split"):
        convert_dataset(ds, I2E(ratio=0.15), out, batch_size=16, split="test")
    assert read(out)[2]["num_written"] == 16


def test_bad_arguments(tmp_path):
    ds = Images(n=4)
    with pytest.raises(ValueError, match="batch_size"):
        convert_dataset(ds, I2E(), tmp_path / "x.h5", batch_size=0)
    with pytest.raises(ValueError, match="CUDA"):
        if torch.cuda.is_available():
            raise ValueError("CUDA present: nothing to check")
        convert_dataset(ds, I2E(), tmp_path / "x.h5", device="cuda")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert_dataset(ds, I2E(), tmp_path / "missing" / "x.h5")


@RunIf(min_cuda_gpus=1)
def test_gpu_conversion_writes_the_cpu_bytes(tmp_path):
    ds = Images(n=300, h=32, w=32)
    convert_dataset(ds, I2E(ratio=0.15), tmp_path / "cpu.h5", batch_size=64, device="cpu")
    res = convert_dataset(ds, I2E(ratio=0.15), tmp_path / "gpu.h5", batch_size=64, device="cuda")
    assert res.num_rows == 300
    a, b = read(tmp_path / "cpu.h5"), read(tmp_path / "gpu.h5")
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()


FMNIST = Path("/usr/share/datasets/fashion-mnist")


@RunIf(fashion_mnist=True)
def test_cli_converts_a_config_split(tmp_path, capsys):
    cfg = tmp_path / "fm.yaml"
    cfg.write_text("data:\n  class_path: i2e_lightning.data.FashionMNISTDataModule\n  init_args:\n    batch_size: 8\n")
    out = tmp_path / "fm_test.h5"
    args = ["--config", str(cfg), "--split", "test", "--out", str(out), "--limit", "300", "--batch_size", "128"]
    assert main([*args, "--no_progress"]) == 0
    text = capsys.readouterr().out
    for word in ("mean event rate", "rate per timestep", "ON / OFF", "bytes written", "throughput"):
        assert word in text
    events, labels, attrs = read(out)
    assert events.shape == (300, 2048) and attrs["split"] == "test" and attrs["num_classes"] == 10
    assert tuple(attrs["shape"]) == (8, 2, 32, 32) and attrs["ratio"] == pytest.approx(0.15)
    # the rows are the datamodule's eval images converted with canonical pairs
    from i2e_lightning.data.config import datamodule_from_config

    dm = datamodule_from_config(cfg)
    ds = dm.split_dataset("test")
    imgs = torch.stack([ds[i][0] for i in range(300)])
    np.testing.assert_array_equal(events, reference_rows(imgs, I2E(ratio=0.15)))
    # again: complete -> refused with a hint; --overwrite -> fine
    assert main([*args, "--no_progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args[:-4], "--limit", "100", "--no_progress", "--overwrite"]) == 0
    assert read(out)[0].shape == (100, 2048)


def test_overrides_and_auto_batch(tmp_path):
    cfg = tmp_path / "fm.yaml"
    cfg.write_text("data:\n  class_path: i2e_lightning.data.FashionMNISTDataModule\n")
    base = ["--config", str(cfg), "--out", "o.h5"]
    dotted = ["--data.init_args.val_size", "0", "--data.init_args.data_dir", "/x y"]
    args = parse(build_parser(), [*base, *dotted, "--data.init_args.order", "[0,1,2,3,4,5,6,7]"])
    assert {k: args.data.init_args[k] for k in ("val_size", "data_dir", "order")} == {
        "val_size": 0,
        "data_dir": "/x y",
        "order": [0, 1, 2, 3, 4, 5, 6, 7],
    }
    # the old --set KEY=VALUE still means the same dotted override
    old = parse(build_parser(), [*base, "--set", "val_size=0", "--set", "order=[0,1,2,3,4,5,6,7]"])
    assert old.data.init_args.val_size == 0 and old.data.init_args.order == [0, 1, 2, 3, 4, 5, 6, 7]
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse(build_parser(), [*base, "--set", "val_size"])
    assert auto_batch_size((8, 2, 32, 32)) == 4096
    assert auto_batch_size((8, 2, 128, 128)) == 1024
    assert auto_batch_size((8, 2, 224, 224)) == 334


@RunIf(fashion_mnist=True)
def test_cli_unknown_override_is_named(tmp_path, capsys):
    cfg = tmp_path / "fm.yaml"
    cfg.write_text("data:\n  class_path: i2e_lightning.data.FashionMNISTDataModule\n")
    assert main(["--config", str(cfg), "--out", str(tmp_path / "o.h5"), "--data.init_args.bogus", "1"]) == 2
    assert "bogus" in capsys.readouterr().err


def test_cli_errors(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "o.h5")]) == 2
    assert "none.yaml" in capsys.readouterr().err
    cfg = tmp_path / "fm.yaml"
    cfg.write_text("data:\n  class_path: i2e_lightning.data.FashionMNISTDataModule\n")
    assert main(["--config", str(cfg), "--out", "o.h5", "--split", "dev"]) == 2
    err = capsys.readouterr().err
    assert "dev" in err and len(err.strip().splitlines()) == 1


class FakeDataModule:
    """The part of the I2EDataModule contract that `convert` uses."""

    num_classes = 10
    data_dir = "/fake"

    def __init__(self, fail_at=None):
        self.converter = I2E(ratio=0.15, timesteps=4)
        self.fail_at = fail_at

    def split_dataset(self, split):
        return Images(n=120, h=6, w=10, fail_at=self.fail_at)


def test_cli_with_a_fake_datamodule_and_ctrl_c(tmp_path, monkeypatch, capsys):
    import i2e_lightning.commands.convert as convert_command

    cfg = tmp_path / "any.yaml"
    cfg.write_text("data:\n  class_path: i2e_lightning.data.FashionMNISTDataModule\n")
    out = tmp_path / "o.h5"
    monkeypatch.setattr(convert_command, "instantiate_data", lambda parser, args: FakeDataModule())
    args = ["--config", str(cfg), "--split", "val", "--out", str(out), "--batch_size", "32", "--no_progress"]
    assert main(args) == 0
    events, labels, attrs = read(out)
    assert attrs["source"] == "FakeDataModule:/fake" and attrs["split"] == "val" and attrs["num_classes"] == 10
    np.testing.assert_array_equal(events, reference_rows(Images(n=120, h=6, w=10).images, I2E(0.15, timesteps=4)))

    class Interrupting(FakeDataModule):
        def split_dataset(self, split):
            return Images(n=120, h=6, w=10, fail_at=70, exc=KeyboardInterrupt)  # Ctrl-C while loading batch 2

    monkeypatch.setattr(convert_command, "instantiate_data", lambda parser, args: Interrupting())
    out2 = tmp_path / "i.h5"
    assert (
        main(["--config", str(cfg), "--split", "val", "--out", str(out2), "--batch_size", "32", "--no_progress"]) == 130
    )
    assert "run the same command again" in capsys.readouterr().err
    assert read(out2)[2]["num_written"] == 64


class Mixed(Dataset):
    """Grey and RGB images of one size (as an image folder gives them), then one of another size."""

    def __init__(self, bad_size_at=None):
        g = torch.Generator().manual_seed(3)
        self.rgb = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8, generator=g)
        self.bad_size_at = bad_size_at

    def __len__(self):
        return 6

    def __getitem__(self, i):
        if i == self.bad_size_at:
            return torch.zeros(3, 9, 8, dtype=torch.uint8), 0
        img = self.rgb[i]
        return (img.amax(0, keepdim=True) if i % 2 else img), i  # odd samples grey


def test_grey_and_rgb_mix_and_size_errors(tmp_path):
    conv = I2E(ratio=0.2)
    convert_dataset(Mixed(), conv, tmp_path / "m.h5", batch_size=4)
    grey_as_v = torch.stack([Mixed()[i][0].expand(3, -1, -1) for i in range(6)])
    np.testing.assert_array_equal(read(tmp_path / "m.h5")[0], reference_rows(grey_as_v, conv))
    with pytest.raises(ValueError, match="differ in size"):
        convert_dataset(Mixed(bad_size_at=2), conv, tmp_path / "b.h5", batch_size=4)
    with pytest.raises(ValueError, match="differ in size"):
        convert_dataset(Mixed(bad_size_at=5), conv, tmp_path / "c.h5", batch_size=4)


@pytest.mark.parametrize("fmt,name", [("parquet", "fm.parquet"), ("npz", "fm_npz"), ("h5", "fm.h5")])
def test_cli_writes_every_format_the_project_reads(tmp_path, capsys, fmt, name):
    from i2e_lightning.events import EventFileDataset

    cfg = tmp_path / "fm.yaml"
    cfg.write_text("data:\n  class_path: i2e_lightning.data.FashionMNISTDataModule\n  init_args:\n    timesteps: 2\n")
    out = tmp_path / name
    base = ["--config", str(cfg), "--split", "test", "--limit", "40", "--no_progress"]
    assert main([*base, "--out", str(tmp_path / "ref.h5")]) == 0
    assert main([*base, "--out", str(out), "--format", fmt]) == 0
    assert f"format              {fmt}" in capsys.readouterr().out or fmt == "h5"
    assert not (tmp_path / f"{name}.convert.h5").exists()  # the intermediate file is gone
    ref, got = EventFileDataset(tmp_path / "ref.h5"), EventFileDataset(out)
    assert got.kind == fmt.replace("h5", "hdf5") and len(got) == 40 and got.shape == (2, 2, 32, 32)
    pairs = sorted((int(y), x.numpy().tobytes()) for x, y in (got[i] for i in range(40)))
    assert pairs == sorted((int(y), x.numpy().tobytes()) for x, y in (ref[i] for i in range(40)))
    if fmt != "h5":  # the suffix picks the format too; an existing output needs --overwrite
        assert main([*base, "--out", str(out)]) == 2
        assert "--overwrite" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "x.tfrecord")]) == 2
    assert "pass --format" in capsys.readouterr().err
