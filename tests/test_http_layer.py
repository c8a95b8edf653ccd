"""The HTTP layer every HTTP exporter shares: status -> result, URL rules, and the client over real loopback HTTP."""

from __future__ import annotations

import datetime as _dt
import gzip
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import format_datetime

import pytest

import evlog
from evlog import ExportStatus
from evlog.exporters.http import (
    HttpClient,
    HttpOutcome,
    ParallelSender,
    check_url,
    outcome_to_result,
    redact,
)
from support.loopback import Fault, RecordingServer, Reply

SECRET = "sk-live-0123456789abcdef"


@pytest.fixture
def client() -> Iterator[HttpClient]:
    http = HttpClient(timeout=2.0, headers={"Authorization": f"Bearer {SECRET}"}, secrets=[SECRET])
    yield http
    http.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- outcome_to_result ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_success(status: int) -> None:
    assert outcome_to_result(HttpOutcome(status)).ok


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retryable(status: int) -> None:
    result = outcome_to_result(HttpOutcome(status, b"busy"), what="sending")
    assert result.status is ExportStatus.RETRY
    assert result.message == f"sending: HTTP {status}: busy"
    assert result.retry_after is None


@pytest.mark.parametrize(("status", "retryable"), [(507, True), (520, True), (599, True), (501, False), (505, False)])
def test_every_5xx_but_501_and_505_is_retryable(status: int, retryable: bool) -> None:
    assert HttpOutcome(status).retryable is retryable
    assert (outcome_to_result(HttpOutcome(status)).status is ExportStatus.RETRY) is retryable


def test_connection_error_is_retryable() -> None:
    result = outcome_to_result(HttpOutcome(None, error="ConnectionError: refused"))
    assert result.status is ExportStatus.RETRY
    assert "no response (ConnectionError: refused)" in result.message


def test_retry_after_in_seconds_is_passed_on() -> None:
    result = outcome_to_result(HttpOutcome(429, headers={"Retry-After": "12"}))
    assert result.retry_after == 12.0


def test_retry_after_as_an_http_date_is_passed_on() -> None:
    when = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=30)
    result = outcome_to_result(HttpOutcome(503, headers={"retry-after": format_datetime(when, usegmt=True)}))
    assert result.retry_after is not None
    assert 25 <= result.retry_after <= 30


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422])
def test_other_4xx_are_permanent_with_the_server_text_message(status: int) -> None:
    result = outcome_to_result(HttpOutcome(status, b"Invalid request body\n", {"Content-Type": "text/plain"}))
    assert result.status is ExportStatus.FAILURE
    assert result.message == f"request: HTTP {status}: Invalid request body"


def test_permanent_failure_keeps_a_json_error_message() -> None:
    body = json.dumps({"error": "invalid_api_key", "details": "ignored once error is found"}).encode()
    result = outcome_to_result(HttpOutcome(401, body, {"Content-Type": "application/json"}))
    assert result.status is ExportStatus.FAILURE
    assert result.message == "request: HTTP 401: invalid_api_key"


# --- check_url ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9090", "http://localhost:9090/x", "http://[::1]:80", "http://127.5.6.7", "https://example.com"],
)
def test_urls_accepted(url: str) -> None:
    assert check_url(url, option="o") == url


def test_plain_http_to_a_remote_host_is_refused_unless_allowed() -> None:
    with pytest.raises(evlog.ConfigError, match="refusing plain http") as info:
        check_url("http://events.example.com/api", option="exporters.x.url")
    assert info.value.path == "exporters.x.url"
    assert check_url("http://events.example.com/api", option="o", allow_insecure_http=True)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "127.0.0.1:9090", "http://", ""])
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(evlog.ConfigError, match="expected an http"):
        check_url(url, option="o")


# --- the client over real HTTP ----------------------------------------------------------------------------------------


def test_user_agent_names_evlog_and_its_version(recording_server: RecordingServer, client: HttpClient) -> None:
    assert client.post_json(recording_server.url + "/x", {"a": 1}).ok
    agent = recording_server.requests[0].header("User-Agent") or ""
    assert agent.startswith(f"evlog/{evlog.__version__} ")


def test_gzip_request_body(recording_server: RecordingServer, client: HttpClient) -> None:
    body = {"text": "hello " * 500}
    assert client.post_json(recording_server.url + "/x", body, compress=True).ok
    request = recording_server.requests[0]
    assert request.header("Content-Encoding") == "gzip"
    assert request.header("Content-Type") == "application/json"
    assert len(request.raw_body) < 200
    assert json.loads(gzip.decompress(request.raw_body)) == body


def test_redirect_is_not_followed_for_post(recording_server: RecordingServer, client: HttpClient) -> None:
    with RecordingServer() as elsewhere:
        recording_server.script(Reply(307, "", headers={"Location": elsewhere.url + "/stolen"}))
        outcome = client.post_json(recording_server.url + "/x", {"a": 1})
        assert elsewhere.requests == []
    assert outcome.status == 307
    result = outcome_to_result(outcome)
    assert result.status is ExportStatus.FAILURE
    assert "not followed" in result.message


def test_retry_after_read_from_a_real_reply(recording_server: RecordingServer, client: HttpClient) -> None:
    recording_server.script(Reply(429, "slow down", headers={"Retry-After": "3"}))
    result = outcome_to_result(client.post_json(recording_server.url + "/x", {}))
    assert result.status is ExportStatus.RETRY
    assert result.retry_after == 3.0


def test_hanging_server_gives_a_retryable_outcome_within_the_timeout(recording_server: RecordingServer) -> None:
    http = HttpClient(timeout=0.3)
    recording_server.script(Fault.HANG)
    started = time.monotonic()
    outcome = http.post_json(recording_server.url + "/x", {})
    elapsed = time.monotonic() - started
    http.close()
    recording_server.release()
    assert outcome.status is None
    assert "Timeout" in (outcome.error or "")
    assert outcome.retryable
    assert elapsed < 2.0


def test_slow_reply_past_a_per_request_timeout_is_retryable(
    recording_server: RecordingServer, client: HttpClient
) -> None:
    recording_server.script(Reply(200, delay=2.0))
    started = time.monotonic()
    outcome = client.post_json(recording_server.url + "/x", {}, timeout=0.2)
    assert time.monotonic() - started < 1.5
    assert outcome_to_result(outcome).status is ExportStatus.RETRY


def test_connection_reset_is_retryable(recording_server: RecordingServer, client: HttpClient) -> None:
    recording_server.script(Fault.RESET)
    outcome = client.post_json(recording_server.url + "/x", {})
    assert outcome.status is None
    assert outcome_to_result(outcome).status is ExportStatus.RETRY


def test_a_body_cut_short_is_a_retryable_outcome_not_an_exception(
    recording_server: RecordingServer, client: HttpClient
) -> None:
    recording_server.script(Fault.TRUNCATE)
    outcome = client.post_json(recording_server.url + "/x", {})
    assert outcome.status is None
    assert outcome.error is not None
    assert outcome_to_result(outcome).status is ExportStatus.RETRY


def test_connection_refused_is_retryable(client: HttpClient) -> None:
    outcome = client.post_json(f"http://127.0.0.1:{closed_port()}/x", {})
    assert outcome.status is None
    assert outcome.retryable


def test_keep_alive_reuses_one_connection(recording_server: RecordingServer, client: HttpClient) -> None:
    for _ in range(3):
        assert client.post_json(recording_server.url + "/x", {}).ok
    assert all(r.header("Connection") != "close" for r in recording_server.requests)
    session = client._get_session()
    pool = session.get_adapter(recording_server.url).poolmanager  # type: ignore[attr-defined]
    assert sum(p.num_connections for p in pool.pools._container.values()) == 1


def test_cookies_set_by_a_server_are_not_sent_back(recording_server: RecordingServer, client: HttpClient) -> None:
    recording_server.script(Reply(200, {}, headers={"Set-Cookie": "visitor=abc123; Path=/"}))
    assert client.post_json(recording_server.url + "/x", {}).ok
    assert client.post_json(recording_server.url + "/x", {}).ok
    assert recording_server.requests[1].header("Cookie") is None


# --- secrets ----------------------------------------------------------------------------------------------------------


def test_secrets_redacted_from_error_messages(client: HttpClient) -> None:
    outcome = client.post_json(f"http://127.0.0.1:{closed_port()}/x?key={SECRET}", {})
    assert outcome.error is not None
    assert SECRET not in outcome.error
    assert "***" in outcome.error
    assert SECRET not in outcome_to_result(outcome).message


def test_secrets_absent_from_repr(client: HttpClient) -> None:
    assert SECRET not in repr(client)
    assert SECRET not in str(client)


def test_redact_replaces_every_secret() -> None:
    assert redact(f"a {SECRET} b {SECRET}", [None, SECRET]) == "a *** b ***"
    assert redact("abc", ["abc"]) == "abc"  # too short to be a real secret; replacing it would mangle text


# --- ParallelSender -----------------------------------------------------------------------------------------------


def test_parallel_sender_runs_calls_concurrently_and_keeps_order() -> None:
    sender = ParallelSender(3, name="evlog-test-sender")
    barrier = threading.Barrier(3, timeout=5)

    def call(i: int) -> Callable[[], int]:
        def run() -> int:
            barrier.wait()  # only passes when three calls run at once
            return i

        return run

    try:
        assert sender.run([call(i) for i in range(6)]) == list(range(6))
    finally:
        sender.close()


def test_parallel_sender_survives_a_failing_call() -> None:
    sender = ParallelSender(2, name="evlog-test-sender")

    def boom() -> int:
        raise RuntimeError("bug in a call")

    try:
        assert sender.run([boom, lambda: 2]) == [None, 2]
        assert sender.run([lambda: 1, lambda: 2], deadline=time.monotonic() + 5) == [1, 2]
    finally:
        sender.close()
