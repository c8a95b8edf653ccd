"""Every built-in exporter wired to its loopback fake, behind one small adapter, for contract-style tests.

    with open_backend("coveo") as backend:
        exporter = backend.make()                       # an exporter pointed at the fake
        backend.server.script(Reply(503))               # the fake's RecordingServer (None for local exporters)
        backend.refuse(event)                           # make the backend refuse this event alone

``secret`` is the credential the fake demands (None for exporters without one); ``invalid()`` builds an
event the exporter must refuse before sending; ``per_event_requests`` says the exporter sends one request per
event (so a scripted answer has to be repeated for each).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

from evlog import Event, Exporter, User
from evlog.exporters._registry import _BUILTIN
from support.coveo_fake import PATH as COVEO_PATH
from support.coveo_fake import CoveoFake
from support.datacat_fake import DataCatFake
from support.events import make_event
from support.loopback import RecordingServer, Reply, Request
from support.mcp_fake import McpFake, success_result
from support.statsig_fake import PATH as STATSIG_PATH
from support.statsig_fake import StatsigFake

#: Every built-in exporter, in the registry's order.
NAMES = tuple(_BUILTIN)
#: Those that send over HTTP, to a backend that can refuse, fail or be slow.
HTTP_NAMES = ("statsig", "coveo", "session_server", "adcp")


@attrs.define
class Backend:
    name: str
    make: Callable[..., Exporter]
    server: RecordingServer | None = None
    secret: str | None = None
    per_event_requests: bool = False
    #: An event the exporter refuses before sending (None: it refuses nothing).
    invalid: Callable[[], Event] | None = None
    #: Make the backend refuse this one event while accepting the others (None: the backend cannot).
    refuse: Callable[[Event], None] | None = None
    #: A good event for this backend.
    good: Callable[[], Event] = make_event
    made: list[Exporter] = attrs.field(factory=list)

    def build(self, **options: Any) -> Exporter:
        exporter = self.make(**options)
        self.made.append(exporter)
        return exporter


def _wrap(server: RecordingServer, refuse_when: Callable[[Request], Reply | None]) -> None:
    inner = server.handler

    def handler(request: Request) -> Any:
        return refuse_when(request) or inner(request)

    server.handler = handler


def _named(request: Request, name: str, key: str) -> bool:
    try:
        body = request.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get(key) == name


@contextlib.contextmanager
def _statsig(secret: str | None) -> Iterator[Backend]:
    fake = StatsigFake(key=secret) if secret else StatsigFake()
    with RecordingServer(fake) as server:

        def make(**options: Any) -> Exporter:
            from evlog.exporters.statsig import StatsigExporter

            return StatsigExporter(api_key=fake.key, endpoint=server.url + STATSIG_PATH, **options)

        yield Backend("statsig", make, server, fake.key, invalid=lambda: make_event("refused=by-statsig"))


@contextlib.contextmanager
def _coveo(secret: str | None) -> Iterator[Backend]:
    fake = CoveoFake(token=secret) if secret else CoveoFake()
    with RecordingServer(fake) as server:

        def make(**options: Any) -> Exporter:
            from evlog.exporters.coveo import CoveoExporter

            return CoveoExporter(access_token=fake.token, endpoint=server.url + COVEO_PATH, **options)

        def refuse(event: Event) -> None:
            invalid = Reply(400, {"message": "Invalid value", "type": "InvalidObject"})
            _wrap(server, lambda r: invalid if _named(r, event.name, "eventValue") else None)

        yield Backend(
            "coveo",
            make,
            server,
            fake.token,
            per_event_requests=True,
            invalid=lambda: make_event("refused-by-coveo", data={"outcome": 9}),
            refuse=refuse,
        )


@contextlib.contextmanager
def _session_server(secret: str | None) -> Iterator[Backend]:
    with DataCatFake(api_key=secret) as fake:
        session = fake.add_session()

        def make(**options: Any) -> Exporter:
            from evlog.exporters.session_server import SessionServerExporter

            defaults = {"url": fake.url, "session_id": session, "heartbeat_interval": 0, "api_key": secret}
            return SessionServerExporter(**{**defaults, **options})

        def refuse(event: Event) -> None:
            invalid = Reply(400, "Invalid request body\n", headers={"Content-Type": "text/plain"})
            _wrap(fake.server, lambda r: invalid if _named(r, event.name, "name") else None)

        yield Backend(
            "session_server",
            make,
            fake.server,
            secret,
            per_event_requests=True,
            invalid=lambda: make_event("refused-by-session-server", labels=("ok", 3)),  # type: ignore[arg-type]
            refuse=refuse,
        )


def _adcp_event(name: str = "lead", **fields: Any) -> Event:
    fields.setdefault("data", {"click_id": "abc", "click_id_type": "gclid"})
    return make_event(name, **fields)


@contextlib.contextmanager
def _adcp(secret: str | None) -> Iterator[Backend]:
    refused: set[str] = set()

    def tool_result(arguments: dict[str, Any]) -> dict[str, Any]:
        result = success_result(arguments)
        failures = [
            {"event_id": e["event_id"], "code": "VALIDATION_ERROR", "message": "outside attribution window"}
            for e in arguments.get("events", [])
            if e.get("event_id") in refused
        ]
        if failures:
            result["structuredContent"] = {**result["structuredContent"], "partial_failures": failures}
        return result

    with McpFake(tool_result) as fake:

        def make(**options: Any) -> Exporter:
            from evlog.exporters.adcp import AdcpExporter

            return AdcpExporter(agent_url=fake.url, event_source_id="web", token=secret, **options)

        yield Backend(
            "adcp",
            make,
            fake.server,
            secret,
            invalid=lambda: make_event("refused-by-adcp", user=User(ip="203.0.113.7")),  # breaks user_match
            refuse=lambda event: refused.add(event.event_id),
            good=_adcp_event,
        )


@contextlib.contextmanager
def _otel(_secret: str | None) -> Iterator[Backend]:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(InMemoryLogRecordExporter()))

    def make(**options: Any) -> Exporter:
        from evlog.exporters.otel import OtelExporter

        return OtelExporter(logger_provider=provider, **options)

    try:
        yield Backend("otel", make)
    finally:
        provider.shutdown()


def _not_json() -> Event:
    return make_event("refused-locally", data={"x": object()})  # a processor's mistake: no JSON for it


@contextlib.contextmanager
def _jsonl(_secret: str | None, tmp: Path) -> Iterator[Backend]:
    def make(**options: Any) -> Exporter:
        from evlog.exporters.jsonl import JsonlExporter

        return JsonlExporter(path=str(tmp / "events.jsonl"), **options)

    yield Backend("jsonl", make, invalid=_not_json)


@contextlib.contextmanager
def _console(_secret: str | None) -> Iterator[Backend]:
    def make(**options: Any) -> Exporter:  # writes to stderr, which pytest captures
        from evlog.exporters.console import ConsoleExporter

        return ConsoleExporter(**options)

    yield Backend("console", make, invalid=_not_json)


@contextlib.contextmanager
def _memory(_secret: str | None) -> Iterator[Backend]:
    def make(**options: Any) -> Exporter:
        from evlog.exporters.memory import MemoryExporter

        return MemoryExporter(**options)

    yield Backend("memory", make)


@contextlib.contextmanager
def _viewer(_secret: str | None) -> Iterator[Backend]:
    from evlog.viewer import ViewerServer

    def make(**options: Any) -> Exporter:
        from evlog.exporters.viewer import ViewerExporter

        return ViewerExporter(url=server.url, **options)

    with ViewerServer(port=0) as server:
        yield Backend("viewer", make, invalid=_not_json)


@contextlib.contextmanager
def open_backend(name: str, *, secret: str | None = None, tmp: Path | None = None) -> Iterator[Backend]:
    """``name``'s exporter and its fake; every exporter made with ``build`` is shut down at the end."""
    factories: dict[str, Callable[[], contextlib.AbstractContextManager[Backend]]] = {
        "statsig": lambda: _statsig(secret),
        "coveo": lambda: _coveo(secret),
        "session_server": lambda: _session_server(secret),
        "adcp": lambda: _adcp(secret),
        "otel": lambda: _otel(secret),
        "jsonl": lambda: _jsonl(secret, tmp or Path.cwd()),
        "console": lambda: _console(secret),
        "memory": lambda: _memory(secret),
        "viewer": lambda: _viewer(secret),
    }
    with factories[name]() as backend:
        try:
            yield backend
        finally:
            for exporter in backend.made:
                exporter.shutdown(2)
