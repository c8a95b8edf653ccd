"""The quick start: log a few events with the default exporter (console, on stderr) and look at the figures.

    python examples/quickstart.py

Nothing is configured here, so evlog reads EVLOG_* variables and ./evlog.toml if there are any, and otherwise
prints events to stderr. Try ``EVLOG_EXPORTERS=jsonl EVLOG_JSONL_PATH=events.jsonl python examples/quickstart.py``
to switch backends without touching the code.
"""

from __future__ import annotations

import datetime as dt
import decimal

import evlog


def main() -> None:
    evlog.log_event("user_logged_in", data={"username": "alice"})
    evlog.log_event(
        "database_query_slow",
        level="warning",
        category="db",
        labels=["sql"],
        message="slow query",
        data={"duration_ms": 5000, "table": "users"},
    )
    evlog.log_event(
        "order_placed",
        category="business",
        user=evlog.User(id="u-42", country="FR"),
        value=49.9,
        # Values JSON cannot hold are converted on the background thread, by documented rules.
        data={"total": decimal.Decimal("49.90"), "at": dt.datetime.now(dt.timezone.utc)},
    )
    try:
        evlog.log_event("", data={"oops": True})
    except evlog.InvalidEventError as exc:
        print(f"bad input is refused at the call: {exc}")

    delivered = evlog.flush(timeout=2.0)
    print(f"flushed: {delivered}")
    for name, figures in evlog.stats().exporters.items():
        print(f"{name}: sent={figures.sent} queued={figures.queued} dropped={dict(figures.dropped)}")
    evlog.shutdown()


if __name__ == "__main__":
    main()
