"""A backend that quotes the request's headers in a long error body, with the credential across character 300.

Servers and proxies do echo requests in their errors. 300 is where ``HttpOutcome.server_message`` cuts: a
redaction that ran after the cut could no longer find the key and would leak all but its tail.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable

from support.loopback import Reply, Request

#: Where ``server_message`` truncates.
CUT = 300


def random_key(length: int = 37) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(length))


def echo_headers(key: str, status: int = 400) -> Callable[[Request], Reply]:
    """A handler answering ``status`` with a text body quoting the headers, ``key`` straddling ``CUT``."""

    def handler(request: Request) -> Reply:
        quoted = "\n".join(f"{name}: {value}" for name, value in request.headers.items())
        at = quoted.find(key)
        pad = max(0, CUT - len(key) // 2 - at) if at >= 0 else 0
        echoed = {"X-Echo": f"you sent {key}"} if at >= 0 else {}
        return Reply(status, "." * pad + quoted, headers={"Content-Type": "text/plain", **echoed})

    return handler


def leaks(key: str, text: str, run: int = 8) -> list[str]:
    """Every ``run``-character piece of ``key`` found in ``text`` (empty: nothing of the key shows)."""
    return sorted({key[i : i + run] for i in range(len(key) - run + 1) if key[i : i + run] in text})
