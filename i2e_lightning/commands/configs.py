"""``i2e-lightning configs``: the shipped configs, by the name ``--config`` takes."""

from __future__ import annotations

import sys

from ..config_files import configs_dir, list_configs


def main(argv: list[str] | None = None) -> int:
    """``i2e-lightning configs``: the shipped configs, by the name ``--config`` takes, and where they are."""
    if argv and argv[0] in ("-h", "--help"):
        print(
            "usage: i2e-lightning configs\n\nlists the shipped configs; use one with --config NAME (e.g. fashion_mnist)"
        )
        return 0
    if argv:
        print(f"error: configs takes no arguments, got {' '.join(argv)}", file=sys.stderr)
        return 2
    configs = list_configs()
    if not configs:
        print("error: no shipped configs found: reinstall the package (pip install i2e_lightning)", file=sys.stderr)
        return 2
    width = max(len(name) for name, _ in configs)
    print(f"shipped configs in {configs_dir()} (use: --config NAME):")
    for name, what in configs:
        print(f"  {name:<{width}}  {what}")
    return 0
