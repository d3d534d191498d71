"""``python -m i2e_lightning <command>``: see :mod:`i2e_lightning.commands`."""

import sys

from .commands import main

if __name__ == "__main__":
    sys.exit(main())
