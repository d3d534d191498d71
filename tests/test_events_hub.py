"""The published datasets by name (hf://CONFIG/SPLIT) from a Hugging Face cache built here from parquet files
we write: offline (HF_HUB_OFFLINE=1), nothing fetched; and EventFileDataset's transform / target_transform."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("huggingface_hub")  # the optional `hub` extra (installed by `make test`)
import huggingface_hub.constants  # noqa: E402

from i2e_lightning.events import EventFileDataset, hub_parquet_files, parse_hub_path  # noqa: E402
from i2e_lightning.events.hf import write_parquet  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
CARD = """---
license: mit
configs:
- config_name: I2E-Tiny
  data_files:
  - split: train
    path: I2E-Tiny/train-*
  - split: validation
    path: I2E-Tiny/validation-*
- config_name: I2E-Other
  data_files:
  - split: train
    path: I2E-Other/train-*
---
# a card written by the test
"""


def _samples(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 3, 2, 5, 4)) < 0.3, rng.integers(0, 4, n)


def make_hub_cache(root: Path, repo_id: str = "UESTC-BICS/I2E", card: str | None = CARD) -> dict[str, tuple]:
    """The Hugging Face cache layout (refs/main -> snapshots/<commit>/...) holding shards we write."""
    repo_dir = root / ("datasets--" + repo_id.replace("/", "--"))
    snap = repo_dir / "snapshots" / COMMIT
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    snap.mkdir(parents=True)
    if card is not None:
        (snap / "README.md").write_text(card)
    written = {}
    for name, n, seed in [
        ("train-00000-of-00002", 5, 0),
        ("train-00001-of-00002", 4, 1),
        ("validation-00000-of-00001", 3, 2),
    ]:
        events, labels = _samples(n, seed)
        (snap / "I2E-Tiny").mkdir(exist_ok=True)
        write_parquet(snap / "I2E-Tiny" / f"{name}.parquet", events, labels)
        written[name] = (events, labels)
    return written


@pytest.fixture
def offline(monkeypatch):
    # what HF_HUB_OFFLINE=1 sets when huggingface_hub is imported; the subprocess test sets the variable itself
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_parse_hub_path():
    assert parse_hub_path("hf://I2E-CIFAR10/train") == ("UESTC-BICS/I2E", "I2E-CIFAR10", "train")
    assert parse_hub_path("hf://me/mine/I2E-X/validation").repo_id == "me/mine"
    assert parse_hub_path("data/train.parquet") is None
    with pytest.raises(ValueError, match="hf://CONFIG/SPLIT"):
        parse_hub_path("hf://only-one")


def test_config_and_split_resolve_to_the_cached_shards(tmp_path, offline):
    written = make_hub_cache(tmp_path)
    files = hub_parquet_files("I2E-Tiny", "train", cache_dir=tmp_path)
    assert [f.name for f in files] == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    val = hub_parquet_files("I2E-Tiny", "val", cache_dir=tmp_path)  # "val" / "test" mean "validation"
    assert [f.name for f in val] == ["validation-00000-of-00001.parquet"]

    ds = EventFileDataset("hf://I2E-Tiny/train", cache_dir=tmp_path)
    assert ds.kind == "parquet" and len(ds) == 9 and ds.shape == (3, 2, 5, 4)
    events = np.concatenate([written["train-00000-of-00002"][0], written["train-00001-of-00002"][0]])
    labels = np.concatenate([written["train-00000-of-00002"][1], written["train-00001-of-00002"][1]])
    for i in (0, 4, 5, 8):
        ev, label = ds[i]
        assert torch.equal(ev, torch.from_numpy(events[i])) and label == labels[i]


def test_unknown_config_split_and_missing_cache_are_one_line(tmp_path, offline):
    make_hub_cache(tmp_path)
    with pytest.raises(FileNotFoundError, match="no config 'I2E-Nope'; its configs are: I2E-Other, I2E-Tiny"):
        hub_parquet_files("I2E-Nope", "train", cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="no split 'extra'; its splits are: train, validation"):
        hub_parquet_files("I2E-Tiny", "extra", cache_dir=tmp_path)
    # listed in the card but never fetched into this cache
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE=1") as info:
        hub_parquet_files("I2E-Other", "train", cache_dir=tmp_path)
    assert "\n" not in str(info.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="is not in the Hugging Face cache") as info:
        EventFileDataset("hf://I2E-Tiny/train", cache_dir=empty)
    assert "\n" not in str(info.value)


def test_a_dataset_without_a_card_table_uses_the_hub_layout(tmp_path, offline):
    make_hub_cache(tmp_path, repo_id="someone/events", card="# no front matter\n")
    files = hub_parquet_files("I2E-Tiny", "validation", repo_id="someone/events", cache_dir=tmp_path)
    assert [f.name for f in files] == ["validation-00000-of-00001.parquet"]


def test_missing_extra_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match=r"pip install 'i2e_lightning\[hub\]'"):
        hub_parquet_files("I2E-Tiny")


@pytest.mark.slow
def test_offline_environment_in_a_fresh_process(tmp_path):
    # the real switch: HF_HUB_OFFLINE=1 and HF_HUB_CACHE in the environment, read when huggingface_hub loads
    make_hub_cache(tmp_path)
    code = textwrap.dedent(
        """
        from i2e_lightning.events import EventFileDataset
        ds = EventFileDataset("hf://UESTC-BICS/I2E/I2E-Tiny/validation")
        print(len(ds), ds.shape, ds.num_classes >= 1)
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path), "HF_HOME": str(tmp_path / "home")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["3", "(3,", "2,", "5,", "4)", "True"]


def test_transform_and_target_transform(tmp_path):
    events, labels = _samples(6, 3)
    write_parquet(tmp_path / "s.parquet", events, labels)
    ds = EventFileDataset(
        tmp_path / "s.parquet", transform=lambda ev: ev.float().sum(0), target_transform=lambda y: f"class{y}"
    )
    ev, label = ds[2]
    assert ev.shape == (2, 5, 4) and ev.dtype == torch.float32 and label == f"class{labels[2]}"
    assert torch.equal(ev, torch.from_numpy(events[2]).float().sum(0))
    batch = ds.__getitems__([0, 1])
    assert [b[1] for b in batch] == [f"class{labels[0]}", f"class{labels[1]}"]
    with pytest.raises(ValueError, match="packed=False"):
        EventFileDataset(tmp_path / "s.parquet", packed=True, transform=lambda ev: ev)
    # packed rows still get the target transform
    packed = EventFileDataset(tmp_path / "s.parquet", packed=True, target_transform=lambda y: y + 100)
    assert packed[1][1] == labels[1] + 100


def test_event_datamodule_takes_hub_names(tmp_path, offline, monkeypatch):
    from i2e_lightning.data import EventFileDataModule

    make_hub_cache(tmp_path)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    dm = EventFileDataModule(train_path="hf://I2E-Tiny/train", test_path="hf://I2E-Tiny/validation", num_workers=0)
    assert dm.shape == (3, 2, 5, 4) and len(dm.event_dataset("train")) == 9
    assert len(dm.event_dataset("test")) == 3


@pytest.mark.parametrize("fmt", ["parquet", "npz"])
def test_every_format_written_from_an_event_file_reads_back_the_same(tmp_path, fmt):
    from i2e_lightning.events import EventFileMeta, EventH5Writer
    from i2e_lightning.events.formats import write_format

    events, labels = _samples(11, 5)
    labels[3] = 7  # a label folder past a gap, for npz
    h5 = tmp_path / "e.h5"
    meta = EventFileMeta(
        shape=(3, 2, 5, 4),
        ratio=0.15,
        order=(4, 5, 6, 7, 0, 1, 2, 3),
        resolution=(5, 4),
        source="unit",
        split="train",
        num_samples=11,
    )
    with EventH5Writer(h5, meta) as w:
        w.append(np.packbits(events.reshape(11, -1), axis=-1), labels)
        w.finish()
    seen = []
    out = write_format(h5, tmp_path / f"out.{fmt}", fmt, on_rows=seen.append)
    assert sum(seen) == 11 and not (tmp_path / f"out.{fmt}.partial").exists()
    ds = EventFileDataset(out)
    assert ds.kind == fmt and len(ds) == 11 and ds.shape == (3, 2, 5, 4)
    pairs = sorted((int(lbl), ev.numpy().tobytes()) for ev, lbl in (ds[i] for i in range(11)))
    want = sorted((int(lbl), ev.tobytes()) for ev, lbl in zip(events, labels, strict=True))
    assert pairs == want  # same samples with the same labels (npz folders are read in label order)
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_format(h5, out, fmt)
    write_format(h5, out, fmt, overwrite=True)
    with pytest.raises(ValueError, match="format must be one of h5, parquet, npz"):
        write_format(h5, tmp_path / "x", "tfrecord")
