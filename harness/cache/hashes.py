"""Digests are `algo:hex` strings everywhere (as GitHub's `digest` field); parsed only here."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from harness.errors import IntegrityError

ALGORITHMS = ("sha256", "sha512")


def parse(digest: str) -> tuple[str, str]:
    algo, sep, value = digest.partition(":")
    algo = algo.strip().lower()
    if not sep or algo not in ALGORITHMS:
        raise IntegrityError(f"unsupported digest {digest!r} (expected sha256:<hex>)")
    value = value.strip().lower()
    try:
        if len(bytes.fromhex(value)) != hashlib.new(algo).digest_size:
            raise ValueError
    except ValueError as err:
        raise IntegrityError(f"malformed digest {digest!r}") from err
    return algo, value


def from_sri(integrity: str) -> str:
    """npm's `sha512-<base64>` Subresource Integrity string → `sha512:<hex>`."""
    algo, _, b64 = integrity.partition("-")
    return f"{algo}:{base64.b64decode(b64).hex()}"


def algorithm(digest: str | None) -> str:
    return parse(digest)[0] if digest else "sha256"


def new(algo: str = "sha256") -> hashlib._Hash:
    return hashlib.new(algo)


def format(h: hashlib._Hash) -> str:
    return f"{h.name}:{h.hexdigest()}"


def same(a: str, b: str) -> bool:
    return parse(a) == parse(b)


def file_digest(path: Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return format(h)
