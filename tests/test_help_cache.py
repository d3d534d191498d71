"""``<command> --help`` from the cache: the same text as the live one, regenerated when its key changes,
and printed without importing torch (issue 11 point 7; the timing itself is benchmarks/startup.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from i2e_lightning import commands
from i2e_lightning.commands import help_cache
from tests.helpers.cli import cli_env


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("I2E_HELP_CACHE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "100")
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
    monkeypatch.setenv("COLUMNS", "150")
    assert help_cache.help_key("fit")["columns"] == 150 != a["columns"]
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
    assert (
        names
        == set(commands.CACHED_HELP)
        == {*commands.LIGHTNING_COMMANDS, *commands.EXTRA_COMMANDS}
        - {
            "bench",
            "configs",
        }
    )
