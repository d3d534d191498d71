"""ImageNet Baseline-II: torchvision's RandomResizedCrop over the whole image, as the official ``utils.py``
(``PILToTensor, RandomResizedCrop(224), RandomHorizontalFlip``), against the rule written out in
tests/helpers/official.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from i2e_lightning.data import ImageFolderDataModule
from i2e_lightning.data.transforms import random_resized_crop, random_resized_crop_boxes
from i2e_lightning.training import SpikingClassifier
from tests.helpers.official import tv_random_resized_crop_params, tv_resize_uint8, tv_resized_crop_uint8
from tests.helpers.run_if import RunIf
from tests.helpers.trainer import fake_trainer


def _ks(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    grid = torch.cat([a, b]).unique().double()
    cdf_a = torch.searchsorted(a.double().sort().values, grid, right=True) / len(a)
    cdf_b = torch.searchsorted(b.double().sort().values, grid, right=True) / len(b)
    return float((cdf_a - cdf_b).abs().max())


@pytest.mark.parametrize("size", [(37, 300), (300, 301), (500, 120), (5, 7)])
def test_boxes_follow_torchvision_distribution(size: tuple[int, int]) -> None:
    n = 4000
    ours = random_resized_crop_boxes([size] * n, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    official = torch.tensor([tv_random_resized_crop_params(*size, g) for _ in range(n)])
    h, w = size
    assert bool((ours[:, 2:] >= 1).all()) and bool((ours[:, 0] + ours[:, 2] <= h).all())
    assert bool((ours[:, 1] + ours[:, 3] <= w).all()) and bool((ours[:, :2] >= 0).all())
    # same fallback frequency (the centred fallback box of the written-out rule)
    fallback = torch.tensor(tv_random_resized_crop_params(h, w, torch.Generator(), scale=(2.0, 2.0)))
    rate_ours = (ours == fallback).all(1).double().mean()
    rate_official = (official == fallback).all(1).double().mean()
    assert abs(rate_ours - rate_official) < 0.03, (rate_ours, rate_official)
    # top, left, height, width: the same distributions (KS critical value for p = 1e-4 at n = 4000 is 0.048)
    for k, name in enumerate(("top", "left", "height", "width")):
        assert _ks(ours[:, k], official[:, k]) < 0.05, name
    assert _ks(ours[:, 2] * ours[:, 3], official[:, 2] * official[:, 3]) < 0.05, "area"


@pytest.mark.parametrize(
    ("size", "box"),
    [((3, 400), (0, 198, 3, 4)), ((40, 1), (19, 0, 1, 1)), ((1, 1), (0, 0, 1, 1)), ((2, 90), (0, 43, 2, 3))],
)
def test_boxes_of_degenerate_images_are_the_fallback(size: tuple[int, int], box: tuple[int, ...]) -> None:
    # no try fits: torchvision crops the whole image to the clamped aspect ratio, centred
    assert tv_random_resized_crop_params(*size, torch.Generator().manual_seed(0)) == box
    ours = random_resized_crop_boxes([size] * 50, torch.Generator().manual_seed(0))
    assert ours.tolist() == [list(box)] * 50


def test_crop_is_the_slice_resized_as_torchvision_on_odd_images() -> None:
    g = torch.Generator().manual_seed(5)
    shapes = [(3, 5, 7), (3, 40, 1), (3, 1, 1), (3, 301, 97), (3, 224, 224), (3, 17, 600)]
    images = [torch.randint(0, 256, s, dtype=torch.uint8, generator=g) for s in shapes] * 3
    boxes = random_resized_crop_boxes([im.shape[-2:] for im in images], torch.Generator().manual_seed(9))
    out = random_resized_crop(images, 224, torch.Generator().manual_seed(9))  # the same draws
    assert out.shape == (len(images), 3, 224, 224) and out.dtype == torch.uint8
    for im, box, o in zip(images, boxes.tolist(), out, strict=True):
        assert torch.equal(o, tv_resized_crop_uint8(im, tuple(box), (224, 224)))
    # grayscale (one channel) and a non-square output size
    grey = [torch.randint(0, 256, (1, 30, 17), dtype=torch.uint8, generator=g) for _ in range(4)]
    boxes = random_resized_crop_boxes([im.shape[-2:] for im in grey], torch.Generator().manual_seed(3))
    out = random_resized_crop(grey, (12, 9), torch.Generator().manual_seed(3))
    assert out.shape == (4, 1, 12, 9)
    for im, box, o in zip(grey, boxes.tolist(), out, strict=True):
        assert torch.equal(o, tv_resized_crop_uint8(im, tuple(box), (12, 9)))
    # a stacked batch is a batch of whole images of one size: the same boxes as the list of its images
    batch = torch.stack([images[3], images[3]])
    assert torch.equal(
        random_resized_crop(batch, 20, torch.Generator().manual_seed(4)),
        random_resized_crop(list(batch), 20, torch.Generator().manual_seed(4)),
    )


def test_crop_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="same channels"):
        random_resized_crop([torch.zeros(1, 4, 4, dtype=torch.uint8), torch.zeros(3, 4, 4, dtype=torch.uint8)], 2, None)
    with pytest.raises(ValueError, match="image 1 of the sequence must be a uint8 tensor"):
        random_resized_crop([torch.zeros(3, 4, 4, dtype=torch.uint8), torch.zeros(3, 4, 4)], 2, None)
    with pytest.raises(ValueError, match="no images"):
        random_resized_crop([], 2, None)
    with pytest.raises(ValueError, match="at least 1x1"):
        random_resized_crop_boxes([(0, 5)], None)


# -- through the DataModule -------------------------------------------------------------------

RED = (255, 0, 0)


def _folder(root: Path) -> Path:
    """Wide 60x400 images whose left 120 columns are pure red and the rest never is; plus odd shapes."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("a", "b"):
            d = root / split / c
            d.mkdir(parents=True)
            wide = rng.integers(0, 256, (60, 400, 3), dtype=np.uint8)
            wide[..., 2] = np.maximum(wide[..., 2], 1)  # no pure red outside the strip
            wide[:, :120] = RED
            Image.fromarray(wide).save(d / "wide.png")
            Image.fromarray(rng.integers(0, 256, (9, 1), dtype=np.uint8), "L").save(d / "thin.png")
            Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)).save(d / "tiny.png")
    return root


def test_box_is_drawn_over_the_whole_image(tmp_path: Path) -> None:
    dm = ImageFolderDataModule(data_dir=str(_folder(tmp_path)), resolution=16, resize_size=20, num_workers=0)
    dm.setup("fit")
    ds = dm.loader_dataset("train")
    wide = next(im for im, _ in (ds[i] for i in range(len(ds))) if im.shape[-1] == 400)
    assert wide.shape == (3, 60, 400)
    out = dm.device_transform([wide] * 200, train=True)
    assert out.shape == (200, 3, 16, 16)
    all_red = (out == torch.tensor(RED, dtype=torch.uint8).view(3, 1, 1)).all(1).flatten(1).all(1)
    # a box inside the left strip occurs; the old view (shorter side 256, centre 256x256: columns 170-230
    # of the original) never reached it
    assert 0 < int(all_red.sum()) < 200
    # the stream is the DataModule's generator: the same seed draws the same crops
    dm2 = ImageFolderDataModule(data_dir=str(tmp_path), resolution=16, resize_size=20, num_workers=0)
    assert torch.equal(dm2.device_transform([wide] * 200, train=True), out)


def test_train_max_side_caps_what_the_workers_ship(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    dm = ImageFolderDataModule(data_dir=str(root), resolution=16, resize_size=20, num_workers=0, train_max_side=100)
    ds = dm.loader_dataset("train")
    shapes = sorted(tuple(ds[i][0].shape) for i in range(len(ds)))
    assert shapes == [(3, 5, 7), (3, 5, 7), (3, 9, 1), (3, 9, 1), (3, 15, 100), (3, 15, 100)]
    with Image.open(root / "train" / "a" / "wide.png") as im:
        raw = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)[None]
    assert torch.equal(ds[2][0], tv_resize_uint8(raw, (15, 100))[0])  # a/thin, a/tiny, a/wide, b/...
    with pytest.raises(ValueError, match="train_max_side must be a positive integer or null"):
        ImageFolderDataModule(data_dir=str(root), train_max_side=0)


def test_baseline_ii_resumes_mid_epoch_exactly(tmp_path: Path) -> None:
    root = _folder(tmp_path)

    def make() -> ImageFolderDataModule:
        dm = ImageFolderDataModule(
            data_dir=str(root), resolution=16, resize_size=20, batch_size=2, num_workers=0, timesteps=2, seed=3
        )
        dm.trainer = fake_trainer(training=True)
        dm.setup("fit")
        return dm

    def batches(dm: ImageFolderDataModule, it, n: int) -> list[torch.Tensor]:
        return [dm.on_after_batch_transfer(next(it), 0)[0] for _ in range(n)]

    dm = make()
    it = iter(dm.train_dataloader())
    batches(dm, it, 1)
    state = dm.state_dict()
    rest = batches(dm, it, 2)  # 6 images, 3 batches
    again = make()
    again.load_state_dict(state)
    resumed = batches(again, iter(again.train_dataloader()), 2)
    assert all(torch.equal(a, b) for a, b in zip(rest, resumed, strict=True))
    # the crop boxes are part of that state: without the saved augment stream the crops differ
    other = make()
    other.load_state_dict({**state, "generators": {k: v for k, v in state["generators"].items() if k != "augment"}})
    assert not torch.equal(rest[0], batches(other, iter(other.train_dataloader()), 1)[0])


def test_tiny_fit_on_an_image_folder(tmp_path: Path, fast_trainer) -> None:
    dm = ImageFolderDataModule(
        data_dir=str(_folder(tmp_path / "data")), resolution=16, resize_size=20, batch_size=3, timesteps=2,
        num_workers=1, persistent_workers=False,
    )  # fmt: skip
    module = SpikingClassifier("spiking_cnn", model_kwargs={"channels": [4, 8]}, spike_log_every_n_steps=0)
    trainer = fast_trainer()
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["train/loss"])


@RunIf(min_cuda_gpus=1)
def test_crop_on_cuda_equals_cpu() -> None:
    # Lightning moves the list of whole images to the GPU; the crops are resized by the CPU kernel either way
    g = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g) for h, w in [(300, 97), (5, 7)] * 8]
    cpu = random_resized_crop(images, 224, torch.Generator().manual_seed(1))
    cuda = random_resized_crop([im.cuda() for im in images], 224, torch.Generator().manual_seed(1))
    assert cuda.device.type == "cuda" and torch.equal(cuda.cpu(), cpu)


def test_benchmark_runs_tiny(tmp_path: Path) -> None:
    import json

    from benchmarks import random_resized_crop as bench_rrc

    out = tmp_path / "rrc.json"
    assert (
        bench_rrc.main(["--batch", "4", "--resolution", "16", "--repeats", "1", "--threads", "1", "--json", str(out)])
        == 0
    )
    data = json.loads(out.read_text())
    assert data["batch"] == 4 and data["median_whole_ms"] > 0 and data["whole_over_view"] > 0
