"""One cell's conformance run in its own child process: the child's body and the parent's verdict.

    python -m harness.suites.child SPEC.json        (started by `run_cell`, never by hand)

The spec names the library folder, the parsed ABI (JSON), the model and what to expect. The
launcher (`harness.load.child`) gives the protocol: llama.cpp's log goes to a file as it is
written, each check is a progress step (so a SIGSEGV names the check it died in), the result is
written atomically. A child that dies of a signal is a `crash`, one that overruns its time or
fails otherwise an `error`; the run goes on either way. The parent never loads libllama.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.abi import Api
from harness.load.child import Child, child_main, launch
from harness.load.loader import load
from harness.suites import conformance

MODULE = "harness.suites.child"


@dataclass
class Outcome:
    """What one cell's child said: its status (pass | fail | crash | error) and why, each check's
    verdict, the facts the report shows, and how the release loaded."""

    status: str
    reason: str = ""
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    log_tail: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    backends: str | None = None
    missing_symbols: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "checks": self.checks,
            "facts": self.facts,
            "log_tail": self.log_tail,
            "seconds": self.seconds,
            "backends": self.backends,
            "missing_symbols": self.missing_symbols,
            "devices": self.devices,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def run_cell(
    spec: dict[str, Any], workdir: Path, timeout: float = 120.0, env: dict[str, str] | None = None
) -> Outcome:
    """Run one cell's checks in a child; whatever happens becomes an Outcome (never raises for
    the release's sake)."""
    ran = launch(MODULE, spec, workdir, timeout=timeout, env=env, name="cell")
    assert ran.files is not None
    done = {
        str(item["check"]): {k: v for k, v in item.items() if k not in ("done", "check")}
        for item in ran.progress
        if "done" in item and "check" in item
    }
    if ran.ok and ran.result is not None:
        data = ran.result
        checks = data.get("checks", {})
        bad = [n for n, c in checks.items() if c["status"] in ("fail", "error")]
        return _on_its_device(
            spec.get("gpu"),
            Outcome(
                "fail" if bad else "pass",
                "; ".join(f"{n}: {checks[n]['message']}" for n in bad),
                checks,
                data.get("facts", {}),
                ran.log_tail,
                {**data.get("seconds", {}), "wall": ran.wall},
                data.get("backends"),
                data.get("missing_symbols", []),
                devices(ran.files.log),
            ),
        )
    status = "crash" if ran.crashed else "error"
    seconds = {"wall": timeout if ran.timed_out else ran.wall}
    return Outcome(status, ran.error or "", done, log_tail=ran.log_tail, seconds=seconds)


def _on_its_device(gpu: str | None, got: Outcome) -> Outcome:
    """A GPU build that ran on the CPU says so instead of claiming the GPU build works."""
    used = gpu and any(d.lower().startswith(gpu) for d in got.devices)
    if gpu and not used and got.status in ("pass", "fail"):
        said = next((d for d in got.devices if "ound" in d or "no " in d), "no device used")
        got.status, got.reason = "skip", f"ggml accepted no {gpu} device here ({said})"
    return got


_DEVICE = re.compile(r"using device (\S+)|ggml_vulkan: No devices found|no CUDA-capable device")


def devices(log: Path) -> list[str]:
    """What llama.cpp said about GPU devices: the ones it used, or why there were none."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return list(dict.fromkeys(m.group(1) or m.group(0) for m in _DEVICE.finditer(text)))


# ---------------------------------------------------------------------- the child


def body(child: Child) -> dict[str, Any]:
    spec = child.spec
    t0 = time.perf_counter()
    api = Api.from_json(Path(spec["api"]).read_text(encoding="utf-8"))
    t_api = time.perf_counter()
    loaded = load(Path(spec["libdir"]), api, child.log, spec.get("cpu_variant"))
    t_load = time.perf_counter()

    def started(name: str) -> None:
        child.start(f"check {name}")

    def finished(name: str, result: dict[str, Any]) -> None:
        child.done(f"check {name}", check=name, **result)

    checks, facts = conformance.run(loaded, spec, finished, started)
    return {
        "checks": checks,
        "facts": facts,
        "backends": loaded.backends,
        "missing_symbols": loaded.fns.missing,
        "seconds": {
            "abi": round(t_api - t0, 4),
            "load": round(t_load - t_api, 4),
            "checks": round(time.perf_counter() - t_load, 4),
            "total": round(time.perf_counter() - t0, 4),
        },
    }


if __name__ == "__main__":
    child_main(body)
