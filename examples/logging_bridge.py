"""How exceptions that web frameworks catch reach evlog, with no framework-specific code.

Frameworks do not let a request handler's exception go uncaught (the process must keep serving), so
``sys.excepthook`` never sees it. They log it instead, with ``exc_info``, on a known logger:

    Flask           app.logger, named app.name         log_exception(): logger.error("Exception on ...", exc_info=...)
                    (Flask(__name__) in myapp.py: "myapp")
    Django          "django.request"                   log_response(): logger.error("Internal Server Error: ...")
    uvicorn         "uvicorn.error"                    logger.error("Exception in ASGI application", exc_info=...)
    FastAPI         (runs on uvicorn, as above)

Attach ``evlog.logging.EvlogHandler`` to those loggers (or to the root logger) and each of those records becomes
an event with the exception fields filled in. This script plays the framework's part with plain functions.

    python examples/logging_bridge.py
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import evlog
from evlog.logging import EvlogHandler


def serve(logger_name: str, handler: Callable[[], str]) -> str:
    """What every framework does around a view: catch, log with exc_info, answer 500."""
    try:
        return handler()
    except Exception:
        logging.getLogger(logger_name).error("Exception in ASGI application", exc_info=True)
        return "500 Internal Server Error"


def checkout() -> str:
    cart: dict[str, int] = {}
    return f"total: {cart['total']}"  # KeyError


def main() -> None:
    evlog.configure(exporters=["console"], capture_exceptions=True)

    # WARNING and above only: framework loggers are chatty at INFO (one line per request).
    bridge = EvlogHandler(level=logging.WARNING)
    for name in ("uvicorn.error", "django.request", "myapp"):  # or just logging.getLogger() for everything
        logging.getLogger(name).addHandler(bridge)

    print(serve("uvicorn.error", checkout))  # -> event "log.uvicorn.error", level error, exception KeyError

    # Handled in the app's own code, with context the framework does not know about:
    try:
        checkout()
    except KeyError:
        evlog.capture_exception(category="checkout", data={"cart_id": "c-42"})

    evlog.shutdown()


if __name__ == "__main__":
    main()
