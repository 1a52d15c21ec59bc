"""The child process that loads ONE release and runs the conformance checks on it.

    python -m harness.suites.child SPEC.json

The spec names the library folder, the parsed ABI (JSON), the model and what to expect. The log of
llama.cpp goes to a file as it is written, and each check's result is appended to a progress file
as soon as it ends, so a crash (a signal) still leaves the log tail and the checks done so far for
the parent to report. The final result is written atomically.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

LEVELS = {0: "none", 1: "debug", 2: "info", 3: "warn", 4: "error", 5: "cont"}


def main(spec_path: str) -> int:
    t0 = time.perf_counter()
    spec: dict[str, Any] = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    log = open(spec["log"], "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - open until exit
    progress = open(spec["progress"], "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def on_log(level: int, text: str) -> None:
        log.write(text)

    def on_check(name: str, result: dict[str, Any]) -> None:
        progress.write(json.dumps({"check": name, **result}) + "\n")
        progress.flush()
        os.fsync(progress.fileno())

    from harness.abi import Api
    from harness.cache import atomic
    from harness.load.loader import load
    from harness.suites import conformance

    api = Api.from_json(Path(spec["api"]).read_text(encoding="utf-8"))
    t_api = time.perf_counter()
    loaded = load(Path(spec["libdir"]), api, on_log, spec.get("cpu_variant"))
    t_load = time.perf_counter()
    checks, facts = conformance.run(loaded, spec, on_check)
    result = {
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
    out = Path(spec["result"])
    atomic.write_text(out, json.dumps(result))
    log.flush()
    sys.stdout.flush()
    # Skip interpreter teardown: some releases' static destructors crash at exit, and the
    # result is already safe on disk.
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
