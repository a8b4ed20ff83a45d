"""The one root of leadflow's exceptions, and the transient/permanent split callers act on."""
from __future__ import annotations

__all__ = ["LeadflowError", "TransientError", "PermanentError", "ConfigError", "ErrorAt"]


class LeadflowError(Exception):
    """Root of every error leadflow raises on purpose."""


class TransientError(LeadflowError):
    """Might succeed later: the caller retries it on a schedule and counts it."""


class Unconfirmed(TransientError):
    """A write that may or may not have happened (e.g. Kafka did not acknowledge in time, but
    may still store the records): retrying is safe only where the retry is idempotent."""


class PermanentError(LeadflowError):
    """Will not succeed by retrying: the caller dead-letters it with the reason and counts it."""


class ConfigError(LeadflowError):
    """The configuration is invalid; the message names the file, the path inside it and the problem."""


class ErrorAt(ValueError):
    """A problem a config validator finds below the model it validates (``loc`` is relative to that
    model), so that the config loader reports the line of the entry at fault, not the model's first
    line. A ``ValueError``, as pydantic expects of validators."""

    def __init__(self, loc: tuple[int | str, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
