"""A Flask app with evlog: every event of a request carries its id, route and user; its failures are recorded.

    pip install 'evlog[flask]'
    python examples/flask_app.py            # serves on http://127.0.0.1:5000
    curl -H 'X-User-Id: u-42' -X POST http://127.0.0.1:5000/carts/c-1/checkout

tests/test_examples.py drives this app with Flask's test client.
"""

from __future__ import annotations

import logging

from flask import Flask, Request, abort

import evlog
from evlog.integrations.flask import init_app
from evlog.logging import EvlogHandler

app = Flask("shop")
CARTS = {"c-1": 25.0, "c-2": 0.0}


def current_user(request: Request) -> evlog.User | None:
    """Who is asking: here a header; in a real app flask_login's current_user or the session."""
    user_id = request.headers.get("X-User-Id")
    return evlog.User(id=user_id) if user_id else None


init_app(app, user=current_user, request_events=True)
# Flask logs the exceptions it answers with a 500 on app.logger: those records become events too.
app.logger.addHandler(EvlogHandler(level=logging.WARNING))


@app.post("/carts/<cart_id>/checkout")
def checkout(cart_id: str) -> dict[str, object]:
    if cart_id not in CARTS:
        abort(404)
    total = CARTS[cart_id]
    evlog.log_event("checkout_started", category="checkout", data={"cart_id": cart_id})
    per_item = total / int(total)  # c-2 is empty: ZeroDivisionError, recorded with this request's context
    evlog.log_event("checkout_completed", category="checkout", value=total, data={"per_item": per_item})
    return {"ok": True}


if __name__ == "__main__":
    evlog.configure(exporters=["console"])
    app.run()
