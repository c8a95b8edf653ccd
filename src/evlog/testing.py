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

from evlog._client import _Capture, _install
from evlog._event import Event

__all__ = ["capture_events"]


@contextmanager
def capture_events() -> Iterator[list[Event]]:
    """Collect the events logged inside the block into the list it yields."""
    capture = _Capture()
    previous = _install(capture)
    try:
        yield capture.events
    finally:
        _install(previous)
