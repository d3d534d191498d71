"""The DataModule classes: two bases (images converted on the device, events read from disk), defaults
restated only where a dataset changes them, every key in the saved hyper-parameters, the YAML loader
checking keys as LightningCLI does, and one seed for every random draw."""

from __future__ import annotations

import inspect
from pathlib import Path

import lightning as L
import pytest
import torch

from i2e_lightning.data import (
    CIFAR10DataModule,
    CIFAR10DVSDataModule,
    CIFAR100DataModule,
    EventDataModule,
    EventFileDataModule,
    FashionMNISTDataModule,
    I2EDataModule,
    ImageDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
    datamodule_from_config,
)
from i2e_lightning.data.config import _init_keys, _parser
from tests.helpers.trainer import fake_trainer

IMAGE_MODULES = [FashionMNISTDataModule, MNISTDataModule, CIFAR10DataModule, CIFAR100DataModule, ImageFolderDataModule]
EVENT_MODULES = [EventFileDataModule, CIFAR10DVSDataModule]
REQUIRED = {
    ImageFolderDataModule: {"data_dir": "/nowhere"},
    CIFAR10DVSDataModule: {"data_dir": "/nowhere"},
    EventFileDataModule: {"train_path": "a.h5", "test_path": "b.h5"},
}
CONVERTER_ARGS = {"ratio", "order", "per_sample_pairs", "resolution"}


def _own_defaults(cls: type) -> dict[str, object]:
    params = inspect.signature(cls.__dict__["__init__"]).parameters if "__init__" in cls.__dict__ else {}
    return {n: p.default for n, p in params.items() if p.default is not inspect.Parameter.empty}


@pytest.mark.parametrize("cls", IMAGE_MODULES + EVENT_MODULES, ids=lambda c: c.__name__)
def test_subclasses_restate_only_the_defaults_they_change(cls: type) -> None:
    base = ImageDataModule if issubclass(cls, ImageDataModule) else EventDataModule
    inherited = {}
    for parent in reversed(base.__mro__):
        inherited.update(_own_defaults(parent))
    for klass in cls.__mro__[: cls.__mro__.index(base)]:
        for name, default in _own_defaults(klass).items():
            if name == "data_dir":
                continue  # named first everywhere, so that it may stay positional
            assert name not in inherited or inherited[name] != default, f"{klass.__name__} restates {name}={default!r}"
        if "__init__" in klass.__dict__:
            kinds = [p.kind for p in inspect.signature(klass.__init__).parameters.values()]
            assert inspect.Parameter.VAR_KEYWORD in kinds, f"{klass.__name__} must forward the rest with **kwargs"


@pytest.mark.parametrize("cls", IMAGE_MODULES + EVENT_MODULES, ids=lambda c: c.__name__)
def test_saved_hyperparameters_hold_every_key(cls: type) -> None:
    dm = cls(**REQUIRED.get(cls, {}))
    keys = _init_keys(cls)  # as jsonargparse resolves them, **kwargs followed to the bases
    assert set(dm.hparams) == set(keys)
    for base_key in ("batch_size", "num_workers", "augment", "val_size", "seed", "subset", "events_dtype"):
        assert base_key in keys
    if issubclass(cls, ImageDataModule):
        assert CONVERTER_ARGS | {"timesteps"} <= set(keys)
        assert dm.hparams["ratio"] == dm.ratio == dm.default_ratio  # resolved, not None
    else:
        assert not (CONVERTER_ARGS & set(keys)), "event DataModules take no converter arguments"
        assert dm.converter is None and not hasattr(dm, "_make_converter")
    assert dm.in_channels == 2  # facts the model is built from, there at __init__ (without reading data if fixed)
    if not isinstance(inspect.getattr_static(cls, "num_classes"), property):
        assert dm.num_classes >= 10 and len(dm.resolution) == 2


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (FashionMNISTDataModule, {"num_workers": 0, "augment": "flip", "val_size": 5000, "resolution": 32}),
        (MNISTDataModule, {"augment": "crop", "val_size": 5000, "batch_size": 128, "timesteps": 8}),
        (CIFAR10DataModule, {"augment": "full", "resolution": 128, "num_workers": 2, "val_size": 0}),
        (ImageFolderDataModule, {"resolution": 224, "resize_size": 256, "augment": "full", "seed": None}),
        (CIFAR10DVSDataModule, {"batch_size": 32, "frames": 8, "augment": "none", "num_workers": 2}),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_print_config_shows_each_datasets_real_defaults(cls: type, expected: dict) -> None:
    # the parser LightningCLI builds for `data` (what --print_config and --help print)
    cfg = _parser().parse_object({"data": {"class_path": cls.__name__, "init_args": REQUIRED.get(cls, {})}})
    shown = cfg.data.init_args.as_dict()
    assert {k: shown[k] for k in expected} == expected
    assert set(shown) == set(_init_keys(cls))


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_config_loader_checks_keys_and_types_as_the_cli(tmp_path: Path) -> None:
    ev = "data:\n  class_path: EventFileDataModule\n  init_args: {train_path: a.h5, test_path: b.h5"
    with pytest.raises(ValueError, match="unknown key 'data.init_args.ratio' for EventFileDataModule"):
        datamodule_from_config(_write(tmp_path / "e.yaml", ev + ", ratio: 0.1}\n"))
    dvs = "data:\n  class_path: CIFAR10DVSDataModule\n  init_args: {data_dir: x, timesteps: 4}\n"
    with pytest.raises(ValueError, match="unknown key 'data.init_args.timesteps'"):
        datamodule_from_config(_write(tmp_path / "d.yaml", dvs))
    fm = "data:\n  class_path: FashionMNISTDataModule\n  init_args: {timesteps: many}\n"
    with pytest.raises(ValueError, match="f.yaml.*FashionMNISTDataModule.*timesteps") as info:
        datamodule_from_config(_write(tmp_path / "f.yaml", fm))
    assert "\n" not in str(info.value)
    # values are converted as the CLI converts them
    ok = "data:\n  class_path: MNISTDataModule\n  init_args: {order: [7, 6, 5, 4, 3, 2, 1, 0], val_size: 0.25}\n"
    dm = datamodule_from_config(_write(tmp_path / "ok.yaml", ok))
    assert dm.converter.order == (7, 6, 5, 4, 3, 2, 1, 0) and dm.val_size == 0.25


def test_seed_everything_seeds_every_stream_unless_the_data_sets_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    L.seed_everything(5)
    dm = FashionMNISTDataModule(data_dir="/nowhere")
    dm.trainer = fake_trainer(training=True, rank=1)
    dm.seed_streams(1)
    seeds = {name: g.initial_seed() for name, g in dm.random_streams().items()}
    assert seeds == {"pairs": 6, "augment": 6 + 0x5EED0000, "order": 6 + 0x0DE50000}
    own = FashionMNISTDataModule(data_dir="/nowhere", seed=7)
    own.seed_streams(0)
    assert own.converter.generator.initial_seed() == 7  # the data section's seed wins
    monkeypatch.delenv("PL_GLOBAL_SEED")
    assert FashionMNISTDataModule(data_dir="/nowhere").resolved_seed == 0
    with pytest.raises(ValueError, match="seed"):
        FashionMNISTDataModule(seed="abc")  # type: ignore[arg-type]


def test_base_classes_are_abstract_about_their_data() -> None:
    with pytest.raises(NotImplementedError, match="load_source"):
        I2EDataModule().load_source("train")
    with pytest.raises(NotImplementedError, match="device_transform"):
        I2EDataModule().convert_batch(torch.zeros(1, 1, 2, 2, dtype=torch.uint8))
    assert issubclass(EventFileDataModule, EventDataModule) and issubclass(CIFAR10DataModule, ImageDataModule)
