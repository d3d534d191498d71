"""``<command> --help`` from a cache, so that asking for help does not wait for torch and Lightning.

Building a subcommand's parser imports the classes it describes (Lightning's Trainer, our model and
DataModules, and torch with them): 7 to 10 s on a small machine. The help text depends only on the
code and the terminal, so the first ``--help`` of a command stores what it printed under a key of
everything the text depends on, and later calls print it without importing anything heavy:

* the command, this package's version and a hash of its source files (``*.py``);
* the versions of the libraries whose classes and docstrings the parsers read (lightning, torch,
  jsonargparse, ...) and of Python;
* the terminal width (argparse wraps the text to it) and the ``JSONARGPARSE_*`` settings.

Any change of the key misses the cache and regenerates the text. The files live in
``$XDG_CACHE_HOME/i2e_lightning/help`` (``~/.cache/...`` by default); ``I2E_HELP_CACHE=0`` turns the
cache off. ``python -m i2e_lightning --warm-help`` fills it for every command (``make install`` runs it).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ENV_SWITCH = "I2E_HELP_CACHE"
# the distributions whose classes, signatures or docstrings appear in some command's help
DEPENDENCIES = (
    "lightning",
    "torch",
    "jsonargparse",
    "docstring-parser",
    "typeshed-client",
    "snntorch",
    "torchmetrics",
    "onnx",
    "h5py",
    "rich",
)
_PACKAGE = Path(__file__).resolve().parents[1]
_KEEP_PER_COMMAND = 4  # other terminal widths, other checkouts: a few texts per command, oldest removed


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "i2e_lightning" / "help"


def source_hash() -> str:
    """sha256 over this package's ``*.py`` files (paths and contents)."""
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(_PACKAGE).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def help_key(command: str) -> dict:
    """Everything the help text of ``command`` depends on."""
    from importlib import metadata

    from .. import __version__

    versions = {}
    for name in DEPENDENCIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "command": command,
        "version": __version__,
        "source": source_hash(),
        "python": sys.version.split()[0],
        "dependencies": versions,
        "columns": shutil.get_terminal_size().columns,
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("JSONARGPARSE_")},
    }


def _path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir() / f"{key['command']}-{digest}.txt"


def cached_help(command: str) -> str | None:
    """The stored help text of ``command`` for the current key, or None."""
    return _read(_path(help_key(command))) if enabled() else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def store_help(command: str, text: str) -> None:
    """Store ``text`` under the current key (atomically; a cache that cannot be written is skipped)."""
    if enabled():
        _write(_path(help_key(command)), text)


def _write(path: Path, text: str) -> None:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False, suffix=".tmp") as f:
            tmp = f.name
            f.write(text)
        os.replace(tmp, path)
        command = path.name.rsplit("-", 1)[0]
        older = sorted(path.parent.glob(f"{command}-*.txt"), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in older[_KEEP_PER_COMMAND:]:
            stale.unlink(missing_ok=True)
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def live_help(run: Callable[[], int]) -> tuple[int, str]:
    """Run ``run`` (a command given ``--help``) with stdout captured: (exit code, the text it printed)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            code = run()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return code, buffer.getvalue()


def print_help(command: str, run: Callable[[], int]) -> int:
    """``<command> --help``: the cached text if the key matches, else the live one (stored for next time)."""
    path = _path(help_key(command)) if enabled() else None
    text = _read(path) if path is not None else None
    if text is not None:
        sys.stdout.write(text)
        return 0
    code, text = live_help(run)
    sys.stdout.write(text)
    if path is not None and code == 0 and text.strip():
        _write(path, text)
    return code
