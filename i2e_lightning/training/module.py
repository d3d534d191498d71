"""The LightningModule that trains a spiking classifier on I2E events.

The network is built by name from the model registry when the module is created: the CLI links the
datamodule's facts (``num_classes``, ``in_channels``, ``resolution``) into the model's arguments, so
``--optimizer``/``--lr_scheduler`` see the parameters. A module made by hand without them builds the
network in ``setup`` from the trainer's datamodule, so one config trains any dataset either way.
Batches arrive as ``(events float [T, B, 2, H, W], labels int64 [B])``: the
datamodule converts images to events on the device in ``on_after_batch_transfer``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from .. import models as _models
from ..events.packed import PackedEvents
from .checkpoint import load_init_weights
from .event_mix import mixup_or_cutmix, random_temporal_deletion

STAGES = ("train", "val", "test")


class SpikingClassifier(L.LightningModule):
    """Train/evaluate a spiking network (``arch`` from ``i2e_lightning.models``) on event tensors.

    Args:
        arch: registry name of the network (``spiking_cnn``, ``ms_resnet18``, ``ms_resnet34``...).
        num_classes: classes of the head; ``None`` takes ``datamodule.num_classes`` in ``setup`` (the CLI
            links it from the datamodule).
        model_kwargs: extra keyword arguments of the network constructor (channels, LIF options...).
        in_channels: event channels; ``None`` takes ``datamodule.in_channels`` (2: ON/OFF).
        input_size: ``(H, W)`` (or one int) of the events, for networks whose registry entry
            ``needs_input_size`` (a flattening head); ``None`` takes ``datamodule.resolution``.
        optimizer: ``"sgd"`` (momentum, the paper's recipe) or ``"adamw"``.
        lr: peak learning rate.
        momentum: SGD momentum.
        nesterov: Nesterov momentum for SGD.
        weight_decay: L2 penalty (SGD) or decoupled decay (AdamW).
        betas: AdamW betas.
        scheduler: ``"cosine"`` (decay to ``eta_min``), ``"step"`` (times ``decay_rate`` every
            ``decay_epochs``, timm's ``StepLRScheduler`` as the official ``--scheduler stepLR``) or
            ``"none"`` (constant lr).
        eta_min: the final learning rate of the cosine decay (the paper: 5e-5).
        decay_epochs: step scheduler period in epochs (official ``--decay_t``, 30).
        decay_rate: step scheduler factor (official ``--decay_rate``, 0.1).
        warmup_epochs: linear warm-up from ``lr * warmup_start_factor`` over these epochs (fractional allowed
            with ``scheduler_interval="step"``; rounded to whole scheduler steps).
        warmup_start_factor: the first warm-up lr as a fraction of ``lr``.
        scheduler_interval: update the lr every ``"epoch"`` (as the paper) or every ``"step"``.
        label_smoothing: of the cross-entropy loss (the paper: 0.1).
        mixup: mix each training batch by cutmix or mixup (one of the two, equal odds) for the first
            ``mixup_fraction`` of the epochs, as the official ``--mixup``.
        mixup_fraction: share of ``max_epochs`` with mixup (official: 2/3).
        t_train: random temporal deletion: train on ``t_train`` random timesteps (kept in order) of
            each batch, as the official ``--t_train``; 0 keeps all.
        compile: ``torch.compile`` the network (in place, so checkpoints keep plain parameter names).
        init_from: checkpoint to initialise the weights from, before training or evaluation: one of
            ours (a Lightning ``.ckpt``) or an official I2E checkpoint (``state_dict`` of the official
            MS-ResNet, ``module.`` prefix allowed). The head is replaced when the class counts differ.
        spike_log_every_n_steps: log per-layer firing rates (``train/spikes/<layer>``, ``val/spikes/<layer>``) every this many
            training steps and on the first validation batch; 0 turns it off.
    """

    def __init__(
        self,
        arch: str = "spiking_cnn",
        num_classes: int | None = None,
        model_kwargs: dict[str, Any] | None = None,
        in_channels: int | None = None,
        input_size: int | tuple[int, int] | None = None,
        optimizer: Literal["sgd", "adamw"] = "sgd",
        lr: float = 0.1,
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 2e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        scheduler: Literal["cosine", "step", "none"] = "cosine",
        eta_min: float = 5e-5,
        decay_epochs: float = 30.0,
        decay_rate: float = 0.1,
        warmup_epochs: float = 0.0,
        warmup_start_factor: float = 0.1,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        label_smoothing: float = 0.1,
        mixup: bool = False,
        mixup_fraction: float = 2.0 / 3.0,
        t_train: int = 0,
        compile: bool = False,
        init_from: str | None = None,
        spike_log_every_n_steps: int = 50,
    ) -> None:
        super().__init__()
        if arch.lower().replace("-", "_") not in _models.list_models():
            raise ValueError(f"unknown model arch {arch!r}: choose one of {sorted(_models.list_models())}")
        if optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {optimizer!r}")
        if scheduler not in ("cosine", "step", "none"):
            raise ValueError(f"scheduler must be 'cosine', 'step' or 'none', got {scheduler!r}")
        if decay_epochs <= 0 or not 0.0 < decay_rate <= 1.0:
            raise ValueError(f"need decay_epochs > 0 and 0 < decay_rate <= 1, got {decay_epochs}, {decay_rate}")
        if t_train < 0:
            raise ValueError(f"t_train must be >= 0 (0 keeps every timestep), got {t_train}")
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
        if lr <= 0 or eta_min < 0 or eta_min > lr:
            raise ValueError(f"need 0 <= eta_min <= lr and lr > 0, got lr={lr}, eta_min={eta_min}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        if input_size is not None and (len(input_size) != 2 or min(input_size) < 1):
            raise ValueError(f"input_size must be one positive int or (H, W), got {input_size}")
        self.save_hyperparameters()
        self.net: nn.Module | None = None
        self.metrics = nn.ModuleDict()
        self._init_done = False
        if in_channels is None and "in_channels" in (model_kwargs or {}):
            in_channels = int(model_kwargs["in_channels"])
        if num_classes is not None and in_channels is not None:
            self.build_network(num_classes, in_channels, input_size)

    # -- construction ---------------------------------------------------------------------

    def build_network(self, num_classes: int, in_channels: int, input_size: tuple[int, int] | None = None) -> None:
        """Build the network (done in ``setup`` from the datamodule when ``num_classes`` was left out)."""
        # the registry passes input_size only to networks sized by it (a flattening head)
        net = _models.create_from_hparams(
            {
                "arch": self.hparams.arch,
                "model_kwargs": self.hparams.model_kwargs,
                "num_classes": num_classes,
                "in_channels": in_channels,
                "input_size": input_size,
            }
        )
        self.net = net
        # the resolved values go into the checkpoint, so load_from_checkpoint rebuilds the same net
        self.hparams.num_classes = num_classes
        self.hparams.in_channels = in_channels
        if input_size is not None:
            self.hparams.input_size = tuple(int(s) for s in input_size)
        top5 = min(5, num_classes)
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_{name}": MulticlassAccuracy(num_classes=num_classes, top_k=k, average="micro")
                for stage in STAGES
                for name, k in (("acc", 1), ("acc_top5", top5))
            }
        )

    def setup(self, stage: str) -> None:
        if self.net is None:
            dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
            num_classes = self.hparams.num_classes or getattr(dm, "num_classes", None)
            in_channels = self.hparams.in_channels or getattr(dm, "in_channels", None) or 2
            if num_classes is None:
                raise ValueError(
                    "SpikingClassifier: num_classes is not set and the datamodule does not give one: "
                    "set model.num_classes in the config"
                )
            resolution = self.hparams.input_size or getattr(dm, "resolution", None)
            self.build_network(int(num_classes), int(in_channels), tuple(resolution) if resolution else None)
        # resuming (ckpt_path set): the checkpoint's weights replace these anyway
        resuming = self._trainer is not None and self.trainer.ckpt_path is not None
        if self.hparams.init_from and not self._init_done and not resuming:
            load_init_weights(self.net, self.hparams.init_from, self.hparams.arch, self.hparams.num_classes)
            self._init_done = True
        if self.hparams.compile and not getattr(self, "_compiled", False):
            # nn.Module.compile keeps the parameter names (no `_orig_mod.` prefix in checkpoints)
            self.net.compile()
            self._compiled = True

    def configure_model(self) -> None:
        # load_from_checkpoint outside a trainer: hparams then hold the resolved sizes
        if self.net is None and self.hparams.num_classes is not None:
            resolution = self.hparams.get("input_size")
            self.build_network(
                int(self.hparams.num_classes),
                int(self.hparams.in_channels or 2),
                tuple(resolution) if resolution else None,
            )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # resuming: the checkpoint's weights win over init_from
        self._init_done = True
        if self.net is not None and isinstance(checkpoint.get("state_dict"), dict):
            # name the keys that do not fit before Lightning's strict load raises a torch stack trace
            from ..models.checkpoint import describe_state_diff

            own = {k: v for k, v in self.state_dict().items() if k.startswith("net.")}
            theirs = {
                k.replace("_orig_mod.", ""): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")
            }
            problem = describe_state_diff(own, theirs)
            if problem:
                hp = checkpoint.get("hyper_parameters") or {}
                raise ValueError(
                    f"the checkpoint's network ({hp.get('arch', '?')}, {hp.get('num_classes', '?')} classes) does not "
                    f"fit this model ({self.hparams.arch}, {self.hparams.num_classes} classes): {problem}; use the "
                    "config the checkpoint was trained with, or --model.init_from to fine-tune from its weights"
                )

    # -- forward / steps ------------------------------------------------------------------

    def _require_net(self) -> nn.Module:
        if self.net is None:
            raise RuntimeError(
                "SpikingClassifier: the network is not built yet (num_classes unknown): "
                "run it through a Trainer with a datamodule, or pass num_classes and in_channels"
            )
        return self.net

    def forward(self, events: Tensor) -> Tensor:
        """Logits ``[B, num_classes]`` of events ``[T, B, C, H, W]``."""
        return self._require_net()(events)

    def _unpack(self, batch: Any) -> tuple[Tensor, Tensor | None]:
        if isinstance(batch, (tuple, list)) and not isinstance(batch, PackedEvents):
            events = batch[0]
            labels = batch[1] if len(batch) > 1 else None
        else:
            events, labels = batch, None
        if isinstance(events, PackedEvents):  # packed rows (an event file's, or events.convert_packed): unpack here
            events = events.unpack(self.device).float()
        if not isinstance(events, Tensor) or events.dim() != 5:
            shape = tuple(events.shape) if isinstance(events, Tensor) else type(events).__name__
            raise ValueError(
                f"expected events [T, B, C, H, W] from the datamodule's on_after_batch_transfer, got {shape}: "
                "use an I2EDataModule (it converts the image batch on the device)"
            )
        return events, labels

    def _want_spikes(self, stage: str, batch_idx: int) -> bool:
        every = self.hparams.spike_log_every_n_steps
        if not every or self._trainer is None or self.trainer.sanity_checking:
            return False
        if stage == "train":
            return self.global_step % every == 0
        return stage == "val" and batch_idx == 0

    def _shared_step(self, batch: Any, stage: str, batch_idx: int = 0) -> Tensor:
        events, labels = self._unpack(batch)
        if labels is None:
            raise ValueError(f"{stage} batches need labels: got events only")
        net = self._require_net()
        targets = labels
        if stage == "train":
            events, targets = self._train_batch_augment(events, labels)
        record = self._want_spikes(stage, batch_idx)
        rates: dict[str, float] = {}
        if record:
            _models.set_spike_recording(net, True)
        try:
            logits = net(events)
            if record:
                rates = _models.spike_rates(net)
        finally:
            if record:
                _models.set_spike_recording(net, False)
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=self.hparams.label_smoothing)
        bs = labels.shape[0]
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=bs, sync_dist=True)
        for name in ("acc", "acc_top5"):
            metric = self.metrics[f"{stage}_{name}"]
            metric(logits.detach(), labels)
            # metric objects are synced across ranks by torchmetrics at epoch end
            self.log(f"{stage}/{name}", metric, on_step=False, on_epoch=True, prog_bar=name == "acc", batch_size=bs)
        if rates:
            # mean over ranks keeps the logged figure independent of the world size
            self.log_dict(
                {f"{stage}/spikes/{k}": float(v) for k, v in rates.items()},
                on_step=stage == "train",
                on_epoch=stage != "train",
                batch_size=bs,
                sync_dist=True,
            )
        return loss

    def _train_batch_augment(self, events: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The official per-batch training augmentation: temporal deletion, then mixup/cutmix."""
        hp = self.hparams
        events = random_temporal_deletion(events, hp.t_train)
        if hp.mixup and self._trainer is not None:
            until = (self.trainer.max_epochs or 1) * hp.mixup_fraction
            if self.current_epoch <= until:  # the official `epoch <= epochs * 2 / 3`
                return mixup_or_cutmix(events, labels, int(hp.num_classes))
        return events, labels

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train", batch_idx)

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val", batch_idx)

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test", batch_idx)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """``{"pred": argmax class [B], "probs": softmax [B, K]}`` (and ``"target"`` when labels come along)."""
        events, labels = self._unpack(batch)
        probs = torch.softmax(self(events).float(), dim=1)
        out = {"pred": probs.argmax(dim=1), "probs": probs}
        if labels is not None:
            out["target"] = labels
        return out

    def configure_callbacks(self) -> list[L.Callback]:
        # divergence guard by default (a NaN loss stops the run, no NaN checkpoint); a trainer's own wins
        from .callbacks import FiniteLossGuard

        if self._trainer is not None and any(isinstance(c, FiniteLossGuard) for c in self.trainer.callbacks):
            return []
        return [FiniteLossGuard()]

    # -- optimisation ---------------------------------------------------------------------

    def build_optimizer(self) -> torch.optim.Optimizer:
        """The preset optimizer (``optimizer``, ``lr``, ...); the CLI pairs it with a ``--lr_scheduler`` alone."""
        hp = self.hparams
        net = self._require_net()
        # no weight decay on BN/bias parameters (1-D), as timm's optimizer factory in the official scripts
        decay = [p for p in net.parameters() if p.requires_grad and p.dim() > 1]
        no_decay = [p for p in net.parameters() if p.requires_grad and p.dim() <= 1]
        groups = [
            {"params": decay, "weight_decay": hp.weight_decay, "name": "weights"},
            {"params": no_decay, "weight_decay": 0.0, "name": "norms_biases"},
        ]
        if hp.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, nesterov=hp.nesterov)
        return torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.betas))

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        opt = self.build_optimizer()
        LR = torch.optim.lr_scheduler
        interval = hp.scheduler_interval
        if hp.scheduler == "none":
            # a scheduler that changes nothing, so that LearningRateMonitor logs the lr as `train/lr` too
            sched: LR.LRScheduler = LR.ConstantLR(opt, factor=1.0, total_iters=0)
        elif hp.scheduler == "step":  # per epoch, as timm's StepLRScheduler stepped with the epoch
            sched = LR.LambdaLR(opt, _StepDecay(hp.decay_epochs, hp.decay_rate))
            interval = "epoch"
        else:
            if interval == "step":
                total = max(1, int(self.trainer.estimated_stepping_batches))
                per_epoch = total / max(1, self.trainer.max_epochs or 1)
            else:
                total = max(1, int(self.trainer.max_epochs or 1))
                per_epoch = 1.0
            sched = cosine_with_warmup(
                opt,
                total,
                warmup=round(hp.warmup_epochs * per_epoch),
                eta_min=hp.eta_min,
                start_factor=hp.warmup_start_factor,
            )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": interval, "name": "train/lr"}}


class _StepDecay:
    """lr factor ``decay_rate ** (epoch // decay_epochs)`` (a picklable class)."""

    def __init__(self, decay_epochs: float, decay_rate: float) -> None:
        self.decay_epochs, self.decay_rate = float(decay_epochs), float(decay_rate)

    def __call__(self, epoch: int) -> float:
        return self.decay_rate ** math.floor(epoch / self.decay_epochs)


def cosine_with_warmup(
    optimizer: torch.optim.Optimizer, total: int, warmup: int = 0, eta_min: float = 0.0, start_factor: float = 0.1
) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up from ``start_factor * lr`` over ``warmup`` steps, cosine to ``eta_min`` at ``total``, then hold.

    torch's own schedulers chained by ``SequentialLR``; the last phase keeps ``eta_min`` if a run steps
    past ``total`` (``CosineAnnealingLR`` alone would climb back up).
    """
    LR = torch.optim.lr_scheduler
    total, warmup = max(1, int(total)), max(0, min(int(warmup), int(total) - 1))
    lr = max(group["lr"] for group in optimizer.param_groups)
    phases: list[LR.LRScheduler] = []
    milestones: list[int] = []
    if warmup > 0:
        phases.append(LR.LinearLR(optimizer, start_factor=start_factor, end_factor=1.0, total_iters=warmup))
        milestones.append(warmup)
    phases.append(LR.CosineAnnealingLR(optimizer, T_max=total - warmup, eta_min=eta_min))
    milestones.append(total)
    phases.append(LR.ConstantLR(optimizer, factor=eta_min / lr if lr > 0 else 0.0, total_iters=2**62))
    return LR.SequentialLR(optimizer, phases, milestones=milestones)


def load_classifier(path: str | Path, map_location: str | torch.device = "cpu") -> SpikingClassifier:
    """A trained ``SpikingClassifier`` from one of our checkpoints (clear error on a bad file)."""
    from ..models.checkpoint import read_checkpoint, safe_globals_context

    read_checkpoint(path)  # weights_only; names the file when it is missing, truncated, unsafe or not a checkpoint
    with safe_globals_context():
        model = SpikingClassifier.load_from_checkpoint(str(path), map_location=map_location, weights_only=True)
    model.eval()
    return model
