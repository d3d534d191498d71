"""The command line of every benchmark script: the grammar the tool commands share (issue 11 point 6).

Each script builds a :class:`BenchParser` (a :class:`~i2e_lightning.commands.arguments.CommandParser`), so
``python benchmarks/<name>.py`` and ``python -m i2e_lightning bench <name>`` take what ``convert`` or ``fit``
take:

* ``--config FILE`` any number of times, merged in order; a bench config holds the script's options
  (``repeats: 3``, ``resolutions: [32, 224]``), later files and options win;
* ``--print_config`` prints the options the script would run with (its defaults included) and exits;
* snake_case option names (``--input_dtype``, ``--no_compile``); the hyphenated spellings of earlier
  releases (``--input-dtype``) still parse, hidden from ``--help``;
* one image-size syntax: ``--resolution 224`` or ``--resolution [224,224]``; a list of sizes is
  ``--resolutions [32,128,224]``. A list option also takes its values space-separated, as before
  (``--resolutions 32 128 224``, ``--input_dtype float32 uint8``);
* a user error is one ``error:`` line on stderr and exit code 2.

The library never imports this module (the benchmarks are not part of the installed package).
"""

from __future__ import annotations

import json
import os
import sys
from argparse import RawDescriptionHelpFormatter
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NoReturn, get_args, get_origin

import yaml
from jsonargparse import ActionYesNo, DefaultHelpFormatter, Namespace

from i2e_lightning.commands.arguments import (
    TRAINING_KEYS,
    Alias,
    CommandParser,
    UsageError,
    fail,
    parse,
    rename,
    resolution_pair,
)

__all__ = ["BenchParser", "parse_bench", "rename", "square", "usage_error"]


class _HelpFormatter(DefaultHelpFormatter, RawDescriptionHelpFormatter):
    """jsonargparse's help (types, defaults) under the script's docstring as written (its usage examples)."""


class BenchParser(CommandParser):
    """The parser of one benchmark script, ``python -m i2e_lightning bench <name>``."""

    def __init__(self, name: str | None = None, description: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(None if name is None else f"bench {name}", description=description, **kwargs)
        # options whose values may follow space-separated (argparse's nargs="+" of earlier releases), and
        # whether their items are strings (quoted when joined: `--tables 6 5` means ["6", "5"], not [6, 5])
        self.list_options: dict[str, bool] = {}
        # options that may be given without a value (argparse's nargs="?"): the value they then take
        self.optional_values: dict[str, str] = {}
        # the option (a key) that a full training config given to --config fills with its own path, for a
        # script that builds its run from a training config (conversion_share); None: such sections are ignored
        self.training_config: str | None = None

    def parse_string(self, content: str, path: Any = "", *args: Any, **kwargs: Any) -> Namespace:
        if self.training_config and path:
            try:
                loaded = yaml.safe_load(content)
            except yaml.YAMLError:
                loaded = None  # jsonargparse reports the syntax error itself
            if isinstance(loaded, dict) and loaded.keys() & {"data", "model", "trainer"}:
                kept = {k: v for k, v in loaded.items() if k not in TRAINING_KEYS}
                # jsonargparse parses a config file from inside its folder: abspath names the file itself
                content = yaml.safe_dump({**kept, self.training_config: os.path.abspath(path)}, sort_keys=False)
        return super().parse_string(content, path, *args, **kwargs)

    # -- the options the scripts share -------------------------------------------------------------------

    def add_threads(self, default: int = 2, help: str = "torch intra-op threads") -> None:
        self.add_argument("--threads", type=int, default=default, help=help)

    def add_repeats(self, default: int, help: str = "interleaved rounds; medians are reported") -> None:
        self.add_argument("--repeats", type=int, default=default, help=help)

    def add_json(self, help: str = "write the measured figures to this JSON file") -> None:
        self.add_argument("--json", type=str | None, default=None, help=help)

    def add_common(self, repeats: int) -> None:
        """``--threads``, ``--repeats``, ``--json``."""
        self.add_threads()
        self.add_repeats(repeats)
        self.add_json()

    def add_resolution(self, default: int, help: str, name: str = "--resolution") -> None:
        """A square image size in the one size syntax (``N`` or ``[N,N]``); :func:`square` reads it."""
        self.add_argument(
            name, type=int | tuple[int, int], default=default, help=f"{help} (N, or [N,N]: square images)"
        )

    def add_list(self, name: str, item: Any, default: Sequence[Any], help: str) -> None:
        """A list option: ``--name [a,b]`` or ``--name a b``."""
        self.add_argument(name, type=list[item], default=list(default), help=f"{help}; [a,b,...] or a b ...")
        strings = item is str or (get_origin(item) is Literal and all(isinstance(a, str) for a in get_args(item)))
        self.list_options[name] = strings

    def add_flag(self, name: str, default: bool, help: str) -> None:
        """``--name`` / ``--no_name`` (a config file says ``name: true``)."""
        self.add_argument(name, action=ActionYesNo(yes_prefix="", no_prefix="no_"), default=default, help=help)

    def add_optional_value(self, name: str, const: str, help: str) -> None:
        """``--name`` alone means ``--name CONST``; ``--name VALUE`` as usual; absent: ``None``."""
        self.add_argument(name, type=str | None, default=None, help=f"{help} (alone: {const})")
        self.optional_values[name] = const


def _hyphenated(parser: BenchParser) -> dict[str, Alias]:
    """Every snake_case option under its earlier hyphenated spelling (``--input-dtype`` -> ``--input_dtype``)."""
    return {
        opt.replace("_", "-"): rename(opt)
        for action in parser._actions
        for opt in action.option_strings
        if opt.startswith("--") and "_" in opt and opt not in ("--print_config",)
    }


def _lists_and_optionals(argv: list[str], lists: Mapping[str, bool], optional: Mapping[str, str]) -> list[str]:
    """``--name a b`` -> ``--name [a,b]`` for list options; ``--name`` alone -> ``--name CONST``."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, inline = arg.partition("=")
        i += 1
        if name in optional and not eq:
            has_value = i < len(argv) and not argv[i].startswith("-")
            out += [name] if has_value else [name, optional[name]]
            continue
        if name not in lists:
            out.append(arg)
            continue
        values = [inline] if eq else []
        while not eq and i < len(argv) and not argv[i].startswith("-"):
            values.append(argv[i])
            i += 1
        if len(values) == 1 and values[0].lstrip().startswith("["):
            out += [name, values[0]]  # already in the list syntax
        elif values:
            items = [json.dumps(v) if lists[name] else v for v in values]
            out += [name, "[" + ",".join(items) + "]"]
        else:
            out.append(name)  # no value: the parser reports it
    return out


def parse_bench(
    parser: BenchParser, argv: Sequence[str] | None = None, aliases: Mapping[str, Alias] | None = None
) -> Namespace:
    """Parse a script's command line (``sys.argv[1:]`` when ``argv`` is None); a user error exits 2 in one line.

    ``aliases``: the script's renamed options (``--size`` -> ``--resolution``), besides the hyphenated
    spellings of every option, which are understood without being listed."""
    parser.aliases = {**_hyphenated(parser), **(aliases or {})}
    renamed = {old: new for old, (new, _count, convert) in parser.aliases.items() if convert is None}
    lists = {**parser.list_options}
    lists.update({old: lists[new] for old, new in renamed.items() if new in parser.list_options})
    optional = {**parser.optional_values}
    optional.update({old: optional[new] for old, new in renamed.items() if new in parser.optional_values})
    try:
        args = list(sys.argv[1:] if argv is None else argv)
        return parse(parser, _lists_and_optionals(args, lists, optional))
    except UsageError as exc:
        raise SystemExit(fail(exc)) from None


def square(value: int | Sequence[int], option: str = "--resolution") -> int:
    """The side of a square size given as ``N`` or ``[N,N]``; anything else exits 2 in one line."""
    try:
        pair = resolution_pair(value, option)
    except UsageError as exc:
        usage_error(str(exc))
    assert pair is not None
    if pair[0] != pair[1]:
        usage_error(f"{option}: this benchmark times square images; give N or [N,N], got {list(pair)}")
    return pair[0]


def usage_error(message: str) -> NoReturn:
    """A bad command line found after parsing: one ``error:`` line on stderr, exit code 2."""
    raise SystemExit(fail(UsageError(message)))
