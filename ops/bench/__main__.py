"""``python -m ops.bench load|restart|hotspot``: see ``ops/bench/cli.py``."""
from __future__ import annotations

import sys

from ops.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
