"""SpikingClassifier: construction, schedule, steps and logged metrics, init_from (ours / official), errors."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger

from i2e_lightning import models
from i2e_lightning.data import FashionMNISTDataModule
from i2e_lightning.training import SpikingClassifier, load_classifier, load_init_weights, read_checkpoint
from i2e_lightning.training.module import cosine_with_warmup
from tests.helpers.datasets import make_idx_dir
from tests.helpers.trainer import fast_trainer

SMALL = {"channels": [4, 8]}


def _events(t: int = 2, b: int = 3, h: int = 16, w: int = 16) -> torch.Tensor:
    return (torch.rand(t, b, 2, h, w) < 0.2).float()


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_idx_dir(tmp_path_factory.mktemp("toy_fmnist"))


def _trainer(tmp_path: Path, **kw) -> L.Trainer:
    # the shared fast trainer, a batch longer, logging every step and with Lightning's checkpointing on
    defaults = {"limit_train_batches": 3, "limit_val_batches": 2, "log_every_n_steps": 1, "enable_checkpointing": True}
    return fast_trainer(tmp_path, **{**defaults, **kw})


@pytest.mark.parametrize(
    ("total", "warmup", "floor"),
    [(10, 0, 5e-4), (7, 2, 0.0), (1, 0, 0.01), (100, 1, 1e-3)],
)
def test_cosine_schedule_ends_at_floor(total: int, warmup: int, floor: float) -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=2.0)
    sched = cosine_with_warmup(opt, total, warmup=warmup, eta_min=2.0 * floor, start_factor=0.1)
    lrs = [opt.param_groups[0]["lr"] / 2.0]  # as a fraction of the peak lr
    for _ in range(total + 5):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"] / 2.0)
    assert lrs[total] == pytest.approx(floor, abs=1e-12)
    assert lrs[total + 5] == pytest.approx(floor, abs=1e-12)  # held after the planned steps
    values = lrs[warmup : total + 1]
    assert all(a >= b - 1e-12 for a, b in zip(values, values[1:], strict=False))  # monotone decay
    if warmup > 0:  # warm-up from start * lr to the peak, reached when it ends
        assert lrs[0] == pytest.approx(0.1) and lrs[warmup] == pytest.approx(1.0)
        assert lrs[0] < lrs[1]
    else:  # no warm-up: the first step is at the peak
        assert lrs[0] == pytest.approx(1.0)


@pytest.mark.parametrize(("t", "b", "h", "w", "k"), [(1, 1, 8, 8, 2), (2, 3, 16, 12, 10), (4, 2, 17, 9, 7)])
def test_forward_and_predict_shapes(t: int, b: int, h: int, w: int, k: int) -> None:
    module = SpikingClassifier(
        "spiking_cnn", num_classes=k, in_channels=2, model_kwargs={**SMALL, "input_size": [h, w]}
    )
    ev = _events(t, b, h, w)
    assert module(ev).shape == (b, k)
    out = module.predict_step((ev, torch.zeros(b, dtype=torch.long)), 0)
    assert out["pred"].shape == (b,) and out["probs"].shape == (b, k)
    assert torch.allclose(out["probs"].sum(1), torch.ones(b), atol=1e-5)
    assert torch.equal(out["pred"], out["probs"].argmax(1))


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"arch": "no_such_net"}, "unknown model arch"),
        ({"optimizer": "lamb"}, "optimizer"),
        ({"lr": 0.01, "eta_min": 0.1}, "eta_min"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"num_classes": 1}, "num_classes"),
        ({"scheduler_interval": "batch"}, "scheduler_interval"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        SpikingClassifier(**kwargs)


def test_network_missing_gives_clear_error() -> None:
    module = SpikingClassifier("spiking_cnn")  # num_classes left to the datamodule
    with pytest.raises(RuntimeError, match="not built yet"):
        module(_events())


def test_bad_batch_shape_is_named() -> None:
    module = SpikingClassifier("spiking_cnn", num_classes=10, in_channels=2, model_kwargs=SMALL)
    with pytest.raises(ValueError, match="T, B, C, H, W"):
        module.training_step((torch.zeros(3, 2, 16, 16), torch.zeros(3, dtype=torch.long)), 0)


@pytest.mark.parametrize(("optimizer", "interval"), [("sgd", "epoch"), ("adamw", "step")])
def test_fit_logs_metrics_and_resolves_classes(tmp_path: Path, idx_dir: Path, optimizer: str, interval: str) -> None:
    dm = FashionMNISTDataModule(data_dir=str(idx_dir), batch_size=8, val_size=32, timesteps=2, subset=64)
    module = SpikingClassifier(
        "spiking_cnn",
        model_kwargs=SMALL,
        optimizer=optimizer,
        lr=0.05 if optimizer == "sgd" else 1e-3,
        eta_min=1e-4,
        scheduler_interval=interval,
        spike_log_every_n_steps=1,
    )
    trainer = _trainer(tmp_path, max_epochs=2)
    trainer.fit(module, datamodule=dm)
    assert module.hparams.num_classes == 10 and module.hparams.in_channels == 2
    m = trainer.callback_metrics
    for key in ("train/loss", "train/acc", "val/loss", "val/acc", "val/acc_top5"):
        assert key in m and torch.isfinite(m[key]), key
    assert 0.0 <= float(m["val/acc"]) <= float(m["val/acc_top5"]) <= 1.0
    spikes = [k for k in m if "/spikes/" in k]
    assert spikes and all(0.0 <= float(m[k]) <= 1.0 for k in spikes)
    # train and val rates in their own columns, one per layer each
    train_layers = {k.removeprefix("train/spikes/") for k in spikes if k.startswith("train/spikes/")}
    val_layers = {k.removeprefix("val/spikes/") for k in spikes if k.startswith("val/spikes/")}
    assert train_layers and train_layers == val_layers and len(spikes) == 2 * len(train_layers)
    opt = trainer.optimizers[0]
    assert type(opt).__name__ == {"sgd": "SGD", "adamw": "AdamW"}[optimizer]
    # cosine decay: at the end of the planned run the lr reaches eta_min
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4, rel=1e-6)
    trainer.test(module, datamodule=dm)
    assert "test/acc" in trainer.callback_metrics


def test_checkpoint_roundtrip_and_init_from_replaces_head(tmp_path: Path, idx_dir: Path) -> None:
    dm = FashionMNISTDataModule(data_dir=str(idx_dir), batch_size=8, val_size=16, timesteps=2, subset=32)
    module = SpikingClassifier("spiking_cnn", model_kwargs=SMALL)
    trainer = _trainer(tmp_path, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(module, datamodule=dm)
    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)

    # load_from_checkpoint rebuilds the same network from the stored (resolved) hyper-parameters
    loaded = load_classifier(ckpt)
    ev = _events(2, 4, 32, 32)
    module.eval()
    assert torch.allclose(loaded(ev), module(ev), atol=1e-6)

    # same class count: all weights copied
    same = SpikingClassifier("spiking_cnn", num_classes=10, in_channels=2, model_kwargs=SMALL)
    assert load_init_weights(same.net, str(ckpt), "spiking_cnn", 10) == "lightning"
    for (k, a), b in zip(module.net.state_dict().items(), same.net.state_dict().values(), strict=True):
        assert torch.equal(a, b), k

    # other class count: the head is new, the rest copied
    five = SpikingClassifier("spiking_cnn", num_classes=5, in_channels=2, model_kwargs=SMALL)
    load_init_weights(five.net, str(ckpt), "spiking_cnn", 5)
    src, dst = module.net.state_dict(), five.net.state_dict()
    changed = [k for k in dst if src[k].shape != dst[k].shape]
    assert changed, "the head should have been replaced"
    for k in dst:
        if k not in changed:
            assert torch.equal(src[k], dst[k]), k
    assert five(ev).shape == (4, 5)

    with pytest.raises(ValueError, match="ms_resnet18"):
        load_init_weights(models.ms_resnet18(num_classes=10), str(ckpt), "ms_resnet18", 10)


@pytest.mark.parametrize(
    ("src_classes", "dst_classes", "prefix"), [(10, 10, "module."), (100, 7, "module."), (10, 3, "")]
)
def test_init_from_official_checkpoint(tmp_path: Path, src_classes: int, dst_classes: int, prefix: str) -> None:
    from i2e_lightning.models.official import to_official_state_dict

    torch.manual_seed(0)
    src = models.ms_resnet18(num_classes=src_classes)
    state = {prefix + k: v for k, v in to_official_state_dict(src).items()}
    state[prefix + "i2e.weight"] = torch.zeros(8, 1, 3, 3)  # the converter's kernels, ignored
    path = tmp_path / "official.pth"
    torch.save({"state_dict": state, "epoch": 255}, path)

    module = SpikingClassifier("ms_resnet18", num_classes=dst_classes, in_channels=2, init_from=str(path))
    module.setup("validate")  # loads init_from
    got, want = module.net.state_dict(), src.state_dict()
    for k, v in got.items():
        if want[k].shape == v.shape and not (k.startswith("fc.") and src_classes != dst_classes):
            assert torch.equal(v, want[k]), k
    assert got["fc.weight"].shape[0] == dst_classes


def test_init_from_mismatched_architecture_names_keys(tmp_path: Path) -> None:
    state = models.ms_resnet18(num_classes=10).state_dict()
    path = tmp_path / "official.pth"
    torch.save({"state_dict": state}, path)
    module = SpikingClassifier("ms_resnet34", num_classes=10, in_channels=2, init_from=str(path))
    with pytest.raises(ValueError, match="layer"):
        module.setup("fit")


@pytest.mark.parametrize("cut", [0, 100, 0.5])
def test_truncated_checkpoint_error_names_file(tmp_path: Path, cut: float) -> None:
    module = SpikingClassifier("spiking_cnn", num_classes=10, in_channels=2, model_kwargs=SMALL)
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": module.state_dict(), "pytorch-lightning_version": "2"}, good)
    data = good.read_bytes()
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(data[: int(cut * len(data)) if isinstance(cut, float) else cut])
    with pytest.raises(ValueError, match=r"bad\.ckpt"):
        read_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        read_checkpoint(tmp_path / "nope.ckpt")
    assert "state_dict" in read_checkpoint(good)


def test_bf16_mixed_precision_fit(tmp_path: Path, idx_dir: Path) -> None:
    # mixed precision comes from the trainer; the loss is computed in float32 on bf16 logits
    dm = FashionMNISTDataModule(data_dir=str(idx_dir), batch_size=8, val_size=16, timesteps=2, subset=32)
    module = SpikingClassifier("spiking_cnn", model_kwargs=SMALL, spike_log_every_n_steps=0)
    trainer = _trainer(
        tmp_path,
        precision="bf16-mixed",
        limit_train_batches=2,
        limit_val_batches=1,
        logger=CSVLogger(tmp_path),
        log_every_n_steps=1,
        callbacks=[LearningRateMonitor()],
    )
    trainer.fit(module, datamodule=dm)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    # the lr reaches the logger through Lightning's LearningRateMonitor, one column per parameter group
    logged = (Path(trainer.logger.log_dir) / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/lr/weights", "train/lr/norms_biases"} <= set(logged)
    assert not any("spikes/" in k for k in trainer.callback_metrics)  # turned off
    assert all(p.dtype == torch.float32 for p in module.parameters())


@pytest.mark.slow
def test_compile_keeps_checkpoint_names(tmp_path: Path, idx_dir: Path) -> None:
    dm = FashionMNISTDataModule(data_dir=str(idx_dir), batch_size=8, val_size=16, timesteps=2, subset=32)
    module = SpikingClassifier("spiking_cnn", model_kwargs=SMALL, compile=True)
    trainer = _trainer(tmp_path, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(module, datamodule=dm)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    keys = list(module.state_dict())
    assert keys and not any("_orig_mod" in k for k in keys)
    ckpt = tmp_path / "c.ckpt"
    trainer.save_checkpoint(ckpt)
    plain = load_classifier(ckpt)  # loads into an uncompiled module
    assert plain(_events(2, 2, 32, 32)).shape == (2, 10)
