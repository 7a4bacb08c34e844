"""``python -m sknetk`` and the ``sknetk`` console script; see :mod:`sknetk.cli`."""

import sys

from .cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
