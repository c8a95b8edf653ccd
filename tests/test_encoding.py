"""One odd value costs at most its own event, in every exporter; the fast encoder writes the documented JSON.

Odd values reach an exporter two ways: through ``log_event`` (the event is built by ``materialize``, which
applies the conversion rules) and from a processor that puts them into an event afterwards. Either way the
other events of the batch are delivered, and the odd one is delivered in its converted form or rejected
with a reason.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evlog import Batch, Event, ExceptionInfo, ExportStatus, User
from evlog._accounting import Reporter
from evlog._build import materialize
from evlog._serialize import EncodeError, encode_safely, event_to_dict
from evlog._values import MAX_EXACT_INT, clean_text, to_json_data
from support.backends import NAMES, open_backend
from support.events import make_event


class BadStr:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")

    __repr__ = __str__


def _cycle() -> list[Any]:
    loop: list[Any] = [1]
    loop.append(loop)
    return loop


LONE = st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3)
ODD_VALUES = st.one_of(
    LONE.map(lambda s: f"a{s}b"),
    st.sampled_from([10**5000, -(10**30), 2**53 + 1, 2**64]),
    st.integers(min_value=MAX_EXACT_INT + 1, max_value=2**200),
    st.sampled_from([{1, 2}, b"\xff\x00", bytearray(b"x"), decimal.Decimal("1.5"), float("nan"), float("inf")]),
    st.builds(object),
    st.builds(BadStr),
    st.builds(_cycle),
)


def _with_data(event: Event, odd: Any) -> Event:
    return attrs.evolve(event, data={**event.data, "odd": odd})


def _with_custom(event: Event, odd: Any) -> Event:
    return attrs.evolve(event, user=attrs.evolve(event.user or User(), custom={"odd": odd}))


def _with_private(event: Event, odd: Any) -> Event:
    return attrs.evolve(event, user=attrs.evolve(event.user or User(), private_attributes={"odd": odd}))


def _with_exception(event: Event, odd: Any) -> Event:
    info = ExceptionInfo("ValueError", exception_msg=odd, stacktrace=odd, source_line=odd)  # no type checks here
    return attrs.evolve(event, exception=info)


def _with_user_text(event: Event, odd: Any) -> Event:
    text = odd if isinstance(odd, str) else "plain"
    return attrs.evolve(event, user=attrs.evolve(event.user or User(), id=text, custom_ids={"stableID": text}))


PLACES: list[Callable[[Event, Any], Event]] = [
    _with_data,
    _with_custom,
    _with_private,
    _with_exception,
    _with_user_text,
]


def built(event: Event) -> Event:
    """``event`` as the router builds it from what ``log_event`` queued (the conversion rules applied)."""
    rare = (event.event_id, event.user, event.session_id, event.value, event.exception, event.trace)
    raw = (event.name, event.level.value, event.category, event.labels, event.message, event.data, event.timestamp)
    return materialize((*raw, rare), Reporter(None))


@pytest.mark.parametrize("name", NAMES)
def test_one_odd_value_costs_only_its_own_event(name: str, tmp_path: Path) -> None:
    with open_backend(name, tmp=tmp_path) as backend:
        exporter = backend.build()

        @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(odd=ODD_VALUES, place=st.sampled_from(PLACES), through_log_event=st.booleans())
        def check(odd: Any, place: Callable[[Event, Any], Event], through_log_event: bool) -> None:
            first, second = backend.good("first"), backend.good("second")
            odd_event = place(backend.good("odd"), odd)
            if through_log_event:
                odd_event = built(odd_event)
            result = exporter.export(Batch((first, odd_event, second)))
            assert result.status in (ExportStatus.SUCCESS, ExportStatus.PARTIAL), result
            assert first.event_id not in result.rejected and second.event_id not in result.rejected
            assert not result.retry_ids
            if odd_event.event_id in result.rejected:
                assert result.rejected[odd_event.event_id]  # a reason, never an empty string
                assert not through_log_event, "an event built by evlog always encodes"

        check()


def test_jsonl_lines_stay_valid_json_whatever_the_values(tmp_path: Path) -> None:
    with open_backend("jsonl", tmp=tmp_path) as backend:
        exporter = backend.build()
        events = [built(place(backend.good(f"e{i}"), odd)) for i, (place, odd) in enumerate(_every_odd_case())]
        assert exporter.export(Batch(tuple(events))).ok
        lines = _lines(tmp_path / "events.jsonl")  # not splitlines: U+2028 is no line break in JSON
        assert [json.loads(line)["name"] for line in lines] == [e.name for e in events]


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]  # not splitlines(): U+2028 breaks no JSON line


def _every_odd_case() -> list[tuple[Callable[[Event, Any], Event], Any]]:
    odd = ["a\ud800b", 10**5000, 2**60, {1, 2}, b"\xff", decimal.Decimal("2.50"), object(), BadStr(), _cycle()]
    return [(place, value) for place in PLACES for value in odd]


# --- the rules -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2**53, 2**53),
        (-(2**53), -(2**53)),
        (2**53 + 1, str(2**53 + 1)),
        (-(2**64), str(-(2**64))),
        (10**5000, "1" + "0" * 5000),  # past Python's own int-to-str limit, still exact
        ("a\ud800b", "a\ufffdb"),  # a lone surrogate becomes U+FFFD
        ("\ud83d\ude00", "\U0001f600"),  # a pair held as two code points becomes its character
        ({"k\udc80": 1}, {"k\ufffd": 1}),
    ],
    ids=["2**53", "-2**53", "2**53+1", "-2**64", "10**5000", "lone", "pair", "key"],
)
def test_big_integers_and_lone_surrogates(value: Any, expected: Any) -> None:
    assert to_json_data({"v": value})[0] == {"v": expected}


def test_clean_text_keeps_valid_text_as_is() -> None:
    text = "héllo wörld ✓ \U0001f600"
    assert clean_text(text) is text


def test_a_processors_value_without_a_rule_is_refused_with_its_path() -> None:
    with pytest.raises(EncodeError) as caught:
        encode_safely({"user": {"custom": {"ok": 1, "bad": object()}}})
    assert caught.value.path == "user.custom.bad"


def test_a_processors_value_with_a_rule_is_converted_at_encode_time() -> None:
    out = encode_safely({"s": "x\udfff", "n": 2**70, "when": dt.date(2026, 1, 2)})
    assert json.loads(out) == {"s": "x\ufffd", "n": str(2**70), "when": "2026-01-02"}


def test_user_and_exception_fields_are_converted_when_the_event_is_built() -> None:
    user = User(id="u\ud800", custom={"tags": {"b", "a"}, "n": 2**60}, private_attributes={"raw": b"\x01"})
    info = ExceptionInfo("E", exception_msg=b"caf\xc3\xa9 \xff", stacktrace="line 1\nline 2")  # type: ignore[arg-type]
    event = built(make_event("x", user=user, exception=info))
    assert event.user is not None and event.exception is not None
    assert (event.user.id, event.user.custom, event.user.private_attributes) == (
        "u\ufffd",
        {"tags": ["a", "b"], "n": str(2**60)},
        {"raw": "AQ=="},
    )
    assert (event.exception.exception_msg, event.exception.stacktrace) == ("café \ufffd", ("line 1", "line 2"))


# --- the fast encoder writes the documented form -------------------------------------------------------------

CORPUS = [
    make_event("plain"),
    make_event("full", category="c", labels=("a", "b"), message="m", session_id="s", value=1.5),
    make_event("unicode ✓", data={"text": "héllo \U0001f600", "ctrl": '\x00\n\t"\\', "sep": "\u2028"}),
    make_event("numbers", data={"i": 2**53, "neg": -1, "f": 0.1, "big": 1e300, "tiny": 5e-324, "z": -0.0}),
    make_event("nested", data={"a": [1, {"b": [None, True, False]}], "e": {}, "l": []}),
    make_event("user", user=User(id="u", email="e@x", custom={"k": [1, "2"]}, custom_ids={"stableID": "s"})),
    make_event("exc", exception=ExceptionInfo("E", "msg", ("l1", "l2"), "f.py", 3, "fn", cause=ExceptionInfo("C"))),
    make_event("stamp", timestamp=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)),  # microsecond 0
    make_event("early", timestamp=dt.datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=dt.timezone.utc)),
]


def test_jsonl_output_is_the_documented_form(tmp_path: Path) -> None:
    with open_backend("jsonl", tmp=tmp_path) as backend:
        events = [built(event) for event in CORPUS]
        assert backend.build().export(Batch(tuple(events))).ok
        lines = _lines(tmp_path / "events.jsonl")  # not splitlines: U+2028 is no line break in JSON
    documented = [json.loads(json.dumps(event_to_dict(e), ensure_ascii=False, allow_nan=False)) for e in events]
    assert [json.loads(line) for line in lines] == documented


def test_statsig_body_is_the_documented_form() -> None:
    from evlog.exporters.statsig import StatsigExporter

    with open_backend("statsig") as backend:
        exporter = backend.build()
        assert isinstance(exporter, StatsigExporter)
        events = [built(event) for event in CORPUS]
        assert exporter.export(Batch(tuple(events))).ok
        assert backend.server is not None
        sent = backend.server.requests[-1].json()
    expected = [json.loads(json.dumps(exporter._wire(e), ensure_ascii=False, allow_nan=False)) for e in events]
    assert sent["events"] == expected
    for event, wire in zip(events, sent["events"], strict=True):
        for key, value in event.data.items():  # stringified metadata parses back to the value
            text = wire["metadata"][key]
            assert text == value if isinstance(value, str) else json.loads(text) == value


def test_a_timestamp_outside_utcs_range_is_refused_at_the_call() -> None:
    import evlog

    early = dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=14)))
    with pytest.raises(evlog.InvalidEventError, match="cannot be expressed in UTC"):
        evlog.log_event("early", timestamp=early)


def test_warnings_quote_a_huge_name_cut_short(caplog: pytest.LogCaptureFixture) -> None:
    raw = ("n" * 1_000_000, "info", None, None, None, {"odd": object()}, 0, None)
    materialize(raw, Reporter(None))
    messages = [r.getMessage() for r in caplog.records if "placeholder" in r.getMessage()]
    assert messages and all(len(m) < 400 for m in messages)


def test_a_nested_dict_changed_during_the_copy_costs_only_that_value() -> None:
    class Changing(dict):  # type: ignore[type-arg]
        def items(self) -> Any:
            raise RuntimeError("dictionary changed size during iteration")

    event = built(make_event("x", data={"ok": 1, "busy": Changing(a=1)}))
    assert event.data["ok"] == 1 and event.data["busy"].startswith("<unserializable ")
