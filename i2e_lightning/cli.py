"""``python -m i2e_lightning fit|validate|test|predict --config configs/X.yaml`` and the extra subcommands.

The Lightning subcommands go through ``LightningCLI`` (any ``I2EDataModule`` subclass as ``data``).
Every run gets a rich progress bar and model summary, and checkpoints in
``<checkpoint_dir>/<run_name>/``: ``last.ckpt`` (also every ``--checkpoint_every_n_steps``
training steps, so a killed run loses little) and the best by ``val/acc``. The run name is
the config file's name unless ``--run_name`` is given. ``--ckpt_path last`` resumes.

Errors the package raises on purpose (missing dataset, corrupt checkpoint, bad value) are
printed as one message with exit code 2; set ``I2E_DEBUG=1`` for the full traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# extra subcommands: name -> (module, function, what it does); imported only when used
EXTRA_COMMANDS: dict[str, tuple[str, str, str]] = {
    "convert": ("i2e_lightning.events.convert", "main", "convert an image dataset to I2E event files"),
    "visualize": ("i2e_lightning.events.visualize", "main", "render events as GIF/PNG pictures"),
    "export-onnx": ("i2e_lightning.onnx.cli", "main", "export the converter / a trained classifier to ONNX"),
    "export-nir": ("i2e_lightning.nir.cli", "main", "export a trained spiking network as a NIR graph"),
    "calibrate": ("i2e_lightning.data.calibrate", "main", "pick the threshold ratio for a target event rate"),
    "bench": ("i2e_lightning.bench", "main", "benchmarks"),
}
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
# errors that carry a message written for the user: print it, no traceback
_USER_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, NotADirectoryError, PermissionError, ValueError)


def _usage() -> str:
    lines = ["usage: python -m i2e_lightning <command> [options]", "", "training (LightningCLI; add --help):"]
    what = {
        "fit": "train (e.g. --config configs/fashion_mnist.yaml; --ckpt_path last resumes)",
        "validate": "evaluate on the validation split (--ckpt_path best|last|FILE)",
        "test": "evaluate on the test split (--ckpt_path best|last|FILE)",
        "predict": "predict the test split (--predict_output FILE.pt saves them)",
    }
    lines += [f"  {c:<12} {what[c]}" for c in LIGHTNING_COMMANDS]
    lines += ["", "tools:"]
    lines += [f"  {name:<12} {desc}" for name, (_, _, desc) in EXTRA_COMMANDS.items()]
    return "\n".join(lines)


def _resolve_extra(name: str) -> Callable[[list[str]], int]:
    module_name, func_name, _ = EXTRA_COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ValueError(
                f"the '{name}' command is not available in this installation ({module_name} is missing)"
            ) from None
        raise ValueError(
            f"the '{name}' command needs the package '{exc.name}', which is not installed: pip install {exc.name}"
        ) from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ValueError(f"the '{name}' command is broken: {module_name} has no {func_name}() function")
    return func


def _make_cli_class() -> type:
    # lightning is imported here so that `python -m i2e_lightning convert ...` stays light
    from lightning.pytorch.callbacks import ModelCheckpoint, RichModelSummary, RichProgressBar
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
    from lightning.pytorch.loggers import CSVLogger
    from lightning.pytorch.plugins.io import CheckpointIO

    from .models.checkpoint import read_checkpoint, safe_globals_context
    from .training.callbacks import PredictionWriter
    from .training.checkpoint import AtomicCheckpointIO

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
                    raise FileNotFoundError(
                        f"--ckpt_path best: no best*.ckpt in {folder} (train first, or give a path)"
                    )
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
            if trainer_cfg.get("enable_progress_bar", True) is not False:
                callbacks.append(RichProgressBar())
            if trainer_cfg.get("enable_model_summary", True) is not False:
                callbacks.append(RichModelSummary(max_depth=2))
            if self.config.get("subcommand") == "predict" and self._sub().get("predict_output"):
                callbacks.append(PredictionWriter(self._sub().predict_output))
            # also outside fit, so that Lightning knows the callbacks a checkpoint was written with
            if trainer_cfg.get("enable_checkpointing", True) is not False:
                folder = str(self._ckpt_dir())
                callbacks.append(
                    ModelCheckpoint(
                        dirpath=folder,
                        filename="best-epoch{epoch:03d}-acc{val/acc:.4f}",
                        auto_insert_metric_name=False,
                        monitor="val/acc",
                        mode="max",
                        save_top_k=1,
                        save_last=True,
                        enable_version_counter=False,
                    )
                )
                every = int(self._sub().get("checkpoint_every_n_steps") or 0)
                if every > 0:
                    # a second checkpoint callback that only refreshes last.ckpt mid-epoch
                    callbacks.append(
                        ModelCheckpoint(
                            dirpath=folder,
                            every_n_train_steps=every,
                            save_top_k=0,
                            save_last=True,
                            enable_version_counter=False,
                        )
                    )
            self.trainer_defaults = {**self.trainer_defaults, "callbacks": callbacks}

        def instantiate_trainer(self, **kwargs: Any) -> Any:
            cfg = self._get(self.config_init, "trainer", default={})
            plugins = cfg.get("plugins")
            plugins = [] if plugins is None else (list(plugins) if isinstance(plugins, list) else [plugins])
            if not any(isinstance(p, CheckpointIO) for p in plugins):
                plugins.append(AtomicCheckpointIO())
            kwargs.setdefault("plugins", plugins)
            if cfg.get("logger") is True or cfg.get("logger") is None:
                kwargs.setdefault("logger", CSVLogger(save_dir="lightning_logs", name=self._run_name()))
            return super().instantiate_trainer(**kwargs)

    return I2ECLI, ShortUsageParser


def run_lightning(argv: list[str] | None) -> Any:
    """Run a Lightning subcommand (raises on error); returns the ``LightningCLI`` object."""
    from .data.base import I2EDataModule
    from .training.module import SpikingClassifier

    cli_class, parser_class = _make_cli_class()
    return cli_class(
        SpikingClassifier,
        I2EDataModule,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        parser_class=parser_class,
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m i2e_lightning``; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    command = args[0]
    debug = os.environ.get("I2E_DEBUG", "") not in ("", "0")
    try:
        if command in EXTRA_COMMANDS:
            return int(_resolve_extra(command)(args[1:]) or 0)
        if command not in LIGHTNING_COMMANDS and not command.startswith("-"):
            print(f"error: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
            return 2
        _run_with_argv(args)
    except SystemExit as exc:  # argparse/jsonargparse already printed its message
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    except _USER_ERRORS as exc:
        if debug:
            raise
        print(f"error: {_message(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        from lightning.fabric.utilities.exceptions import MisconfigurationException

        if isinstance(exc, MisconfigurationException) and not debug:
            print(f"error: {_message(exc)}", file=sys.stderr)
            return 2
        raise
    return 0


def _message(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in text:
        text = f"{text} ({exc.filename})"
    if isinstance(exc, KeyError):
        text = f"missing key {text}"
    return text.strip() or type(exc).__name__
