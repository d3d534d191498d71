"""Every benchmark script speaks the grammar of the tool commands (issue 11 point 6): merged --config files,
--print_config with the defaults, snake_case names with the old spellings kept, one image-size syntax, and
one `error:` line with exit code 2 for a bad command line. Only the parsing runs here, never a benchmark."""

from __future__ import annotations

import importlib
import os
import re
import shlex
import subprocess
import sys
from types import ModuleType
from unittest import mock

import pytest
import yaml

from i2e_lightning.commands import bench
from tests.helpers.cli import ROOT, run_cli

if str(ROOT) not in sys.path:  # benchmarks/ is a folder of the checkout, not part of the installed package
    sys.path.insert(0, str(ROOT))

SCRIPTS = sorted(bench.BENCHMARKS)

# a few defaults of every script, as its argparse parser had them before the shared grammar
DEFAULTS: dict[str, dict[str, object]] = {
    "conversion_share": {"batch": None, "device": "cpu", "amp": "none", "synthetic": False, "repeats": 15},
    "converter": {"resolutions": [32, 128, 224], "compile": True, "onnx": True, "env_resolution": 224},
    "dataloader": {"samples": 10000, "batch": 128, "workers": [0, 1], "repeats": 3},
    "fidelity": {"split": "test", "limit": None, "fetch": False, "plot": None, "repeats": 1},
    "memory": {"resolution": 224, "batches": [1, 8, 32, 64], "train_resolution": 32, "train_batches": [8, 16, 32]},
    "nir_agreement": {"train_images": 10000, "channels": [8, 16], "lr": 4e-3, "timesteps": 4},
    "odg": {"resolution": 224, "images": 32, "repeats": 5},
    "official_parity": {"split": "train", "ratio": 0.15, "interpolation": "bicubic", "batch": 1000},
    "onnx_classifier_speed": {"batch": 256, "threads": 2, "repeats": 7},
    "onnx_speed": {"resolution": 224, "input_dtype": ["float32", "uint8"], "output_dtype": ["bool", "packed"]},
    "paper_tables": {"tables": ["6", "5", "fig5"], "table_t": 4, "max_t": 8, "plots": None, "plot_prefix": "bench_"},
    "random_resized_crop": {"batch": 128, "resolution": 224, "repeats": 7},
    "startup": {"rounds": 3, "cold_rounds": 1},
    "train_step": {"arch": "all", "timesteps": 8, "resolution": 32, "num_classes": 10, "compile": False},
    "training": {"only": ["conversion_share", "train_step"], "timeout": 1800.0, "threads": 2},
}

# the spellings of earlier releases (docs, scripts) and what they mean now
OLD_SPELLINGS: dict[str, tuple[list[str], list[str]]] = {
    "conversion_share": (
        ["--config", "configs/cifar10_baseline2.yaml", "--batch", "128", "--synthetic"],
        ["--training_config", str(ROOT / "configs" / "cifar10_baseline2.yaml"), "--batch", "128", "--synthetic"],
    ),
    "converter": (
        ["--sizes", "24", "16", "--no-compile", "--no-onnx", "--env-compare", "--env-size", "32"],
        ["--resolutions", "[24,16]", "--no_compile", "--no_onnx", "--env_compare", "--env_resolution", "32"],
    ),
    "dataloader": (["--data-dir", "d", "--workers", "0", "2"], ["--data_dir", "d", "--workers", "[0,2]"]),
    "fidelity": (
        ["--data-dir", "d", "--npm-cache", "c", "--fetch", "--plot"],
        ["--data_dir", "d", "--npm_cache", "c", "--fetch", "--plot", str(ROOT / "docs/img/bench_event_rates.png")],
    ),
    "memory": (
        ["--size", "16", "--batches", "32", "256", "--train-size", "128", "--train-batches", "32", "64"],
        ["--resolution", "16", "--batches", "[32,256]", "--train_resolution", "128", "--train_batches", "[32,64]"],
    ),
    "nir_agreement": (
        ["--data-dir", "d", "--train-images", "5", "--test-images", "6", "--channels", "4", "8"],
        ["--data_dir", "d", "--train_images", "5", "--test_images", "6", "--channels", "[4,8]"],
    ),
    "odg": (["--size", "64", "--data-dir", "d"], ["--resolution", "64", "--data_dir", "d"]),
    "onnx_speed": (
        ["--input-dtype", "uint8", "--output-dtype", "bool", "packed", "--ort-spinning", "--size", "16"],
        ["--input_dtype", "[uint8]", "--output_dtype", "[bool,packed]", "--ort_spinning", "--resolution", "16"],
    ),
    "paper_tables": (
        ["--tables", "6", "5", "--table-t", "8", "--max-t", "4", "--plots", "--plot-prefix", "p_", "--data-dir", "d"],
        ["--tables", '["6","5"]', "--table_t", "8", "--max_t", "4", "--plots", str(ROOT / "docs" / "img")]
        + ["--plot_prefix", "p_", "--data_dir", "d"],
    ),
    "random_resized_crop": (["--size", "64"], ["--resolution", "64"]),
    "startup": (["--cold-rounds", "0"], ["--cold_rounds", "0"]),
    "train_step": (
        ["--T", "2", "--size", "16", "--num-classes", "5", "--compile", "--nchw"],
        ["--timesteps", "2", "--resolution", "16", "--num_classes", "5", "--compile", "--nchw"],
    ),
    "training": (["--only", "train_step"], ["--only", "[train_step]"]),
}


def script(name: str) -> ModuleType:
    # train_step sets OMP_WAIT_POLICY for its own process when imported: keep it out of this one
    with mock.patch.dict(os.environ):
        return importlib.import_module(f"benchmarks.{name}")


def printed_config(name: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    """What ``<script> ARGV --print_config`` prints (parsing only: the script exits before measuring)."""
    with pytest.raises(SystemExit) as done:
        script(name).main([*argv, "--print_config"])
    captured = capsys.readouterr()
    assert done.value.code == 0, captured.err
    return yaml.safe_load(captured.out)


def refused(name: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one ``error:`` line of a refused command line (exit code 2)."""
    with pytest.raises(SystemExit) as done:
        script(name).main(argv)
    err = capsys.readouterr().err.strip()
    assert done.value.code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    return err


def test_every_script_is_covered():
    assert set(DEFAULTS) == set(SCRIPTS)
    assert set(OLD_SPELLINGS) == set(SCRIPTS) - {"official_parity", "onnx_classifier_speed"}  # no hyphens there


@pytest.mark.parametrize("name", SCRIPTS)
def test_print_config_shows_the_defaults(name, capsys):
    printed = printed_config(name, [], capsys)
    assert {k: printed[k] for k in DEFAULTS[name]} == DEFAULTS[name]
    assert "config" not in printed and all("-" not in key for key in printed)  # snake_case, as fit prints


def _an_int_option(printed: dict) -> str:
    return next(k for k, v in printed.items() if isinstance(v, int) and not isinstance(v, bool))


@pytest.mark.parametrize("name", SCRIPTS)
def test_config_files_merge_in_order_and_options_win(name, capsys, tmp_path):
    key = _an_int_option(printed_config(name, [], capsys))
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(f"{key}: 5\n")
    second.write_text(f"{key}: 6\n")
    assert printed_config(name, ["--config", str(first), "--config", str(second)], capsys)[key] == 6
    assert printed_config(name, ["--config", str(second), "--config", str(first)], capsys)[key] == 5
    assert printed_config(name, ["--config", str(first), f"--{key}", "7"], capsys)[key] == 7
    # an option before a later --config is overridden by it, as in LightningCLI
    assert printed_config(name, [f"--{key}", "7", "--config", str(first)], capsys)[key] == 5


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_bad_command_line_is_one_error_line(name, capsys):
    assert "--no_such_option" in refused(name, ["--no_such_option"], capsys)
    key = _an_int_option(printed_config(name, [], capsys))
    err = refused(name, [f"--{key}", "many"], capsys)
    assert f"--{key}" in err and "many" in err and "expected int" in err


@pytest.mark.parametrize("name", sorted(OLD_SPELLINGS))
def test_old_spellings_still_parse(name, capsys):
    old, new = OLD_SPELLINGS[name]
    assert printed_config(name, old, capsys) == printed_config(name, new, capsys)


def test_one_image_size_syntax(capsys):
    assert printed_config("onnx_speed", ["--resolution", "[64,64]"], capsys)["resolution"] == [64, 64]
    assert printed_config("converter", ["--resolutions", "[32,224]"], capsys)["resolutions"] == [32, 224]
    assert printed_config("converter", ["--resolutions", "32", "224"], capsys)["resolutions"] == [32, 224]
    err = refused("onnx_speed", ["--resolution", "[32,48]"], capsys)
    assert "square" in err and "--resolution" in err
    assert "--resolution" in refused("memory", ["--resolution", "0"], capsys)
    assert "--resolutions" in refused("converter", ["--resolutions", "[0]"], capsys)


def test_list_options_name_their_choices(capsys):
    assert printed_config("onnx_speed", ["--input_dtype", "uint8", "float32"], capsys)["input_dtype"] == [
        "uint8",
        "float32",
    ]
    err = refused("onnx_speed", ["--input_dtype", "int8"], capsys)
    assert "one of float32, uint8" in err and "int8" in err


def test_a_training_config_given_to_conversion_share_is_the_one_it_times(capsys, tmp_path):
    fm = ROOT / "configs" / "fashion_mnist.yaml"
    bench_cfg = tmp_path / "bench.yaml"
    bench_cfg.write_text("repeats: 3\nsynthetic: true\n")
    printed = printed_config("conversion_share", ["--config", str(fm), "--config", str(bench_cfg)], capsys)
    assert (printed["training_config"], printed["repeats"], printed["synthetic"]) == (str(fm), 3, True)
    assert "data" not in printed and "trainer" not in printed


def _doc_commands() -> list[tuple[str, str, list[str]]]:
    """(where, script, argv) of every benchmark command line in the docs and in gpu_check.sh."""
    found = []
    pattern = re.compile(
        r"(?:(?:python3?|\"\$PY\")\s+(?:-m\s+benchmarks\.(\w+)|benchmarks/(\w+)\.py)|i2e_lightning bench (\w+))"
    )
    sources = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "gpu_check.sh"]
    for path in sources:
        text = path.read_text().replace("\\\n", " ")  # shell line continuations
        fenced = False
        for line in text.splitlines():
            fenced ^= line.lstrip().startswith("```")
            code = path.suffix != ".md" or fenced or line.startswith("    ")  # a shell line, not prose
            for span in [line] if code else re.findall(r"`([^`]+)`", line):
                for match in pattern.finditer(span):
                    name = next(g for g in match.groups() if g)
                    if name not in bench.BENCHMARKS:
                        continue
                    rest = span[match.end() :].split("|")[0].split("#")[0].split(";")[0]
                    rest = rest.replace('"$DEVICE"', "cpu").replace('"$PARTS/', '"/tmp/').replace("$COMPILE_FLAG", "")
                    argv = shlex.split(rest)
                    if "--" in argv:  # training.py: what follows goes to the scripts it runs
                        argv = argv[: argv.index("--")]
                    if "--config" in argv and not (ROOT / argv[argv.index("--config") + 1]).exists():
                        del argv[argv.index("--config") : argv.index("--config") + 2]  # the reader's own file
                    found.append((f"{path.relative_to(ROOT)}: {span.strip()[:80]}", name, argv))
    return found


DOC_COMMANDS = _doc_commands()


def test_the_doc_commands_are_found():
    where = {w.split(":")[0] for w, _, _ in DOC_COMMANDS}
    assert {"benchmarks/gpu_check.sh", "docs/BENCHMARKS.md", "README.md"} <= where
    assert sum(w.startswith("benchmarks/gpu_check.sh") for w, _, _ in DOC_COMMANDS) == 10


@pytest.mark.parametrize(("where", "name", "argv"), DOC_COMMANDS, ids=[w for w, _, _ in DOC_COMMANDS])
def test_every_documented_command_parses_in_the_current_spelling(where, name, argv, capsys):
    old = [a for a in argv if re.fullmatch(r"--[a-z0-9]+(-[a-z0-9]+)+|--sizes?|--T", a.split("=")[0])]
    assert not old, f"{where}: {old} are earlier spellings; write them as --help shows them"
    printed_config(name, argv, capsys)


def test_bench_through_the_command_line(tmp_path):
    res = run_cli(["bench", "startup", "--cold_rounds", "0", "--print_config"], cwd=tmp_path)
    assert res.returncode == 0 and yaml.safe_load(res.stdout) == {"rounds": 3, "cold_rounds": 0}, res.stderr
    bad = run_cli(["bench", "startup", "--rounds", "three"], cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: bench startup: --rounds"), lines


@pytest.mark.slow
def test_a_torch_script_through_the_command_line_and_as_a_file(tmp_path):
    cfg = tmp_path / "onnx.yaml"
    cfg.write_text("repeats: 3\ninput_dtype: [uint8]\n")
    res = run_cli(["bench", "onnx_speed", "--config", str(cfg), "--threads", "1", "--print_config"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    printed = yaml.safe_load(res.stdout)
    assert (printed["repeats"], printed["input_dtype"], printed["threads"]) == (3, ["uint8"], 1)
    bad = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "onnx_speed.py"), "--input-dtype", "int8"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "--input_dtype" in bad.stderr, bad.stderr
    helped = run_cli(["bench", "onnx_speed", "--help"], cwd=tmp_path)
    assert helped.returncode == 0 and "--input_dtype" in helped.stdout and "--input-dtype" not in helped.stdout
