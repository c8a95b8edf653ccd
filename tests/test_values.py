"""The documented conversion rules for ``data`` values JSON cannot hold."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import uuid
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any

import attrs
import pytest

import evlog
from evlog._values import MAX_DEPTH, to_json_data
from evlog.exporters.memory import MemoryExporter


class Color(enum.Enum):
    RED = "red"


@attrs.define
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Size:
    w: float


class Opaque:
    pass


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), "2026-01-02T03:04:05+00:00"),
        (dt.date(2026, 1, 2), "2026-01-02"),
        (dt.timedelta(minutes=1, milliseconds=500), 60.5),
        (Decimal("0.10"), "0.10"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (PurePosixPath("/tmp/x"), "/tmp/x"),
        (Color.RED, "red"),
        (b"\x00\xff", "AP8="),
        ({3, 1, 2}, [1, 2, 3]),
        ((1, "a"), [1, "a"]),
        ({1: "one"}, {"1": "one"}),
        (Point(1, 2), {"x": 1, "y": 2}),
        (Size(2.5), {"w": 2.5}),
        (float("nan"), "NaN"),
        (float("-inf"), "-Infinity"),
        (Opaque(), "<unserializable Opaque>"),
    ],
)
def test_conversion_rules(value: Any, expected: Any) -> None:
    out, _problems = to_json_data({"v": value})
    assert out == {"v": expected}
    json.dumps(out, allow_nan=False)


def test_only_unconvertible_values_are_reported() -> None:
    _out, problems = to_json_data({"ok": dt.date(2026, 1, 1), "bad": Opaque(), "fine": [1, 2]})
    assert problems == ["Opaque: no conversion rule"]


def test_self_reference_and_depth_are_cut_not_fatal() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    deep: Any = "bottom"
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    out, problems = to_json_data({"loop": loop, "deep": deep})
    assert out["loop"] == [1, "<unserializable list>"]
    assert len(problems) == 2
    json.dumps(out)


def test_a_bad_value_costs_neither_its_event_nor_its_batch(caplog: pytest.LogCaptureFixture) -> None:
    memory = MemoryExporter()
    evlog.configure(exporters=[memory], flush_interval=0.05)
    evlog.log_event("first", data={"obj": Opaque(), "n": 1})
    evlog.log_event("second", data={"obj": Opaque()})
    evlog.log_event("third", data={"n": 3})
    assert evlog.flush(5)
    assert [(e.name, e.data) for e in memory.events] == [
        ("first", {"obj": "<unserializable Opaque>", "n": 1}),
        ("second", {"obj": "<unserializable Opaque>"}),
        ("third", {"n": 3}),
    ]
    reports = [r for r in caplog.records if "placeholder" in r.getMessage()]
    assert len(reports) == 1  # reported once, not once per event
