"""Shipped configs: bare names resolve from any directory; the list names every file of configs/."""

from __future__ import annotations

from pathlib import Path

import pytest

from i2e_lightning import config_files
from i2e_lightning.config_files import (
    ConfigNotFoundError,
    configs_dir,
    list_configs,
    resolve_config,
    resolve_config_args,
)

REPO = Path(__file__).resolve().parents[1]


def test_checkout_uses_the_top_level_configs() -> None:
    assert configs_dir() == REPO / "configs"


def test_list_names_every_yaml_with_its_first_comment() -> None:
    names = dict(list_configs())
    on_disk = {p.relative_to(REPO / "configs").with_suffix("").as_posix() for p in (REPO / "configs").rglob("*.yaml")}
    assert set(names) == on_disk
    assert "fashion_mnist" in names and "tests/tiny" in names
    assert names["fashion_mnist"].startswith("THE DEFAULT")


@pytest.mark.parametrize("value", ["fashion_mnist", "fashion_mnist.yaml", "configs/fashion_mnist.yaml"])
def test_bare_names_resolve_from_another_directory(value: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Path(resolve_config(value)) == REPO / "configs" / "fashion_mnist.yaml"


def test_nested_name_and_existing_file_win(tmp_path: Path, monkeypatch) -> None:
    assert Path(resolve_config("tests/tiny")) == REPO / "configs" / "tests" / "tiny.yaml"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fashion_mnist.yaml").write_text("seed_everything: 1\n")
    assert resolve_config("fashion_mnist.yaml") == "fashion_mnist.yaml"  # a file in the working directory first
    assert resolve_config("{trainer: {max_epochs: 1}}") == "{trainer: {max_epochs: 1}}"  # inline YAML untouched


@pytest.mark.parametrize("value", ["no_such_config", "../pyproject", "configs/nope.yaml"])
def test_unknown_name_is_one_line_with_the_choices(value: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigNotFoundError) as info:
        resolve_config(value)
    msg = str(info.value)
    assert "\n" not in msg and repr(value) in msg and "fashion_mnist" in msg and "i2e-lightning configs" in msg


def test_installed_layout_is_preferred(tmp_path: Path, monkeypatch) -> None:
    # a wheel puts the configs inside the package; that folder wins over anything beside it
    pkg = tmp_path / "site-packages" / "i2e_lightning"
    (pkg / "configs" / "tests").mkdir(parents=True)
    (pkg / "configs" / "fashion_mnist.yaml").write_text("# packaged default\n")
    (pkg / "configs" / "tests" / "tiny.yaml").write_text("seed_everything: 0\n")
    monkeypatch.setattr(config_files, "_PACKAGE", pkg)
    monkeypatch.chdir(tmp_path)
    assert configs_dir() == pkg / "configs"
    assert list_configs() == [("fashion_mnist", "packaged default"), ("tests/tiny", "")]
    assert Path(resolve_config("fashion_mnist")) == pkg / "configs" / "fashion_mnist.yaml"
    # no configs anywhere (a broken install): still one line
    monkeypatch.setattr(config_files, "_PACKAGE", tmp_path / "elsewhere" / "i2e_lightning")
    assert configs_dir() is None and list_configs() == []
    with pytest.raises(ConfigNotFoundError, match="none are installed"):
        resolve_config("fashion_mnist")


def test_command_line_values_are_resolved(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    fm = str(REPO / "configs" / "fashion_mnist.yaml")
    ddp = str(REPO / "configs" / "trainer" / "ddp.yaml")
    argv = ["fit", "--config", "fashion_mnist", "-c", "trainer/ddp", "--trainer.max_epochs", "1"]
    assert resolve_config_args(argv) == ["fit", "--config", fm, "-c", ddp, "--trainer.max_epochs", "1"]
    assert resolve_config_args(["--config=fashion_mnist", "--data.init_args.config", "x"]) == [
        f"--config={fm}",
        "--data.init_args.config",
        "x",
    ]


def test_configs_command_and_bare_name_errors(capsys, tmp_path: Path, monkeypatch) -> None:
    from i2e_lightning import commands as cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(["configs"]) == 0
    out = capsys.readouterr().out
    assert "fashion_mnist" in out and "tests/tiny" in out and "THE DEFAULT" in out
    assert cli.main(["fit", "--config", "no_such_config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no_such_config" in err and "i2e-lightning configs" in err
    assert cli.main(["convert", "--config", "no_such_config", "--out", "x.h5"]) == 2  # every command resolves them


def test_bench_without_a_clone_says_so_in_one_line(capsys, tmp_path: Path, monkeypatch) -> None:
    from i2e_lightning.commands import bench

    monkeypatch.setattr(bench, "benchmarks_dir", lambda: tmp_path / "benchmarks")  # as in an installed wheel
    assert bench.main(["list"]) == 0
    assert bench.main(["converter"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("clone of the repository" in line for line in err)
    assert "converter speed" not in capsys.readouterr().out  # nothing listed that cannot run
