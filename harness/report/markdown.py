"""report.md: the report as Markdown, also the GitHub step summary. The first screen answers
"can I bump?" per release; details follow, and the whole is capped at `MD_LIMIT` bytes so it
always fits a step summary (report.html and report.json keep everything)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from harness.report.model import (
    BENCH_EXTRAS,
    FAILED,
    GLYPH,
    LEGEND,
    PERF_GLYPH,
    bench_extra,
    bench_stats,
    change_text,
    changes,
    glyph,
    platform_of,
    platforms_of,
    release_label,
    releases_of,
    summary,
    test_text,
    verdict_text,
    verdicts,
    vs_text,
)
from harness.report.text import as_number, clip, encodable, fmt_rate, percent, plural

MD_LIMIT = 60_000  # bytes; GitHub caps a step summary at 1 MiB, and people read the first screen


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
        f"llama-harness {md(report['harness'])} · {md(report['created'])} · host "
        f"{md(report['host']['os'])}/{md(report['host']['arch'])} · "
        + " · ".join(f"{GLYPH[s]} {n} {s}" for s, n in counts.items() if n),
        "",
        "## Can I bump?",
        "",
        *(f"- {v['glyph']} **{md(v['label'])}**: {md(v['text'])}" for v in verdicts(report)),
        "",
        "| release | " + " | ".join(map(md, platforms)) + " |",
        "|---|" + "---|" * len(platforms),
    ]
    for rel in releases_of(report):
        row = [glyph(c) if (c := by.get((rel, plat))) else "" for plat in platforms]
        lines.append(f"| {md(release_label(report, rel))} | " + " | ".join(row) + " |")
    lines += ["", LEGEND, ""]
    lines += _release_lines(report)
    problems = [c for c in cells if c["status"] in FAILED]
    if problems:
        lines += ["## Problems", ""]
        lines += [
            f"- **{md(c['release'])} {md(platform_of(c))}** {c['status']}: "
            + clip(_one_line(c.get("reason") or ""), 300)
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
        lines += [f"- {_one_line(why)}: {plural(len(who), 'cell')}" for why, who in reasons.items()]
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
        out += [f"### {md(v['label'])} {v['glyph']}", ""]
        build = next((c.get("build") for c in cells if c.get("build")), rel)
        if (d := diffs.get(build)) is not None:
            out.append(f"- API vs {md(d['old'])}: {md(d['summary'])}")
        elif api := next((c["api"] for c in cells if (c.get("api") or {}).get("functions")), None):
            header, functions = md(api.get("header", "llama.h")), md(api["functions"])
            out.append(f"- API: {header}, {functions} functions")
        groups: dict[tuple[str, str], list[str]] = {}
        for c in cells:
            for name, chk in (c.get("checks") or {}).items():
                if chk.get("status") in ("fail", "error"):
                    msg = clip(_one_line(str(chk.get("message") or "")), 200)
                    groups.setdefault((name, msg), []).append(platform_of(c))
        for (name, msg), plats in groups.items():
            out.append(f"- `{_code(name)}` fails on {_plats(plats, len(cells))}: {msg}")
        if not groups and not any(c["status"] in FAILED for c in cells):
            ran = sum(1 for c in cells if c["status"] == "pass" and c.get("scope") != "static")
            out.append(f"- no check fails ({ran} of {plural(len(cells), 'platform')} ran here)")
        for c in cells:
            if c["status"] in ("crash", "error"):
                tail = [ln for ln in c.get("log_tail") or [] if ln.strip()]
                out.append(
                    f"- {GLYPH[c['status']]} {md(platform_of(c))} {c['status']}: "
                    + clip(_one_line(c.get("reason") or ""), 200)
                    + (f" (last log line: `{clip(_code(tail[-1]), 120)}`)" if tail else "")
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
        + " | ".join(f"{md(k)} t/s" for k in keys)
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
        out.append(f"| {md(platform_of(c))} | " + " | ".join(row) + " |")
    return [*out, ""]


def _comparison_lines(report: dict[str, Any]) -> list[str]:
    entries = [e for e in report.get("comparison") or [] if isinstance(e, dict)]
    if not entries:
        return []
    real = [e for e in entries if e.get("verdict") != "within noise"]
    unsure = sum(e.get("verdict") == "inconclusive" for e in entries)
    out = [
        "## Throughput changes",
        "",
        f"{plural(len(entries), 'comparison')}, {len(entries) - len(real)} within noise"
        + (f", {unsure} inconclusive" if unsure else "")
        + (":" if real else "."),
        "",
    ]
    if real:
        out += [
            "| release | vs | cell | test | change | noise | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        out += [
            f"| {md(e.get('release', ''))} | {md(vs_text(e))} | {md(e.get('cell', ''))} | "
            f"{md(test_text(e))} | {percent(e.get('change'))} | "
            f"{percent(e.get('noise'), sign=False)} | "
            f"{PERF_GLYPH.get(str(e.get('verdict')), '')} {md(verdict_text(e))} |"
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
            f"| {md(c['release'])} {md(platform_of(c))} | "
            f"{ok}/{len(mine)} | {md(tokens(greedy or []))} | "
            f"{md(wall) if wall is not None else ''} |"
        )
    return [*out, ""]


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
            f"| {md(c['release'])} {md(platform_of(c))} | "
            f"{ok}/{len(st) - na}{' ❌ ' + md(', '.join(bad)) if bad else ''} | "
            f"{md(facts.get('glibc_max') or '')} | {md(facts.get('macos_min') or '')} | "
            f"{len(facts.get('cpu_variants') or [])} |"
        )
    return [*out, ""]


def _api_lines(report: dict[str, Any]) -> list[str]:
    diffs = report.get("api_diffs") or []
    if not diffs:
        return []
    out = ["## API changes", ""]
    for d in diffs:
        out.append(f"- **{md(d['old'])} → {md(d['new'])}**: {md(d['summary'])}")
        diff = d.get("diff") or {}
        changed = [f["name"] for f in diff.get("functions_changed", [])][:8]
        if changed:
            out.append(
                f"  - functions changed: {md(', '.join(map(str, changed)))}"
                + (" …" if len(diff.get("functions_changed", [])) > 8 else "")
            )
        structs = [s["name"] for s in diff.get("structs_changed", [])]
        if structs:
            out.append(f"  - structs changed: {md(', '.join(map(str, structs)))}")
    return [*out, ""]


def _binding_lines(report: dict[str, Any], limit: int = 10) -> list[str]:
    """matrix.yaml's `binding:`: its declarations against each release (harness.binding)."""
    b = report.get("binding")
    if not b:
        return []
    out = ["## Your binding", "", f"**{_one_line(b['name'])}** (`{_code(b['source'])}`)", ""]
    for r in b.get("releases", []):
        ok = r["verdict"] == "compatible"
        breaks = r.get("breaks") or []
        out.append(
            f"- {GLYPH['pass' if ok else 'fail']} **{_one_line(r['release'])}**: "
            f"{_one_line(r['verdict'])} ({plural(r['functions_checked'], 'function')}, "
            f"{plural(r['structs_checked'], 'struct')} checked"
            + (f", {plural(len(breaks), 'break')}" if breaks else "")
            + ")"
        )
        out += [f"  - `{_code(x)}`" for x in breaks[:limit]]
        if len(breaks) > limit:
            out.append(f"  - … {len(breaks) - limit} more in report.json")
    return [*out, ""]


def _cap(lines: list[str], limit: int) -> str:
    text = encodable("\n".join(lines))
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
    shown = ", ".join(map(md, plats[:4])) + (f", … {len(plats) - 4} more" if len(plats) > 4 else "")
    return shown


def tokens(ids: Sequence[Any], width: int = 60) -> str:
    """Greedy token ids as whole numbers, as many as fit in `width` characters; when some do not
    fit, how many there are in all (a number cut in the middle would read as another token)."""
    shown: list[str] = []
    for i in ids:
        if len(" ".join([*shown, str(i)])) > width:
            return " ".join(shown) + f" … ({len(ids)} tokens)"
        shown.append(str(i))
    return " ".join(shown)


def md(value: Any) -> str:
    """Any value from a report as inline Markdown that renders as exactly that text, in a line or
    a table cell: no HTML (`<script>`, `<img onerror>`, a `<!--` that hides the rest of a step
    summary), no links, images, emphasis, code or cell breaks. Every value goes through this:
    report.json may come from another runner (`report` merges shards)."""
    s = " ".join(_CONTROL.sub(" ", str(value)).split())
    s = _MD_SPECIAL.sub(r"\\\1", s)
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _one_line(s: str) -> str:
    """Free text made safe for one Markdown line or table cell."""
    return md(s)


def _code(s: str) -> str:
    """Text for a one-line code span."""
    return " ".join(_CONTROL.sub(" ", s).replace("`", "'").split())


_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")  # what Markdown would act on mid-line
