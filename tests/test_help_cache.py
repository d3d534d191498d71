"""``<command> --help`` from the cache: the same text as the live one, regenerated when its key changes,
and printed without importing torch (issue 11 point 7; the timing itself is benchmarks/startup.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from i2e_lightning import commands
from i2e_lightning.commands import help_cache
from tests.helpers.cli import cli_env


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("I2E_HELP_CACHE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "100")
    # the user's cache alone: the texts shipped in the package are tested below
    monkeypatch.setattr(help_cache, "SHIPPED", tmp_path / "no_shipped_texts")
    return tmp_path / "cache" / "i2e_lightning" / "help"


def _counting_dispatch(monkeypatch) -> list[list[str]]:
    calls: list[list[str]] = []
    live = commands._dispatch

    def dispatch(args):
        calls.append(args)
        return live(args)

    monkeypatch.setattr(commands, "_dispatch", dispatch)
    return calls


def test_the_cached_text_is_the_live_text(cache, monkeypatch, capsys):
    calls = _counting_dispatch(monkeypatch)
    assert commands.main(["convert", "--help"]) == 0
    live = capsys.readouterr().out
    assert "--data.init_args" in live or "--data " in live
    assert [p.read_text() for p in cache.glob("convert-*.txt")] == [live]
    assert commands.main(["convert", "-h"]) == 0
    assert capsys.readouterr().out == live and len(calls) == 1  # the second came from the cache
    monkeypatch.setenv("I2E_HELP_CACHE", "0")
    assert commands.main(["convert", "--help"]) == 0
    assert capsys.readouterr().out == live and len(calls) == 2  # switched off: live again, same text


def test_a_changed_key_regenerates(cache, monkeypatch, capsys):
    calls = _counting_dispatch(monkeypatch)
    assert commands.main(["download", "--help"]) == 0
    first = capsys.readouterr().out
    key = help_cache.help_key

    for change in ({"source": "edited"}, {"dependencies": {"torch": "9.9"}}, {"columns": 61}):
        monkeypatch.setattr(help_cache, "help_key", lambda c, change=change: {**key(c), **change})
        before = len(calls)
        assert commands.main(["download", "--help"]) == 0
        assert len(calls) == before + 1, change  # a miss: the live help ran
        assert capsys.readouterr().out == first  # (its text does not depend on the faked key)
        assert commands.main(["download", "--help"]) == 0 and len(calls) == before + 1  # stored again
        capsys.readouterr()
    assert len(list(cache.glob("download-*.txt"))) == help_cache._KEEP_PER_COMMAND


def test_help_key_follows_the_terminal_width_and_the_sources(cache, monkeypatch):
    a = help_cache.help_key("fit")
    monkeypatch.setenv("COLUMNS", "60")  # narrower than the narrowest width bucket (80): its own width
    assert help_cache.help_key("fit")["columns"] == 60 != a["columns"]
    monkeypatch.setenv("COLUMNS", "150")
    assert help_cache.help_key("fit")["columns"] == 120 != a["columns"]
    assert a["source"] == help_cache.source_hash() and len(a["source"]) == 64
    assert a["dependencies"]["lightning"] and a["dependencies"]["jsonargparse"]


def test_a_failing_help_is_not_stored(cache, monkeypatch, capsys):
    monkeypatch.setattr(commands, "_dispatch", lambda args: 2)
    assert commands.main(["convert", "--help"]) == 2
    assert not cache.exists() or not list(cache.glob("*.txt"))


def test_warm_cache_help_imports_no_torch(cache, tmp_path, capsys):
    assert commands.main(["fit", "--help"]) == 0  # in this process: live, stored
    live = capsys.readouterr().out
    assert "--trainer" in live
    code = (
        "import runpy, sys\n"
        "sys.argv = ['i2e_lightning', 'fit', '--help']\n"
        "try:\n    runpy.run_module('i2e_lightning', run_name='__main__')\n"
        "except SystemExit as exc:\n    code = exc.code\n"
        "heavy = sorted(m for m in ('torch', 'lightning', 'jsonargparse') if m in sys.modules)\n"
        "print('EXIT', code, 'HEAVY', heavy, file=sys.stderr)\n"
    )
    env = {**cli_env(), "I2E_HELP_CACHE": "1", "XDG_CACHE_HOME": str(tmp_path / "cache"), "COLUMNS": "100"}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "EXIT 0 HEAVY []" in res.stderr, res.stderr[-2000:]
    assert res.stdout == live


@pytest.mark.slow
def test_warm_help_fills_the_cache_for_every_command(cache, capsys):
    assert commands.main(["--warm-help"]) == 0
    assert "cached in" in capsys.readouterr().out
    names = {p.name.rsplit("-", 1)[0] for p in cache.glob("*.txt")}
    assert len(list(cache.glob("fit-*.txt"))) == len(help_cache.WIDTHS)  # every width bucket, in one process
    assert (
        names
        == set(commands.CACHED_HELP)
        == {*commands.LIGHTNING_COMMANDS, *commands.EXTRA_COMMANDS}
        - {
            "bench",
            "configs",
        }
    )


# -- the width buckets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("columns", "width"), [(40, 40), (79, 79), (80, 80), (99, 80), (100, 100), (119, 100), (120, 120), (300, 120)]
)
def test_render_width_buckets(columns, width):
    assert help_cache.render_width(columns) == width


def test_a_miss_renders_at_the_bucket_width(cache, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "119")
    assert commands.main(["convert", "--help"]) == 0
    text = capsys.readouterr().out
    assert os.environ["COLUMNS"] == "119"  # the terminal's width is back

    def live(width):
        return help_cache.live_help(lambda: commands._dispatch(["convert", "--help"]), width)[1]

    assert text == live(100) != live(119)  # rendered at the bucket's width, not the terminal's
    monkeypatch.setenv("COLUMNS", "100")
    calls = _counting_dispatch(monkeypatch)
    assert commands.main(["convert", "--help"]) == 0
    assert capsys.readouterr().out == text and calls == []  # the same bucket: from the cache


def test_help_cache_off_renders_live_at_the_terminal_width(monkeypatch, capsys):
    monkeypatch.setenv("I2E_HELP_CACHE", "0")
    monkeypatch.setenv("COLUMNS", "150")
    calls = _counting_dispatch(monkeypatch)
    assert commands.main(["convert", "--help"]) == 0
    assert len(calls) == 1 and max(map(len, capsys.readouterr().out.splitlines())) > 120  # not the 120 bucket


# -- the help surface ------------------------------------------------------------------------------

_PACKAGE = {
    "converter/i2e.py": (
        "import torch\n"
        "DEFAULT_RATIO = 0.12\n"
        "class I2E(torch.nn.Module):\n"
        '    """The converter."""\n'
        "    def __init__(self, ratio: float = DEFAULT_RATIO) -> None:\n"
        "        super().__init__()\n"
        "        self.ratio = ratio\n"
        "    def forward(self, x):\n"
        '        """Convert ``x``."""\n'
        "        return x * self.ratio  # the events\n"
        "    def wrap(self, *args, **kwargs):\n"
        "        return self.forward(**kwargs)\n"
    ),
    "data/sizes.py": "def default_size():\n    return 28\nSIZE = default_size()\ndef other():\n    return 1\n",
    "commands/convert.py": "def build_parser(p):\n    p.add_argument('--x', default=1)\n",
}


def _surface(**replace: tuple[str, str]) -> str:
    sources = dict(_PACKAGE)
    for rel, (old, new) in replace.items():
        rel = rel.replace("__", "/").replace("_py", ".py")
        assert old in sources[rel], old
        sources[rel] = sources[rel].replace(old, new)
    return help_cache.surface_hash(sources)


@pytest.mark.parametrize(
    "edit",
    [
        {"converter__i2e_py": ("# the events", "# the output spikes")},  # a comment
        {"converter__i2e_py": ("return x * self.ratio", "y = x\n        return y * self.ratio")},  # forward's body
        {"converter__i2e_py": ("import torch\n", "import torch\n\n\n")},  # layout
        {"data__sizes_py": ("return 1", "return 2")},  # a body no import runs
    ],
)
def test_edits_no_help_can_show_keep_the_surface(edit):
    assert _surface(**edit) == _surface()


@pytest.mark.parametrize(
    "edit",
    [
        {"converter__i2e_py": ("ratio: float = DEFAULT_RATIO", "ratio: float = 0.2")},  # a signature default
        {"converter__i2e_py": ("DEFAULT_RATIO = 0.12", "DEFAULT_RATIO = 0.1")},  # a module-level constant
        {"converter__i2e_py": ('"""Convert ``x``."""', '"""Convert ``x`` to events."""')},  # a docstring
        {"converter__i2e_py": ("self.ratio = ratio", "self.ratio = 2 * ratio")},  # an __init__ body
        {"converter__i2e_py": ("return self.forward(**kwargs)", "return self.forward(x=1, **kwargs)")},  # **kwargs
        {"data__sizes_py": ("return 28", "return 32")},  # a function run at import (SIZE = default_size())
        {"commands__convert_py": ("default=1", "default=2")},  # the command layer builds the parsers
    ],
)
def test_edits_a_help_can_show_change_the_surface(edit):
    assert _surface(**edit) != _surface()


def test_the_real_converter_forward_body_and_comments_are_not_in_the_surface():
    import ast

    sources = help_cache.package_sources()
    before = help_cache.surface_hash(sources)
    text = sources["converter/i2e.py"]
    forward = next(n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.FunctionDef) and n.name == "forward")
    first = forward.body[1] if ast.get_docstring(forward) is not None else forward.body[0]
    lines = text.splitlines(keepends=True)
    lines.insert(first.lineno - 1, " " * first.col_offset + "unused = 0  # an edit of the body\n")
    edited = {**sources, "converter/i2e.py": "".join(lines)}
    assert help_cache.surface_hash(edited) == before
    edited["commands/convert.py"] = sources["commands/convert.py"].replace('default="train"', 'default="test"')
    assert edited["commands/convert.py"] != sources["commands/convert.py"]
    assert help_cache.surface_hash(edited) != before


def test_the_surface_is_remembered_under_the_files_bytes(cache, monkeypatch):
    first = help_cache.source_hash()
    assert [p.read_text() for p in cache.glob("surface-*.sha256")] == [first]
    monkeypatch.setattr(help_cache, "surface_hash", lambda sources: pytest.fail("computed again"))
    assert help_cache.source_hash() == first


# -- the texts shipped in the package ----------------------------------------------------------------


def test_shipped_help_texts_are_up_to_date():
    shipped = help_cache.shipped_key()
    current = help_cache.surface_hash(help_cache.package_sources())
    if shipped is None or shipped["source"] != current:
        pytest.fail("help texts are out of date: run make docs", pytrace=False)
    names = {p.name for p in help_cache.SHIPPED.glob("*.txt")}
    assert names == {f"{c}.{w}.txt" for c in commands.CACHED_HELP for w in help_cache.WIDTHS}
    assert shipped["env"] == {} and all(shipped["dependencies"][n] for n in ("lightning", "torch", "jsonargparse"))


def test_shipped_help_texts_show_nothing_of_the_machine_that_rendered_them():
    for path in help_cache.SHIPPED.glob("*.txt"):
        text = path.read_text()
        assert "/work/" not in text and "/home/" not in text and "/root" not in text, path.name
        assert not help_cache.machine_specific(text), path.name


def test_shipped_texts_are_served_where_the_user_cache_misses(cache, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "shipped"
    monkeypatch.setattr(help_cache, "SHIPPED", folder)
    key = help_cache.environment_key()
    texts = {"download": {w: f"shipped download help at {w}\n" for w in help_cache.WIDTHS}}
    assert help_cache.write_shipped(texts, key, folder) == []
    calls = _counting_dispatch(monkeypatch)
    assert commands.main(["download", "--help"]) == 0
    assert capsys.readouterr().out == "shipped download help at 100\n" and calls == []
    assert not list(cache.glob("download-*.txt"))  # nothing rendered, nothing stored
    monkeypatch.setenv("COLUMNS", "130")
    assert commands.main(["download", "--help"]) == 0
    assert capsys.readouterr().out == "shipped download help at 120\n" and calls == []
    monkeypatch.setenv("COLUMNS", "70")  # no shipped text at 70 columns: live
    assert commands.main(["download", "--help"]) == 0
    assert "--dir" in capsys.readouterr().out and len(calls) == 1
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("JSONARGPARSE_DEFAULT_ENV", "false")  # another key: live
    assert commands.main(["download", "--help"]) == 0
    assert "--dir" in capsys.readouterr().out and len(calls) == 2
    monkeypatch.delenv("JSONARGPARSE_DEFAULT_ENV")
    other = {**key, "dependencies": {**key["dependencies"], "jsonargparse": "0.0.1"}}
    help_cache.write_shipped(texts, other, folder)  # rendered with other libraries: not used
    assert help_cache.shipped_help(help_cache.help_key("download")) is None


def test_write_shipped_leaves_out_texts_showing_the_machine(tmp_path):
    key = {"source": "x", "python": "3", "dependencies": {}, "env": {}}
    texts = {"a": {80: "fine\n"}, "b": {80: f"default: {Path.home()}/data\n"}}
    assert help_cache.write_shipped(texts, key, tmp_path) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.80.txt", "key.json"]
    with pytest.raises(ValueError, match="JSONARGPARSE_DEBUG"):
        help_cache.write_shipped(texts, {**key, "env": {"JSONARGPARSE_DEBUG": "1"}}, tmp_path)


def test_versions_are_importlib_metadata_s():
    from importlib import metadata

    names = (*help_cache.DEPENDENCIES, "numpy", "PyYAML", "no-such-distribution-i2e")
    found = help_cache.versions(names)
    for name in names:
        try:
            assert found[name] == metadata.version(name), name
        except metadata.PackageNotFoundError:
            assert found[name] is None


@pytest.mark.slow
def test_a_shipped_text_is_the_live_text():
    key = help_cache.environment_key()
    if help_cache.shipped_key() != key:
        pytest.skip("the shipped texts were rendered under another key (libraries, Python or sources)")
    # a fresh process: the help lists the Callback subclasses imported so far, which in the test process
    # depends on the tests that ran before
    code = "from i2e_lightning.commands import _dispatch, help_cache; import sys; " + (
        "c, t = help_cache.live_help(lambda: _dispatch(['fit', '--help']), 100); sys.stdout.write(t); sys.exit(c)"
    )
    env = {**os.environ, "I2E_HELP_CACHE": "0"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0 and res.stdout == (help_cache.SHIPPED / "fit.100.txt").read_text()


def test_an_unedited_install_takes_the_surface_from_the_shipped_key(cache, tmp_path, monkeypatch):
    folder = tmp_path / "shipped"
    monkeypatch.setattr(help_cache, "SHIPPED", folder)
    key = help_cache.environment_key()  # computes the surface (and remembers it in the user cache)
    help_cache.write_shipped({"download": {80: "x\n"}}, key, folder)
    for remembered in cache.glob("surface-*.sha256"):
        remembered.unlink()
    monkeypatch.setattr(help_cache, "surface_hash", lambda sources: pytest.fail("parsed although unedited"))
    assert help_cache.source_hash() == key["source"]
    monkeypatch.setattr(help_cache, "package_sources", lambda: {"edited.py": "x = 1\n"})
    with pytest.raises(pytest.fail.Exception, match="parsed although unedited"):
        help_cache.source_hash()  # other bytes: parsed
