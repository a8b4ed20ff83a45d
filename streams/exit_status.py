"""The worker's own exit statuses, importable without Faust (the demo's launcher reads them).

Importing Faust spawns a child process at import time (croniter asks ``platform.architecture()``,
which runs ``file``): a launcher that imported it to learn one number had a stray child while it
started, and a test that looks for the launcher's one child (its worker) found that one.
"""
from __future__ import annotations

__all__ = ["EXIT_STALLED"]

#: The worker was paused longer than its Kafka session and left without writing (``stall_guard``).
EXIT_STALLED = 75
