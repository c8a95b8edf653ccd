"""AdCP exporter: the event mapping, the spec's hashing, and the per-event schema-rule checks."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from evlog._event import Event, User
from evlog.exporters import EventRejected
from evlog.exporters._adcp_mapping import MappingDefaults, hash_email, hash_phone, map_event
from support.events import make_event

SCHEMAS = Path(__file__).parent / "data" / "adcp-schemas" / "3.2.4" / "bundled" / "media-buy"
WHEN = dt.datetime(2026, 1, 15, 14, 30, tzinfo=dt.timezone.utc)
NO_DEFAULTS = MappingDefaults()


def request_validator() -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS / "log-event-request.json").read_text())
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def mapped(event: Event, defaults: MappingDefaults = NO_DEFAULTS) -> dict[str, Any]:
    return map_event(event, defaults)


def assert_valid_request(events: list[dict[str, Any]]) -> None:
    body = {"idempotency_key": "evlog.0123456789abcdef", "event_source_id": "web", "events": events}
    errors = [f"{list(e.path)}: {e.message}" for e in request_validator().iter_errors(body)]
    assert errors == []


# --- hashing: the spec's test vectors -----------------------------------------------------------------


def test_email_hash_matches_spec_vector() -> None:
    expected = "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d"
    assert hash_email(" Jane.Doe@Example.COM ") == expected


def test_phone_hash_matches_spec_vector_including_plus() -> None:
    expected = "f48869b8f9aa60d5eb6147b2130ae29eae6e2d6877dbb9eb9448ce04fe90e3ca"
    assert hash_phone("+12065551234") == expected
    assert hash_phone("+1 (206) 555-1234") == expected
    assert hash_phone("0012065551234") == expected


def test_plain_email_and_phone_never_leave_the_process() -> None:
    user = User(email=" Jane.Doe@Example.COM ", phone="+1 206 555 1234")
    wire = json.dumps(mapped(make_event(user=user)))
    assert "Jane" not in wire
    assert "jane" not in wire
    assert "555" not in wire
    match = mapped(make_event(user=user))["user_match"]
    assert match["hashed_email"] == "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d"
    assert match["hashed_phone"] == "f48869b8f9aa60d5eb6147b2130ae29eae6e2d6877dbb9eb9448ce04fe90e3ca"


def test_already_hashed_lowercase_hex_is_sent_unchanged() -> None:
    digest = "a" * 64
    match = mapped(make_event(user=User(email=digest, phone=digest)))["user_match"]
    assert match == {"hashed_email": digest, "hashed_phone": digest}


def test_uppercase_hex_digest_breaks_the_hash_pattern_rule() -> None:
    with pytest.raises(EventRejected, match=r"lower-case hex .*\^\[a-f0-9\]\{64\}\$"):
        mapped(make_event(user=User(email="A" * 64)))


def test_phone_without_country_code_is_refused_not_guessed() -> None:
    with pytest.raises(EventRejected, match=r"E\.164"):
        mapped(make_event(user=User(phone="206 555 1234")))


# --- mapping -----------------------------------------------------------------------------------------


def test_standard_event_type_and_time() -> None:
    out = mapped(
        make_event("purchase", timestamp=WHEN, event_id="evt-1", data={"click_id": "abc", "click_id_type": "gclid"})
    )
    assert out["event_id"] == "evt-1"
    assert out["event_type"] == "purchase"
    assert dt.datetime.fromisoformat(out["event_time"]) == WHEN
    assert out["user_match"] == {"click_id": "abc", "click_id_type": "gclid"}
    assert "custom_event_name" not in out


def test_unknown_name_becomes_custom_with_its_name() -> None:
    out = mapped(make_event("newsletter_opened"))
    assert (out["event_type"], out["custom_event_name"]) == ("custom", "newsletter_opened")


def test_data_event_type_names_the_standard_type() -> None:
    out = mapped(make_event("checkout_done", data={"event_type": "purchase"}))
    assert out["event_type"] == "purchase"
    assert "custom_event_name" not in out


def test_custom_data_from_data_and_value() -> None:
    data = {
        "currency": "EUR",
        "order_id": "o-9",
        "content_ids": ["sku-1"],
        "num_items": 2,
        "contents": [{"id": "sku-1", "quantity": 2, "price": 5.0}],
        "unrelated": "stays out",
    }
    out = mapped(make_event(data=data, value=10.0))
    assert out["custom_data"] == {
        "value": 10.0,
        "currency": "EUR",
        "order_id": "o-9",
        "content_ids": ["sku-1"],
        "num_items": 2,
        "contents": [{"id": "sku-1", "quantity": 2, "price": 5.0}],
    }


def test_uids_from_custom_ids_of_adcp_uid_types_only() -> None:
    user = User(custom_ids={"uid2": "U2", "rampid": "R1", "stableID": "not-an-adcp-type"})
    assert mapped(make_event(user=user))["user_match"]["uids"] == [
        {"type": "uid2", "value": "U2"},
        {"type": "rampid", "value": "R1"},
    ]


def test_ip_and_user_agent_match_together() -> None:
    match = mapped(make_event(user=User(ip="203.0.113.7", user_agent="Mozilla/5.0")))["user_match"]
    assert match == {"client_ip": "203.0.113.7", "client_user_agent": "Mozilla/5.0"}


def test_action_source_url_and_surface_from_data_over_options() -> None:
    defaults = MappingDefaults("app", "https://shop.example/", {"category": "app"})
    out = mapped(make_event(data={"action_source": "website", "event_source_url": "https://shop.example/ok"}), defaults)
    assert (out["action_source"], out["event_source_url"], out["surface"]) == (
        "website",
        "https://shop.example/ok",
        {"category": "app"},
    )


def test_mapped_events_validate_against_the_official_schema() -> None:
    user = User(email="a@b.example", phone="+441234567890", ip="::1", user_agent="ua", custom_ids={"uid2": "x"})
    events = [
        mapped(make_event("purchase", user=user, value=3, data={"currency": "USD", "action_source": "website"})),
        mapped(make_event("my_custom", event_id="evt-2", data={"click_id": "c"})),
        mapped(
            make_event(
                "watch_milestone", event_id="evt-3", data={"progress_percent": 75, "surface": {"category": "app"}}
            )
        ),
    ]
    assert_valid_request(events)


# --- the schema's rules, one failing event at a time -------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "rule"),
    [
        (make_event(user=User(ip="203.0.113.7")), "user_match rule"),
        (make_event(data={"currency": "usd"}), "ISO 4217"),
        (make_event(value=-1), "custom_data.value must be >= 0"),
        (make_event("watch_milestone"), "watch_milestone rule"),
        (make_event(data={"progress_percent": 120}), "progress_percent must be between 0 and 100"),
        (make_event(data={"action_source": "billboard"}), "action_source must be one of"),
        (make_event(data={"surface": {"category": "tv"}}), "surface.category must be one of"),
        (make_event(data={"event_source_url": "not a url"}), "event_source_url must be an absolute URI"),
        (make_event(data={"num_items": 1.5}), "num_items must be an integer"),
        (make_event(data={"contents": [{"quantity": 1}]}), r"contents\[0\].id \(required\)"),
        (make_event(event_id="x" * 257), "event_id must be at most 256"),
    ],
)
def test_rule_violation_names_the_rule(event: Event, rule: str) -> None:
    with pytest.raises(EventRejected, match=rule):
        mapped(event)


def test_each_refused_case_is_also_refused_by_the_official_schema() -> None:
    # The local rules must not be stricter than the schema on these: build the bad event by hand.
    bad = [
        {"event_id": "a", "event_type": "lead", "event_time": "2026-01-15T14:30:00Z", "user_match": {"client_ip": "1"}},
        {
            "event_id": "b",
            "event_type": "lead",
            "event_time": "2026-01-15T14:30:00Z",
            "custom_data": {"currency": "usd"},
        },
        {"event_id": "c", "event_type": "watch_milestone", "event_time": "2026-01-15T14:30:00Z"},
        {
            "event_id": "d",
            "event_type": "lead",
            "event_time": "2026-01-15T14:30:00Z",
            "user_match": {"hashed_email": "A" * 64},
        },
    ]
    validator = request_validator()
    for event in bad:
        body = {"idempotency_key": "evlog.0123456789abcdef", "event_source_id": "web", "events": [event]}
        assert list(validator.iter_errors(body)), event["event_id"]
