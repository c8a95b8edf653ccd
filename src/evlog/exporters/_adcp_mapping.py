"""Turning an evlog ``Event`` into an AdCP 3.2 ``log_event`` event, and checking it against the schema's rules.

The checks mirror the official JSON schema (``core/event.json``, ``core/user-match.json``,
``core/event-custom-data.json``, ``core/event-surface.json``) so that one bad event is refused here, alone and
with a reason naming the rule, instead of making the seller refuse the whole request. Plain e-mail addresses
and phone numbers are hashed here as the spec normalises them; they never leave the process.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from typing import Any

import attrs

from evlog._errors import EventRejected
from evlog._event import Event
from evlog._serialize import rfc3339

__all__ = [
    "ACTION_SOURCES",
    "EVENT_TYPES",
    "SURFACE_CATEGORIES",
    "UID_TYPES",
    "MappingDefaults",
    "hash_email",
    "hash_phone",
    "map_event",
]

#: AdCP 3.2 ``enums/event-type.json``.
EVENT_TYPES = frozenset(
    [
        "page_view",
        "view_content",
        "select_content",
        "select_item",
        "search",
        "share",
        "add_to_cart",
        "remove_from_cart",
        "viewed_cart",
        "add_to_wishlist",
        "initiate_checkout",
        "add_payment_info",
        "purchase",
        "refund",
        "lead",
        "qualify_lead",
        "close_convert_lead",
        "disqualify_lead",
        "complete_registration",
        "subscribe",
        "follow",
        "content_view",
        "watch_milestone",
        "start_trial",
        "app_install",
        "app_launch",
        "contact",
        "schedule",
        "donate",
        "submit_application",
        "custom",
    ]
)
#: ``enums/action-source.json``.
ACTION_SOURCES = frozenset(
    ["website", "app", "offline", "phone_call", "chat", "email", "in_store", "system_generated", "other"]
)
#: ``enums/uid-type.json``: the ``User.custom_ids`` keys that become ``user_match.uids``.
UID_TYPES = frozenset(
    [
        "rampid",
        "rampid_derived",
        "id5",
        "uid2",
        "euid",
        "pairid",
        "maid",
        "hashed_email",
        "publisher_first_party",
        "world_id_nullifier",
        "other",
    ]
)
#: ``core/event-surface.json`` ``category``.
SURFACE_CATEGORIES = frozenset({"owned_property", *ACTION_SOURCES})

_HEX64 = re.compile(r"^[a-f0-9]{64}$")
_ANY_HEX64 = re.compile(r"^[A-Fa-f0-9]{64}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_PHONE_SEPARATORS = re.compile(r"[\s\-().]")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S+$")

_STRING_CUSTOM = ("order_id", "content_type", "content_name", "content_category", "search_string")
_USER_MATCH_RULE = (
    "user_match rule: needs uids, hashed_email, hashed_phone, click_id, or client_ip together with client_user_agent"
)


@attrs.frozen
class MappingDefaults:
    """Values the options supply when an event's ``data`` does not."""

    action_source: str | None = None
    event_source_url: str | None = None
    surface: Mapping[str, Any] | None = None


def hash_email(email: str) -> str:
    """SHA-256 of the trimmed, lower-cased address, as lower-case hex (AdCP ``hashed_email``).

    No other normalisation (Gmail dots, ``+tags``): the spec specifies none, and sellers hash the same way.
    """
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


def normalize_phone(phone: str) -> str:
    """The E.164 form (``+12065551234``): separators dropped, a ``00`` prefix read as ``+``.

    A number without its country code cannot be made E.164 without guessing the country, so it is refused.
    """
    text = _PHONE_SEPARATORS.sub("", phone.strip())
    if text.startswith("00"):
        text = "+" + text[2:]
    if not _E164.match(text):
        raise EventRejected(
            "hashed_phone: the phone number must be in E.164 form (+, country code, number; e.g. +12065551234)"
        )
    return text


def hash_phone(phone: str) -> str:
    """SHA-256 of the E.164 string, ``+`` included, as lower-case hex (AdCP ``hashed_phone``)."""
    return hashlib.sha256(normalize_phone(phone).encode("utf-8")).hexdigest()


def _hashed(value: str, field: str, plain: Any) -> str:
    """``value`` if it is already a digest, else the digest of the plain value."""
    if _HEX64.match(value):
        return value
    if _ANY_HEX64.match(value):
        raise EventRejected(f"{field}: a SHA-256 digest must be lower-case hex (schema pattern ^[a-f0-9]{{64}}$)")
    return str(plain(value))


def _email_digest(value: str) -> str:
    if "@" not in value:
        if _HEX64.match(value) or _ANY_HEX64.match(value):
            return _hashed(value, "hashed_email", hash_email)
        raise EventRejected("hashed_email: user.email is neither an e-mail address nor a SHA-256 hex digest")
    return hash_email(value)


def _user_match(event: Event, data: Mapping[str, Any]) -> dict[str, Any]:
    match: dict[str, Any] = {}
    user = event.user
    if user is not None:
        uids = [{"type": key, "value": value} for key, value in user.custom_ids.items() if key in UID_TYPES]
        if uids:
            match["uids"] = uids
        if user.email:
            match["hashed_email"] = _email_digest(user.email)
        if user.phone:
            match["hashed_phone"] = _hashed(user.phone.strip(), "hashed_phone", hash_phone)
        if user.ip:
            match["client_ip"] = user.ip
        if user.user_agent:
            match["client_user_agent"] = user.user_agent
    for key in ("click_id", "click_id_type"):
        value = data.get(key)
        if value is not None:
            match[key] = _string(value, f"user_match.{key}")
    if not match:
        return match
    ok = any(k in match for k in ("uids", "hashed_email", "hashed_phone", "click_id")) or (
        "client_ip" in match and "client_user_agent" in match
    )
    if not ok:
        raise EventRejected(_USER_MATCH_RULE)
    return match


def _string(value: Any, field: str, *, max_len: int | None = None) -> str:
    if not isinstance(value, str) or not value:
        raise EventRejected(f"{field} must be a non-empty string, got {value!r:.60}")
    if max_len is not None and len(value) > max_len:
        raise EventRejected(f"{field} must be at most {max_len} characters, got {len(value)}")
    return value


def _number(value: Any, field: str, *, low: float = 0.0, high: float | None = None) -> float | int:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise EventRejected(f"{field} must be a number, got {value!r:.60}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EventRejected(f"{field} must be a finite number, got {value!r:.60}")
    if value < low or (high is not None and value > high):
        bound = f"between {low:g} and {high:g}" if high is not None else f">= {low:g}"
        raise EventRejected(f"{field} must be {bound}, got {value!r}")
    return value


def _integer(value: Any, field: str, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EventRejected(f"{field} must be an integer, got {value!r:.60}")
    if value < low:
        raise EventRejected(f"{field} must be >= {low}, got {value}")
    return value


def _contents(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise EventRejected("custom_data.contents must be a list of objects with an 'id'")
    items = []
    for i, raw in enumerate(value):
        if not isinstance(raw, Mapping):
            raise EventRejected(f"custom_data.contents[{i}] must be an object with an 'id'")
        item = dict(raw)
        item["id"] = _string(item.get("id"), f"custom_data.contents[{i}].id (required)")
        if "quantity" in item:
            item["quantity"] = _integer(item["quantity"], f"custom_data.contents[{i}].quantity", low=1)
        if "price" in item:
            item["price"] = _number(item["price"], f"custom_data.contents[{i}].price")
        if "brand" in item:
            item["brand"] = _string(item["brand"], f"custom_data.contents[{i}].brand")
        items.append(item)
    return items


def _custom_data(event: Event, data: Mapping[str, Any]) -> dict[str, Any]:
    base = data.get("custom_data")
    if base is not None and not isinstance(base, Mapping):
        raise EventRejected("custom_data must be an object")
    custom: dict[str, Any] = dict(base or {})
    for key in (
        "value",
        "currency",
        "content_ids",
        "num_items",
        "progress_percent",
        "progress_seconds",
        "contents",
        *_STRING_CUSTOM,
    ):
        if key in data:
            custom[key] = data[key]
    if event.value is not None:
        custom["value"] = event.value
    if "value" in custom:
        custom["value"] = _number(custom["value"], "custom_data.value")
    if "currency" in custom:
        currency = custom["currency"]
        if not isinstance(currency, str) or not _CURRENCY.match(currency):
            raise EventRejected(
                f"custom_data.currency must be an ISO 4217 code in capitals (e.g. USD), got {currency!r:.20}"
            )
    for key in _STRING_CUSTOM:
        if key in custom:
            custom[key] = _string(custom[key], f"custom_data.{key}")
    if "content_ids" in custom:
        ids = custom["content_ids"]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise EventRejected("custom_data.content_ids must be a list of strings")
    if "num_items" in custom:
        custom["num_items"] = _integer(custom["num_items"], "custom_data.num_items", low=0)
    if "progress_percent" in custom:
        custom["progress_percent"] = _number(custom["progress_percent"], "custom_data.progress_percent", high=100)
    if "progress_seconds" in custom:
        custom["progress_seconds"] = _number(custom["progress_seconds"], "custom_data.progress_seconds")
    if "contents" in custom:
        custom["contents"] = _contents(custom["contents"])
    return custom


def _surface(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise EventRejected("surface must be an object with a 'category'")
    surface = dict(value)
    category = surface.get("category")
    if category not in SURFACE_CATEGORIES:
        raise EventRejected(
            f"surface.category must be one of {', '.join(sorted(SURFACE_CATEGORIES))}; got {category!r:.40}"
        )
    for key, limit in (("property_type", 128), ("namespace", 128), ("property_id", 256)):
        if key in surface:
            surface[key] = _string(surface[key], f"surface.{key}", max_len=limit)
    return surface


def _event_type(event: Event, data: Mapping[str, Any]) -> tuple[str, str | None]:
    """AdCP's type and, for ``custom``, the name it is known by.

    ``data["event_type"]`` lets an app keep its own event names and still say which standard type they are.
    """
    explicit = data.get("event_type")
    chosen = explicit if isinstance(explicit, str) and explicit else event.name
    if chosen in EVENT_TYPES:
        if chosen == "custom":
            name = data.get("custom_event_name") or event.name
            return "custom", _string(name, "custom_event_name")
        return chosen, None
    return "custom", chosen


def map_event(event: Event, defaults: MappingDefaults) -> dict[str, Any]:
    """The ``log_event`` event object for ``event``; ``EventRejected`` naming the rule when it cannot be valid."""
    data = event.data
    event_id = _string(event.event_id, "event_id", max_len=256)
    event_type, custom_name = _event_type(event, data)
    out: dict[str, Any] = {"event_id": event_id, "event_type": event_type, "event_time": rfc3339(event.timestamp)}
    if custom_name is not None:
        out["custom_event_name"] = custom_name
    match = _user_match(event, data)
    if match:
        out["user_match"] = match
    custom = _custom_data(event, data)
    if custom:
        out["custom_data"] = custom
    if event_type == "watch_milestone" and not ("progress_percent" in custom or "progress_seconds" in custom):
        raise EventRejected("watch_milestone rule: custom_data needs progress_percent or progress_seconds")
    action_source = data.get("action_source", defaults.action_source)
    if action_source is not None:
        if action_source not in ACTION_SOURCES:
            raise EventRejected(
                f"action_source must be one of {', '.join(sorted(ACTION_SOURCES))}; got {action_source!r:.40}"
            )
        out["action_source"] = action_source
    url = data.get("event_source_url", defaults.event_source_url)
    if url is not None:
        if not isinstance(url, str) or not _URI.match(url):
            raise EventRejected(f"event_source_url must be an absolute URI, got {url!r:.80}")
        out["event_source_url"] = url
    surface = data.get("surface", defaults.surface)
    if surface is not None:
        out["surface"] = _surface(surface)
    return out
