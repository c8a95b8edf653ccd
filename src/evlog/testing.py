"""Helpers for testing code that uses evlog.

    from evlog.testing import capture_events

    def test_signup():
        with capture_events() as events:
            signup("alice")
        assert [e.name for e in events] == ["signup"]

Inside ``capture_events()`` events are built synchronously and kept in the returned list instead of being
exported (``before_send`` processors and sampling do not run), and the previous configuration is restored
afterwards. The pytest plugin (installed with evlog) offers the same as the ``evlog_events`` fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from evlog import _api, _intake
from evlog._accounting import Reporter
from evlog._build import Raw, materialize
from evlog._event import Event

__all__ = ["capture_events", "reset"]


class _Capture:
    """Stands in for the client inside ``capture_events()``: events are built synchronously, on the caller."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.reporter = Reporter(None)

    def submit(self, raw: Raw) -> None:
        self.events.append(materialize(raw, self.reporter))

    def fast_path(self) -> None:
        return None

    def on_uncaught(self, reason: str | None) -> None:
        pass


@contextmanager
def capture_events() -> Iterator[list[Event]]:
    """Collect the events logged inside the block into the list it yields."""
    capture = _Capture()
    previous = _intake.install(capture)
    try:
        yield capture.events
    finally:
        _intake.install(previous)


def reset(timeout: float = 5.0) -> None:
    """Back to a clean state, as after ``import evlog``: for test fixtures.

    Shuts the running configuration down (delivering what it can within ``timeout`` seconds), forgets it, so the
    next ``log_event`` configures afresh from the environment, clears the context bound on this thread, and
    removes evlog's exception hooks.
    """
    _api.reset(timeout)
