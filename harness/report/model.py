"""The report.json contract (schema in report.schema.json) and the facts every rendering derives
from it: per release "can I bump?" (`verdicts`), per cell its glyph and why it failed, per benchmark
its change against the previous release. `markdown`, `html` and `junit` render these; `publish`
writes the files. Nothing here formats for one output only.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from harness import __version__
from harness.report import inputs
from harness.report.text import as_number, clip, percent
from harness.sources.assets import host_platform

GLYPH = {"pass": "✅", "fail": "❌", "skip": "⏭️", "error": "⚠️", "crash": "💥"}
STATIC_PASS = "☑️"  # passed its static checks; this host could not run it
STATUSES = ("pass", "fail", "skip", "error", "crash")
FAILED = ("fail", "error", "crash")
PERF_GLYPH = {"slower": "🐢", "faster": "⚡", "within noise": "≈", "inconclusive": "❔"}
BENCH_EXTRAS = ("native_ratio", "llama_bench")  # bench keys that are not a model's measurements
LEGEND = (
    f"✅ ran and passed · {STATIC_PASS} static checks passed (not runnable here) · "
    "❌ fail · ⏭️ skip · ⚠️ error · 💥 crash"
)


def host_info() -> dict[str, Any]:
    os_, arch = host_platform()
    return {
        "os": os_,
        "arch": arch,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }


def build(cells: Sequence[dict[str, Any]], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "harness": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": host_info(),
        "cells": list(cells),
        **(extra or {}),
    }


def summary(report: dict[str, Any]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for c in report["cells"]:
        counts[c["status"]] = counts.get(c["status"], 0) + 1
    return counts


@cache
def schema() -> dict[str, Any]:
    """The JSON schema of report.json (shipped as package data)."""
    return inputs.schema()


def validate(report: dict[str, Any]) -> None:
    """Raise `jsonschema.ValidationError` when `report` breaks the report.json contract."""
    jsonschema.validate(report, schema())


# --- what every rendering shares -------------------------------------------------------------


def platform_of(c: dict[str, Any]) -> str:
    return f"{c['os']}/{c['arch']}/{c['variant']}"


def releases_of(report: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(c["release"] for c in report["cells"]))


def platforms_of(report: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(platform_of(c) for c in report["cells"]))


def release_label(report: dict[str, Any], rel: str) -> str:
    """`latest (b10361)` for a release that names another build, else the tag."""
    b = next((c["build"] for c in report["cells"] if c["release"] == rel and c.get("build")), None)
    return rel if not b or b == rel else f"{rel} ({b})"


def static_only(c: dict[str, Any]) -> bool:
    """Judged on its static checks alone, and they passed: a cell of another platform (`pass`),
    or a GPU build of this one that this host cannot run (`skip`)."""
    return c.get("scope") == "static" and c["status"] in ("pass", "skip")


def glyph(c: dict[str, Any]) -> str:
    return STATIC_PASS if static_only(c) else GLYPH.get(c["status"], "?")


def failing_checks(c: dict[str, Any]) -> list[str]:
    return [k for k, v in (c.get("checks") or {}).items() if v.get("status") in ("fail", "error")]


def why_failed(c: dict[str, Any], width: int = 80) -> str:
    """The shortest useful account of a failed cell: its failing checks, or its reason."""
    if c["status"] == "fail" and (bad := failing_checks(c)):
        return ", ".join(bad)
    return clip(f"{c['status']}: {c.get('reason') or ''}".rstrip(": "), width)


def verdicts(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per release: can I bump to it? `{release, label, verdict, glyph, text, slower}`, verdict
    one of `bump`, `dont`, `unknown`; `slower` lists the comparison entries judged slower."""
    out = []
    comparison = [e for e in report.get("comparison") or [] if isinstance(e, dict)]
    builds = _builds(report)
    for rel in releases_of(report):
        cells = [c for c in report["cells"] if c["release"] == rel]
        bad = [c for c in cells if c["status"] in FAILED]
        static = [c for c in cells if static_only(c)]
        ran = [c for c in cells if c["status"] == "pass" and c.get("scope") != "static"]
        unchecked = [c for c in cells if c["status"] == "skip" and not static_only(c)]
        n = len(cells)
        if bad:
            verdict, mark = "dont", "❌"
            listed = ", ".join(f"{platform_of(c)} ({why_failed(c, 60)})" for c in bad[:4])
            text = f"don't bump — {_of(len(bad), n, 'fails', 'fail')}: {listed}" + (
                f", … {len(bad) - 4} more" if len(bad) > 4 else ""
            )
        elif ran or static:
            verdict, mark = "bump", "✅"
            text = f"bump — {_of(len(ran) + len(static), n, 'passes', 'pass')}"
            if static:
                text += f" ({len(ran)} ran here, " if ran else " ("
                text += f"{len(static)} static checks only)" if ran else "static checks only)"
            if unchecked:
                text += (
                    f"; {len(unchecked)} not checked: "
                    + ", ".join(
                        platform_of(c) + (f" ({w})" if (w := _unavailable(c)) else "")
                        for c in unchecked[:4]
                    )
                    + (", …" if len(unchecked) > 4 else "")
                )
        else:
            verdict, mark = "unknown", "⏭️"
            text = "unknown — " + (
                "its one platform could not be checked here"
                if n == 1
                else f"none of its {n} platforms could be checked here"
            )
        slower = [
            e
            for e in comparison
            if _same_release(builds, rel, e) and e.get("verdict") == "slower" and not is_aa(e)
        ]
        if slower:
            text += (
                " · 🐢 slower: "
                + ", ".join(
                    " ".join(
                        str(x)
                        for x in (
                            e.get("cell", "?"),
                            e.get("preset") or e.get("model"),
                            e.get("test", "?"),
                            percent(e.get("change")),
                        )
                        if x
                    )
                    for e in slower[:3]
                )
                + (f", … {len(slower) - 3} more" if len(slower) > 3 else "")
            )
        label = release_label(report, rel)
        out.append(
            {
                "release": rel,
                "label": label,
                "verdict": verdict,
                "glyph": mark,
                "text": text,
                "slower": slower,
            }
        )
    return out


def _of(k: int, n: int, one: str, many: str) -> str:
    """`all 3 platforms pass`, `both platforms pass`, `the one platform passes`, `1 of 3
    platforms fails`: the count of a verdict, in English."""
    if k == n:
        return {1: f"the one platform {one}", 2: f"both platforms {many}"}.get(
            n, f"all {n} platforms {many}"
        )
    return f"{k} of {n} platforms {one if k == 1 else many}"


NOT_AVAILABLE = re.compile(r"not available from [\w.-]+(?: or [\w.-]+)*")


def _unavailable(c: dict[str, Any]) -> str | None:
    """`not available from npm` for a cell no source published (its reason says so)."""
    m = NOT_AVAILABLE.match(str(c.get("reason") or ""))
    return m[0] if m else None


def bench_stats(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`model/test` → its stats (`median` t/s, `iqr`, `rounds`, …) for what the cell measured."""
    out: dict[str, dict[str, Any]] = {}
    for model, tests in (c.get("bench") or {}).items():
        if model in BENCH_EXTRAS or not isinstance(tests, dict):
            continue
        for test, st in tests.items():
            if isinstance(st, dict) and as_number(st.get("median")) is not None:
                out[f"{model}/{test}"] = st
    return out


def bench_extra(c: dict[str, Any], kind: str, key: str) -> float | None:
    """A figure kept beside ours (`native_ratio`, `llama_bench`) for `model/test`, if any:
    looked up as `[model][test]`, `["model/test"]` or `[model]`."""
    node = (c.get("bench") or {}).get(kind)
    model, _, test = key.partition("/")
    for path in ((model, test), (key,), (model,)):
        v: Any = node
        for p in path:
            v = v.get(p) if isinstance(v, dict) else None
        if (n := _value(v)) is not None:
            return n
    return None


def is_aa(e: dict[str, Any]) -> bool:
    """An A/A entry (`run --aa`): a build against itself, the machine's false-alarm rate."""
    return e.get("against") == "A/A"


def verdict_text(e: dict[str, Any]) -> str:
    """`inconclusive: the machine was too noisy (±12.0%)`: the verdict and the entry's note."""
    note = e.get("note")
    return f"{e.get('verdict', '')}: {note}" if note else str(e.get("verdict", ""))


def test_text(e: dict[str, Any]) -> str:
    """`small-f16 pp128` (an entry may name its preset apart, or in its test)."""
    return " ".join(str(e[k]) for k in ("preset", "test") if e.get(k))


def vs_text(e: dict[str, Any]) -> str:
    """What an entry compares with: the previous release, or `b8095 (baseline)`, `itself (A/A)`."""
    if is_aa(e):
        return "itself (A/A)"
    against = e.get("against")
    extra = f" ({against})" if against and against != "previous release" else ""
    return f"{e.get('previous', '')}{extra}"


def changes(report: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(release, platform, model/test) → `{change, noise, verdict, previous}`: the comparison's
    entry when the report has one, else the plain change against the previous release."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    stats = {
        (c["release"], platform_of(c)): bench_stats(c) for c in report["cells"] if c.get("bench")
    }
    builds = _builds(report)
    for e in report.get("comparison") or []:
        if not isinstance(e, dict) or is_aa(e):
            continue
        for (rel, plat), keys in stats.items():
            if not _same_release(builds, rel, e) or not _same_cell(str(e.get("cell", "")), plat):
                continue
            want = _norm(f"{e.get('model') or e.get('preset') or ''}{e.get('test', '')}")
            found = [k for k in keys if _norm(k) == want] or [
                k for k in keys if _norm(k.partition("/")[2]) == want
            ]
            if len(found) == 1:  # a bare `pp64` names a test only when one model has it
                out.setdefault((rel, plat, found[0]), e)
    releases = releases_of(report)
    for (rel, plat), keys in stats.items():
        older = [r for r in releases[: releases.index(rel)] if (r, plat) in stats]
        if not older:
            continue
        before = stats[(older[-1], plat)]
        for key, st in keys.items():
            old = as_number((before.get(key) or {}).get("median"))
            if old and (rel, plat, key) not in out:
                new = float(st["median"])
                out[(rel, plat, key)] = {"change": new / old - 1, "previous": older[-1]}
    return out


def change_text(ch: dict[str, Any] | None) -> str:
    """`−12.0 % 🐢` (with the comparison's verdict), or `+3.1 %` (no verdict known)."""
    if not ch or as_number(ch.get("change")) is None:
        return ""
    mark = PERF_GLYPH.get(str(ch.get("verdict")), "")
    noise = as_number(ch.get("noise"))
    return f"{percent(ch['change'])}{f' ±{abs(noise) * 100:.1f}' if noise is not None else ''}" + (
        f" {mark}" if mark else ""
    )


def merge(dirs: Sequence[Path]) -> dict[str, Any]:
    """Shard results (each a folder with report.json) → one report; a cell reported twice keeps
    its last occurrence, in the order the folders are given."""

    cells: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    hosts = []
    extra: dict[str, Any] = {}
    for d in dirs:
        path = d / "report.json" if d.is_dir() else d
        data = inputs.load(path)  # checked against the schema: exit 2 naming the file
        shard_cells = data["cells"]
        hosts.append(data.get("host", {}))
        if b := data.get("binding"):  # every shard checks the same binding, on its releases
            known = {r["release"]: r for r in extra.get("binding", {}).get("releases", [])}
            known.update({r["release"]: r for r in b.get("releases", [])})
            extra["binding"] = {**b, "releases": list(known.values())}
        for c in shard_cells:
            cells[(c["release"], c["os"], c["arch"], c["variant"])] = c
    ordered = sorted(
        cells.values(), key=lambda c: (release_key(c["release"]), c["os"], c["arch"], c["variant"])
    )
    return build(ordered, {"shards": [str(d) for d in dirs], "hosts": hosts, **extra})


def release_key(tag: str) -> tuple[int, tuple[int, ...], str]:
    """b<N> by number, then v<semver> by version, then anything else (latest) by name."""
    if tag[:1] == "b" and tag[1:].isdigit():
        return (0, (int(tag[1:]),), tag)
    parts = tag[1:].split(".") if tag[:1] == "v" else []
    if parts and all(p.isdigit() for p in parts):
        return (1, tuple(int(p) for p in parts), tag)
    return (2, (), tag)


def _same_release(builds: dict[str, str], rel: str, entry: dict[str, Any]) -> bool:
    """A comparison entry may name the release as the matrix does (`latest`) or by its build."""
    return entry.get("release") in (rel, builds.get(rel, rel))


def _builds(report: dict[str, Any]) -> dict[str, str]:
    return {c["release"]: c["build"] for c in report["cells"] if c.get("build")}


def _same_cell(name: str, plat: str) -> bool:
    return _norm(name).endswith(_norm(plat))


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "", s.lower())


def _value(v: Any) -> float | None:
    if isinstance(v, dict):
        return next(
            (
                n
                for k in ("ratio", "median", "t/s", "avg_ts", "value")
                if (n := as_number(v.get(k))) is not None
            ),
            None,
        )
    return as_number(v)
