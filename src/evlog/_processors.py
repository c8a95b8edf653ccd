"""Running the ``before_send`` processors on one event, with what each outcome costs it.

A processor returns the event (changed or not), or None to drop it on purpose (counted as ``before_send``, not
a loss). One that raises or returns something else drops the event too (``processor_error``, a loss): a failing
scrubber must never let through what it was meant to remove.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from evlog._accounting import DropReason, Reporter
from evlog._event import Event
from evlog._guard import guarded
from evlog.typing import Processor

__all__ = ["run_processors"]


def run_processors(
    event: Event, processors: Sequence[Processor], reporter: Reporter, lost: Callable[[int], None]
) -> Event | None:
    """``event`` through every processor in order; None when one dropped it (``lost`` hears of real losses)."""
    for processor in processors:
        try:
            with guarded():
                out = processor(event)
        except Exception as exc:
            lost(1)
            reporter.warn(
                f"processor:{getattr(processor, '__qualname__', processor)!s}",
                f"before_send processor {processor!r} raised; its event is dropped",
                exc_info=True,
            )
            reporter.drop(DropReason.PROCESSOR_ERROR, 1, events=(event,), detail=f"{type(exc).__name__}: {exc}")
            return None
        if out is None:
            reporter.drop(DropReason.BEFORE_SEND, 1, events=(event,), detail=repr(processor))
            return None
        if not isinstance(out, Event):
            lost(1)
            reporter.drop(
                DropReason.PROCESSOR_ERROR,
                1,
                events=(event,),
                detail=f"before_send processor {processor!r} returned {type(out).__name__}, not an Event",
            )
            return None
        event = out
    return event
