"""One cell's result as the stages of `run` fill it, serialised once into report.json's cell.

The stages (harness.pipeline) fill the fields; the rules that turn checks into a status live in
`harness.report.judge`; `to_json` is the one place that knows report.json's cell layout
(report.schema.json). Optional sections appear in report.json only once a stage set them, as
they always have: a cell this host could not run has no `facts`, one without CPU variants no
`cpu_variants`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Check = dict[str, Any]  # {"status": pass|fail|skip|error, "message": str, "seconds": float}


def check(status: str, message: str, seconds: float = 0.0) -> Check:
    return {"status": status, "message": message, "seconds": seconds}


@dataclass
class CellResult:
    release: str
    os: str
    arch: str
    variant: str
    build: str | None = None
    asset: str | None = None
    digest: str | None = None
    source: str | None = None
    status: str = "pass"  # pass | fail | skip | error | crash
    reason: str = ""
    checks: dict[str, Check] = field(default_factory=dict)
    api: dict[str, Any] = field(default_factory=dict)
    bench: dict[str, Any] = field(default_factory=dict)
    static: dict[str, Any] | None = None  # facts of the static inspection
    scope: str | None = None  # "static": judged on its static checks alone
    facts: dict[str, Any] | None = None  # what the conformance child found (greedy tokens, ...)
    log_tail: list[str] | None = None
    seconds: dict[str, float] | None = None
    devices: list[str] | None = None
    cpu_variants: dict[str, dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # a later stage's own section

    @property
    def id(self) -> str:
        return f"{self.release}-{self.os}-{self.arch}-{self.variant}"

    @property
    def ran(self) -> bool:
        """Its conformance child ran (and said something)."""
        return self.facts is not None

    def set_check(self, name: str, status: str, message: str, seconds: float = 0.0) -> None:
        self.checks[name] = check(status, message, seconds)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "release": self.release,
            "build": self.build,
            "os": self.os,
            "arch": self.arch,
            "variant": self.variant,
            "asset": self.asset,
            "digest": self.digest,
            "source": self.source,
            "status": self.status,
            "reason": self.reason,
            "checks": self.checks,
            "api": self.api,
            "bench": self.bench,
        }
        optional = {
            "static": self.static,
            "scope": self.scope,
            "facts": self.facts,
            "log_tail": self.log_tail,
            "seconds": self.seconds,
            "devices": self.devices,
            "cpu_variants": self.cpu_variants,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        out.update(self.extra)
        return out
