"""The fake-data mode (official --dummy): random images through the real pipeline, configurable, repeatable."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from i2e_lightning import commands as cli
from i2e_lightning.data import FakeDataModule
from i2e_lightning.data.fake import FakeImages
from i2e_lightning.training import SpikingClassifier

ROOT = Path(__file__).resolve().parents[1]


def test_fake_images_are_repeatable_and_in_range() -> None:
    ds = FakeImages(1_281_167, (3, 224, 224), 1000)  # ImageNet's size costs nothing: drawn per index
    assert len(ds) == 1_281_167
    a, la = ds[1_281_166]
    b, lb = ds[1_281_166]
    assert a.shape == (3, 224, 224) and a.dtype == torch.uint8 and torch.equal(a, b) and la == lb
    assert 0 <= la < 1000 and not torch.equal(ds[0][0], a)
    with pytest.raises(IndexError):
        ds[1_281_167]
    with pytest.raises(ValueError, match="num_classes >= 2"):
        FakeDataModule(num_classes=1)


def test_fit_on_fake_data(fast_trainer) -> None:
    dm = FakeDataModule(num_classes=4, image_size=12, resolution=16, batch_size=4, timesteps=2, augment="full")
    module = SpikingClassifier("spiking_cnn", model_kwargs={"channels": [4, 8]}, spike_log_every_n_steps=0)
    trainer = fast_trainer()
    trainer.fit(module, datamodule=dm)
    assert module.hparams.num_classes == 4 and torch.isfinite(trainer.callback_metrics["train/loss"])


def test_dummy_config_replaces_the_data_of_a_recipe(capsys) -> None:
    args = ["fit", "--config", str(ROOT / "configs/imagenet_msresnet18_official.yaml")]
    assert cli.main([*args, "--config", str(ROOT / "configs/tests/dummy.yaml"), "--print_config"]) == 0
    out = capsys.readouterr().out
    assert "i2e_lightning.data.FakeDataModule" in out and "image_size: 224" in out and "num_classes: 1000" in out
    assert "batch_size: 128" in out  # the recipe's own settings stay
