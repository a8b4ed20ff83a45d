"""Suite-wide settings: agent tests build the Faust app in-process with in-memory tables."""
from __future__ import annotations

import os
import tempfile

# Read when streams.app is first imported (agent tests); real workers started by the
# integration tests get their own environment with the RocksDB store.
os.environ.setdefault("LEADFLOW_STORE", "memory")
os.environ.setdefault("LEADFLOW_DATA_DIR", tempfile.mkdtemp(prefix="leadflow-agent-tests-"))
