"""``python -m i2e_lightning fit|validate|test|predict``: LightningCLI with our run folders, checkpoints and errors.

Every run gets a rich progress bar and model summary, and checkpoints in
``<checkpoint_dir>/<run_name>/``: ``last.ckpt`` (also every ``--checkpoint_every_n_steps``
training steps, so a killed run loses little) and the best by ``val/acc``. The run name is
the config file's name unless ``--run_name`` is given. ``--ckpt_path last`` resumes.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.tensorboard import _TENSORBOARD_AVAILABLE, _TENSORBOARDX_AVAILABLE
from lightning.pytorch.callbacks import ModelSummary, ProgressBar, RichModelSummary, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.plugins.io import CheckpointIO

from ..data.base import I2EDataModule
from ..models.checkpoint import read_checkpoint, safe_globals_context
from ..training.callbacks import PredictionWriter, checkpoint_callbacks
from ..training.checkpoint import AtomicCheckpointIO, ensure_writable_dir
from ..training.module import SpikingClassifier


class ShortUsageParser(LightningArgumentParser):
    """On a bad option print one usage line, not the 60-line option list, before the error."""

    def print_usage(self, file: Any = None) -> None:
        (file or sys.stderr).write(f"usage: {self.prog} --config FILE [options]\n")


class I2ECLI(LightningCLI):
    """LightningCLI with run names, checkpoint callbacks, resume by ``last`` and readable errors."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--run_name", type=str | None, default=None, help="Run name (default: the config file's name)."
        )
        parser.add_argument(
            "--checkpoint_dir", type=str, default="checkpoints", help="Checkpoints go to <checkpoint_dir>/<run>/."
        )
        parser.add_argument(
            "--predict_output",
            type=str | None,
            default=None,
            help="predict: save predictions (pred, probs, target) to this .pt file.",
        )
        parser.add_argument(
            "--checkpoint_every_n_steps",
            type=int,
            default=50,
            help="Also write last.ckpt every this many training steps (0: only at epoch ends).",
        )

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

    def _ckpt_dir(self) -> Path:
        return Path(self._sub().get("checkpoint_dir") or "checkpoints") / self._run_name()

    def _parse_ckpt_path(self) -> None:
        # resolve `last`/`best` ourselves and validate the file before Lightning's torch.load,
        # so a truncated or missing checkpoint gives a message naming it
        sub = self.config.get("subcommand")
        if not sub:
            return
        cfg = self.config[sub]
        ckpt = cfg.get("ckpt_path")
        folder = self._ckpt_dir()
        if ckpt == "last":
            path = folder / "last.ckpt"
            if path.is_file():
                cfg.ckpt_path = str(path)
            elif sub == "fit":
                print(f"[i2e] no {path} yet: starting from scratch", file=sys.stderr)
                cfg.ckpt_path = None
            else:
                raise FileNotFoundError(f"--ckpt_path last: {path} does not exist (train first, or give a path)")
        elif ckpt == "best" and sub != "fit":
            best = sorted(folder.glob("best*.ckpt"), key=lambda p: p.stat().st_mtime)
            if not best:
                raise FileNotFoundError(f"--ckpt_path best: no best*.ckpt in {folder} (train first, or give a path)")
            cfg.ckpt_path = str(best[-1])
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
        # also outside fit, so that Lightning knows the callbacks a checkpoint was written with
        if trainer_cfg.get("enable_checkpointing", True) is not False:
            folder = self._ckpt_dir()
            if self.config.get("subcommand") == "fit":
                ensure_writable_dir(folder)  # now, not after the first epoch
            every = int(self._sub().get("checkpoint_every_n_steps") or 0)
            callbacks += checkpoint_callbacks(folder, every_n_train_steps=every)
        self.trainer_defaults = {**self.trainer_defaults, "callbacks": callbacks}

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
        if cfg.get("logger") is True or cfg.get("logger") is None:
            kwargs.setdefault("logger", default_logger(self._run_name()))
        return super().instantiate_trainer(**kwargs)


def default_logger(run_name: str, save_dir: str = "lightning_logs") -> Logger:
    """Lightning's own choice (TensorBoard when installed, else CSV), in ``<save_dir>/<run_name>/version_N``."""
    if _TENSORBOARD_AVAILABLE or _TENSORBOARDX_AVAILABLE:
        return TensorBoardLogger(save_dir=save_dir, name=run_name)
    return CSVLogger(save_dir=save_dir, name=run_name)


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
    try:
        run_lightning(None)
    finally:
        sys.argv = saved


def main(argv: list[str]) -> int:
    """``argv`` = the subcommand and its options, e.g. ``["fit", "--config", "configs/x.yaml"]``."""
    _run_with_argv(argv)
    return 0
