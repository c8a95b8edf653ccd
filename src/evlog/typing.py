"""Public type aliases, for annotating code that plugs into evlog (processors, drop callbacks).

from evlog.typing import Processor

def scrub(event: evlog.Event) -> evlog.Event | None: ...
checked: Processor = scrub
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from evlog._accounting import Drop
    from evlog._event import Event

__all__ = ["OnDrop", "Processor"]

#: A ``before_send`` processor: runs on the background thread; returns the event (changed or not), or None to
#: drop it (counted as ``before_send``).
Processor = Callable[["Event"], Union["Event", None]]
#: The ``on_drop`` callback: called from a background thread with each ``Drop``; must not block.
OnDrop = Callable[["Drop"], None]
