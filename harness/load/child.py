"""Run one cell's suite in its own child process and turn whatever happened into a result.

A child that dies of a signal is a `crash` (with the signal's name, the check it died in, and the
tail of llama.cpp's log); one that overruns its time is an `error`; the run goes on either way.
The parent never loads libllama.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG_TAIL_LINES = 30


@dataclass
class Outcome:
    status: str  # pass | fail | crash | error
    reason: str = ""
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    log_tail: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "checks": self.checks,
            "facts": self.facts,
            "log_tail": self.log_tail,
            "seconds": self.seconds,
            **self.extra,
        }


def _tail(path: Path, n: int = LOG_TAIL_LINES) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return [ln for ln in lines if ln.strip()][-n:]


def _progress(path: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            out[item.pop("check")] = item
    except (OSError, ValueError, KeyError):
        pass
    return out


def run_cell(
    spec: dict[str, Any], workdir: Path, timeout: float = 120.0, env: dict[str, str] | None = None
) -> Outcome:
    workdir.mkdir(parents=True, exist_ok=True)
    paths = {
        k: workdir / f"{k}.{ext}"
        for k, ext in (("log", "log"), ("progress", "jsonl"), ("result", "json"), ("spec", "json"))
    }
    for p in paths.values():
        p.unlink(missing_ok=True)
    scratch = workdir / "scratch"
    scratch.mkdir(exist_ok=True)
    full = {
        **spec,
        "log": str(paths["log"]),
        "progress": str(paths["progress"]),
        "result": str(paths["result"]),
        "scratch": str(scratch),
    }
    paths["spec"].write_text(json.dumps(full), encoding="utf-8")
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent), child_env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "harness.suites.child", str(paths["spec"])],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=child_env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        done = _progress(paths["progress"])
        return Outcome(
            "error",
            f"timed out after {timeout:.0f} s",
            done,
            log_tail=_tail(paths["log"]),
            seconds={"wall": timeout},
        )
    wall = round(time.perf_counter() - t0, 4)
    stderr_tail = [ln for ln in proc.stderr.splitlines() if ln.strip()][-LOG_TAIL_LINES:]
    if paths["result"].is_file():
        data = json.loads(paths["result"].read_text(encoding="utf-8"))
        checks = data.get("checks", {})
        bad = [n for n, c in checks.items() if c["status"] in ("fail", "error")]
        status = "fail" if bad else "pass"
        reason = "; ".join(f"{n}: {checks[n]['message']}" for n in bad)
        return Outcome(
            status,
            reason,
            checks,
            data.get("facts", {}),
            _tail(paths["log"]),
            {**data.get("seconds", {}), "wall": wall},
            {
                "backends": data.get("backends"),
                "missing_symbols": data.get("missing_symbols", []),
                "devices": devices(paths["log"]),
            },
        )
    done = _progress(paths["progress"])
    tail = _tail(paths["log"]) + stderr_tail
    if proc.returncode < 0:
        try:
            sig = signal.Signals(-proc.returncode).name
        except ValueError:
            sig = f"signal {-proc.returncode}"
        where = _crashed_in(done, spec.get("checks"))
        return Outcome(
            "crash", f"{sig}{where}", done, log_tail=tail[-LOG_TAIL_LINES:], seconds={"wall": wall}
        )
    last = stderr_tail[-1] if stderr_tail else f"exit status {proc.returncode}"
    return Outcome(
        "error",
        f"the child failed: {last}",
        done,
        log_tail=tail[-LOG_TAIL_LINES:],
        seconds={"wall": wall},
    )


_DEVICE = re.compile(r"using device (\S+)|ggml_vulkan: No devices found|no CUDA-capable device")


def devices(log: Path) -> list[str]:
    """What llama.cpp said about GPU devices: the ones it used, or why there were none."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return list(dict.fromkeys(m.group(1) or m.group(0) for m in _DEVICE.finditer(text)))


def _crashed_in(done: dict[str, dict[str, Any]], only: list[str] | None = None) -> str:
    from harness.suites.conformance import NAMES

    if not done:
        return " while loading the library"
    rest = [n for n in NAMES if n not in done and (not only or n in only)]
    return f" in check {rest[0]}" if rest else " after the checks"
