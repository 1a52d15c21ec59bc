"""The compatibility report: report.json (the contract in DESIGN.md, schema in report.schema.json),
report.md (also the GitHub step summary), report.html (`report_html`) and report.xml (`junit`).

The first thing every rendering says is the answer to "can I bump to this release?" per release
(`verdicts`); details come after, and the Markdown is capped so it always fits a step summary.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from harness import __version__

GLYPH = {"pass": "✅", "fail": "❌", "skip": "⏭️", "error": "⚠️", "crash": "💥"}
STATIC_PASS = "☑️"  # passed its static checks; this host could not run it
STATUSES = ("pass", "fail", "skip", "error", "crash")
FAILED = ("fail", "error", "crash")
PERF_GLYPH = {"slower": "🐢", "faster": "⚡", "within noise": "≈"}
BENCH_EXTRAS = ("native_ratio", "llama_bench")  # bench keys that are not a model's measurements
MD_LIMIT = 60_000  # bytes; GitHub caps a step summary at 1 MiB, and people read the first screen
LEGEND = (
    f"✅ ran and passed · {STATIC_PASS} static checks passed (not runnable here) · "
    "❌ fail · ⏭️ skip · ⚠️ error · 💥 crash"
)


def host_info() -> dict[str, Any]:
    from harness.sources.assets import host_platform

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
    text = (Path(__file__).with_name("report.schema.json")).read_text(encoding="utf-8")
    return dict(json.loads(text))


def validate(report: dict[str, Any]) -> None:
    """Raise `jsonschema.ValidationError` when `report` breaks the report.json contract."""
    import jsonschema

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


def glyph(c: dict[str, Any]) -> str:
    if c["status"] == "pass" and c.get("scope") == "static":
        return STATIC_PASS
    return GLYPH.get(c["status"], "?")


def failing_checks(c: dict[str, Any]) -> list[str]:
    return [k for k, v in (c.get("checks") or {}).items() if v.get("status") in ("fail", "error")]


def why_failed(c: dict[str, Any], width: int = 80) -> str:
    """The shortest useful account of a failed cell: its failing checks, or its reason."""
    if c["status"] == "fail" and (bad := failing_checks(c)):
        return ", ".join(bad)
    return _clip(f"{c['status']}: {c.get('reason') or ''}".rstrip(": "), width)


def verdicts(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per release: can I bump to it? `{release, label, verdict, glyph, text, slower}`, verdict
    one of `bump`, `dont`, `unknown`; `slower` lists the comparison entries judged slower."""
    out = []
    comparison = [e for e in report.get("comparison") or [] if isinstance(e, dict)]
    builds = _builds(report)
    for rel in releases_of(report):
        cells = [c for c in report["cells"] if c["release"] == rel]
        bad = [c for c in cells if c["status"] in FAILED]
        skipped = [c for c in cells if c["status"] == "skip"]
        passed = [c for c in cells if c["status"] == "pass"]
        static = sum(1 for c in passed if c.get("scope") == "static")
        n = len(cells)
        if bad:
            verdict, mark = "dont", "❌"
            listed = ", ".join(f"{platform_of(c)} ({why_failed(c, 60)})" for c in bad[:4])
            text = f"don't bump — {len(bad)} of {n} platform{'s' * (n != 1)} fail: {listed}" + (
                f", … {len(bad) - 4} more" if len(bad) > 4 else ""
            )
        elif passed:
            verdict, mark = "bump", "✅"
            text = f"bump — {'all ' if not skipped else ''}{len(passed)}"
            text += f" of {n} platforms pass" if skipped else f" platform{'s' * (n != 1)} pass"
            if static:
                text += f" ({len(passed) - static} ran here, {static} static checks only)"
            if skipped:
                text += (
                    f"; {len(skipped)} not checked: "
                    + ", ".join(platform_of(c) for c in skipped[:4])
                    + (", …" if len(skipped) > 4 else "")
                )
        else:
            verdict, mark = "unknown", "⏭️"
            text = f"unknown — none of its {n} platforms could be checked here"
        slower = [
            e for e in comparison if _same_release(builds, rel, e) and e.get("verdict") == "slower"
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


def changes(report: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(release, platform, model/test) → `{change, noise, verdict, previous}`: the comparison's
    entry when the report has one, else the plain change against the previous release."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    stats = {
        (c["release"], platform_of(c)): bench_stats(c) for c in report["cells"] if c.get("bench")
    }
    builds = _builds(report)
    for e in report.get("comparison") or []:
        if not isinstance(e, dict):
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


def fmt_rate(v: Any) -> str:
    n = as_number(v)
    if n is None:
        return ""
    return f"{n:,.0f}" if abs(n) >= 100 else f"{n:.3g}"


# --- Markdown ----------------------------------------------------------------------------------


def markdown(report: dict[str, Any], limit: int = MD_LIMIT) -> str:
    """The report as Markdown; the first screen answers "can I bump?". Past `limit` bytes the
    details are cut, with a note (report.html and report.json keep everything)."""
    cells = report["cells"]
    platforms = platforms_of(report)
    by = {(c["release"], platform_of(c)): c for c in cells}
    counts = summary(report)
    lines = [
        "# llama.cpp compatibility report",
        "",
        f"llama-harness {report['harness']} · {report['created']} · host "
        f"{report['host']['os']}/{report['host']['arch']} · "
        + " · ".join(f"{GLYPH[s]} {n} {s}" for s, n in counts.items() if n),
        "",
        "## Can I bump?",
        "",
        *(f"- {v['glyph']} **{v['label']}**: {v['text']}" for v in verdicts(report)),
        "",
        "| release | " + " | ".join(platforms) + " |",
        "|---|" + "---|" * len(platforms),
    ]
    for rel in releases_of(report):
        row = [glyph(c) if (c := by.get((rel, plat))) else "" for plat in platforms]
        lines.append(f"| {release_label(report, rel)} | " + " | ".join(row) + " |")
    lines += ["", LEGEND, ""]
    lines += _release_lines(report)
    problems = [c for c in cells if c["status"] in FAILED]
    if problems:
        lines += ["## Problems", ""]
        lines += [
            f"- **{c['release']} {platform_of(c)}** {c['status']}: "
            + _clip(_one_line(c.get("reason") or ""), 300)
            for c in problems
        ]
        lines.append("")
    lines += _comparison_lines(report)
    lines += _conformance_lines(cells)
    lines += _api_lines(report)
    lines += _binding_lines(report)
    lines += _static_lines(cells)
    skipped = [c for c in cells if c["status"] == "skip"]
    if skipped:
        reasons: dict[str, list[str]] = {}
        for c in skipped:
            reasons.setdefault(c.get("reason") or "", []).append(f"{c['release']} {platform_of(c)}")
        lines += ["## Skipped", ""]
        lines += [
            f"- {_one_line(why)}: {len(who)} cell{'s' * (len(who) != 1)}"
            for why, who in reasons.items()
        ]
        lines.append("")
    return _cap(lines, limit)


def _release_lines(report: dict[str, Any]) -> list[str]:
    """Per release: the API diff against the previous one, the failing checks grouped across
    platforms, and the throughput table with its changes."""
    diffs = {d.get("new"): d for d in report.get("api_diffs") or []}
    ch = changes(report)
    out = ["## Releases", ""]
    for v in verdicts(report):
        rel = v["release"]
        cells = [c for c in report["cells"] if c["release"] == rel]
        out += [f"### {v['label']} {v['glyph']}", ""]
        build = next((c.get("build") for c in cells if c.get("build")), rel)
        if (d := diffs.get(build)) is not None:
            out.append(f"- API vs {d['old']}: {d['summary']}")
        elif api := next((c["api"] for c in cells if (c.get("api") or {}).get("functions")), None):
            out.append(f"- API: {api.get('header', 'llama.h')}, {api['functions']} functions")
        groups: dict[tuple[str, str], list[str]] = {}
        for c in cells:
            for name, chk in (c.get("checks") or {}).items():
                if chk.get("status") in ("fail", "error"):
                    msg = _clip(_one_line(str(chk.get("message") or "")), 200)
                    groups.setdefault((name, msg), []).append(platform_of(c))
        for (name, msg), plats in groups.items():
            out.append(f"- `{name}` fails on {_plats(plats, len(cells))}: {msg}")
        if not groups and not any(c["status"] in FAILED for c in cells):
            ran = sum(1 for c in cells if c["status"] == "pass" and c.get("scope") != "static")
            out.append(f"- no check fails ({ran} of {len(cells)} platforms ran here)")
        for c in cells:
            if c["status"] in ("crash", "error"):
                tail = [ln for ln in c.get("log_tail") or [] if ln.strip()]
                out.append(
                    f"- {GLYPH[c['status']]} {platform_of(c)} {c['status']}: "
                    + _clip(_one_line(c.get("reason") or ""), 200)
                    + (f" (last log line: `{_clip(_code(tail[-1]), 120)}`)" if tail else "")
                )
        out += ["", *_bench_table(cells, ch)]
    return out


def _bench_table(cells: list[dict[str, Any]], ch: dict[tuple[str, str, str], Any]) -> list[str]:
    keys = list(dict.fromkeys(k for c in cells for k in bench_stats(c)))
    if not keys:
        return []
    extras = any(
        bench_extra(c, x, k) is not None for c in cells for k in keys for x in BENCH_EXTRAS
    )
    out = [
        "| platform | "
        + " | ".join(f"{k} t/s" for k in keys)
        + (" | beside ours |" if extras else " |"),
        "|---|" + "---|" * (len(keys) + extras),
    ]
    for c in cells:
        st = bench_stats(c)
        if not st:
            continue
        row = []
        for k in keys:
            s = st.get(k)
            if s is None:
                row.append("")
                continue
            iqr = as_number(s.get("iqr"))
            change = change_text(ch.get((c["release"], platform_of(c), k)))
            row.append(
                fmt_rate(s.get("median"))
                + (f" ±{fmt_rate(iqr)}" if iqr is not None else "")
                + (f" ({change})" if change else "")
            )
        if extras:
            notes = [
                f"{label} {k} {fmt(n)}"
                for k in keys
                for kind, label, fmt in (
                    ("native_ratio", "ours÷native", lambda x: f"{x:.2f}"),
                    ("llama_bench", "llama-bench", fmt_rate),
                )
                if (n := bench_extra(c, kind, k)) is not None
            ]
            row.append(", ".join(notes))
        out.append(f"| {platform_of(c)} | " + " | ".join(row) + " |")
    return [*out, ""]


def _comparison_lines(report: dict[str, Any]) -> list[str]:
    entries = [e for e in report.get("comparison") or [] if isinstance(e, dict)]
    if not entries:
        return []
    real = [e for e in entries if e.get("verdict") != "within noise"]
    out = [
        "## Throughput changes",
        "",
        f"{len(entries)} comparisons, {len(entries) - len(real)} within noise"
        + (":" if real else "."),
        "",
    ]
    if real:
        out += [
            "| release | vs | cell | test | change | noise | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        out += [
            f"| {e.get('release', '')} | {e.get('previous', '')} | {e.get('cell', '')} | "
            f"{e.get('test', '')} | {percent(e.get('change'))} | "
            f"{percent(e.get('noise'), sign=False)} | "
            f"{PERF_GLYPH.get(str(e.get('verdict')), '')} {e.get('verdict', '')} |"
            for e in real
        ]
        out.append("")
    return out


def _conformance_lines(cells: Sequence[dict[str, Any]]) -> list[str]:
    ran = [c for c in cells if c.get("scope") != "static" and c.get("facts")]
    if not ran:
        return []
    out = [
        "## Conformance",
        "",
        "| cell | checks | greedy tokens | seconds |",
        "|---|---|---|---|",
    ]
    for c in ran:
        mine = {k: v for k, v in c["checks"].items() if not k.startswith("static.")}
        ok = sum(1 for x in mine.values() if x["status"] == "pass")
        greedy = (c.get("facts") or {}).get("greedy")
        wall = (c.get("seconds") or {}).get("wall")
        out.append(
            f"| {c['release']} {platform_of(c)} | "
            f"{ok}/{len(mine)} | {' '.join(map(str, greedy or []))[:60]} | "
            f"{wall if wall is not None else ''} |"
        )
    return [*out, ""]


def merge(dirs: Sequence[Path]) -> dict[str, Any]:
    """Shard results (each a folder with report.json) → one report; a cell reported twice keeps
    its last occurrence, in the order the folders are given."""
    from harness.errors import ConfigError

    cells: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    hosts = []
    extra: dict[str, Any] = {}
    for d in dirs:
        path = d / "report.json" if d.is_dir() else d
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            shard_cells = data["cells"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"{path}: not a llama-harness report ({err})") from err
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


def _static_lines(cells: Sequence[dict[str, Any]]) -> list[str]:
    rows = [c for c in cells if any(k.startswith("static.") for k in c.get("checks", {}))]
    if not rows:
        return []
    out = [
        "## Static checks",
        "",
        "| cell | checks | glibc | macOS | CPU variants |",
        "|---|---|---|---|---|",
    ]
    for c in rows:
        st = {k: v for k, v in c["checks"].items() if k.startswith("static.")}
        bad = [k.removeprefix("static.") for k, v in st.items() if v["status"] == "fail"]
        ok = sum(1 for v in st.values() if v["status"] == "pass")
        na = sum(1 for v in st.values() if v["status"] == "skip")
        facts = c.get("static") or {}
        out.append(
            f"| {c['release']} {platform_of(c)} | "
            f"{ok}/{len(st) - na}{' ❌ ' + ', '.join(bad) if bad else ''} | "
            f"{facts.get('glibc_max') or ''} | {facts.get('macos_min') or ''} | "
            f"{len(facts.get('cpu_variants') or [])} |"
        )
    return [*out, ""]


def _api_lines(report: dict[str, Any]) -> list[str]:
    diffs = report.get("api_diffs") or []
    if not diffs:
        return []
    out = ["## API changes", ""]
    for d in diffs:
        out.append(f"- **{d['old']} → {d['new']}**: {d['summary']}")
        diff = d.get("diff") or {}
        changed = [f["name"] for f in diff.get("functions_changed", [])][:8]
        if changed:
            out.append(
                f"  - functions changed: {', '.join(changed)}"
                + (" …" if len(diff.get("functions_changed", [])) > 8 else "")
            )
        structs = [s["name"] for s in diff.get("structs_changed", [])]
        if structs:
            out.append(f"  - structs changed: {', '.join(structs)}")
    return [*out, ""]


def _binding_lines(report: dict[str, Any], limit: int = 10) -> list[str]:
    """matrix.yaml's `binding:`: its declarations against each release (harness.binding)."""
    b = report.get("binding")
    if not b:
        return []
    out = ["## Your binding", "", f"**{b['name']}** (`{b['source']}`)", ""]
    for r in b.get("releases", []):
        ok = r["verdict"] == "compatible"
        out.append(
            f"- {GLYPH['pass' if ok else 'fail']} **{r['release']}**: {r['verdict']} "
            f"({r['functions_checked']} functions, {r['structs_checked']} structs checked"
            + (f", {len(r['breaks'])} breaks" if r["breaks"] else "")
            + ")"
        )
        out += [f"  - `{_code(x)}`" for x in r["breaks"][:limit]]
        if len(r["breaks"]) > limit:
            out.append(f"  - … {len(r['breaks']) - limit} more in report.json")
    return [*out, ""]


def _cap(lines: list[str], limit: int) -> str:
    text = _encodable("\n".join(lines))
    lines = text.split("\n")
    if len(text.encode("utf-8")) <= limit:
        return text
    left = len(lines)
    note = (
        "> ✂️ Cut here to stay under {:,} bytes, short enough for a step summary: {} more lines "
        "left out. report.html and report.json have everything."
    )
    budget = limit - len(note.format(limit, left).encode("utf-8")) - 2
    kept: list[str] = []
    size = 0
    for ln in lines:
        size += len(ln.encode("utf-8")) + 1
        if size > budget:
            break
        kept.append(ln)
    return "\n".join([*kept, "", note.format(limit, len(lines) - len(kept))])


def _plats(plats: list[str], total: int) -> str:
    if len(plats) == total and total > 1:
        return f"all {total} platforms"
    shown = ", ".join(plats[:4]) + (f", … {len(plats) - 4} more" if len(plats) > 4 else "")
    return shown


def _same_release(builds: dict[str, str], rel: str, entry: dict[str, Any]) -> bool:
    """A comparison entry may name the release as the matrix does (`latest`) or by its build."""
    return entry.get("release") in (rel, builds.get(rel, rel))


def _builds(report: dict[str, Any]) -> dict[str, str]:
    return {c["release"]: c["build"] for c in report["cells"] if c.get("build")}


def _same_cell(name: str, plat: str) -> bool:
    return _norm(name).endswith(_norm(plat))


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "", s.lower())


def as_number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        return None
    return float(v)


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


def percent(v: Any, sign: bool = True) -> str:
    n = as_number(v)
    if n is None:
        return ""
    return f"{n * 100:+.1f} %".replace("-", "−") if sign else f"{abs(n) * 100:.1f} %"


def _clip(s: str, width: int) -> str:
    return s if len(s) <= width else s[: width - 1] + "…"


def _one_line(s: str) -> str:
    """Free text made safe for one Markdown line or table cell."""
    s = " ".join(_CONTROL.sub(" ", s).split()).replace("|", "\\|")
    return s.replace("<", "&lt;").replace(">", "&gt;")


def _code(s: str) -> str:
    """Text for a one-line code span."""
    return " ".join(_CONTROL.sub(" ", s).replace("`", "'").split())


_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def write(report: dict[str, Any], out: Path) -> None:
    """report.json, report.md, report.html and report.xml in `out`, each replaced atomically;
    the Markdown is also appended to `$GITHUB_STEP_SUMMARY` when that is set."""
    from harness.cache.atomic import write_text
    from harness.report import html as report_html
    from harness.report import junit

    md = markdown(report)
    for name, text in (
        ("report.json", json.dumps(report, indent=1)),
        ("report.md", md),
        ("report.html", report_html.render(report)),
        ("report.xml", junit.render(report)),
    ):
        write_text(out / name, _encodable(text))
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        with open(summary_file, "a", encoding="utf-8") as f:
            f.write(_encodable(md) + "\n")


def _encodable(text: str) -> str:
    """Lone surrogates (undecodable bytes let through somewhere) cannot be written as UTF-8."""
    return text.encode("utf-8", "replace").decode("utf-8")
