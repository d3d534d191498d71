"""``python -m i2e_lightning fit|validate|test|predict``: LightningCLI with our run folders, checkpoints and errors.

Every run writes into its own version folder, as Lightning's loggers number them:
``<default_root_dir>/lightning_logs/<run_name>/version_N/`` holds the logs, ``config.yaml`` and
``checkpoints/`` (``last.ckpt``, refreshed at every epoch end and every
``--last_checkpoint.every_n_train_steps`` steps, and the best by ``val/acc``). The run name is the
config file's name unless ``--run_name`` is given. ``--ckpt_path last`` resumes the newest version of the
run and goes on writing checkpoints in its folder (logs get the next version); ``--ckpt_path best``
takes the best checkpoint recorded by the run's ModelCheckpoint (its monitored score, not file dates).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.tensorboard import _TENSORBOARD_AVAILABLE, _TENSORBOARDX_AVAILABLE
from lightning.pytorch.callbacks import (
    LearningRateMonitor,
    ModelCheckpoint,
    ModelSummary,
    ProgressBar,
    RichModelSummary,
    RichProgressBar,
)
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, ReduceLROnPlateau, instantiate_class
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.plugins.io import CheckpointIO

from ..data.base import I2EDataModule
from ..models.checkpoint import read_checkpoint, safe_globals_context
from ..training.callbacks import BEST_CHECKPOINT, LastCheckpoint, PredictionWriter
from ..training.checkpoint import AtomicCheckpointIO, ensure_writable_dir, find_run_checkpoint, next_version
from ..training.module import SpikingClassifier

#: where a run's version folders live, below the trainer's ``default_root_dir``
LOGS = "lightning_logs"
#: a DDP child process takes its parent's version folder (set only while a run without a logger trains)
_VERSION_ENV = "I2E_RUN_VERSION"


class ShortUsageParser(LightningArgumentParser):
    """On a bad option print one usage line, not the 60-line option list, before the error."""

    def print_usage(self, file: Any = None) -> None:
        (file or sys.stderr).write(f"usage: {self.prog} --config FILE [options]\n")


class I2ECLI(LightningCLI):
    """LightningCLI with run names, checkpoint callbacks, resume by ``last`` and readable errors."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # the dataset's facts size the network when it is created, so --optimizer sees its parameters
        for source, target in (
            ("num_classes", "num_classes"),
            ("in_channels", "in_channels"),
            ("resolution", "input_size"),
        ):
            parser.link_arguments(f"data.{source}", f"model.{target}", apply_on="instantiate")
        parser.add_argument(
            "--run_name", type=str | None, default=None, help="Run name (default: the config file's name)."
        )
        # forced callbacks, declared so that they show in --help and in the saved config.yaml
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({f"checkpoint.{k}": v for k, v in BEST_CHECKPOINT.items()})
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")
        parser.set_defaults({"last_checkpoint.every_n_train_steps": 50})
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")

    # -- run name, checkpoint dir, ckpt_path -------------------------------------------

    def _sub(self) -> Any:
        return self.config[self.config.subcommand] if self.config.get("subcommand") else self.config

    def _run_name(self) -> str:
        cfg = self._sub()
        if cfg.get("run_name"):
            return str(cfg.run_name)
        configs = [c for c in (cfg.get("config") or []) if c is not None]
        if configs:
            return Path(str(configs[0])).stem
        return "default"

    def _runs_dir(self) -> Path:
        """``<default_root_dir>/lightning_logs/<run_name>``: the run's version folders."""
        root = (self._sub().get("trainer") or {}).get("default_root_dir") or "."
        return Path(root) / LOGS / self._run_name()

    def _parse_ckpt_path(self) -> None:
        # resolve `last`/`best` ourselves and validate the file before Lightning's torch.load,
        # so a truncated or missing checkpoint gives a message naming it
        sub = self.config.get("subcommand")
        if not sub:
            return
        cfg = self.config[sub]
        ckpt = cfg.get("ckpt_path")
        if ckpt == "last" or (ckpt == "best" and sub != "fit"):
            path = find_run_checkpoint(self._runs_dir(), ckpt)
            if path is None and ckpt == "last" and sub == "fit":
                print(f"[i2e] no last.ckpt in {self._runs_dir()} yet: starting from scratch", file=sys.stderr)
            elif path is None:
                raise FileNotFoundError(
                    f"--ckpt_path {ckpt}: no {'last.ckpt' if ckpt == 'last' else 'recorded best checkpoint'} in "
                    f"{self._runs_dir()}/version_*/checkpoints (train first, check --run_name and "
                    "--trainer.default_root_dir, or give a path)"
                )
            cfg.ckpt_path = None if path is None else str(path)
            if sub == "fit" and path is not None:
                # the resumed run goes on writing its checkpoints where they are (ModelCheckpoint then keeps
                # its best score); its logs get the next version folder, as Lightning numbers them
                self._resume_checkpoints = path.parent
        if cfg.get("ckpt_path") not in (None, "best", "last", "hpc", "registry"):
            read_checkpoint(cfg.ckpt_path)  # weights_only=True: a crafted file is refused, naming it
        if cfg.get("weights_only") is None and "weights_only" in cfg:
            cfg.weights_only = True  # Lightning's own load of the file, too
        with safe_globals_context():
            super()._parse_ckpt_path()

    # -- trainer ------------------------------------------------------------------------

    def before_instantiate_classes(self) -> None:
        trainer_cfg = self._sub().get("trainer") or {}
        callbacks: list[Any] = []
        # a progress bar or model summary the user names replaces ours (Lightning allows one of each)
        user_kinds = _callback_classes(trainer_cfg.get("callbacks"))
        if trainer_cfg.get("enable_progress_bar", True) is not False and not _any_subclass(user_kinds, ProgressBar):
            callbacks.append(RichProgressBar())
        self._own_summary = trainer_cfg.get("enable_model_summary", True) is not False and not _any_subclass(
            user_kinds, ModelSummary
        )
        if self._own_summary:
            callbacks.append(RichModelSummary(max_depth=2))
        if self.config.get("subcommand") == "predict" and self._sub().get("predict_output"):
            callbacks.append(PredictionWriter(self._sub().predict_output))
        self.trainer_defaults = {**self.trainer_defaults, "callbacks": callbacks}

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        if hasattr(self.datamodule, "on_progress") and self.datamodule.on_progress is None:
            self.datamodule.on_progress = _ProgressBar()  # e.g. CIFAR10-DVS frames integrated in prepare_data

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        cfg = self._get(self.config_init, "trainer", default={})
        plugins = cfg.get("plugins")
        plugins = [] if plugins is None else (list(plugins) if isinstance(plugins, list) else [plugins])
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        kwargs.setdefault("plugins", plugins)
        if getattr(self, "_own_summary", False):
            # ours replaces Lightning's default summary: tell the Trainer, so it does not log "already configured"
            kwargs.setdefault("enable_model_summary", False)
        root = Path(cfg.get("default_root_dir") or ".")
        self._logging = cfg.get("logger") is not False
        if cfg.get("logger") is True or cfg.get("logger") is None:
            kwargs.setdefault("logger", default_logger(self._run_name(), root / LOGS))
        return super().instantiate_trainer(**kwargs)

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Any:
        cfg = self._get(self.config_init, "trainer", default={})
        checkpoints = [c for c in callbacks if isinstance(c, ModelCheckpoint)]
        if cfg.get("enable_checkpointing", True) is False:
            callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
        elif getattr(self, "_resume_checkpoints", None) is not None:
            for c in checkpoints:
                if c.dirpath is None:
                    c.dirpath = str(self._resume_checkpoints.resolve())
        elif not self._logging and any(c.dirpath is None for c in checkpoints):
            # no logger to number the run: a version folder of our own, so that runs never mix
            version = os.environ.get(_VERSION_ENV) or str(next_version(self._runs_dir()))
            os.environ[_VERSION_ENV] = version  # DDP children re-run this command with the parent's env
            for c in checkpoints:
                if c.dirpath is None:
                    c.dirpath = str((self._runs_dir() / f"version_{version}" / "checkpoints").resolve())
        if not self._logging:
            callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]  # it needs a logger
        dry_run = bool(cfg.get("fast_dev_run"))  # Lightning writes no checkpoint then
        if (
            self.config.get("subcommand") == "fit"
            and cfg.get("enable_checkpointing", True) is not False
            and not dry_run
        ):
            for c in checkpoints:
                # now, not after the first epoch (with a logger, the folder above the run's versions)
                ensure_writable_dir(c.dirpath or self._runs_dir())
        return super()._instantiate_trainer(config, callbacks)

    def _add_configure_optimizers_method_to_model(self, subcommand: str | None) -> None:
        super()._add_configure_optimizers_method_to_model(subcommand)
        # LightningCLI ignores --lr_scheduler without --optimizer: pair it with the model's preset optimizer
        if not self.auto_configure_optimizers or self._get(self.config_init, "optimizer"):
            return
        scheduler_init = self._get(self.config_init, "lr_scheduler")
        if not scheduler_init or not hasattr(self.model, "build_optimizer"):
            return

        def configure_optimizers(module: Any) -> Any:
            optimizer = module.build_optimizer()
            scheduler = instantiate_class(optimizer, scheduler_init)
            config = {"scheduler": scheduler, "name": "train/lr"}
            if isinstance(scheduler, ReduceLROnPlateau):
                config["monitor"] = scheduler.monitor
            return {"optimizer": optimizer, "lr_scheduler": config}

        self.model.configure_optimizers = configure_optimizers.__get__(self.model)


def default_logger(run_name: str, save_dir: str | Path = LOGS) -> Logger:
    """Lightning's own choice (TensorBoard when installed, else CSV), in ``<save_dir>/<run_name>/version_N``."""
    if _TENSORBOARD_AVAILABLE or _TENSORBOARDX_AVAILABLE:
        return TensorBoardLogger(save_dir=save_dir, name=run_name)
    return CSVLogger(save_dir=save_dir, name=run_name)


class _ProgressBar:
    """``on_progress(task, done, total)`` of a datamodule drawn as one rich bar per task (rank 0 only)."""

    def __init__(self) -> None:
        self._progress: Any = None
        self._task: Any = None
        self._name = ""

    def __call__(self, task: str, done: int, total: int) -> None:
        if os.environ.get("LOCAL_RANK", "0") != "0":
            return
        from rich.progress import Progress

        if self._progress is None or task != self._name:
            self._stop()
            self._progress, self._name = Progress(), task
            self._progress.start()
            self._task = self._progress.add_task(task, total=total)
        self._progress.update(self._task, completed=done)
        if done >= total:
            self._stop()

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress = None


def _callback_classes(configured: Any) -> list[type]:
    """The classes of the callbacks a config or the command line names (``class_path`` entries or instances)."""
    if configured is None:
        return []
    items = configured if isinstance(configured, list) else [configured]
    classes: list[type] = []
    for item in items:
        path = item.get("class_path") if hasattr(item, "get") else None
        if isinstance(path, str) and "." in path:
            module_name, _, name = path.rpartition(".")
            try:
                classes.append(getattr(importlib.import_module(module_name), name))
            except (ImportError, AttributeError):
                continue  # LightningCLI reports the bad class_path itself
        elif not isinstance(item, dict) and hasattr(item, "__class__"):
            classes.append(type(item))
    return classes


def _any_subclass(classes: list[type], base: type) -> bool:
    return any(isinstance(c, type) and issubclass(c, base) for c in classes)


def run_lightning(argv: list[str] | None) -> Any:
    """Run a Lightning subcommand (raises on error); returns the ``LightningCLI`` object."""
    return I2ECLI(
        SpikingClassifier,
        I2EDataModule,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        parser_class=ShortUsageParser,
        parser_kwargs={"prog": "python -m i2e_lightning"},
        args=argv,
    )


def _run_with_argv(args: list[str]) -> None:
    # LightningCLI reads sys.argv, and DDP re-launches the processes with sys.argv: make them agree
    saved = sys.argv
    sys.argv = [saved[0] if saved else "i2e_lightning", *args]
    child = os.environ.get("LOCAL_RANK", "0") != "0"
    try:
        run_lightning(None)
    finally:
        sys.argv = saved
        if not child:
            os.environ.pop(_VERSION_ENV, None)  # the next run in this process numbers its own folder


def main(argv: list[str]) -> int:
    """``argv`` = the subcommand and its options, e.g. ``["fit", "--config", "configs/x.yaml"]``."""
    _run_with_argv(argv)
    return 0
