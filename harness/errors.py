"""One exception hierarchy; the CLI maps each class to one line and a documented exit code.

Exit codes (the CLI contract, README.md): 0 all good; 1 some cell failed its suites; 2 usage or
configuration error; 3 source error (unreachable, HTTP error, rate limited, asset missing);
4 integrity error (digest mismatch, unsafe archive); 5 cache error (an entry locked by another
process past --lock-timeout, a full disk, a cache path that cannot be written or locked).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SOURCE = 3
EXIT_INTEGRITY = 4
EXIT_CACHE = 5


class HarnessError(Exception):
    exit_code = EXIT_FAILED


class ConfigError(HarnessError):
    """Bad matrix.yaml, bad option, unknown platform."""

    exit_code = EXIT_USAGE


class BindingUnreadable(ConfigError):
    """A binding's source is missing, holds no binding, or does not parse (binding-check)."""


class SourceError(HarnessError):
    """A release source could not answer: unreachable, HTTP error after retries."""

    exit_code = EXIT_SOURCE


class RateLimited(SourceError):
    pass


class ReleaseNotFound(SourceError):
    pass


class AssetNotFound(SourceError):
    pass


class IntegrityError(HarnessError):
    exit_code = EXIT_INTEGRITY


class DigestMismatch(IntegrityError):
    pass


class DigestMissing(IntegrityError):
    """`verify: required` and the source published no digest."""


class UnsafeArchive(IntegrityError):
    pass


class CacheError(HarnessError):
    """The cache cannot be used right now: a full disk, a path that cannot be written or locked.
    Nothing half-written is ever marked ready, so rerunning once the cause is gone is safe."""

    exit_code = EXIT_CACHE


class CacheBusy(CacheError):
    """Another process held an entry's lock for longer than the wait (--lock-timeout)."""
