"""The exception hierarchy.

Each error subclasses the builtin it resembles so that callers who already catch ``ValueError`` keep working.
"""

from __future__ import annotations

__all__ = ["ConfigError", "EventRejected", "EvlogError", "ExporterError", "InvalidEventError"]


class EvlogError(Exception):
    """Base class of every error evlog raises on purpose."""


class InvalidEventError(EvlogError, ValueError):
    """An argument to ``log_event`` (or a field of ``User``) is not acceptable.

    Raised at the call, in the app's thread, so the mistake shows up where it was made rather than as a
    silently dropped event later.
    """


class ConfigError(EvlogError, ValueError):
    """The configuration (arguments, environment or file) has an unknown key or a bad value.

    ``path`` says where the bad value is, e.g. ``exporters.statsig.max_batch_size``; ``source`` says which
    source it came from (``configure()``, ``environment``, or a file path). ``reason`` is the message without
    that ``path (from source): `` prefix, so the error can be restated under a more exact path or source.
    """

    def __init__(self, message: str, *, path: str = "", source: str = "") -> None:
        self.path = path
        self.source = source
        self.reason = message
        where = ""
        if path:
            where = f"{path}"
            if source:
                where += f" (from {source})"
            where += ": "
        elif source:
            where = f"{source}: "
        super().__init__(f"{where}{message}")


class ExporterError(EvlogError, RuntimeError):
    """An exporter could not be created or used (e.g. a missing optional dependency)."""


class EventRejected(EvlogError, ValueError):
    """An exporter refuses one event before sending it (it breaks a rule of the backend, or cannot be encoded).

    Raised by an exporter's per-event mapping; the exporter policy turns it into a ``rejected`` outcome for
    that event alone, with this message as the reason, so one bad event never costs its batch.
    """
