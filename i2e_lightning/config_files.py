"""The shipped LightningCLI configs: where they are, what they are called, and bare names resolved to files.

A checkout keeps them in the top-level ``configs/`` folder; a wheel carries the same files inside the
package as ``i2e_lightning/configs`` (copied there by ``setup.py``). So ``--config fashion_mnist``
(or ``tests/tiny``, or the README's ``configs/fashion_mnist.yaml``) finds the file from any directory.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ConfigNotFoundError", "configs_dir", "list_configs", "resolve_config", "resolve_config_args"]

_PACKAGE = Path(__file__).resolve().parent
_SUFFIXES = (".yaml", ".yml")


class ConfigNotFoundError(FileNotFoundError):
    """``--config NAME`` names neither a file nor a shipped config."""


def configs_dir() -> Path | None:
    """The folder of the shipped configs: the installed package's, else the checkout's ``configs/``."""
    installed = _PACKAGE / "configs"
    if installed.is_dir():
        return installed
    checkout = _PACKAGE.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "configs").is_dir():
        return checkout / "configs"
    return None


def _describe(path: Path) -> str:
    # the first comment line of a config says what it is (e.g. "THE DEFAULT: I2E Fashion-MNIST ...")
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            text = line.strip()
            if text.startswith("#"):
                return text.lstrip("#").strip()
            if text:
                break
    except OSError:
        pass
    return ""


def list_configs() -> list[tuple[str, str]]:
    """``(name, description)`` of every shipped config; ``name`` is what ``--config`` accepts."""
    root = configs_dir()
    if root is None:
        return []
    files = sorted(p for p in root.rglob("*") if p.suffix in _SUFFIXES and p.is_file())
    return [(p.relative_to(root).with_suffix("").as_posix(), _describe(p)) for p in files]


def resolve_config(value: str) -> str:
    """A ``--config`` value as a path: an existing file is kept, else a shipped config's name is looked up.

    Accepted names: ``fashion_mnist``, ``fashion_mnist.yaml``, ``tests/tiny``, ``configs/fashion_mnist.yaml``.
    A value that is inline YAML (LightningCLI accepts ``--config '{...}'``) is returned unchanged.
    Raises :class:`ConfigNotFoundError` (one line naming the choices) when nothing matches.
    """
    text = str(value)
    if Path(text).expanduser().is_file() or "\n" in text or text.lstrip().startswith("{") or ":" in text:
        return text
    root = configs_dir()
    name = text.replace("\\", "/")
    if name.startswith("configs/"):
        name = name[len("configs/") :]
    if root is not None:
        candidates = [name] if Path(name).suffix in _SUFFIXES else [name + s for s in _SUFFIXES]
        for candidate in candidates:
            path = root / candidate
            if path.is_file() and path.resolve().is_relative_to(root.resolve()):
                return str(path)
    names = ", ".join(n for n, _ in list_configs()) or "none are installed"
    raise ConfigNotFoundError(
        f"config {text!r} is neither a file nor a shipped config; pass a YAML path or one of: {names} "
        "(`i2e-lightning configs` lists them)"
    )


def resolve_config_args(argv: list[str]) -> list[str]:
    """Command-line arguments with every ``--config`` / ``-c`` value passed through :func:`resolve_config`."""
    out: list[str] = []
    take_next = False
    for arg in argv:
        if take_next:
            out.append(resolve_config(arg))
            take_next = False
        elif arg in ("--config", "-c"):
            out.append(arg)
            take_next = True
        elif arg.startswith("--config="):
            out.append("--config=" + resolve_config(arg[len("--config=") :]))
        else:
            out.append(arg)
    return out
