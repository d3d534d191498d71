"""The command layer: ``python -m i2e_lightning <command>``, one module per command.

``fit``/``validate``/``test``/``predict`` go through ``LightningCLI`` (:mod:`.lightning_cli`); the tools
(``convert``, ``visualize``, ...) each have their own module. Only this layer parses arguments, prints
and exits: the library packages below it report through return values, exceptions and callbacks.
This module imports no torch, so that listing the commands is instant; a command's module is
imported only when it runs.

Errors the package raises on purpose (missing dataset, corrupt checkpoint, bad value) are
printed as one message with exit code 2; set ``I2E_DEBUG=1`` for the full traceback.

``<command> --help`` is served from a cache when nothing it depends on changed (:mod:`.help_cache`),
so that it does not wait for torch and Lightning to import.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

# extra subcommands: name -> (module, function, what it does); imported only when used
EXTRA_COMMANDS: dict[str, tuple[str, str, str]] = {
    "convert": ("i2e_lightning.commands.convert", "main", "convert an image dataset to I2E event files"),
    "visualize": ("i2e_lightning.commands.visualize", "main", "render events as GIF/PNG pictures"),
    "export-onnx": (
        "i2e_lightning.commands.export_onnx",
        "main",
        "export the converter / a trained classifier to ONNX",
    ),
    "export-nir": ("i2e_lightning.commands.export_nir", "main", "export a trained spiking network as a NIR graph"),
    "calibrate": ("i2e_lightning.commands.calibrate", "main", "pick the threshold ratio for a target event rate"),
    "download": ("i2e_lightning.commands.download", "main", "download an image dataset (MD5-checked)"),
    "bench": ("i2e_lightning.commands.bench", "main", "benchmarks"),
    "configs": ("i2e_lightning.commands.configs", "main", "list the shipped configs (--config NAME takes any of them)"),
}
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
# commands whose `--help` builds a parser from library classes (seconds of imports): served from the help cache;
# `bench` and `configs` print a fixed text at once, faster than computing the cache key
CACHED_HELP = (*LIGHTNING_COMMANDS, *(c for c in EXTRA_COMMANDS if c not in ("bench", "configs")))
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
    lines += [
        "",
        "Every command but bench and configs takes LightningCLI's options: --config FILE|NAME",
        "(repeatable, merged in order), dotted overrides (--data.init_args.val_size 0),",
        "--print_config; image sizes as --resolution N or [H,W].",
    ]
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m i2e_lightning``; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    # hidden: fill the help cache for every command (make install runs it); --ship: also write the texts shipped
    # in the package (make docs runs it)
    if args in (["--warm-help"], ["--warm-help", "--ship"]):
        return _warm_help(ship=args[-1] == "--ship")
    command = args[0]
    if len(args) == 2 and args[1] in ("-h", "--help") and command in CACHED_HELP:
        from . import help_cache  # `<command> --help` from the cache: no torch, no Lightning

        return help_cache.print_help(command, lambda: _dispatch(args))
    return _dispatch(args)


def _warm_help(ship: bool = False) -> int:
    from . import help_cache

    # one process renders every command at every width: the imports cost seconds, a parser a fraction of one
    texts: dict[str, dict[int, str]] = {}
    failed = []
    for command in CACHED_HELP:
        for width in help_cache.WIDTHS:
            code, text = help_cache.live_help(lambda command=command: _dispatch([command, "--help"]), width)
            if code != 0 or not text.strip():
                failed.append(command)
                break
            texts.setdefault(command, {})[width] = text
            help_cache.store_help(command, text, width)
    texts = {c: t for c, t in texts.items() if c not in failed}
    widths = ", ".join(map(str, help_cache.WIDTHS))
    where = help_cache.cache_dir() if help_cache.enabled() else f"nowhere ({help_cache.ENV_SWITCH}=0)"
    print(f"help texts of {len(texts)} commands at {widths} columns cached in {where}")
    if ship and not failed:
        key = help_cache.environment_key()
        try:
            left_out = help_cache.write_shipped(texts, key)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        libraries = ", ".join(f"{k} {v}" for k, v in key["dependencies"].items() if v)
        print(
            f"shipped in {help_cache.SHIPPED}: {len(texts) - len(left_out)} commands (Python {key['python']}, {libraries})"
        )
        if left_out:
            print(f"not shipped (their help shows paths of this machine): {', '.join(left_out)}", file=sys.stderr)
    if failed:
        print(f"error: --help failed for {', '.join(failed)}: run `<command> --help` to see why", file=sys.stderr)
        return 2
    return 0


def _dispatch(args: list[str]) -> int:
    command = args[0]
    debug = os.environ.get("I2E_DEBUG", "") not in ("", "0")
    try:
        from ..config_files import resolve_config_args

        # --config fashion_mnist: a shipped config by name, from any directory
        args = [command, *resolve_config_args(args[1:])]
        if command in EXTRA_COMMANDS:
            return int(_resolve_extra(command)(args[1:]) or 0)
        if command not in LIGHTNING_COMMANDS and not command.startswith("-"):
            print(f"error: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
            return 2
        from .lightning_cli import main as lightning_main

        lightning_main(args)
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

        from ..training.checkpoint import CheckpointWriteError  # imported late: `--help` stays torch-free

        if isinstance(exc, (MisconfigurationException, CheckpointWriteError)) and not debug:
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
