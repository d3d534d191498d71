"""Checks of the test helpers themselves: the toy dataset loads, RunIf marks and skips."""

from __future__ import annotations

from pathlib import Path

import pytest

from i2e_lightning.data import FashionMNISTDataModule
from tests.helpers.datasets import make_idx_dir
from tests.helpers.run_if import RunIf

pytest_plugins = ["pytester"]


@pytest.mark.parametrize("size", [28, 17])
def test_toy_idx_dataset_loads(tmp_path: Path, size: int) -> None:
    make_idx_dir(tmp_path, n_train=40, n_test=20, size=size)
    dm = FashionMNISTDataModule(data_dir=str(tmp_path), val_size=10, batch_size=8)
    dm.setup("fit")
    image, label = dm.split_dataset("train")[0]
    assert image.shape == (1, 32, 32) and 0 <= label < 10
    assert len(dm.split_dataset("train")) == 30 and len(dm.split_dataset("val")) == 10


def test_run_if_joins_the_skip_and_the_gpu_mark() -> None:
    never = RunIf(min_cuda_gpus=10_000)
    assert never.name == "skipif" and never.args == (True,) and "10000 CUDA" in never.kwargs["reason"]
    assert never.kwargs["gpu"] is True
    data_only = RunIf(fashion_mnist=True)
    assert data_only.kwargs["gpu"] is False


def test_run_if_gpu_tests_are_deselected_by_not_gpu(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("from tests.conftest import pytest_collection_modifyitems  # noqa: F401\n")
    pytester.makeini("[pytest]\nmarkers =\n    gpu: needs CUDA\n    slow: slow\n")
    pytester.makepyfile(
        test_marks="""
        from tests.helpers.run_if import RunIf

        @RunIf(min_cuda_gpus=10_000)
        def test_on_many_gpus():
            raise AssertionError("must be skipped")

        def test_on_cpu():
            pass
        """
    )
    result = pytester.runpytest_inprocess("-m", "not gpu", "--strict-markers")
    result.assert_outcomes(passed=1, deselected=1)
    result = pytester.runpytest_inprocess("-m", "gpu", "--strict-markers")
    result.assert_outcomes(skipped=1, deselected=1)
