"""A FastAPI app with evlog: every event of a request carries its id, route and user; its failures are recorded.

    pip install 'evlog[fastapi]' uvicorn
    EVLOG_EXPORTERS=console uvicorn examples.fastapi_app:app    # serves on http://127.0.0.1:8000
    curl -H 'X-User-Id: u-42' -X POST http://127.0.0.1:8000/carts/c-1/checkout

evlog configures itself at the first event from EVLOG_* variables or evlog.toml (console when nothing is set).
tests/test_examples.py drives this app with FastAPI's test client.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, HTTPException, Request

import evlog
from evlog.integrations.fastapi import init_app
from evlog.logging import EvlogHandler

app = FastAPI()
CARTS = {"c-1": 25.0, "c-2": 0.0}


def current_user(request: Request) -> evlog.User | None:
    """Who is asking: here a header; in a real app request.user (an authentication middleware) or a token."""
    user_id = request.headers.get("X-User-Id")
    return evlog.User(id=user_id) if user_id else None


init_app(app, user=current_user, request_events=True)  # right after FastAPI(), before the routes
log = logging.getLogger("shop")
log.addHandler(EvlogHandler(level=logging.WARNING))


@app.post("/carts/{cart_id}/checkout")
async def checkout(cart_id: str) -> dict[str, object]:
    if cart_id not in CARTS:
        raise HTTPException(404)
    total = CARTS[cart_id]
    evlog.log_event("checkout_started", category="checkout", data={"cart_id": cart_id})
    if not total:
        log.warning("checkout of an empty cart")  # a log record: carries the request's context too
    per_item = total / int(total)  # c-2 is empty: ZeroDivisionError, recorded with this request's context
    evlog.log_event("checkout_completed", category="checkout", value=total, data={"per_item": per_item})
    return {"ok": True}
