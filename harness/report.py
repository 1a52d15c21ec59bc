"""The compatibility report: report.json (the contract in DESIGN.md) and report.md."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import __version__

GLYPH = {"pass": "✅", "fail": "❌", "skip": "⏭️", "error": "⚠️", "crash": "💥"}
STATIC_PASS = "☑️"  # passed its static checks; this host could not run it
STATUSES = ("pass", "fail", "skip", "error", "crash")


def host_info() -> dict[str, Any]:
    from harness.assets import host_platform

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


def markdown(report: dict[str, Any]) -> str:
    cells = report["cells"]
    releases = list(dict.fromkeys(c["release"] for c in cells))
    platforms = list(dict.fromkeys(f"{c['os']}/{c['arch']}/{c['variant']}" for c in cells))
    by = {(c["release"], f"{c['os']}/{c['arch']}/{c['variant']}"): c for c in cells}
    counts = summary(report)
    lines = [
        "# llama.cpp compatibility report",
        "",
        f"llama-harness {report['harness']} · {report['created']} · host "
        f"{report['host']['os']}/{report['host']['arch']} · "
        + " · ".join(f"{GLYPH[s]} {n} {s}" for s, n in counts.items() if n),
        "",
        "| release | " + " | ".join(platforms) + " |",
        "|---|" + "---|" * len(platforms),
    ]
    for rel in releases:
        build = next((c["build"] for c in cells if c["release"] == rel and c.get("build")), None)
        name = rel if not build or build == rel else f"{rel} ({build})"
        row = []
        for plat in platforms:
            c = by.get((rel, plat))
            row.append(_glyph(c) if c else "")
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    lines += [
        "",
        f"✅ ran and passed · {STATIC_PASS} static checks passed (not runnable here) · "
        "❌ fail · ⏭️ skip · ⚠️ error · 💥 crash",
        "",
    ]
    problems = [c for c in cells if c["status"] in ("fail", "error", "crash")]
    if problems:
        lines += ["## Problems", ""]
        for c in problems:
            lines.append(
                f"- **{c['release']} {c['os']}/{c['arch']}/{c['variant']}** "
                f"{c['status']}: {c.get('reason') or ''}"
            )
            for name, chk in (c.get("checks") or {}).items():
                if chk["status"] in ("fail", "error"):
                    lines.append(f"  - `{name}`: {chk['message']}")
        lines.append("")
    ran = [c for c in cells if c.get("scope") != "static" and c.get("facts")]
    if ran:
        lines += [
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
            lines.append(
                f"| {c['release']} {c['os']}/{c['arch']}/{c['variant']} | "
                f"{ok}/{len(mine)} | {' '.join(map(str, greedy or []))[:60]} | "
                f"{wall if wall is not None else ''} |"
            )
        lines.append("")
    lines += _api_lines(report)
    lines += _static_lines(cells)
    skipped = [c for c in cells if c["status"] == "skip"]
    if skipped:
        reasons: dict[str, list[str]] = {}
        for c in skipped:
            reasons.setdefault(c.get("reason") or "", []).append(
                f"{c['release']} {c['os']}/{c['arch']}/{c['variant']}"
            )
        lines += ["## Skipped", ""]
        lines += [f"- {why}: {len(who)} cells" for why, who in reasons.items()]
        lines.append("")
    return "\n".join(lines)


def merge(dirs: Sequence[Path]) -> dict[str, Any]:
    """Shard results (each a folder with report.json) → one report; a cell reported twice keeps
    its last occurrence, in the order the folders are given."""
    from harness.errors import ConfigError

    cells: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    hosts = []
    for d in dirs:
        path = d / "report.json" if d.is_dir() else d
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            shard_cells = data["cells"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"{path}: not a llama-harness report ({err})") from err
        hosts.append(data.get("host", {}))
        for c in shard_cells:
            cells[(c["release"], c["os"], c["arch"], c["variant"])] = c
    ordered = sorted(
        cells.values(), key=lambda c: (release_key(c["release"]), c["os"], c["arch"], c["variant"])
    )
    return build(ordered, {"shards": [str(d) for d in dirs], "hosts": hosts})


def release_key(tag: str) -> tuple[int, tuple[int, ...], str]:
    """b<N> by number, then v<semver> by version, then anything else (latest) by name."""
    if tag[:1] == "b" and tag[1:].isdigit():
        return (0, (int(tag[1:]),), tag)
    parts = tag[1:].split(".") if tag[:1] == "v" else []
    if parts and all(p.isdigit() for p in parts):
        return (1, tuple(int(p) for p in parts), tag)
    return (2, (), tag)


def _glyph(c: dict[str, Any]) -> str:
    if c["status"] == "pass" and c.get("scope") == "static":
        return STATIC_PASS
    return GLYPH[c["status"]]


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
        facts = c.get("static") or {}
        out.append(
            f"| {c['release']} {c['os']}/{c['arch']}/{c['variant']} | "
            f"{ok}/{len(st)}{' ❌ ' + ', '.join(bad) if bad else ''} | "
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


def write(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("report.json", json.dumps(report, indent=1)),
        ("report.md", markdown(report)),
    ):
        tmp = out / f".{name}.incomplete"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out / name)
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        with open(summary_file, "a", encoding="utf-8") as f:
            f.write(markdown(report) + "\n")
