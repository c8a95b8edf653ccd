"""What every HTTP exporter shares: one keep-alive session, timeouts, gzip, URL rules, status -> result.

Retries are not done here (the pipeline owns them, with backoff that shutdown can interrupt); urllib3's
``Retry`` is deliberately not mounted: it skips POSTs by default and sleeps where nothing can wake it.
``requests`` is imported on first use, so ``import evlog`` stays light.
"""

from __future__ import annotations

import gzip
import http.cookiejar
import ipaddress
import json
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import attrs

from evlog._errors import ConfigError
from evlog._retry import parse_retry_after
from evlog._serialize import encode_safely
from evlog._version import __version__
from evlog.exporters._base import ExportResult

if TYPE_CHECKING:
    import requests

__all__ = [
    "RETRYABLE_STATUSES",
    "HttpClient",
    "HttpOutcome",
    "ParallelSender",
    "check_url",
    "is_loopback_host",
    "outcome_to_result",
    "redact",
    "user_agent",
]

#: Statuses worth sending the same request again for: 408 (the server timed out waiting), 429 (rate limited)
#: and every 5xx except 501 (Not Implemented) and 505 (HTTP Version Not Supported), which waiting will not
#: change. Other 5xx (including proxies' 520-599) are the backend struggling and usually pass. No response at all
#: (refused, reset, timed out) is retryable too; see ``HttpOutcome.retryable``. The one definition every
#: exporter uses.
RETRYABLE_STATUSES = frozenset({408, 429, *range(500, 600)}) - {501, 505}

T = TypeVar("T")

#: gzip level of compressed bodies. Measured on a batch of 1,000 similar events: level 1 costs about half of
#: level 6 in CPU for a body about 1.9x larger, on a request that is a small share of the per-event cost
#: either way; level 6 stays, since the bytes cross real networks.
GZIP_LEVEL = 6


def user_agent() -> str:
    import platform

    return f"evlog/{__version__} (python {platform.python_version()})"


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, option: str, allow_insecure_http: bool = False) -> str:
    """``url`` if usable; ``ConfigError`` for a bad scheme, or for plain http to a non-loopback host.

    Plain http would send API keys and user data in clear text, so it needs an explicit opt-in except on
    loopback (local development servers and tests).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"expected an http(s) URL with a host, got {url!r}", path=option)
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback_host(parts.hostname):
        raise ConfigError(
            f"refusing plain http to {parts.hostname!r} (credentials and user data would travel unencrypted); "
            "use https, or set allow_insecure_http=true if you really mean it",
            path=option,
        )
    return url


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret replaced by ``***`` (for messages that quote server or library errors).

    ``HttpClient`` already applies it to everything its outcomes hold; exporters only need it for text that
    did not come through one.
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _redact_bytes(body: bytes, secrets: Sequence[str]) -> bytes:
    for secret in secrets:
        if len(secret) >= 4:
            body = body.replace(secret.encode("utf-8"), b"***")
    return body


@attrs.frozen
class HttpOutcome:
    """What came back from one request: a status and body, or a connection-level error."""

    status: int | None
    body: bytes = b""
    headers: Mapping[str, str] = attrs.field(factory=dict)
    #: Set when no HTTP response arrived (refused, reset, timed out, TLS failure...).
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in RETRYABLE_STATUSES

    @property
    def retry_after(self) -> float | None:
        for key, value in self.headers.items():
            if key.lower() == "retry-after":
                return parse_retry_after(value)
        return None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The parsed JSON body, or None when it is not JSON."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def server_message(self, limit: int = 300) -> str:
        """The server's explanation: a JSON ``message``/``error``/``details`` field, else the text body."""
        parsed = self.json()
        if isinstance(parsed, dict):
            for key in ("message", "error", "details", "detail", "errorMessage"):
                value = parsed.get(key)
                if isinstance(value, str) and value:
                    return value[:limit]
        text = self.text.strip()
        return text[:limit]

    def describe(self) -> str:
        if self.status is None:
            return f"no response ({self.error})"
        message = self.server_message()
        return f"HTTP {self.status}" + (f": {message}" if message else "")


def outcome_to_result(outcome: HttpOutcome, *, what: str = "request") -> ExportResult:
    """The one mapping from an HTTP outcome to an export result.

    2xx: success. ``RETRYABLE_STATUSES`` and connection errors: retry, passing on Retry-After.
    Anything else (other 4xx, redirects that were not followed): permanent failure with the server's message.
    """
    if outcome.ok:
        return ExportResult.success()
    if outcome.retryable:
        return ExportResult.retry(f"{what}: {outcome.describe()}", after=outcome.retry_after)
    return ExportResult.failure(f"{what}: {outcome.describe()}")


def _read_until(response: requests.Response, stop_when: Callable[[Mapping[str, str], bytes], bool]) -> bytes:
    """Read the body as it arrives until ``stop_when`` is satisfied or the server ends it."""
    received = bytearray()
    if "chunked" in response.headers.get("Transfer-Encoding", "").lower():
        chunks: Iterable[bytes] = response.iter_content(chunk_size=None)  # one item per chunk, as it arrives
    else:
        # A body delimited by the connection's end: read1 returns what has arrived instead of waiting for
        # a full buffer (or the end) as read() does.
        raw = response.raw
        chunks = iter(lambda: raw.read1(65536, decode_content=True), b"")
    for chunk in chunks:
        received += chunk
        if stop_when(response.headers, bytes(received)):
            break
    return bytes(received)


class HttpClient:
    """One ``requests.Session`` per exporter: keep-alive, TLS verification on, no redirects, no cookies.

    ``secrets`` are the values (API keys, tokens) that must never appear in anything this client reports.
    They are removed here, once, from the whole body, headers and error text of every outcome, before anyone
    can shorten them: a secret cut in two by a truncation could no longer be found and would leak all but its
    tail. So exporters quote outcomes (``describe()``, ``server_message()``, ``text``) as they are.
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        secrets: Sequence[str | None] = (),
        pool_size: int = 10,
        verify: bool | str = True,
    ) -> None:
        self.timeout = timeout
        self.headers = {"User-Agent": user_agent(), **(headers or {})}
        self._secrets = [s for s in secrets if s]
        self._pool_size = pool_size
        self._verify = verify
        self._session: requests.Session | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never show headers: they hold credentials
        return f"<HttpClient timeout={self.timeout}>"

    def _get_session(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                import requests
                from requests.adapters import HTTPAdapter

                session = requests.Session()
                adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(2, self._pool_size), max_retries=0)
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                session.verify = self._verify
                session.trust_env = True
                # Background delivery must not carry state between requests: a backend's cookie (Coveo sets a
                # visitor cookie) would otherwise merge unrelated users' events.
                session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
                self._session = session
            return self._session

    def request(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        compress: bool = False,
        timeout: float | None = None,
        stop_when: Callable[[Mapping[str, str], bytes], bool] | None = None,
    ) -> HttpOutcome:
        """Send one request; never raises for network trouble (it becomes an outcome with ``error``).

        ``stop_when(headers, body_so_far)`` reads the body as it arrives and stops as soon as it returns True:
        for answers streamed over a connection the server may keep open (Server-Sent Events).
        """
        import requests

        all_headers = dict(self.headers)
        body = data
        if json_body is not None:
            body = encode_safely(json_body)  # the shared encoder; a value without a JSON rule raises EncodeError
            all_headers.setdefault("Content-Type", "application/json")
        if headers:
            all_headers.update(headers)
        if compress and body is not None:
            body = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
            all_headers["Content-Encoding"] = "gzip"
        wait = self.timeout if timeout is None else max(0.05, min(self.timeout, timeout))
        response = None
        try:
            response = self._get_session().request(
                method,
                url,
                data=body,
                headers=all_headers,
                timeout=wait,
                allow_redirects=False,
                stream=stop_when is not None,
            )
            content = response.content if stop_when is None else _read_until(response, stop_when)
        except requests.exceptions.RequestException as exc:
            return HttpOutcome(None, error=self._clean(f"{type(exc).__name__}: {exc}"))
        except Exception as exc:  # e.g. an unexpected urllib3 error: still an outcome, never a crash
            return HttpOutcome(None, error=self._clean(f"{type(exc).__name__}: {exc}"))
        finally:
            if response is not None:
                response.close()
        status = response.status_code
        if 300 <= status < 400:
            location = response.headers.get("Location", "?")
            content = f"redirect to {location} not followed (point the exporter at the final URL)".encode()
        return self._outcome(status, content, response.headers)

    def _outcome(self, status: int, body: bytes, headers: Mapping[str, str]) -> HttpOutcome:
        """The outcome with every secret already removed (see the class docstring for why here)."""
        secrets = self._secrets
        if not secrets:
            return HttpOutcome(status, body=body, headers=dict(headers))
        clean_headers = {key: redact(value, secrets) for key, value in headers.items()}
        return HttpOutcome(status, body=_redact_bytes(body, secrets), headers=clean_headers)

    def post_json(self, url: str, body: Any, **kwargs: Any) -> HttpOutcome:
        return self.request("POST", url, json_body=body, **kwargs)

    def _clean(self, text: str) -> str:
        return redact(text, self._secrets)

    def close(self) -> None:
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.close()

    def reset_after_fork(self) -> None:
        # The parent's sockets must not be shared with the child: forget them without closing.
        self._lock = threading.Lock()
        self._session = None


class ParallelSender:
    """Runs independent requests (one POST per event) with bounded concurrency, over persistent threads.

    The threads start on first use and live until ``close``; starting threads late in interpreter shutdown is
    not always allowed, so if starting one fails the work runs in the calling thread instead.
    """

    def __init__(self, workers: int, *, name: str = "evlog-http") -> None:
        self.workers = max(1, workers)
        self._name = name
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def _ensure_threads(self) -> bool:
        with self._lock:
            while len(self._threads) < self.workers:
                thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
                try:
                    thread.start()
                except RuntimeError:
                    return bool(self._threads)
                self._threads.append(thread)
            return True

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            task()

    def run(self, calls: Sequence[Callable[[], T]], *, deadline: float | None = None) -> list[T | None]:
        """Results in order; ``None`` for a call that raised or had not finished by ``deadline`` (monotonic)."""
        if not calls:
            return []
        if len(calls) == 1 or self.workers == 1 or not self._ensure_threads():
            return [call() for call in calls]
        results: list[T | None] = [None] * len(calls)
        remaining = [len(calls)]
        done = threading.Condition()

        def wrap(index: int, call: Callable[[], T]) -> Callable[[], None]:
            def task() -> None:
                try:
                    results[index] = call()
                except Exception:  # a failing call must not kill its worker (the pool would shrink for good)
                    results[index] = None
                finally:
                    with done:
                        remaining[0] -= 1
                        done.notify_all()

            return task

        for index, call in enumerate(calls):
            self._tasks.put(wrap(index, call))
        with done:
            if deadline is None:
                done.wait_for(lambda: remaining[0] == 0)
            else:
                done.wait_for(lambda: remaining[0] == 0, max(0.0, deadline - time.monotonic()))
        return list(results)

    def close(self) -> None:
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._tasks.put(None)

    def reset_after_fork(self) -> None:
        self._tasks = queue.SimpleQueue()
        self._threads = []
        self._lock = threading.Lock()
