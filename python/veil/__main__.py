"""``python -m veil``: the same as the ``veil`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
