"""An OTLP/HTTP logs receiver on loopback, standing in for an OpenTelemetry Collector.

It implements the part of the OTLP/HTTP contract an exporter sees (opentelemetry-proto ``docs/specification.md``):
``POST /v1/logs`` with a binary protobuf ``ExportLogsServiceRequest`` (``application/x-protobuf``, optionally
gzip-encoded; the JSON encoding too), answered by ``200`` and a serialized ``ExportLogsServiceResponse`` with
the same content type; undecodable bodies get ``400``, other paths ``404``, other media types ``415``.

    with OtlpReceiver() as receiver:           # receiver.url is the base for OTEL_EXPORTER_OTLP_ENDPOINT
        ...
        records = receiver.wait_for_records(2)  # decoded, each with its resource and scope
"""

from __future__ import annotations

import threading
from typing import Any

import attrs
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from support.loopback import RecordingServer, Reply, Request

__all__ = ["OtlpReceiver", "ReceivedRecord", "any_value", "attributes"]

_PROTOBUF = "application/x-protobuf"


def any_value(value: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as plain Python (arrays as lists, kvlists as dicts, empty as None)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind)


def attributes(pairs: Any) -> dict[str, Any]:
    """Repeated ``KeyValue`` as a dict; the attribute order is kept."""
    out: dict[str, Any] = {}
    pair: KeyValue
    for pair in pairs:
        out[pair.key] = any_value(pair.value)
    return out


@attrs.frozen
class ReceivedRecord:
    """One decoded log record with the resource and scope it was sent under."""

    record: LogRecord
    resource: dict[str, Any]
    scope_name: str
    scope_version: str

    @property
    def attributes(self) -> dict[str, Any]:
        return attributes(self.record.attributes)

    @property
    def body(self) -> Any:
        return any_value(self.record.body)


class OtlpReceiver:
    def __init__(self) -> None:
        self.server = RecordingServer(self._handle)
        self.records: list[ReceivedRecord] = []
        self._cond = threading.Condition()

    def __enter__(self) -> OtlpReceiver:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def _handle(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != "/v1/logs":
            return Reply(404, body="not found")
        media = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        message = ExportLogsServiceRequest()
        try:
            if media == _PROTOBUF:
                message.ParseFromString(request.body)
            elif media == "application/json":
                json_format.Parse(request.body, message)
            else:
                return Reply(415, body=f"unsupported media type {media!r}")
        except (DecodeError, json_format.ParseError) as exc:
            return Reply(400, body=f"cannot decode ExportLogsServiceRequest: {exc}")
        decoded = [
            ReceivedRecord(
                record=record,
                resource=attributes(resource_logs.resource.attributes),
                scope_name=scope_logs.scope.name,
                scope_version=scope_logs.scope.version,
            )
            for resource_logs in message.resource_logs
            for scope_logs in resource_logs.scope_logs
            for record in scope_logs.log_records
        ]
        with self._cond:
            self.records.extend(decoded)
            self._cond.notify_all()
        body = ExportLogsServiceResponse().SerializeToString()
        return Reply(200, body=body, headers={"Content-Type": _PROTOBUF})

    def wait_for_records(self, count: int, timeout: float = 5.0) -> list[ReceivedRecord]:
        """Wait until ``count`` records arrived; AssertionError on timeout."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.records) >= count, timeout)
            found = list(self.records)
        assert ok, f"expected {count} log record(s), got {len(found)}"
        return found
