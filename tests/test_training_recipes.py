"""The official training recipe options: mixup/cutmix, random temporal deletion, step LR (tiny data).

Expected values are torchvision's / timm's rules written out here, not the project's code.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from i2e_lightning.data import FashionMNISTDataModule
from i2e_lightning.training import SpikingClassifier
from i2e_lightning.training.event_mix import cutmix, mixup, mixup_or_cutmix, random_temporal_deletion
from tests.helpers.datasets import make_idx_dir
from tests.helpers.trainer import fast_trainer

SMALL = {"channels": [4, 8]}


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_idx_dir(tmp_path_factory.mktemp("toy_fmnist_recipes"))


def _events(t: int = 6, b: int = 5, h: int = 9, w: int = 11, seed: int = 0) -> torch.Tensor:
    return (torch.rand(t, b, 2, h, w, generator=torch.Generator().manual_seed(seed)) < 0.3).float()


@pytest.mark.parametrize("keep", [0, 1, 3, 6, 9])
def test_random_temporal_deletion_keeps_steps_in_order(keep: int) -> None:
    x = torch.arange(6.0).view(6, 1, 1, 1, 1).expand(6, 2, 2, 3, 3)
    out = random_temporal_deletion(x, keep, torch.Generator().manual_seed(keep))
    # official: np.random.choice(T, t_train, replace=False), sorted; off when t_train is 0 or >= T
    if keep in (0, 6, 9):
        assert out is x
        return
    steps = out[:, 0, 0, 0, 0].tolist()
    assert len(steps) == keep and steps == sorted(set(steps)) and set(steps) <= set(range(6))
    draws = {tuple(random_temporal_deletion(x, keep)[:, 0, 0, 0, 0].tolist()) for _ in range(40)}
    assert len(draws) > 1  # a new draw per batch


def test_mixup_is_torchvision_mixup() -> None:
    x, labels = _events(), torch.tensor([0, 1, 2, 3, 1])
    mixed, target = mixup(x, labels, 4, torch.Generator().manual_seed(3))
    lam = float(torch.rand((), generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    # v2.MixUp: output = x.roll(1, batch) * (1 - lam) + x * lam; labels the same on one-hot targets
    assert torch.allclose(mixed, x.roll(1, 1) * (1 - lam) + x * lam)
    one_hot = torch.eye(4)[labels]
    assert torch.allclose(target, one_hot.roll(1, 0) * (1 - lam) + one_hot * lam)
    assert torch.allclose(target.sum(1), torch.ones(5))


def test_cutmix_pastes_one_box_and_weights_targets_by_area() -> None:
    x, labels = _events(seed=1), torch.tensor([0, 1, 2, 3, 1])
    for seed in range(20):
        mixed, target = cutmix(x, labels, 4, torch.Generator().manual_seed(seed))
        from_rolled = (mixed == x.roll(1, 1)).all(0).all(0).all(0) & (mixed != x).any(0).any(0).any(0)
        changed = (mixed != x).any(0).any(0).any(0)
        # every pixel is the sample's own or, inside one box, the rolled sample's
        assert torch.equal(changed, changed & from_rolled)
        rows, cols = torch.nonzero(
            (mixed == x.roll(1, 1)).all(0).all(0).all(0) & ~(x == x.roll(1, 1)).all(0).all(0).all(0), as_tuple=True
        )
        if len(rows) == 0:
            continue
        area = (int(rows.max()) - int(rows.min()) + 1) * (int(cols.max()) - int(cols.min()) + 1)
        lam = float(target[0, labels[0]]) if labels[0] != labels[-1] else None
        if lam is not None:  # v2.CutMix: lam = 1 - box area / image area (the box may hold equal pixels)
            assert lam <= 1 - area / (9 * 11) + 1e-6
        assert torch.allclose(target.sum(1), torch.ones(5))


def test_mixup_or_cutmix_uses_both() -> None:
    x, labels = _events(), torch.tensor([0, 1, 2, 3, 1])
    kinds = set()
    for seed in range(30):
        mixed, _ = mixup_or_cutmix(x, labels, 4, torch.Generator().manual_seed(seed))
        kinds.add("cutmix" if torch.isin(mixed, torch.tensor([0.0, 1.0])).all() else "mixup")
    assert kinds == {"cutmix", "mixup"}


def test_fit_with_mixup_temporal_deletion_and_step_lr(tmp_path: Path, idx_dir: Path) -> None:
    dm = FashionMNISTDataModule(data_dir=str(idx_dir), batch_size=8, val_size=16, timesteps=4, subset=48)
    module = SpikingClassifier(
        "spiking_cnn",
        model_kwargs=SMALL,
        lr=0.1,
        scheduler="step",
        decay_epochs=2,
        decay_rate=0.1,
        mixup=True,
        t_train=2,
        spike_log_every_n_steps=0,
    )
    lrs: list[float] = []

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # noqa: ANN001
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = fast_trainer(tmp_path, max_epochs=5)
    trainer.callbacks.append(Spy())
    dm.setup("fit")
    trainer.fit(module, datamodule=dm)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    # timm StepLRScheduler(decay_t=2, decay_rate=0.1) stepped per epoch: 0.1, 0.1, 0.01, 0.01, 0.001
    per_epoch = lrs[::2]
    assert per_epoch == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])
    # trained through mixed, shortened batches: the weights moved
    assert module.net is not None and all(torch.isfinite(p).all() for p in module.parameters())


def test_training_batch_is_shortened_and_mixed(idx_dir: Path) -> None:
    module = SpikingClassifier("spiking_cnn", num_classes=4, in_channels=2, model_kwargs=SMALL, t_train=3)
    events, labels = _events(t=8, b=4, h=16, w=16), torch.tensor([0, 1, 2, 3])
    out, target = module._train_batch_augment(events, labels)
    assert out.shape == (3, 4, 2, 16, 16) and torch.equal(target, labels)
    with pytest.raises(ValueError, match="t_train"):
        SpikingClassifier("spiking_cnn", t_train=-1)
    with pytest.raises(ValueError, match="scheduler"):
        SpikingClassifier("spiking_cnn", scheduler="poly")
