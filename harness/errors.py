"""One exception hierarchy; the CLI maps each class to one line and a documented exit code.

Exit codes (the CLI contract, README.md): 0 all good; 1 some cell failed its suites; 2 usage or
configuration error; 3 source error (unreachable, HTTP error, rate limited, asset missing);
4 integrity error (digest mismatch, unsafe archive).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SOURCE = 3
EXIT_INTEGRITY = 4


class HarnessError(Exception):
    exit_code = EXIT_FAILED


class ConfigError(HarnessError):
    """Bad matrix.yaml, bad option, unknown platform."""

    exit_code = EXIT_USAGE


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
