"""The otel exporter: field mapping with the SDK's in-memory exporter, sanitisation, provider resolution and
ownership, and OTLP/HTTP end to end to a loopback receiver configured only through environment variables."""

from __future__ import annotations

import datetime as _dt
import inspect
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry._logs import _internal as logs_internal
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LogRecordLimits
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.util._once import Once

import evlog
from evlog import ConfigError
from evlog._event import Event, ExceptionInfo, Level, TraceContext, User
from evlog.exporters._base import Batch
from evlog.exporters._otel_api import (
    InMemoryLogRecordExporter,
    LoggerProvider,
    SimpleLogRecordProcessor,
    set_global_logger_provider,
)
from evlog.exporters.otel import OtelExporter
from support.events import make_event
from support.loopback import Reply
from support.otlp_receiver import OtlpReceiver

T0 = _dt.datetime(2026, 11, 22, 12, 30, 15, 123456, tzinfo=_dt.timezone.utc)
T0_NS = 1_795_350_615_123_456_000  # T0 in nanoseconds since the epoch


def _sdk_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("OtelBatch") and t.is_alive()]


@pytest.fixture(autouse=True)
def _clean_otel(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No OTEL_* variable from the outside, no global provider, and no SDK batch thread left behind."""
    for key in list(os.environ):
        if key.startswith("OTEL_"):
            monkeypatch.delenv(key)
    monkeypatch.setattr(logs_internal, "_LOGGER_PROVIDER", None)
    monkeypatch.setattr(logs_internal, "_LOGGER_PROVIDER_SET_ONCE", Once())
    before = set(_sdk_threads())
    yield
    evlog.shutdown(timeout=5)
    deadline = time.monotonic() + 5
    left = [t for t in _sdk_threads() if t not in before]
    for thread in left:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not [t.name for t in left if t.is_alive()]


@pytest.fixture
def memory() -> Iterator[tuple[LoggerProvider, InMemoryLogRecordExporter]]:
    provider = LoggerProvider(shutdown_on_exit=False)
    exporter = InMemoryLogRecordExporter()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as rec:
        yield rec


def _emit(memory: tuple[LoggerProvider, InMemoryLogRecordExporter], *events: Event, **options: Any) -> list[Any]:
    """Export through an OtelExporter on the in-memory provider; the API log records that came out."""
    provider, store = memory
    exporter = OtelExporter(logger_provider=provider, **options)
    result = exporter.export(Batch(events))
    assert result.ok, result
    return [item.log_record for item in store.get_finished_logs()]


# --- mapping, field by field -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "number", "text"),
    [
        ("debug", 5, "DEBUG"),
        ("info", 9, "INFO"),
        ("warning", 13, "WARN"),
        ("error", 17, "ERROR"),
        ("critical", 21, "FATAL"),
    ],
)
def test_level_maps_to_severity(memory: Any, level: str, number: int, text: str) -> None:
    (record,) = _emit(memory, make_event(level=Level(level)))
    assert int(record.severity_number.value) == number
    assert record.severity_text == text


def test_body_is_the_message_else_the_name(memory: Any) -> None:
    records = _emit(memory, make_event(message="paid 42 EUR"), make_event("signup"))
    assert [r.body for r in records] == ["paid 42 EUR", "signup"]


def test_event_name_and_timestamps(memory: Any) -> None:
    before = time.time_ns()
    (record,) = _emit(memory, make_event("checkout.paid", timestamp=T0))
    assert record.event_name == "checkout.paid"
    assert record.timestamp == T0_NS
    assert before <= record.observed_timestamp <= time.time_ns()
    assert "event.name" not in record.attributes  # deprecated attribute: the top-level field carries it


def test_category_labels_value_and_event_id(memory: Any) -> None:
    event = make_event(category="billing", labels=("payments", "retryable"), value=19.5, event_id="ev-1")
    (record,) = _emit(memory, event)
    attrs = dict(record.attributes)
    assert attrs["evlog.category"] == "billing"
    assert tuple(attrs["evlog.labels"]) == ("payments", "retryable")
    assert attrs["evlog.value"] == 19.5
    assert attrs["log.record.uid"] == "ev-1"


def test_data_is_flattened_with_dotted_keys(memory: Any) -> None:
    data = {"order": {"id": 42, "total": 19.99, "items": ["a", "b"]}, "ok": True}
    (record,) = _emit(memory, make_event(data=data))
    attrs = dict(record.attributes)
    assert attrs["evlog.data.order.id"] == 42
    assert attrs["evlog.data.order.total"] == 19.99
    assert tuple(attrs["evlog.data.order.items"]) == ("a", "b")
    assert attrs["evlog.data.ok"] is True
    assert "evlog.data" not in attrs


def test_data_as_one_map_attribute(memory: Any) -> None:
    data = {"order": {"id": 42, "items": ["a", "b"]}, "ok": True}
    (record,) = _emit(memory, make_event(data=data), data_mode="map", attribute_prefix="shop.")
    value = dict(record.attributes)["shop.data"]
    assert value["order"]["id"] == 42
    assert tuple(value["order"]["items"]) == ("a", "b")
    assert value["ok"] is True


def test_user_and_session_ids(memory: Any) -> None:
    (record,) = _emit(memory, make_event(user=User(id="u-123", email="a@b.c"), session_id="s-456"))
    attrs = dict(record.attributes)
    assert attrs["user.id"] == "u-123"
    assert attrs["session.id"] == "s-456"
    assert "a@b.c" not in str(attrs)  # only the id is sent


def test_exception_attributes_use_stable_semconv_names(memory: Any) -> None:
    exc = ExceptionInfo(
        exception_type="billing.CardDeclined",
        exception_msg="card declined",
        stacktrace=("Traceback (most recent call last):", '  File "app/billing.py", line 120', "CardDeclined"),
        source_file="app/billing.py",
        source_line=120,
        source_function="billing.charge",
    )
    (record,) = _emit(memory, make_event(level=Level.ERROR, exception=exc))
    attrs = dict(record.attributes)
    assert attrs["exception.type"] == "billing.CardDeclined"
    assert attrs["exception.message"] == "card declined"
    assert attrs["exception.stacktrace"] == "\n".join(exc.stacktrace)
    assert attrs["code.file.path"] == "app/billing.py"
    assert attrs["code.line.number"] == 120
    assert attrs["code.function.name"] == "billing.charge"
    assert not {"code.filepath", "code.lineno", "code.function"} & set(attrs)


def test_exception_chain_is_in_the_stacktrace(memory: Any) -> None:
    cause = ExceptionInfo(exception_type="TimeoutError", exception_msg="gateway slow")
    exc = ExceptionInfo(exception_type="RuntimeError", exception_msg="charge failed", cause=cause)
    (record,) = _emit(memory, make_event(exception=exc))
    text = dict(record.attributes)["exception.stacktrace"]
    assert text.index("TimeoutError: gateway slow") < text.index("direct cause") < text.index("RuntimeError")


def test_trace_context_is_captured_at_log_event(memory: Any) -> None:
    provider, store = memory
    evlog.configure(exporters=[OtelExporter(logger_provider=provider)], flush_interval=0.05)
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("checkout") as span:
        evlog.log_event("checkout.paid")
        expected = span.get_span_context()
    evlog.log_event("outside.span")
    assert evlog.flush(5)
    inside, outside = (item.log_record for item in store.get_finished_logs())
    assert (inside.trace_id, inside.span_id) == (expected.trace_id, expected.span_id)
    assert int(inside.trace_flags) == int(expected.trace_flags)
    assert int(inside.trace_flags) & 1  # sampled
    assert (outside.trace_id, outside.span_id) == (0, 0)


def test_trace_context_of_an_event_is_used(memory: Any) -> None:
    trace = TraceContext(trace_id=0x0AF7651916CD43DD8448EB211C80319C, span_id=0xB7AD6B7169203331, trace_flags=1)
    (record,) = _emit(memory, make_event(trace=trace))
    assert record.trace_id == trace.trace_id
    assert record.span_id == trace.span_id


# --- sanitisation ----------------------------------------------------------------------------------------


def test_awkward_values_become_encodable(memory: Any) -> None:
    data = {"big": 2**70, "mixed": [1, "a", None], "rows": [{"a": 1}], "none": None, "ints": [1, 2]}
    exporter = OtelExporter(logger_provider=memory[0])
    assert exporter.export(Batch((make_event(data=data),))).ok
    attrs = dict(memory[1].get_finished_logs()[0].log_record.attributes)
    assert attrs["evlog.data.big"] == str(2**70)
    assert attrs["evlog.data.mixed"] == '[1,"a",null]'
    assert attrs["evlog.data.rows"] == '[{"a":1}]'
    assert "evlog.data.none" not in attrs
    assert tuple(attrs["evlog.data.ints"]) == (1, 2)
    assert exporter.stats()["values_converted"] == 3


def test_awkward_values_survive_the_real_otlp_encoder(receiver: OtlpReceiver) -> None:
    """The SDK's encoder drops a whole batch for one bad value: both records must arrive."""
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{receiver.url}/v1/logs")))
    exporter = OtelExporter(logger_provider=provider, data_mode="map")
    data = {"big": 2**64, "nested": {"none": None, "mixed": [True, 1.5]}}
    try:
        assert exporter.export(Batch((make_event(data=data), make_event("second")))).ok
        records = receiver.wait_for_records(2)
    finally:
        provider.shutdown()
    assert records[0].attributes["evlog.data"] == {"big": str(2**64), "nested": {"mixed": "[true,1.5]"}}


def _crowded_event() -> Event:
    exc = ExceptionInfo(exception_type="ValueError", exception_msg="bad", source_file="a.py", source_line=3)
    return make_event(data={f"k{i}": i for i in range(50)}, user=User(id="u"), session_id="s", exception=exc)


def test_attribute_limit_from_env_drops_data_never_semconv_keys(monkeypatch: pytest.MonkeyPatch, memory: Any) -> None:
    monkeypatch.setenv("OTEL_ATTRIBUTE_COUNT_LIMIT", "10")
    exporter = OtelExporter(logger_provider=memory[0])
    assert exporter.export(Batch((_crowded_event(),))).ok
    attrs = dict(memory[1].get_finished_logs()[0].log_record.attributes)
    semconv = {"exception.type", "exception.message", "exception.stacktrace", "code.file.path", "code.line.number"}
    assert semconv | {"user.id", "session.id", "log.record.uid"} <= set(attrs)
    assert len(attrs) == 10
    assert attrs["evlog.data.k0"] == 0
    assert attrs["evlog.dropped_attributes"] == 49
    assert exporter.stats()["attributes_dropped"] == 49


def test_provider_attribute_limit_is_honoured() -> None:
    if "log_record_limits" not in inspect.signature(LoggerProvider).parameters:
        pytest.skip("per-provider log record limits need opentelemetry-sdk >= 1.44")
    provider = LoggerProvider(shutdown_on_exit=False, log_record_limits=LogRecordLimits(max_attributes=10))
    store = InMemoryLogRecordExporter()
    provider.add_log_record_processor(SimpleLogRecordProcessor(store))
    exporter = OtelExporter(logger_provider=provider, max_attributes=100)
    assert exporter.export(Batch((_crowded_event(),))).ok
    attrs = dict(store.get_finished_logs()[0].log_record.attributes)
    provider.shutdown()
    assert {"exception.type", "code.line.number", "user.id", "session.id", "log.record.uid"} <= set(attrs)
    assert len(attrs) == 10
    assert exporter.stats()["attributes_dropped"] == 49


def test_max_attributes_option_caps_data(memory: Any) -> None:
    exporter = OtelExporter(logger_provider=memory[0], max_attributes=5)
    assert exporter.export(Batch((make_event(data={f"k{i}": i for i in range(10)}, category="c"),))).ok
    attrs = dict(memory[1].get_finished_logs()[0].log_record.attributes)
    assert list(attrs) == [
        "evlog.data.k0",
        "evlog.data.k1",
        "evlog.dropped_attributes",
        "evlog.category",
        "log.record.uid",
    ]
    assert attrs["evlog.dropped_attributes"] == 8


def test_long_strings_are_truncated_and_counted(memory: Any) -> None:
    exporter = OtelExporter(logger_provider=memory[0], max_value_length=8)
    assert exporter.export(Batch((make_event(data={"note": "x" * 100}, category="short"),))).ok
    attrs = dict(memory[1].get_finished_logs()[0].log_record.attributes)
    assert attrs["evlog.data.note"] == "x" * 8
    assert attrs["evlog.category"] == "short"
    assert exporter.stats()["values_truncated"] == 1


def test_flattening_collision_keeps_the_later_value(memory: Any) -> None:
    exporter = OtelExporter(logger_provider=memory[0])
    assert exporter.export(Batch((make_event(data={"a.b": 1, "a": {"b": 2}}),))).ok
    attrs = dict(memory[1].get_finished_logs()[0].log_record.attributes)
    assert attrs["evlog.data.a.b"] == 2
    assert exporter.stats()["key_collisions"] == 1


# --- provider resolution and ownership -------------------------------------------------------------------


def test_given_provider_wins_over_the_global_one(memory: Any) -> None:
    other = LoggerProvider(shutdown_on_exit=False)
    set_global_logger_provider(other)
    exporter = OtelExporter(logger_provider=memory[0])
    assert exporter.export(Batch((make_event(),))).ok
    assert exporter.provider_source == "given"
    assert len(memory[1].get_finished_logs()) == 1
    other.shutdown()


def test_global_provider_is_used_when_the_app_set_one(memory: Any) -> None:
    exporter = OtelExporter()  # built before the app sets its provider: resolution waits for the first export
    set_global_logger_provider(memory[0])
    assert exporter.export(Batch((make_event(),))).ok
    assert exporter.provider_source == "global"
    assert len(memory[1].get_finished_logs()) == 1


def test_provider_is_built_from_env_when_none_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "none")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "shop")
    exporter = OtelExporter()
    assert exporter.export(Batch((make_event(),))).ok
    assert exporter.provider_source == "built"
    assert exporter._provider.resource.attributes["service.name"] == "shop"
    exporter.shutdown(1)


class _SpyProcessor:
    """Duck-typed processor: records whether the provider was flushed or shut down."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_emit(self, record: Any) -> None:
        self.calls.append("emit")

    emit = on_emit

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self.calls.append("flush")
        return True

    def shutdown(self) -> None:
        self.calls.append("shutdown")


def test_given_provider_is_neither_flushed_nor_shut_down() -> None:
    provider = LoggerProvider(shutdown_on_exit=False)
    spy = _SpyProcessor()
    provider.add_log_record_processor(spy)  # type: ignore[arg-type]
    evlog.configure(exporters=[OtelExporter(logger_provider=provider)], flush_interval=0.05)
    evlog.log_event("a")
    assert evlog.flush(5)
    evlog.shutdown(5)
    assert spy.calls == ["emit"]
    provider.shutdown()


def test_built_provider_is_shut_down_and_has_no_batch_thread(
    monkeypatch: pytest.MonkeyPatch, receiver: OtlpReceiver
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "60000")  # only a flush can deliver within the test
    exporter = OtelExporter()
    evlog.configure(exporters=[exporter], flush_interval=0.05)
    evlog.log_event("a")
    assert evlog.flush(5)
    assert len(receiver.records) == 1  # delivered by evlog's own batch, whatever the SDK's batch delay says
    assert not _sdk_threads()  # one pipeline: no SDK batch processor (nor its thread) behind evlog's
    evlog.shutdown(5)
    assert not _sdk_threads()


def test_without_a_collector_flush_and_stats_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    evlog.configure(exporters=["otel"], flush_interval=0.05)
    evlog.log_event("lost")
    assert evlog.flush(10) is False
    stats = evlog.stats()["otel"]
    assert (stats.sent, sum(stats.dropped.values()), stats.details["sdk_export_failures"]) == (0, 1, 1)


def test_grpc_without_its_package_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import opentelemetry.exporter.otlp.proto.grpc  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the gRPC exporter is installed")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(ConfigError, match="opentelemetry-exporter-otlp-proto-grpc"):
        OtelExporter()


def test_unsupported_protocol_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/json")
    with pytest.raises(ConfigError, match=r"OTEL_EXPORTER_OTLP_LOGS_PROTOCOL.*http/json"):
        OtelExporter()


def test_bad_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="data_mode"):
        OtelExporter(data_mode="nested")


# --- end to end over OTLP/HTTP ---------------------------------------------------------------------------


def test_env_only_configuration_end_to_end(monkeypatch: pytest.MonkeyPatch, receiver: OtlpReceiver) -> None:
    monkeypatch.setenv("EVLOG_EXPORTERS", "otel")
    monkeypatch.setenv("EVLOG_FLUSH_INTERVAL", "0.05")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "shop")
    monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "50")
    evlog.log_event("checkout.paid", level="warning", category="billing", message="paid", data={"order": {"id": 7}})
    evlog.log_event("signup", user=User(id="u-1"), labels=["web"])
    first, second = receiver.wait_for_records(2)
    assert first.resource["service.name"] == "shop"
    assert (first.scope_name, first.scope_version) == ("evlog", evlog.__version__)
    assert (first.record.severity_number, first.record.severity_text) == (13, "WARN")
    assert (first.body, first.record.event_name) == ("paid", "checkout.paid")
    assert first.attributes["evlog.category"] == "billing"
    assert first.attributes["evlog.data.order.id"] == 7
    assert (second.body, second.record.severity_number) == ("signup", 9)
    assert (second.attributes["user.id"], second.attributes["evlog.labels"]) == ("u-1", ["web"])
    assert receiver.server.requests[0].header("Content-Type") == "application/x-protobuf"


def test_sdk_delivery_failure_is_counted(monkeypatch: pytest.MonkeyPatch, receiver: OtlpReceiver) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "60000")
    receiver.server.script(Reply(400, body=b"", headers={"Content-Type": "application/x-protobuf"}))
    evlog.configure(exporters=["otel"], flush_interval=0.05)
    evlog.log_event("lost")
    assert evlog.flush(5) is False  # the SDK's own force_flush would have said True
    assert evlog.stats()["otel"].details["sdk_export_failures"] == 1
