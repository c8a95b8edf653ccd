"""Crashes in the main thread with a chained exception; evlog is configured from EVLOG_* variables only."""

from crash_errors import PaymentError

import evlog


def lookup(card: str) -> None:
    raise KeyError(card)


def charge(card: str) -> None:
    try:
        lookup(card)
    except KeyError as exc:
        raise PaymentError("card declined") from exc  # CRASH-LINE


evlog.configure()
evlog.log_event("started")
charge("4111")
