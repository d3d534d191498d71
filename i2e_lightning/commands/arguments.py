"""The grammar every tool command shares with the LightningCLI subcommands (``fit``, ``test``, ...).

Each tool (``convert``, ``visualize``, ``calibrate``, ``export-onnx``, ...) parses its arguments with a
:class:`CommandParser`, a jsonargparse parser as LightningCLI uses, so the same spellings work everywhere:

* ``--config FILE`` any number of times, merged in order (later files and options win); a full training
  config is accepted: a command reads the sections it knows (``data:`` for most) and ignores the training
  sections (``trainer:``, ``model:``, ``optimizer:``, ...);
* dotted overrides of the data section, ``--data.init_args.val_size 0``, exactly as ``fit`` takes them;
* ``--print_config`` prints what the command would run with and exits;
* options spelled in snake_case as LightningCLI spells them (``--batch_size``, ``--ckpt_path``);
* one image-size syntax, ``--resolution 224`` (square) or ``--resolution [32,48]`` (height, width).

The hyphenated spellings of earlier releases (``--batch-size``, ``--ckpt``, ``--image-size H W``,
``--size HxW``, ``convert --set KEY=VALUE``) are still understood: :func:`parse` rewrites them before
parsing, and ``--help`` shows only the current names.

A parse error is one line naming the problem and where to look (exit code 2), as for every other
user error of the command line.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

import yaml
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

__all__ = [
    "TRAINING_KEYS",
    "CommandParser",
    "UsageError",
    "add_data_section",
    "add_resolution",
    "fail",
    "instantiate_data",
    "parse",
    "resolution_pair",
]

# top-level keys of a LightningCLI training config (what `fit --print_config` prints): a tool reads a full
# training config and silently skips these when it does not use them; any other unknown key gets a warning
TRAINING_KEYS = frozenset(
    {
        "seed_everything",
        "trainer",
        "model",
        "data",
        "optimizer",
        "lr_scheduler",
        "ckpt_path",
        "weights_only",
        "run_name",
        "predict_output",
        "checkpoint",
        "last_checkpoint",
        "lr_monitor",
    }
)
RESOLUTION_HELP = "N (square) or [H,W]"


Alias = tuple[str, int, Callable[[list[str]], list[str]] | None]


class UsageError(ValueError):
    """A command line the parser refuses; the message is one line."""


class CommandParser(ArgumentParser):
    """A jsonargparse parser for one tool command: ``--config`` (repeatable), ``--print_config``, one-line errors."""

    def __init__(self, command: str | None = None, description: str | None = None, **kwargs: Any) -> None:
        if command is None:  # jsonargparse builds nested parsers (a subclass's options) of the same class
            kwargs.setdefault("prog", "python -m i2e_lightning")
            super().__init__(description=description, **kwargs)
            self.command = ""
            self.aliases: dict[str, Alias] = {}
            return
        kwargs.setdefault("exit_on_error", False)
        super().__init__(prog=f"python -m i2e_lightning {command}", description=description, **kwargs)
        self.command = command
        self.aliases = {}  # old spelling -> its rewrite (see the module's docstring)
        self.add_argument(
            "--config",
            action=ActionConfigFile,
            help="Config file (YAML), or the name of a shipped config (`configs` lists them); repeat to merge "
            "several, later ones win. A full training config is accepted: this command reads the sections it "
            "uses and ignores the training ones (trainer, model, optimizer, ...).",
        )

    def parse_string(self, content: str, path: Any = "", *args: Any, **kwargs: Any) -> Namespace:
        # every config file passes here: keep the top-level keys this command knows, drop the training sections
        try:
            loaded = yaml.safe_load(content)
        except yaml.YAMLError:
            loaded = None  # jsonargparse reports the syntax error itself
        if isinstance(loaded, dict) and self.command:
            known = self._top_level_keys()
            kept = {k: v for k, v in loaded.items() if k in known}
            strange = [k for k in loaded if k not in known and k not in TRAINING_KEYS and k != "__path__"]
            if strange:
                where = f" of {path}" if path else ""
                print(
                    f"warning: {self.command} ignores {', '.join(map(repr, strange))}{where}: neither one of its "
                    f"options (see --help) nor a training section",
                    file=sys.stderr,
                )
            if len(kept) != len(loaded):
                content = yaml.safe_dump(kept, sort_keys=False) if kept else "{}"
        return super().parse_string(content, path, *args, **kwargs)

    def _top_level_keys(self) -> set[str]:
        return {action.dest.split(".", 1)[0] for action in self._actions} | set(self.groups or {})


def add_resolution(parser: ArgumentParser, help: str, name: str = "--resolution") -> None:
    """The one image-size option: ``--resolution 224`` or ``--resolution [32,48]``."""
    parser.add_argument(name, type=int | tuple[int, int] | None, default=None, help=f"{help} ({RESOLUTION_HELP})")


def resolution_pair(value: int | Sequence[int] | None, option: str = "--resolution") -> tuple[int, int] | None:
    """``224`` -> ``(224, 224)``; ``[32, 48]`` -> ``(32, 48)``; ``None`` stays; anything else is refused."""
    if value is None:
        return None
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair):
        raise UsageError(f"{option} must be a positive N or [H,W], got {value!r}")
    return int(pair[0]), int(pair[1])


def add_data_section(parser: ArgumentParser, required: bool) -> None:
    """``--data``: the DataModule, validated as LightningCLI's ``fit`` validates it (imports the data classes)."""
    from ..data.config import add_data_arguments

    add_data_arguments(parser, required=required)


def instantiate_data(parser: ArgumentParser, cfg: Namespace) -> Any:
    """The DataModule of a parsed ``data:`` section (``None`` when the section is absent)."""
    if cfg.get("data") is None:
        return None
    from ..data.config import data_error_reason

    try:
        return parser.instantiate_classes(Namespace(data=cfg.data)).data
    except (TypeError, ValueError) as exc:
        reason = data_error_reason(exc) if not isinstance(exc, ValueError) else str(exc)
        raise ValueError(f"bad data section ({cfg.data.get('class_path')}): {_one_line(reason)}") from exc


# -- old spellings ---------------------------------------------------------------------------------------


def _size_value(text: str) -> str:
    """An old ``--size`` value (``N``, ``HxW``, ``H,W``) in the ``--resolution`` syntax."""
    parts = [p for p in re.split(r"[x,\s]+", text.strip().lower()) if p]
    return parts[0] if len(parts) == 1 else f"[{','.join(parts)}]"


def rename(new: str) -> Alias:
    """An option that only changed its name (``--batch-size`` -> ``--batch_size``)."""
    return (new, -1, None)


def size_pair(new: str = "--resolution") -> Alias:
    """``--image-size H W`` (two values) -> ``--resolution [H,W]``."""
    return (new, 2, lambda v: [new, f"[{v[0]},{v[1]}]"])


def size_text(new: str = "--resolution") -> Alias:
    """``--size 128x96`` -> ``--resolution [128,96]``."""
    return (new, 1, lambda v: [new, _size_value(v[0])])


def _rewrite(argv: list[str], aliases: dict[str, Alias]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, inline = arg.partition("=")
        alias = aliases.get(name) if arg.startswith("--") else None
        if alias is None:
            out.append(arg)
            i += 1
            continue
        new, count, convert = alias
        if convert is None:
            out.append(new + eq + inline)
            i += 1
            continue
        if eq and count != 1:  # --image-size=[8,8]: one value, already in the new syntax
            out += [new, inline]
            i += 1
            continue
        values = [inline] if eq else argv[i + 1 : i + 1 + count]
        if len(values) < count and not eq:
            raise UsageError(f"{name} expects {count} value(s); it is now spelled {new}")
        out += convert(values)
        i += 1 + (0 if eq else count)
    return out


# -- parsing -------------------------------------------------------------------------------------------


def parse(parser: CommandParser, argv: Sequence[str]) -> Namespace:
    """Parse ``argv``; a bad command line raises :class:`UsageError` with one line (``--help`` exits 0).

    The old spellings in ``parser.aliases`` are rewritten first."""
    from ..config_files import ConfigNotFoundError, resolve_config_args

    try:
        args = resolve_config_args(_rewrite(list(argv), parser.aliases))
    except ConfigNotFoundError as exc:
        raise UsageError(f"config file does not exist: {exc}") from None
    try:
        return parser.parse_args(args)
    except UsageError:
        raise
    except Exception as exc:  # jsonargparse's ArgumentError
        raise UsageError(f"{parser.command}: {_one_line(_reason(exc))} (see: {parser.prog} --help)") from None


def fail(exc: BaseException) -> int:
    """Print a user error as one ``error:`` line on stderr; returns the exit code 2."""
    text = _one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in text:
        text = f"{text} ({exc.filename})"
    print(f"error: {text}", file=sys.stderr)
    return 2


def _reason(exc: BaseException) -> str:
    """jsonargparse's nested report -> what is wrong with which option, in a few words."""
    text = str(exc)
    key = re.match(r'Parser key "([^"]+)":', text)
    if key is None:
        return text
    if key.group(1) != "data":
        expected = _expected(text)
        if key.group(1) == "resolution":  # say the syntax, not the type hint
            expected = re.sub(r"^expected [^,]*", f"expected {RESOLUTION_HELP}", expected)
        return f"--{key.group(1)}: {expected}"
    cls = re.search(r"Problem with given class_path '([^']+)'", text)
    name = cls.group(1).rsplit(".", 1)[-1] if cls else "the DataModule"
    unknown = re.search(r"Option '([^']+)' is not accepted", text)
    if unknown:
        return f"data.init_args.{unknown.group(1)} is not an argument of {name} (`--data.help {name}` lists them)"
    keys = [k for k in re.findall(r'Parser key "([^"]+)"', text) if k != "data"]
    if keys:
        inner = text[text.rindex('Parser key "' + keys[-1]) :]
        return f"data.init_args.{keys[-1]}: {_expected(inner)}"
    if "Expected a dot import path string" in text:
        value = re.search(r"Given value: (.*)", text)
        return (
            f"--data {value.group(1).strip() if value else ''}: neither a DataModule class nor a config file; "
            "e.g. --data FashionMNISTDataModule"
        )
    from ..data.config import data_error_reason

    return data_error_reason(exc)


def _expected(report: str) -> str:
    """``expected int or list[int], got [a, b]`` from one key's part of a jsonargparse report."""
    subtypes = re.search(r"Subtypes: \[(.*)\]", report)
    if subtypes:
        text = re.sub(r"<class '([\w.]+)'>", r"\1", subtypes.group(1))
        names = re.split(r", (?![^\[]*\])", text)  # commas inside tuple[int, int] stay
        types = [n for n in names if n != "NoneType"]
    else:
        types = [t for t in dict.fromkeys(re.findall(r"Expected a <class '([\w.]+)'>", report)) if t != "NoneType"]
        choices = re.search(r"Expected a typing\.Literal\[(.*?)\]\.", report)
        if choices and not types:  # a Literal (or a list of them): name the accepted values
            types = [f"one of {choices.group(1).replace(chr(39), '')}"]
    given = re.search(r"Given value: (.*)", report) or re.search(r"Got value: (.*)", report)
    got = f", got {given.group(1).strip()}" if given else ""
    return f"expected {' or '.join(types) or 'another value'}{got}"


def _one_line(text: str) -> str:
    lines = (re.sub(r"^- ", "", line.strip()) for line in str(text).splitlines())
    return " ".join(line for line in lines if line)
