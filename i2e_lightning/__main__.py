"""``python -m i2e_lightning <command>``: see :mod:`i2e_lightning.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
