"""The one error the local stack raises: what failed, why, and what to do about it."""
from __future__ import annotations

from leadflow.errors import LeadflowError

__all__ = ["StackError"]


class StackError(LeadflowError):
    """A local-stack service (or a child process) could not be installed, started, checked or stopped.

    The message is meant for a person at a terminal: it names the service, the missing tool or
    busy port, the fix, and quotes the tail of the relevant log when there is one.
    """
