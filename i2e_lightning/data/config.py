"""Build a DataModule from the ``data:`` section of a LightningCLI YAML config, outside of the CLI.

The keys and values are checked by a jsonargparse parser built the way LightningCLI builds its ``data``
group (``add_subclass_arguments(I2EDataModule, "data")``), so a config accepted here is accepted by ``fit``
and the other way round; arguments a DataModule forwards with ``**kwargs`` are followed to its base.
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .base import I2EDataModule

__all__ = ["add_data_arguments", "data_error_reason", "datamodule_from_config", "resolve_datamodule_class"]


def resolve_datamodule_class(class_path: str, where: str = "data.class_path") -> type[I2EDataModule]:
    """``"i2e_lightning.data.CIFAR10DataModule"`` or a bare ``"CIFAR10DataModule"`` -> the class."""
    from . import __all__ as known  # the package's public DataModules, for bare names and the error text

    if not isinstance(class_path, str) or not class_path.strip():
        raise ValueError(f"{where} must be a class path string, got {class_path!r}")
    module_name, _, name = class_path.rpartition(".")
    if not module_name:
        module_name = "i2e_lightning.data"
    if _source_lacks_class(module_name, name):
        raise ValueError(
            f"{where}: {class_path!r} is not a DataModule: {module_name} defines no class {name!r} (checked without "
            "importing it, which could run its code); give an I2EDataModule subclass, e.g. "
            "i2e_lightning.data.FashionMNISTDataModule"
        )
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, name)
    except (ImportError, AttributeError) as exc:
        choices = ", ".join(n for n in known if n.endswith("DataModule") and n != "I2EDataModule")
        raise ValueError(f"{where}: cannot import {class_path!r} ({exc}); the built-in ones are {choices}") from exc
    if not (isinstance(cls, type) and issubclass(cls, I2EDataModule)):
        raise ValueError(f"{where}: {class_path!r} is not an I2EDataModule subclass")
    return cls


def _module_source(module_name: str) -> str | None:
    """The source of a module found on ``sys.path`` without importing it or its packages (None: unknown)."""
    from importlib.machinery import PathFinder

    search = None
    spec = None
    for part in module_name.split("."):
        spec = PathFinder.find_spec(part, search)
        if spec is None:
            return None
        search = spec.submodule_search_locations
    origin = getattr(spec, "origin", None)
    if not origin or not str(origin).endswith(".py"):
        return None
    try:
        return Path(origin).read_text(encoding="utf-8")
    except OSError:
        return None


def _source_lacks_class(module_name: str, name: str) -> bool:
    """True when ``module_name``'s source neither defines nor imports a class ``name`` (read, not run)."""
    import ast
    import sys

    if module_name in sys.modules:  # already imported: nothing left to protect
        return False
    source = _module_source(module_name)
    if source is None:
        return False  # a built-in, compiled or namespace module: only the import can tell
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == name and node.bases:
            return False
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any((a.asname or a.name) == name for a in node.names):
            return False
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return False
    return True


def datamodule_from_config(path: str | Path, **init_overrides: Any) -> I2EDataModule:
    """Instantiate ``data: {class_path: ..., init_args: {...}}`` of the YAML at ``path``.

    ``init_overrides`` replace or add init args (e.g. ``subset=64``). Errors name the file and key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(config, dict) or "data" not in config:
        raise ValueError(f"{path}: no 'data' section (expected data: {{class_path: ..., init_args: {{...}}}})")
    data = config["data"]
    if not isinstance(data, dict) or "class_path" not in data:
        raise ValueError(
            f"{path}: key 'data.class_path' is missing: name the DataModule, e.g. "
            "data: {class_path: i2e_lightning.data.FashionMNISTDataModule, init_args: {...}}"
        )
    unknown_keys = set(data) - {"class_path", "init_args", "dict_kwargs"}
    if unknown_keys:
        raise ValueError(
            f"{path}: unknown key(s) {sorted(unknown_keys)} in 'data' (put DataModule arguments under data.init_args)"
        )
    cls = resolve_datamodule_class(data["class_path"], where=f"{path}: data.class_path")
    init_args = data.get("init_args") or {}
    if not isinstance(init_args, dict):
        raise ValueError(f"{path}: 'data.init_args' must be a mapping, got {type(init_args).__name__}")
    extra = dict(data.get("dict_kwargs") or {})  # LightningCLI's place for untyped **kwargs: passed unchecked
    init_args = {**init_args, **init_overrides}
    valid = _init_keys(cls)
    for key in init_args:
        if key not in valid:
            raise ValueError(f"{path}: unknown key 'data.init_args.{key}' for {cls.__name__}; valid keys: {valid}")
    from jsonargparse import ArgumentError

    try:
        parsed = _parser().parse_object({"data": {"class_path": _class_path(cls), "init_args": init_args}})
    except ArgumentError as exc:
        raise ValueError(f"{path}: bad 'data.init_args' for {cls.__name__}: {data_error_reason(exc)}") from exc
    try:
        return cls(**parsed.data.init_args.as_dict(), **extra)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: bad 'data.init_args' for {cls.__name__}: {exc}") from exc


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@cache
def _parser():  # noqa: ANN202 - jsonargparse is imported lazily
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    add_data_arguments(parser, required=True)
    return parser


def add_data_arguments(parser: Any, required: bool = True) -> None:
    """The ``data`` group as LightningCLI adds it (``subclass_mode_data=True``); the command tools use it too."""
    parser.add_subclass_arguments(I2EDataModule, "data", fail_untyped=False, required=required)


@cache
def _init_keys(cls: type[I2EDataModule]) -> list[str]:
    """The init arguments of ``cls`` as jsonargparse (and so LightningCLI) resolves them, ``**kwargs`` followed."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "data", fail_untyped=False)
    return [action.dest.removeprefix("data.") for action in parser._actions if action.dest.startswith("data.")]


def data_error_reason(exc: Exception) -> str:
    """jsonargparse's nested message about one subclass -> its informative lines on one line."""
    lines = [line.strip(" -") for line in str(exc).splitlines()]
    noise = ('Parser key "data"', "Does not validate against", "Subtypes:", "Errors:", "Problem with given class_path")
    kept = []
    for line in lines:
        if line.startswith("Expected a <class 'NoneType'>"):
            break
        if line and not line.startswith(noise):
            kept.append(line)
    return " ".join(kept) or str(exc)
