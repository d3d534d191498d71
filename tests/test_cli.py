"""The CLI: fit/validate/test/predict through LightningCLI, checkpoints, resume, extra subcommands, errors."""

from __future__ import annotations

import inspect
import sys
import types
from pathlib import Path

import pytest
import torch
import yaml
from lightning import Trainer

from i2e_lightning import commands as cli
from i2e_lightning.data.config import datamodule_from_config
from i2e_lightning.training import SpikingClassifier
from tests.helpers.cli import TINY, run_checkpoints, run_cli
from tests.helpers.datasets import make_idx_dir


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # logs and saved configs of the in-process runs land in the test's folder, not the checkout
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_idx_dir(tmp_path_factory.mktemp("toy_fmnist_cli"))


def _base(idx_dir: Path, tmp_path: Path) -> list[str]:
    return [
        "--config",
        str(TINY),
        "--data.init_args.data_dir",
        str(idx_dir),
        "--trainer.default_root_dir",
        str(tmp_path / "ckpts"),
        "--trainer.logger",
        "false",
    ]


@pytest.mark.slow
def test_fit_then_test_validate_predict_and_resume(tmp_path: Path, idx_dir: Path, capsys) -> None:
    base = _base(idx_dir, tmp_path)
    assert cli.main(["fit", *base]) == 0
    folder = run_checkpoints(tmp_path / "ckpts", "tiny", version=0)  # run name = config file name
    last = folder / "last.ckpt"
    best = list(folder.glob("best*.ckpt"))
    assert last.is_file() and len(best) == 1
    ck = torch.load(last, map_location="cpu", weights_only=False)
    assert ck["global_step"] == 4  # 1 epoch x limit_train_batches 4
    assert ck["hyper_parameters"]["num_classes"] == 10

    assert cli.main(["test", *base, "--ckpt_path", "last"]) == 0
    assert cli.main(["validate", *base, "--ckpt_path", "best"]) == 0
    assert cli.main(["predict", *base, "--ckpt_path", str(last)]) == 0
    # resume: one more epoch on top of the checkpoint, its checkpoints kept in the resumed run's folder
    assert cli.main(["fit", *base, "--ckpt_path", "last", "--trainer.max_epochs", "2"]) == 0
    ck = torch.load(last, map_location="cpu", weights_only=False)
    assert ck["global_step"] == 8  # exactly one more epoch
    assert not (run_checkpoints(tmp_path / "ckpts", "tiny", version=1) / "last.ckpt").exists()
    # fine-tune from the best checkpoint under another run name
    best = list(folder.glob("best*.ckpt"))
    assert len(best) == 1  # save_top_k 1: the old best was replaced or kept, never both
    assert cli.main(["fit", *base, "--run_name", "ft", "--model.init_from", str(best[0])]) == 0
    assert (run_checkpoints(tmp_path / "ckpts", "ft", version=0) / "last.ckpt").is_file()
    capsys.readouterr()


def test_last_without_checkpoint_for_test_is_a_clear_error(tmp_path: Path, idx_dir: Path, capsys) -> None:
    code = cli.main(["test", *_base(idx_dir, tmp_path), "--run_name", "never_trained", "--ckpt_path", "last"])
    err = capsys.readouterr().err
    assert code == 2 and "no last.ckpt in" in err and "Traceback" not in err


@pytest.mark.parametrize("cut", [0, 0.5])
def test_truncated_checkpoint_is_named(tmp_path: Path, idx_dir: Path, capsys, cut: float) -> None:
    src = tmp_path / "src.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "pytorch-lightning_version": "2.6"}, src)
    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(src.read_bytes()[: int(cut * src.stat().st_size)])
    code = cli.main(["test", *_base(idx_dir, tmp_path), "--ckpt_path", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "broken.ckpt" in err and "Traceback" not in err


def test_missing_dataset_is_one_clear_message(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "no_data_here"
    empty.mkdir()
    code = cli.main(["fit", *_base(empty, tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "Fashion-MNIST not found" in err and str(empty) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 3


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model.no_such_option", "1"], "no_such_option"),
        (["--data.init_args.batch_sise", "4"], "batch_sise"),
        (["--trainer.max_epochs", "many"], "max_epochs"),
    ],
)
def test_bad_config_key_names_it(tmp_path: Path, idx_dir: Path, capsys, args: list[str], needle: str) -> None:
    code = cli.main(["fit", *_base(idx_dir, tmp_path), *args])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err


def test_bad_key_in_config_file_names_it(tmp_path: Path, idx_dir: Path, capsys) -> None:
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("model:\n  lerning_rate: 0.1\n")
    code = cli.main(["fit", *_base(idx_dir, tmp_path), "--config", str(cfg)])
    err = capsys.readouterr().err
    assert code == 2 and "lerning_rate" in err


def test_usage_and_unknown_command(capsys) -> None:
    assert cli.main([]) == 2
    assert "fit" in capsys.readouterr().out
    assert cli.main(["--help"]) == 0
    assert cli.main(["trane"]) == 2
    assert "unknown command 'trane'" in capsys.readouterr().err


def test_extra_subcommands_dispatch(monkeypatch, capsys) -> None:
    seen = {}

    def fake_main(argv: list[str]) -> int:
        seen["argv"] = argv
        return 3

    mod = types.ModuleType("i2e_fake_tool")
    mod.main = fake_main
    monkeypatch.setitem(sys.modules, "i2e_fake_tool", mod)
    monkeypatch.setitem(cli.EXTRA_COMMANDS, "fake", ("i2e_fake_tool", "main", "a fake"))
    assert cli.main(["fake", "--x", "1"]) == 3 and seen["argv"] == ["--x", "1"]

    monkeypatch.setitem(cli.EXTRA_COMMANDS, "gone", ("i2e_lightning.no_such_module", "main", "missing"))
    assert cli.main(["gone"]) == 2
    err = capsys.readouterr().err
    assert "'gone' command is not available" in err and "no_such_module" in err


@pytest.mark.parametrize("name", sorted(cli.EXTRA_COMMANDS))
def test_every_extra_command_is_wired(name: str, capsys) -> None:
    # each command of the table resolves to a module of the commands layer whose --help runs
    module_name, func_name, _ = cli.EXTRA_COMMANDS[name]
    assert module_name.startswith("i2e_lightning.commands.")
    code = cli.main([name, "--help"])
    out = capsys.readouterr().out
    assert code == 0 and "usage" in out.lower(), (name, code, out[-500:])


@pytest.mark.slow
def test_python_dash_m_entry_point(tmp_path: Path, idx_dir: Path) -> None:
    # the real command line, in a subprocess: fit runs, prints no traceback, writes the checkpoints
    proc = run_cli(["fit", *_base(idx_dir, tmp_path), "--trainer.limit_train_batches", "2"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run_checkpoints(tmp_path / "ckpts") / "last.ckpt").is_file()


CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_config_instantiates(config: Path) -> None:
    # model and datamodule are built from the YAML exactly as written (no data is read)
    cfg = yaml.safe_load(config.read_text())
    dm = datamodule_from_config(config)
    module = SpikingClassifier(**cfg["model"])
    assert dm.batch_size >= 1 and module.hparams.arch in ("spiking_cnn", "ms_resnet18", "ms_resnet34")
    assert set(cfg["trainer"]) <= set(inspect.signature(Trainer).parameters)


def test_ddp_trainer_config_merges(capsys) -> None:
    root = Path(__file__).resolve().parents[1]
    args = [
        "fit",
        "--config",
        str(root / "configs/cifar10_baseline2.yaml"),
        "--config",
        str(root / "configs/trainer/ddp.yaml"),
    ]
    assert cli.main([*args, "--print_config"]) == 0
    out = capsys.readouterr().out
    assert "strategy: ddp" in out and "sync_batchnorm: true" in out and "devices: -1" in out
