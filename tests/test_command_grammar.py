"""The tool commands share LightningCLI's grammar: merged --config files, dotted overrides, --print_config,
snake_case names, one image-size syntax, and one-line errors with exit code 2 (issue 11 point 6)."""

from __future__ import annotations

import pytest
import yaml

from i2e_lightning.commands import EXTRA_COMMANDS, calibrate, convert, download, export_nir, export_onnx, visualize
from i2e_lightning.commands.arguments import TRAINING_KEYS, UsageError, parse, resolution_pair
from tests.helpers.cli import ROOT, run_cli

FM = ROOT / "configs" / "fashion_mnist.yaml"


def test_a_full_training_config_is_read_for_its_data_section_only(capsys):
    args = parse(convert.build_parser(), ["--config", str(FM), "--out", "o.h5"])
    assert args.data.class_path == "i2e_lightning.data.FashionMNISTDataModule"
    assert "trainer" not in args and "model" not in args and "optimizer" not in args
    assert capsys.readouterr().err == ""  # the training sections are skipped without a word


def test_configs_merge_in_order_and_options_override_them(tmp_path):
    first = tmp_path / "a.yaml"
    first.write_text("data:\n  init_args:\n    timesteps: 2\n    val_size: 5\nsplit: val\n")
    second = tmp_path / "b.yaml"
    second.write_text("data:\n  init_args:\n    timesteps: 6\n")
    argv = ["--config", str(FM), "--config", str(first), "--config", str(second), "--out", "o.h5"]
    args = parse(convert.build_parser(), [*argv, "--data.init_args.val_size", "0"])
    init = args.data.init_args
    assert (init.timesteps, init.val_size, init.ratio, args.split) == (6, 0, 0.15, "val")
    # an option before a later --config is overridden by it, as in LightningCLI
    args = parse(convert.build_parser(), ["--config", str(FM), "--split", "test", "--config", str(first), "--out", "o"])
    assert args.split == "val"


def test_an_unknown_top_level_key_is_named_not_fatal(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**yaml.safe_load(FM.read_text()), "splt": "val"}))
    args = parse(convert.build_parser(), ["--config", str(cfg), "--out", "o.h5"])
    assert args.split == "train"
    err = capsys.readouterr().err
    assert "'splt'" in err and "convert ignores" in err and len(err.strip().splitlines()) == 1


def test_training_keys_are_the_top_level_keys_of_fit(capsys):
    from i2e_lightning.commands import main

    assert main(["fit", "--config", str(FM), "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    new = sorted(set(printed) - TRAINING_KEYS - {"config"})
    assert not new, (
        f"fit has new top-level keys {new}: add them to TRAINING_KEYS in i2e_lightning/commands/arguments.py"
    )


TOOLS = {
    "convert": (convert, ["--out", "o.h5"]),
    "visualize": (visualize, ["--out", "o.gif"]),
    "calibrate": (calibrate, []),
    "export-onnx": (export_onnx, []),
    "export-nir": (export_nir, ["--ckpt_path", "m.ckpt"]),
    "download": (download, ["mnist", "--dir", "d"]),
}


@pytest.mark.parametrize("command", sorted(TOOLS))
def test_every_tool_reads_a_training_config_and_prints_its_own(command, capsys):
    module, rest = TOOLS[command]
    with pytest.raises(SystemExit) as done:
        parse(module.build_parser(), ["--config", str(FM), *rest, "--print_config"])
    assert done.value.code == 0
    captured = capsys.readouterr()
    printed = yaml.safe_load(captured.out)
    assert captured.err == "" and not set(printed) & (TRAINING_KEYS - {"data", "ckpt_path"}), printed
    assert ("data" in printed) == (command not in ("export-nir", "download"))
    if "data" in printed:
        assert printed["data"]["init_args"]["ratio"] == 0.15  # read from the config file


def test_old_spellings_are_rewritten():
    base = ["--config", str(FM), "--out", "o.h5"]
    old = parse(convert.build_parser(), [*base, "--batch-size", "8", "--num-workers=2", "--no-progress"])
    new = parse(convert.build_parser(), [*base, "--batch_size", "8", "--num_workers", "2", "--no_progress"])
    assert old == new and (new.batch_size, new.num_workers, new.progress) == (8, 2, False)
    sized = parse(visualize.build_parser(), ["a.png", "--out", "x.gif", "--size", "12x16"])
    assert sized.resolution == (12, 16)
    rate = parse(calibrate.build_parser(), ["--config", str(FM), "--target-rate", "0.05"])
    assert rate.target_rate == 0.05
    old = ["--ckpt", "m.ckpt", "--image-size", "32", "48", "--input-dtype", "uint8", "--order", "7,6,5,4,3,2,1,0"]
    exported = parse(export_onnx.build_parser(), old)
    assert (exported.ckpt_path, exported.resolution, exported.input_dtype) == ("m.ckpt", (32, 48), "uint8")
    assert exported.order == [7, 6, 5, 4, 3, 2, 1, 0]
    nir = parse(export_nir.build_parser(), ["--ckpt", "m.ckpt", "--image-size=[8,8]"])
    assert (nir.ckpt_path, nir.resolution) == ("m.ckpt", (8, 8))
    assert parse(download.build_parser(), ["mnist", "--ensure", "--no-apt"]).apt is False


def test_one_image_size_syntax():
    p = visualize.build_parser()
    assert resolution_pair(parse(p, ["a.png", "--out", "x.gif", "--resolution", "224"]).resolution) == (224, 224)
    assert resolution_pair(parse(p, ["a.png", "--out", "x.gif", "--resolution", "[32,48]"]).resolution) == (32, 48)
    with pytest.raises(UsageError, match="--resolution"):
        resolution_pair(0)
    with pytest.raises(UsageError, match="resolution"):
        parse(p, ["a.png", "--out", "x.gif", "--resolution", "[1,2,3]"])


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--data.init_args.bogus", "1"], ["data.init_args.bogus", "FashionMNISTDataModule"]),
        (["--data.init_args.val_size", "abc"], ["data.init_args.val_size", "abc"]),
        (["--trainer.max_epochs", "1"], ["--trainer.max_epochs"]),
        (["--split", "dev"], ["dev", "--help"]),
    ],
)
def test_errors_are_one_line(argv, words):
    with pytest.raises(UsageError) as err:
        parse(convert.build_parser(), ["--config", str(FM), "--out", "o.h5", *argv])
    text = str(err.value)
    assert "\n" not in text and all(w in text for w in words), text


@pytest.mark.slow
def test_the_real_cli_reads_a_fit_config_with_dotted_overrides(tmp_path):
    argv = ["convert", "--config", str(FM), "--data.init_args.val_size", "0", "--data.init_args.timesteps", "8"]
    res = run_cli([*argv, "--split", "train", "--out", "f.h5", "--print_config"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    printed = yaml.safe_load(res.stdout)
    assert printed["data"]["init_args"]["val_size"] == 0 and printed["data"]["init_args"]["timesteps"] == 8
    assert printed["out"] == "f.h5" and not set(printed) & {"trainer", "model", "optimizer"}
    bad = run_cli([*argv, "--out", "f.h5", "--data.init_args.bogus", "1"], cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "bogus" in bad.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in EXTRA_COMMANDS if c not in ("bench", "configs")])
def test_every_tool_refuses_a_bad_option_in_one_line(tmp_path, command):
    first = {"download": ["mnist", "--dir", "d"]}.get(command, [])  # its positional, so the option is the error
    res = run_cli([command, *first, "--no_such_option"], cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "--no_such_option" in lines[0], lines
