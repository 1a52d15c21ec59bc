"""Stream one URL into an open file, hashing as the bytes arrive; resume with `Range` after a cut.

Written by hand because no well-kept library does hash-while-streaming *and* Range resume *and*
a per-chunk progress callback over a caller's requests session (pooch restarts from zero).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import BinaryIO

import requests
from urllib3.exceptions import HTTPError as Urllib3Error

from harness.errors import AssetNotFound, SourceError

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
RESUMES = 5

Progress = Callable[[int], None]


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

    A connection cut mid-body is resumed from the bytes already written with `Range`; if the
    server ignores it (200 instead of 206) the file and the hash start over.
    """
    written = 0
    hasher = hashlib.new(algo)
    for attempt in range(RESUMES + 1):
        headers = {"Range": f"bytes={written}-"} if written else {}
        try:
            with session.get(url, headers=headers, stream=True) as resp:
                if resp.status_code == 404:
                    raise AssetNotFound(f"{name}: not found at the source (HTTP 404)")
                if resp.status_code == 416 and written and written == expected_size:
                    return written, f"{algo}:{hasher.hexdigest()}"
                if resp.status_code >= 400:
                    raise SourceError(f"{name}: download failed with HTTP {resp.status_code}")
                if written and resp.status_code != 206:
                    log.info("%s: server ignored Range; starting over", name)
                    if progress:
                        progress(-written)
                    out.seek(0)
                    out.truncate()
                    hasher = hashlib.new(algo)
                    written = 0
                # Raw bytes, as stored: a Content-Encoding must not change what we hash.
                for chunk in resp.raw.stream(CHUNK, decode_content=False):
                    out.write(chunk)
                    hasher.update(chunk)
                    written += len(chunk)
                    if progress:
                        progress(len(chunk))
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                requests.Timeout, Urllib3Error) as err:
            if attempt == RESUMES:
                raise SourceError(f"{name}: download failed after {RESUMES} resumes: "
                                  f"{type(err).__name__}") from err
            log.info("%s: connection cut after %d bytes; resuming", name, written)
            continue
        if expected_size and written < expected_size:
            if attempt == RESUMES:
                raise SourceError(f"{name}: got {written} of {expected_size} bytes")
            log.info("%s: short body (%d of %d bytes); resuming", name, written, expected_size)
            continue
        return written, f"{algo}:{hasher.hexdigest()}"
    raise SourceError(f"{name}: download failed")  # pragma: no cover - loop always returns/raises
