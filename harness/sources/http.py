"""HTTP sessions: retries with backoff, our User-Agent, and a token that only the API host sees.

Two sessions on purpose: the API session carries `Authorization` for exactly one origin (checked on
every request, so a redirect or a mirror URL can never receive it); the download session never
carries it at all, because release assets redirect to another host.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from harness import __version__
from harness.errors import SourceError
from harness.sources.limits import origin  # with the limits, apart: the warm path reads them

USER_AGENT = f"llama-harness/{__version__}"
TIMEOUT = (10, 60)  # connect, read (per chunk) seconds
MAX_RETRY_AFTER_S = 30.0


class _Retry(Retry):
    """urllib3's Retry, except that 429 is never slept through (it is a rate limit the caller
    reports) and a server's `Retry-After` is honoured up to MAX_RETRY_AFTER_S."""

    RETRY_AFTER_STATUS_CODES = frozenset({503})

    def get_retry_after(self, response: Any) -> float | None:
        after = super().get_retry_after(response)
        return None if after is None else min(after, MAX_RETRY_AFTER_S)


def retry_policy(total: int = 4, backoff: float = 0.25) -> Retry:
    """Retry connection errors and 5xx with exponential backoff; honour `Retry-After`.

    403/429 are not retried here: a rate limit with `x-ratelimit-remaining: 0` is a hard stop that
    the caller reports with its reset time, not something to sleep through.
    """
    return _Retry(
        total=total,
        connect=total,
        read=total,
        status=total,
        backoff_factor=backoff,
        backoff_max=30,
        status_forcelist=(500, 502, 503, 504),
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )


def token_from_env() -> str | None:
    return os.environ.get("GITHUB_TOKEN") or os.environ.get("GH_TOKEN") or None


class _TokenOnlyFor(requests.auth.AuthBase):
    def __init__(self, token: str, api_url: str) -> None:
        self._token = token
        self._origin = origin(api_url)

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if r.url and origin(r.url) == self._origin:
            r.headers["Authorization"] = f"Bearer {self._token}"
        else:
            r.headers.pop("Authorization", None)
        return r

    def __repr__(self) -> str:  # never show the token
        return "<token for API host>"


class _Session(requests.Session):
    def __init__(self, pool: int) -> None:
        super().__init__()
        adapter = _Adapter(max_retries=retry_policy(), pool_maxsize=max(pool, 10))
        self.mount("http://", adapter)
        self.mount("https://", adapter)
        self.headers["User-Agent"] = USER_AGENT

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        return super().request(*args, **kwargs)

    def rebuild_auth(self, prepared_request: Any, response: Any) -> None:
        # requests strips Authorization on a cross-host redirect; we also re-run our own check.
        super().rebuild_auth(prepared_request, response)
        if isinstance(self.auth, _TokenOnlyFor):
            self.auth(prepared_request)


def api_session(api_url: str, token: str | None, pool: int = 10) -> requests.Session:
    s = _Session(pool)
    s.headers["Accept"] = "application/vnd.github+json"
    s.headers["X-GitHub-Api-Version"] = "2022-11-28"
    if token:
        s.auth = _TokenOnlyFor(token, api_url)
    return s


class _Watch:
    """What one request has used so far, and whether its deadline has passed."""

    def __init__(self) -> None:
        self.expired = threading.Event()
        self.parts: list[Any] = []  # connections and responses
        self.lock = threading.Lock()

    def add(self, part: Any) -> None:
        with self.lock:
            self.parts.append(part)
            if self.expired.is_set():  # a retry after the deadline: cut it at once
                _cut(part)

    def expire(self) -> None:
        with self.lock:
            self.expired.set()
            for part in self.parts:
                _cut(part)


def _cut(part: Any) -> None:
    """Wake whatever read waits on a connection or a response (close() alone does not, on
    Linux). A response that will close its connection has taken the socket from it."""
    with contextlib.suppress(Exception):
        if isinstance(part, BaseHTTPResponse):
            part.shutdown()
        elif part.sock is not None:
            part.sock.shutdown(socket.SHUT_RDWR)


_watching = threading.local()


class _WatchedMixin:
    """Hands each connection, then its response, to the `deadline()` running in this thread."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        if (watch := getattr(_watching, "watch", None)) is not None:
            watch.add(conn)
        return conn

    def _make_request(self, conn: Any, *args: Any, **kwargs: Any) -> Any:
        resp = super()._make_request(conn, *args, **kwargs)  # type: ignore[misc]
        if (watch := getattr(_watching, "watch", None)) is not None:
            watch.add(resp)
        return resp


class _WatchedHTTPPool(_WatchedMixin, HTTPConnectionPool):
    pass


class _WatchedHTTPSPool(_WatchedMixin, HTTPSConnectionPool):
    pass


_WATCHED = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _Adapter(HTTPAdapter):
    """Connections a `deadline()` can cut, whatever phase the request is in (connect, headers,
    body, retries)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools are their own classes
            manager.pool_classes_by_scheme = _WATCHED
        return manager


@contextlib.contextmanager
def deadline(seconds: float, what: str) -> Iterator[None]:
    """A total deadline over everything inside: connecting, the headers, every retry, the body.
    When it passes, the connections in use are shut down and SourceError says so."""
    watch = _Watch()
    previous = getattr(_watching, "watch", None)
    _watching.watch = watch
    timer = threading.Timer(seconds, watch.expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    except (requests.RequestException, Urllib3Error, OSError, SourceError) as err:
        if watch.expired.is_set():
            raise SourceError(f"{what}: no complete answer within {seconds:g} s") from err
        raise
    finally:
        timer.cancel()
        _watching.watch = previous
    if watch.expired.is_set():
        raise SourceError(f"{what}: no complete answer within {seconds:g} s")


def read_capped(resp: requests.Response, what: str, limit: int) -> bytes:
    """The body of a `stream=True` response, refused past `limit` bytes (run it inside a
    `deadline()`: a body may also trickle)."""
    declared = resp.headers.get("Content-Length", "")
    try:
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise SourceError(f"{what}: the answer is {int(declared):,} bytes (limit {limit:,})")
        chunks: list[bytes] = []
        got = 0
        for chunk in resp.iter_content(64 << 10):
            got += len(chunk)
            if got > limit:
                raise SourceError(f"{what}: the answer is larger than {limit:,} bytes; refused")
            chunks.append(chunk)
    except (requests.RequestException, Urllib3Error) as err:
        raise SourceError(f"{what}: the connection broke ({type(err).__name__})") from err
    finally:
        resp.close()
    return b"".join(chunks)


class _NoAuth(requests.auth.AuthBase):
    """Set as the session's auth so requests never falls back to ~/.netrc for asset hosts."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers.pop("Authorization", None)
        return r


def download_session(pool: int = 10) -> requests.Session:
    s = _Session(pool)
    s.headers["Accept"] = "application/octet-stream"
    s.auth = _NoAuth()  # an asset host gets nothing but the request (proxies still apply)
    return s
