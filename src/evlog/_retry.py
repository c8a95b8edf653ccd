"""Retry timing: exponential backoff with full jitter, server-requested delays, and the per-batch deadline.

Full jitter (a uniform delay between 0 and the exponential cap) spreads the retries of many processes that
failed together, so a recovering backend is not hit by a synchronized wave. A delay the server asked for
(Retry-After, AdCP's ``retry_after``) is a floor, never shortened by jitter.
"""

from __future__ import annotations

import datetime as _dt
import random
from collections.abc import Callable

import attrs

__all__ = ["MIN_ATTEMPT_SECONDS", "RetryPolicy", "fit_wait", "parse_retry_after", "plan_retry"]


@attrs.frozen
class RetryPolicy:
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    #: Seconds from a batch's first attempt after which it is given up.
    deadline: float = 60.0

    def delay(
        self,
        attempt: int,
        requested: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first retry)."""
        cap = min(self.max_backoff, self.initial_backoff * (2 ** min(attempt, 62)))
        wait = rand() * cap
        if requested is not None and requested > wait:
            wait = requested
        return float(wait)


def parse_retry_after(value: str | None, *, now: _dt.datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        from email.utils import parsedate_to_datetime  # only for the rare HTTP-date form

        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=_dt.timezone.utc)
        now = now or _dt.datetime.now(_dt.timezone.utc)
        seconds = (when - now).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


#: The least time worth starting an attempt with: below it a request cannot even connect.
MIN_ATTEMPT_SECONDS = 0.05


def fit_wait(wait: float, now: float, end: float) -> float | None:
    """How long to wait so that the next attempt still happens before ``end``.

    ``wait`` when it fits with time left for the attempt itself; otherwise a shortened wait (the last chance to
    deliver beats honouring a delay that would run past the deadline); None when no attempt fits any more.
    Time is kept for the attempt: half of what is left, at most a second.
    """
    left = end - now
    if left < MIN_ATTEMPT_SECONDS:
        return None
    reserve = min(1.0, left / 2)
    if wait + reserve <= left:
        return wait
    return max(0.0, left - reserve)


def plan_retry(
    policy: RetryPolicy,
    *,
    attempt: int,
    requested: float | None,
    first_attempt: float,
    now: float,
    shutdown_deadline: float | None,
    flush_deadline: float | None,
    final: bool,
) -> tuple[float, bool] | None:
    """(seconds before the next attempt, whether it is the last one); None: no attempt fits any more.

    The batch's own deadline (``first_attempt + policy.deadline``) and shutdown's are hard: a wait that does
    not fit is shortened once, for a final attempt, rather than given up on at once. A waiting flush only makes
    the worker hurry: its deadline shortens the wait when it can, and never makes the worker give up.
    """
    if policy.deadline <= 0:
        return None
    wait = policy.delay(attempt, requested)
    hard = first_attempt + policy.deadline
    if shutdown_deadline is not None:
        hard = min(hard, shutdown_deadline)
    if flush_deadline is not None and flush_deadline < hard:
        hurried = fit_wait(wait, now, flush_deadline)
        if hurried is not None:
            wait = hurried
    fitted = fit_wait(wait, now, hard)
    if fitted is None or (final and fitted < wait):
        return None
    return fitted, fitted < wait
