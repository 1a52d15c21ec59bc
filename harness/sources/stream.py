"""Stream one URL into an open file, hashing as the bytes arrive; resume with `Range` after a cut.

Written by hand because no well-kept library does hash-while-streaming *and* Range resume *and*
a per-chunk progress callback over a caller's requests session (pooch restarts from zero).
Each chunk is written and hashed in the reading thread as it arrives: at the rate a CI runner
sees (~200 MB/s a connection) the reader mostly waits on the socket, and hashing a chunk while it
is still in cache costs least (hashlib releases the GIL, so parallel downloads hash in parallel).
A second thread fed by a queue was measured to cost more CPU and more wall time than it
overlapped (benchmarks/test_bench_download.py).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import requests
from urllib3.exceptions import HTTPError as Urllib3Error

from harness.errors import AssetNotFound, HarnessError, IntegrityError, SourceError
from harness.sources import http, limits
from harness.sources.base import Fetcher, Want
from harness.sources.cancel import CANCEL, Cancel

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
RESUMES = 5

Progress = Callable[[int], None]


def http_fetcher(session: requests.Session, want: Want, progress: Progress | None) -> Fetcher:
    def get(out: BinaryIO, algo: str) -> tuple[int, str]:
        return stream(
            session, want.url, out, algo, name=want.name, expected_size=want.size, progress=progress
        )

    return get


def copy_file(
    src: Path, out: BinaryIO, algo: str, progress: Progress | None = None
) -> tuple[int, str]:
    """A local file (a mirror folder, npm's packed tarball) through the same hash-and-write path."""
    h = hashlib.new(algo)
    n = 0
    cancel = CANCEL.get() or Cancel()
    try:
        with src.open("rb") as f:
            while chunk := f.read(CHUNK):
                cancel.check()
                out.write(chunk)
                h.update(chunk)
                n += len(chunk)
                if progress:
                    progress(len(chunk))
    except FileNotFoundError as err:
        raise AssetNotFound(f"{src.name}: not found at {src.parent}") from err
    except OSError as err:
        raise SourceError(f"{src}: cannot read: {err.strerror or err}") from err
    return n, f"{algo}:{h.hexdigest()}"


class _Sink:
    """Writes and hashes the chunks in order; starts over when a server ignores our Range."""

    def __init__(self, out: BinaryIO, algo: str) -> None:
        self.out = out
        self.algo = algo
        self.hasher = hashlib.new(algo)

    def put(self, chunk: bytes) -> None:
        self.out.write(chunk)
        self.hasher.update(chunk)

    def close(self) -> str:
        return f"{self.algo}:{self.hasher.hexdigest()}"

    def close_quietly(self) -> None:
        """Nothing to stop (kept for the callers' error path)."""

    def restart(self) -> None:
        """Forget everything written so far (the server ignored our Range)."""
        self.out.seek(0)
        self.out.truncate()
        self.hasher = hashlib.new(self.algo)


def stream(
    session: requests.Session,
    url: str,
    out: BinaryIO,
    algo: str = "sha256",
    *,
    name: str,
    expected_size: int | None = None,
    progress: Progress | None = None,
) -> tuple[int, str]:
    """Download `url` into `out` (empty); return the byte count and its `algo:hex` digest.

    A connection cut mid-body is resumed from the bytes already received with `Range`; if the
    server ignores it (200 instead of 206) the file and the hash start over.
    """
    sink = _Sink(out, algo)
    try:
        written = _download(session, url, sink, name, expected_size, progress)
    except BaseException:
        sink.close_quietly()
        raise
    return written, sink.close()


def _download(
    session: requests.Session,
    url: str,
    sink: _Sink,
    name: str,
    expected_size: int | None,
    progress: Progress | None,
) -> int:
    written = 0
    cancel = CANCEL.get() or Cancel()
    ceiling = expected_size or limits.asset_ceiling()
    started = time.monotonic()
    for attempt in range(RESUMES + 1):
        cancel.check()
        headers = {"Range": f"bytes={written}-"} if written else {}
        try:
            with http.deadline(limits.LIMITS.api_deadline_s, f"{name}: the server's answer"):
                resp = session.get(url, headers=headers, stream=True)  # headers, not the body
            with resp, cancel.watching(resp):
                if resp.status_code == 404:
                    raise AssetNotFound(f"{name}: not found at the source (HTTP 404)")
                if resp.status_code == 416 and written and written == expected_size:
                    return written
                if resp.status_code >= 400:
                    raise SourceError(f"{name}: download failed with HTTP {resp.status_code}")
                if written and resp.status_code != 206:
                    log.info("%s: server ignored Range; starting over", name)
                    sink.restart()
                    if progress:
                        progress(-written)
                    written = 0
                # Raw bytes, as stored: a Content-Encoding must not change what we hash.
                # read1: whatever has arrived (up to CHUNK), so progress and resume points
                # follow the network, not the chunk size.
                while chunk := resp.raw.read1(CHUNK, decode_content=False):
                    cancel.check()
                    if written + len(chunk) > ceiling:
                        raise _too_big(name, expected_size, ceiling)
                    sink.put(chunk)
                    written += len(chunk)
                    if progress:
                        progress(len(chunk))
                    _check_rate(name, written, started)
        except (
            requests.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
            requests.Timeout,
            Urllib3Error,
        ) as err:
            cancel.check()  # a socket shut by Cancel.set() reads as a cut connection
            if attempt == RESUMES:
                raise SourceError(
                    f"{name}: download failed after {RESUMES} resumes: {type(err).__name__}"
                ) from err
            log.info("%s: connection cut after %d bytes; resuming", name, written)
            continue
        except requests.RequestException as err:  # redirect loops, bad URLs: not worth a retry
            cancel.check()
            raise SourceError(f"{name}: download failed: {type(err).__name__}") from err
        if expected_size and written < expected_size:
            if attempt == RESUMES:
                raise SourceError(f"{name}: got {written} of {expected_size} bytes")
            log.info("%s: short body (%d of %d bytes); resuming", name, written, expected_size)
            continue
        return written
    raise SourceError(f"{name}: download failed")  # pragma: no cover - the loop returns/raises


def _too_big(name: str, expected_size: int | None, ceiling: int) -> HarnessError:
    if expected_size:
        return IntegrityError(
            f"{name}: the server sent more than the published {expected_size} bytes"
        )
    return SourceError(
        f"{name}: no size published and the server sent more than {ceiling:,} bytes; refused "
        f"(raise the ceiling with {limits.ENV_MAX_ASSET})"
    )


def _check_rate(name: str, written: int, started: float) -> None:
    """A total deadline that scales with the size: a body that trickles in is cut once its
    average rate stays under LIMITS.min_rate_bps past LIMITS.min_rate_after_s."""
    floor = limits.LIMITS
    elapsed = time.monotonic() - started
    if elapsed > floor.min_rate_after_s and written < floor.min_rate_bps * elapsed:
        raise SourceError(
            f"{name}: stalled ({written:,} bytes in {elapsed:.0f} s, under "
            f"{floor.min_rate_bps // 1024} KiB/s)"
        )
