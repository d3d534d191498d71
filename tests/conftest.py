"""Fixtures shared by the test modules, and the collection hook behind ``RunIf``'s ``gpu`` mark.

The helpers themselves live in ``tests/helpers/``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from tests.helpers.datasets import make_idx_dir, make_mnist_dir
from tests.helpers.run_if import wants_gpu_mark
from tests.helpers.trainer import fast_trainer as _fast_trainer

# `<command> --help` is served from a cache in the user's home; tests see the live text and write nothing there
# (tests/test_help_cache.py turns it on, in a temporary folder)
os.environ.setdefault("I2E_HELP_CACHE", "0")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: `-m "not gpu"` then sees the mark
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if wants_gpu_mark(item):
            item.add_marker(pytest.mark.gpu)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for a whole module: tiny tensors run faster, and much faster on a shared,
    oversubscribed CPU. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def toy_idx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A learnable 10-class Fashion-MNIST look-alike (160 train, 48 test, 28x28), shared read-only."""
    return make_idx_dir(tmp_path_factory.mktemp("toy_idx"))


@pytest.fixture
def tiny_fmnist(tmp_path: Path) -> tuple[Path, dict]:
    """Random 28x28 idx files (60 train, 20 test) in the test's own folder, with their arrays."""
    arrays = make_mnist_dir(tmp_path / "fm", n_train=60, n_test=20)
    return tmp_path / "fm", arrays


@pytest.fixture
def fast_trainer(tmp_path: Path) -> Callable[..., L.Trainer]:
    """``fast_trainer(**overrides)``: a quiet one-epoch CPU Trainer writing under the test's folder."""

    def make(**overrides: Any) -> L.Trainer:
        return _fast_trainer(tmp_path, **overrides)

    return make
