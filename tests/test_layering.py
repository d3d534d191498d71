"""The package's layers: imports point one way, and only the commands layer parses arguments or exits."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "i2e_lightning"
# what each library package may import from the others (converter <- events <- data <- models/training <- commands)
ALLOWED: dict[str, set[str]] = {
    "converter": set(),
    "events": {"converter"},
    "data": {"converter", "events"},
    "models": {"converter", "events", "data"},
    "training": {"converter", "events", "data", "models"},
    "onnx": {"converter", "events", "data", "models", "training"},
}

# (module, package) pairs that break the direction today, each with its reason; keep this list empty
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}


def _modules(package: str) -> list[Path]:
    return sorted((PACKAGE / package).rglob("*.py"))


def _internal_imports(source: str, rel: Path) -> set[str]:
    """The i2e_lightning subpackages that module ``rel`` (path inside the package) imports, also inside functions."""
    tree = ast.parse(source, filename=str(rel))
    depth = len(rel.parts) - 1  # a module in i2e_lightning/data/ sits 1 below the root
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(rel.parts[:depth])
                if node.level > depth + 1:
                    continue
                base = base[: len(base) - (node.level - 1)]
                mod = [*base, *(node.module.split(".") if node.module else [])]
                if not mod:  # `from .. import models`
                    found.update(a.name for a in node.names)
                    continue
                found.add(mod[0])
                continue
            names = [node.module or ""]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "i2e_lightning" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package: str) -> None:
    subpackages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    for path in _modules(package):
        rel = path.relative_to(PACKAGE)
        used = (_internal_imports(path.read_text(), rel) & subpackages) - {package}
        used -= {p for (m, p) in KNOWN_EXCEPTIONS if m == rel.as_posix()}
        assert used <= ALLOWED[package], f"{path.relative_to(PACKAGE)} imports {sorted(used - ALLOWED[package])}"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_library_packages_hold_no_command_line_code(package: str) -> None:
    for path in _modules(package):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(PACKAGE)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                assert not any(a.name == "argparse" for a in node.names), f"{where} imports argparse"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                f = node.func
                assert not (isinstance(f.value, ast.Name) and f.value.id == "sys" and f.attr == "exit"), (
                    f"{where} calls sys.exit"
                )


def test_layering_check_sees_a_violation() -> None:
    # the checker itself: relative and absolute imports, also inside a function, resolve to their subpackage
    source = (
        "from ..data.config import datamodule_from_config\nfrom .. import models\nfrom .hdf5 import x\n"
        "def f():\n    import i2e_lightning.training.module\n"
    )
    assert _internal_imports(source, Path("events/convert.py")) == {"data", "models", "events", "training"}
