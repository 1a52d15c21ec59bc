"""What the network may cost us, and the origin of a URL: apart from sources/http.py because
neither needs requests, and the warm path (which makes no request) reads them on every start:
the CLI checks LLAMA_HARNESS_MAX_ASSET_BYTES up front, a kept release's asset URLs are checked
for their scheme (importing requests costs ~45 ms).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from harness.errors import ConfigError

ENV_MAX_ASSET = "LLAMA_HARNESS_MAX_ASSET_BYTES"


@dataclass(frozen=True)
class Limits:
    """What the network may cost us (docs/security.md lists each, with how it is tested).

    Every byte from the network is untrusted: a server may send a body without end, trickle it,
    or send a `Link: next` that points back at itself.
    """

    api_bytes: int = 32 << 20  # one API answer; a page of 100 releases × 50 assets is ~8 MB
    api_deadline_s: float = 120.0  # one API request, total: connect, headers, retries, body
    small_bytes: int = 64 << 10  # nightly-tag.txt and other small text files
    asset_bytes: int = 8 << 30  # an asset whose size the source did not declare
    min_rate_bps: int = 16 << 10  # a download averaging less than this ...
    min_rate_after_s: float = 120.0  # ... after this long is stalled
    max_pages: int = 1000  # pagination: 100,000 releases at 100 a page


# Tests may swap this for a smaller one (monkeypatch limits.LIMITS); readers look it up here on
# every request, so it is never copied into another module.
LIMITS = Limits()


def asset_ceiling() -> int:
    """The most bytes an asset of undeclared size may have: LLAMA_HARNESS_MAX_ASSET_BYTES or
    LIMITS.asset_bytes."""
    raw = os.environ.get(ENV_MAX_ASSET, "").strip()
    if not raw:
        return LIMITS.asset_bytes
    if not (raw.isascii() and raw.isdigit() and int(raw) > 0):
        raise ConfigError(f"{ENV_MAX_ASSET}={raw[:40]!r}: expected a positive number of bytes")
    return int(raw)


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()
