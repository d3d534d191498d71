"""Test helpers shared by the test modules (never imported from a ``test_*`` module).

- ``run_if.RunIf``: one marker for "needs a CUDA device / the real dataset" that also adds the ``gpu`` mark.
- ``datasets``: small idx datasets written on the fly (``make_idx_dir``, ``make_mnist_dir``).
- ``cli``: the real command line in a subprocess (``run_cli``, ``cli_env``, the ``TINY`` config).
- ``probe``: callbacks for subprocess runs (pair draws, a slow-down to kill a run mid-epoch).
- ``trainer``: a fast CPU ``Trainer`` and a stand-in trainer for DataModule hooks.

The fixtures built on them live in ``tests/conftest.py``.
"""
