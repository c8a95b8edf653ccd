"""pytest plugin (registered through the ``pytest11`` entry point): the ``evlog_events`` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from evlog._event import Event
from evlog.testing import capture_events


@pytest.fixture
def evlog_events() -> Iterator[list[Event]]:
    """The events logged during the test, built synchronously (see ``evlog.testing.capture_events``)."""
    with capture_events() as events:
        yield events
