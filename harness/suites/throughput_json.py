"""A cell's throughput figures as a pytest-benchmark JSON document (`bench-<cell>.json`).

Rounds are the child's repetitions, times in seconds per repetition (statistics by
pytest-benchmark's own `Stats`); t/s and the native ratio go in `extra_info`. Kept apart from the
measuring child so that it never imports pytest-benchmark.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.cache import atomic
from harness.suites.throughput import presets_of
from harness.suites.throughput_stats import benchmark_stats

FORMAT_VERSION = "5.1.0"  # the pytest-benchmark JSON layout written when it is not installed


def machine_info(system_info: str = "", backends: str = "") -> dict[str, Any]:
    """This host, in pytest-benchmark's machine_info keys, plus llama.cpp's own system info."""
    from harness.host.probe import cpu_features

    try:
        brand, features = cpu_features()
    except Exception:  # a probe must never cost the figures
        brand, features = None, []
    return {
        "node": platform.node(),
        "processor": platform.processor(),
        "machine": platform.machine(),
        "python_implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "release": platform.release(),
        "system": platform.system(),
        "cpu": {
            "brand_raw": brand or "",
            "count": os.cpu_count(),
            "avx512f": "avx512f" in features,
        },
        "llama_system_info": system_info,
        "backends": backends,
    }


def benchmark_json(bench: dict[str, Any], cell: dict[str, Any]) -> dict[str, Any]:
    """A cell's bench section as a pytest-benchmark JSON document (rounds = repetitions, times in
    seconds per repetition; t/s and the native ratio in `extra_info`)."""
    try:
        from pytest_benchmark import __version__ as version
    except ImportError:
        version = FORMAT_VERSION
    cid = "-".join(str(cell.get(k, "?")) for k in ("release", "os", "arch", "variant"))
    benchmarks = []
    params = bench.get("params", {})
    for runner, section in (("harness", bench), ("native", bench.get("native") or {})):
        for preset in presets_of(section):
            tests = section.get(preset)
            if not isinstance(tests, dict) or "error" in tests:
                continue
            for test, fig in tests.items():
                if not isinstance(fig, dict) or not fig.get("seconds"):
                    continue
                ratio = (bench.get("ratio") or {}).get(preset, {}).get(test)
                benchmarks.append(
                    {
                        "group": f"{preset} {test}",
                        "name": f"{test}[{preset}-{runner}]",
                        "fullname": f"{cid}::{runner}::{preset}::{test}",
                        "params": {"preset": preset, "test": test, "runner": runner},
                        "param": f"{preset}-{runner}",
                        "extra_info": {
                            "tokens": fig["tokens"],
                            "tok_per_s_median": fig["median"],
                            "threads": fig.get("threads"),
                            "harness_over_native": ratio if runner == "harness" else None,
                            **(params.get(preset) or {}),
                        },
                        "options": {
                            "disable_gc": True,
                            "timer": "perf_counter" if runner == "harness" else "CLOCK_MONOTONIC",
                            "min_rounds": fig["rounds"],
                            "max_time": 0.0,
                            "min_time": 0.0,
                            "warmup": (params.get(preset) or {}).get("warmup", 1),
                        },
                        "stats": benchmark_stats(fig["seconds"]),
                    }
                )
    machine = dict(bench.get("machine") or machine_info())
    return {
        "machine_info": machine,
        "commit_info": {
            "id": cell.get("build") or cell.get("release"),
            "time": None,
            "author_time": None,
            "dirty": False,
            "project": "llama.cpp",
            "branch": cell.get("release"),
        },
        "benchmarks": benchmarks,
        "datetime": datetime.now(timezone.utc).isoformat(),
        "version": version,
    }


def write_benchmark_json(out_dir: Path, bench: dict[str, Any], cell: dict[str, Any]) -> Path:
    """Write `bench-<release>-<os>-<arch>-<variant>.json` (pytest-benchmark format) in out_dir."""
    cid = "-".join(str(cell.get(k, "?")) for k in ("release", "os", "arch", "variant"))
    path = Path(out_dir) / f"bench-{cid}.json"
    return atomic.write_text(path, json.dumps(benchmark_json(bench, cell), indent=2))
