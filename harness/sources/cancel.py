"""Stopping transfers on purpose (Ctrl-C, SIGTERM), from another thread, at once.

Its own module, free of requests: the provisioner needs it on the warm path, which makes no
request and should not pay for importing an HTTP stack.
"""

from __future__ import annotations

import contextlib
import contextvars
import socket
import threading
from collections.abc import Iterator
from typing import Any


class Cancelled(Exception):
    """The transfer was stopped on purpose (Ctrl-C, SIGTERM): no retry, no resume."""


class Cancel:
    """Stops every transfer watched by it, at once, from any thread.

    Checking a flag per chunk is not enough: a stalled server leaves the reading thread blocked
    in recv() for the whole read timeout. `set()` also shuts each open response's socket, which
    wakes that recv() at once."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._open: set[Any] = set()

    @property
    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()
        with self._lock:
            for resp in self._open:
                _shut(resp)

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("interrupted")

    @contextlib.contextmanager
    def watching(self, resp: Any) -> Iterator[None]:
        with self._lock:
            self._open.add(resp)
        try:
            if self._event.is_set():
                _shut(resp)
            yield
        finally:
            with self._lock:
                self._open.discard(resp)


# The Cancel of the provisioning run this thread works for (set per worker by provision.py).
CANCEL: contextvars.ContextVar[Cancel | None] = contextvars.ContextVar("cancel", default=None)


def _shut(resp: Any) -> None:
    conn = getattr(resp.raw, "connection", None) or getattr(resp.raw, "_connection", None)
    sock = getattr(conn, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
