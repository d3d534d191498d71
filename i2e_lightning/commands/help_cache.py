"""``<command> --help`` without waiting for torch and Lightning: from a per-user cache, else from texts shipped in the package.

Building a subcommand's parser imports the classes it describes (Lightning's Trainer, our model and
DataModules, and torch with them): 8 to 11 s on a small machine. The text depends only on what the
parsers read and on the terminal width, so it is looked up under a key of exactly that:

* the command and the package's **help surface** (:func:`source_hash`): the sources with the bodies of
  plain functions left out, so that editing code that cannot show in a help text (a comment, the
  converter's ``forward``) keeps every text valid, while a signature, a default, a docstring or a
  module-level constant changes the key;
* the versions of the libraries whose classes and docstrings the parsers read (lightning, torch,
  jsonargparse, ...) and of Python, and the ``JSONARGPARSE_*`` settings;
* the width the text is rendered at: the terminal's width clamped to 80-120 columns and rounded down
  to a multiple of 20 (80, 100 or 120), so that resizing a terminal rarely misses; terminals narrower
  than 80 columns get their own width.

Where the text is found, in order:

1. ``$XDG_CACHE_HOME/i2e_lightning/help`` (``~/.cache/...`` by default): what an earlier ``--help``
   rendered on this machine. ``python -m i2e_lightning --warm-help`` fills it for every command at the
   three widths (``make install`` runs it).
2. ``help_texts/`` beside this module, in the package (and the wheel): the texts rendered at the three
   widths by ``make docs`` (``python -m i2e_lightning --warm-help --ship``), with the key they were
   rendered under; used only where that key equals this installation's exactly (same surface, same
   library and Python versions, no ``JSONARGPARSE_*`` setting). This covers a fresh clone, ``pip install``
   of the wheel and ``pip install -e .`` without ``make install``.
3. Otherwise the parser is built (seconds) at the key's width and the text stored in 1.

``I2E_HELP_CACHE=0`` turns all of it off: ``--help`` is rendered live at the terminal's own width.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
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
WIDTHS = (80, 100, 120)  # the widths texts are rendered at (terminals at least 80 columns wide)
SHIPPED = Path(__file__).resolve().with_name("help_texts")
_PACKAGE = Path(__file__).resolve().parents[1]
_KEEP_PER_COMMAND = 4  # other terminal widths, other checkouts: a few texts per command, oldest removed
_KEEP_SURFACES = 4

# The help surface. jsonargparse reads signatures, type hints and docstrings; it also reads the source of a
# function or method that takes *args/**kwargs, to follow them (`super().__init__(**kwargs)`, `kwargs.get("x", 1)`),
# and of `__init__`/`__new__`. The command modules build the parsers when they run, so all of their code counts.
_WHOLE_DIRS = ("commands/",)
_WHOLE_FILES = ("config_files.py",)
_WHOLE_FUNCTIONS = {"__init__", "__new__"}
# the commands whose --help is a fixed text, never cached: their modules cannot change a cached text
_NOT_SURFACE = ("commands/bench.py", "commands/configs.py")
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "i2e_lightning" / "help"


def render_width(columns: int | None = None) -> int:
    """The width a help text is rendered at for a terminal ``columns`` wide (default: this terminal)."""
    if columns is None:
        columns = shutil.get_terminal_size().columns
    if columns < WIDTHS[0]:
        return columns
    return min(columns, WIDTHS[-1]) // 20 * 20


# -- the help surface ------------------------------------------------------------------------------


def package_sources() -> dict[str, str]:
    """``{path relative to the package: source}`` of the modules the cached help texts can depend on."""
    sources = {}
    for path in sorted(_PACKAGE.rglob("*.py")):
        rel = path.relative_to(_PACKAGE).as_posix()
        if rel not in _NOT_SURFACE:
            sources[rel] = path.read_text(encoding="utf-8")
    return sources


def surface_hash(sources: dict[str, str]) -> str:
    """sha256 of the help surface of ``sources`` (``{relative path: source}``); see the module's docstring.

    Functions called while a module is imported (a default computed by a helper, a decorator) run before any
    parser is built, so they keep their bodies too, with what they call, as far as plain names resolve to
    functions of the package."""
    trees = {rel: ast.parse(text, filename=rel) for rel, text in sorted(sources.items())}
    called = _called_at_import(trees)
    digest = hashlib.sha256()
    for rel, tree in trees.items():
        if not (rel.startswith(_WHOLE_DIRS) or rel in _WHOLE_FILES):
            _strip_bodies(tree, called.get(rel, set()))
        digest.update(rel.encode())
        digest.update(b"\0")
        digest.update(_canonical(tree).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def files_hash(sources: dict[str, str]) -> str:
    """A hash of the sources' bytes (a few ms, where their help surface costs ~0.5 s of parsing)."""
    return hashlib.sha256(json.dumps(sources, sort_keys=True).encode()).hexdigest()[:24]


def source_hash() -> str:
    """The help surface of this package (:func:`surface_hash`), remembered under a hash of the files' bytes: in
    the user cache, and in the shipped texts' key (the files of an unedited clone or install, parsed by ``make docs``)."""
    sources = package_sources()
    raw = files_hash(sources)
    path = cache_dir() / f"surface-{raw}.sha256"
    known = _read(path) if enabled() else None
    if known is not None and len(known) == 64:
        return known
    meta = _shipped_meta()
    if meta.get("files") == raw and isinstance(meta.get("key"), dict) and len(meta["key"].get("source", "")) == 64:
        return meta["key"]["source"]
    surface = surface_hash(sources)
    if enabled():
        _write(path, surface, keep=_KEEP_SURFACES)
    return surface


def _module_of(rel: str, level: int, module: str | None) -> str | None:
    """The relative path of the module ``from <level dots><module> import ...`` names in ``rel``, if in the package."""
    if level == 0:
        return None
    base = rel.split("/")[:-1]  # the package the module is in (for a/b.py and a/__init__.py alike: a)
    if level - 1 > len(base):
        return None
    return "/".join([*base[: len(base) - (level - 1)], *(module.split(".") if module else [])])


def _called_at_import(trees: dict[str, ast.Module]) -> dict[str, set[str]]:
    """``{module: names of its top-level functions}`` that run while the package's modules are imported."""
    functions = {rel: {n.name: n for n in tree.body if isinstance(n, _FUNCTIONS)} for rel, tree in trees.items()}
    imported: dict[str, dict[str, tuple[str, str]]] = {}
    for rel, tree in trees.items():
        names = imported.setdefault(rel, {})
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = _module_of(rel, node.level, node.module)
                for alias in node.names:
                    for candidate in (f"{target}.py", f"{target}/__init__.py"):
                        if target is not None and candidate in trees:
                            names[alias.asname or alias.name] = (candidate, alias.name)

    def resolve(rel: str, name: str) -> tuple[str, str] | None:
        if name in functions[rel]:
            return rel, name
        where = imported[rel].get(name)
        return where if where is not None and where[1] in functions[where[0]] else None

    kept: dict[str, set[str]] = {}
    todo = [
        (rel, call.func.id)
        for rel, tree in trees.items()
        for node in _import_time_nodes(tree)
        for call in ast.walk(node)
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
    ]
    while todo:
        rel, name = todo.pop()
        found = resolve(rel, name)
        if found is None or found[1] in kept.setdefault(found[0], set()):
            continue
        kept[found[0]].add(found[1])
        body = functions[found[0]][found[1]].body
        todo += [
            (found[0], c.func.id)
            for s in body
            for c in ast.walk(s)
            if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
        ]
    return kept


def _import_time_nodes(tree: ast.Module) -> Iterator[ast.AST]:
    """The expressions a module runs when imported: everything but function bodies (their signatures and
    decorators included)."""
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if _is_main_guard(node):
            continue  # `if __name__ == "__main__":` runs when the module is a script, not when it is imported
        if isinstance(node, _FUNCTIONS):
            yield from node.decorator_list
            yield node.args
            if node.returns is not None:
                yield node.returns
        elif isinstance(node, (ast.stmt, ast.excepthandler, ast.match_case)):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.stmt, ast.excepthandler, ast.match_case)):
                    stack.append(child)
                else:
                    yield child


def _is_main_guard(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )


def _strip_bodies(tree: ast.Module, called: set[str]) -> None:
    """Replace the bodies of the functions no parser reads by their docstrings, in place."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, _FUNCTIONS):
                top_level = node is tree
                if (
                    child.name in _WHOLE_FUNCTIONS
                    or child.args.vararg is not None
                    or child.args.kwarg is not None
                    or (top_level and child.name in called)
                ):
                    continue  # kept whole, nested functions included
                doc = ast.get_docstring(child, clean=False)
                child.body = [ast.Expr(ast.Constant(doc))] if doc is not None else []
            elif isinstance(child, (ast.stmt, ast.excepthandler, ast.match_case)):
                stack.append(child)


def _canonical(node: object) -> str:
    """``ast.dump`` without positions, and without the empty fields that differ between Python versions."""
    if isinstance(node, ast.AST):
        fields = []
        for name in node._fields:
            value = getattr(node, name, None)
            if value is None or (isinstance(value, list) and not value):
                continue
            fields.append(f"{name}={_canonical(value)}")
        return f"{type(node).__name__}({','.join(fields)})"
    if isinstance(node, list):
        return "[" + ",".join(_canonical(v) for v in node) + "]"
    return repr(node)


# -- keys and texts ----------------------------------------------------------------------------------


def environment_key() -> dict:
    """The part of the key that is the same for every command and width: surface, libraries, settings."""
    return {
        "source": source_hash(),
        "python": sys.version.split()[0],
        "dependencies": versions(DEPENDENCIES),
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("JSONARGPARSE_")},
    }


def versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """The installed version of each distribution: from the ``NAME-VERSION.dist-info`` folders on ``sys.path``
    (the first wins, as for imports), else from ``importlib.metadata``, whose import alone costs ~60 ms."""
    wanted = {_normalize(n): n for n in names}
    found: dict[str, str | None] = {}
    for entry in sys.path:
        with contextlib.suppress(OSError), os.scandir(entry or ".") as it:
            for item in it:
                if item.name.endswith(".dist-info"):
                    name, _, version = item.name[: -len(".dist-info")].partition("-")
                    found.setdefault(wanted.get(_normalize(name), ""), version)
    missing = [n for n in names if n not in found]
    if missing:
        from importlib import metadata

        for name in missing:
            try:
                found[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                found[name] = None
    return {n: found[n] for n in names}


def _normalize(name: str) -> str:
    return name.replace("-", "_").replace(".", "_").lower()


def help_key(command: str, columns: int | None = None) -> dict:
    """Everything the help text of ``command`` depends on (at a terminal ``columns`` wide; default: this one)."""
    return {"command": command, **environment_key(), "columns": render_width(columns)}


def _path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir() / f"{key['command']}-{digest}.txt"


def cached_help(command: str) -> str | None:
    """The stored help text of ``command`` for the current key (the user's cache, then the shipped texts), or None."""
    if not enabled():
        return None
    key = help_key(command)
    text = _read(_path(key))
    return text if text is not None else shipped_help(key)


def shipped_help(key: dict) -> str | None:
    """The text shipped in the package for ``key``, if it was rendered under exactly that key."""
    wanted = {k: v for k, v in key.items() if k not in ("command", "columns")}
    if _shipped_meta().get("key") != wanted:
        return None
    return _read(SHIPPED / f"{key['command']}.{key['columns']}.txt")


def _shipped_meta() -> dict:
    text = _read(SHIPPED / "key.json")
    try:
        meta = json.loads(text) if text is not None else {}
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def store_help(command: str, text: str, columns: int | None = None) -> None:
    """Store ``text`` under the current key (atomically; a cache that cannot be written is skipped)."""
    if enabled():
        _write(_path(help_key(command, columns)), text)


def _write(path: Path, text: str, keep: int = _KEEP_PER_COMMAND) -> None:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False, suffix=".tmp") as f:
            tmp = f.name
            f.write(text)
        os.replace(tmp, path)
        prefix = path.name.rsplit("-", 1)[0]
        older = sorted(path.parent.glob(f"{prefix}-*{path.suffix}"), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in older[keep:]:
            stale.unlink(missing_ok=True)
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


@contextlib.contextmanager
def columns(width: int | None) -> Iterator[None]:
    """Render at ``width`` columns: argparse's formatter asks ``shutil.get_terminal_size``, which reads ``COLUMNS``."""
    if width is None:
        yield
        return
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = before


def live_help(run: Callable[[], int], width: int | None = None) -> tuple[int, str]:
    """Run ``run`` (a command given ``--help``) with stdout captured, at ``width`` columns if given:
    (exit code, the text it printed)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), columns(width):
        try:
            code = run()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return code, buffer.getvalue()


def print_help(command: str, run: Callable[[], int]) -> int:
    """``<command> --help``: the cached or shipped text if the key matches, else the live one (stored for next time)."""
    if not enabled():
        code, text = live_help(run)
        sys.stdout.write(text)
        return code
    key = help_key(command)
    path = _path(key)
    text = _read(path)
    if text is None:
        text = shipped_help(key)
    if text is not None:
        sys.stdout.write(text)
        return 0
    code, text = live_help(run, render_width())
    sys.stdout.write(text)
    if code == 0 and text.strip():
        _write(path, text)
    return code


# -- texts shipped in the package -------------------------------------------------------------------


def machine_specific(text: str) -> list[str]:
    """What in ``text`` belongs to this machine (home, working directory, installation, temp folder)."""
    markers = {str(Path.home()), os.getcwd(), sys.prefix, sys.base_prefix, str(_PACKAGE.parent), tempfile.gettempdir()}
    return sorted(m for m in markers if len(m) > 1 and m in text)


def write_shipped(texts: dict[str, dict[int, str]], key: dict, folder: Path = SHIPPED) -> list[str]:
    """Write ``{command: {width: text}}`` and ``key`` (:func:`environment_key`) as the shipped texts, replacing
    the old ones; commands whose text shows something of this machine are left out. Returns their names."""
    if key.get("env"):
        raise ValueError(f"unset {', '.join(key['env'])} before shipping help texts (they change the texts)")
    left_out = sorted(c for c, by_width in texts.items() if any(machine_specific(t) for t in by_width.values()))
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.txt"):
        old.unlink()
    shipped = {c: by_width for c, by_width in texts.items() if c not in left_out}
    for command, by_width in sorted(shipped.items()):
        for width, text in sorted(by_width.items()):
            (folder / f"{command}.{width}.txt").write_text(text, encoding="utf-8")
    # the bytes the surface was computed from: an unedited clone or install skips parsing them
    files = files_hash(package_sources()) if key["source"] == source_hash() else None
    meta = {"key": key, "files": files, "widths": list(WIDTHS), "commands": sorted(shipped)}
    (folder / "key.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return left_out


def shipped_key() -> dict | None:
    """The key the shipped texts were rendered under (None if there are none)."""
    return _shipped_meta().get("key")
