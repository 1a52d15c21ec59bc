"""report.html: the whole report as ONE self-contained page (inline CSS, inline SVG, no script,
nothing fetched), so it can be attached to a CI run and opened anywhere.

Top to bottom: can I bump (per release), the release × platform matrix, throughput plots across
releases per platform (when the report has bench data), the regression comparison, the API diffs,
then every cell in a collapsible block (failed cells open). Every string from the report goes
through `text.html_text`: reasons and log lines come from builds we do not control. The plots
are `plot.chart`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from harness.report import model as rp
from harness.report.plot import chart
from harness.report.text import as_number, fmt_rate, percent
from harness.report.text import html_text as e

CSS = """
:root{--pass:#d8f3dc;--static:#eef8ef;--fail:#fcd5d2;--error:#ffe6bf;--crash:#ecd5f2;
--skip:#eceff1;--ink:#1f2328;--muted:#59636e;--line:#d1d9e0}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);
margin:0 auto;max-width:1400px;padding:16px 24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid
var(--line);padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
.meta,.note,.legend{color:var(--muted)}.empty{color:var(--muted);font-style:italic}
table{border-collapse:collapse;margin:6px 0}th,td{border:1px solid var(--line);padding:3px 8px;
text-align:left;vertical-align:top}thead th{background:#f6f8fa}
table.matrix td{text-align:center;font-size:18px;min-width:64px}
table.matrix td a{text-decoration:none;display:block;color:inherit}
table.matrix .word{display:block;font-size:11px;color:var(--muted)}
.st-pass{background:var(--pass)}.st-static{background:var(--static)}.st-fail{background:var(--fail)}
.st-error{background:var(--error)}.st-crash{background:var(--crash)}.st-skip{background:var(--skip)}
ul.verdicts{list-style:none;padding:0;margin:8px 0}ul.verdicts li{padding:6px 10px;margin:4px 0;
border-radius:6px;border-left:6px solid}li.v-bump{background:var(--pass);border-color:#2da44e}
li.v-dont{background:var(--fail);border-color:#cf222e}li.v-unknown{background:var(--skip);
border-color:#8c959f}
details{border:1px solid var(--line);border-radius:6px;margin:6px 0;padding:4px 10px}
details>summary{cursor:pointer;font-weight:600}details.cell>summary{font-weight:500}
pre.log{background:#0d1117;color:#e6edf3;padding:8px;overflow:auto;max-height:360px;font-size:12px}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.plots{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}figcaption{font-size:12px;
color:var(--muted);text-align:center}
svg.plot{background:#fff;border:1px solid var(--line);border-radius:4px}
svg.plot text{font:11px system-ui,sans-serif;fill:var(--muted)}
svg.plot .grid{stroke:#eaeef2}svg.plot .axis{stroke:#8c959f}
svg.plot .series{fill:none;stroke:#0969da;stroke-width:2}
svg.plot .whisker{stroke:#0969da;stroke-width:1.5}
svg.plot .point{fill:#0969da}svg.plot .point.slower{fill:#cf222e}
svg.plot .point.faster{fill:#1a7f37}
.v-slower{background:var(--fail)}.v-faster{background:var(--pass)}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:2px 12px;margin:6px 0}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0;overflow-wrap:anywhere}
"""


def anchor(c: dict[str, Any]) -> str:
    raw = f"cell-{c['release']}-{c['os']}-{c['arch']}-{c['variant']}"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", raw)


def status_class(c: dict[str, Any]) -> str:
    if rp.static_only(c):
        return "st-static"
    return f"st-{c['status']}"


def render(report: dict[str, Any]) -> str:
    counts = rp.summary(report)
    host = report.get("host") or {}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>llama.cpp compatibility report</title>",
        f"<style>{CSS}</style></head><body>",
        "<header><h1>llama.cpp compatibility report</h1>",
        f'<p class="meta">llama-harness {e(report.get("harness", ""))} · '
        f"{e(report.get('created', ''))} · host {e(host.get('os', '?'))}/"
        f"{e(host.get('arch', '?'))} · "
        + " · ".join(f"{rp.GLYPH[s]} {n} {e(s)}" for s, n in counts.items() if n)
        + "</p></header>",
        *_verdicts(report),
        *_matrix(report),
        *_throughput(report),
        *_comparison(report),
        *_api(report),
        *_binding(report),
        *_cells(report),
        '<footer class="note"><p>What each part means: docs/report.md in llama-harness. '
        "The same data: report.json; for CI test views: report.xml.</p></footer>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _verdicts(report: dict[str, Any]) -> list[str]:
    items = [
        f'<li class="v-{e(v["verdict"])}" data-release="{e(v["release"])}">{v["glyph"]} '
        f"<b>{e(v['label'])}</b>: {e(v['text'])}</li>"
        for v in rp.verdicts(report)
    ]
    return ['<section id="bump"><h2>Can I bump?</h2><ul class="verdicts">', *items, "</ul>"]


def _matrix(report: dict[str, Any]) -> list[str]:
    platforms = rp.platforms_of(report)
    by = {(c["release"], rp.platform_of(c)): c for c in report["cells"]}
    out = [
        '<table class="matrix"><thead><tr><th>release</th>',
        *(f'<th scope="col">{e(p)}</th>' for p in platforms),
        "</tr></thead><tbody>",
    ]
    for rel in rp.releases_of(report):
        row = [f'<tr><th scope="row">{e(rp.release_label(report, rel))}</th>']
        for plat in platforms:
            c = by.get((rel, plat))
            if c is None:
                row.append('<td class="none"></td>')
                continue
            tip = f"{c['status']}: {c.get('reason') or ''}".rstrip(": ")
            word = "static" if status_class(c) == "st-static" else c["status"]
            row.append(
                f'<td class="{status_class(c)}" data-status="{e(c["status"])}" title="{e(tip)}">'
                f'<a href="#{anchor(c)}">{rp.glyph(c)}<span class="word">{e(word)}</span></a></td>'
            )
        out.append("".join(row) + "</tr>")
    out += ["</tbody></table>", f'<p class="legend">{e(rp.LEGEND)}</p></section>']
    return out


# --- throughput ---------------------------------------------------------------------------------


def _throughput(report: dict[str, Any]) -> list[str]:
    out = ['<section id="throughput"><h2>Throughput</h2>']
    cells = [c for c in report["cells"] if rp.bench_stats(c)]
    if not cells:
        return [
            *out,
            '<p class="empty">No throughput figures in this report: the benchmark suite did not '
            "run (or this host could run none of the cells).</p></section>",
        ]
    out.append(
        '<p class="note">Tokens per second, median of the rounds; whiskers span the interquartile '
        "range. Red points: slower than the release before beyond noise, green: faster.</p>"
    )
    ch = rp.changes(report)
    releases = rp.releases_of(report)
    for plat in rp.platforms_of(report):
        mine = {c["release"]: c for c in cells if rp.platform_of(c) == plat}
        if not mine:
            continue
        rels = [r for r in releases if r in mine]
        keys = list(dict.fromkeys(k for r in rels for k in rp.bench_stats(mine[r])))
        out += [f'<div class="platform" data-platform="{e(plat)}"><h3>{e(plat)}</h3>']
        out.append('<div class="plots">')
        for key in keys:
            pts = []
            for r in rels:
                st = rp.bench_stats(mine[r]).get(key)
                verdict = (ch.get((r, plat, key)) or {}).get("verdict")
                pts.append((rp.release_label(report, r), st, verdict))
            out.append(f"<figure>{chart(key, pts)}</figure>")
        out.append("</div>")
        out += _bench_table(report, plat, rels, mine, keys, ch)
        out.append("</div>")
    return [*out, "</section>"]


def _bench_table(
    report: dict[str, Any],
    plat: str,
    rels: list[str],
    mine: dict[str, dict[str, Any]],
    keys: list[str],
    ch: dict[tuple[str, str, str], dict[str, Any]],
) -> list[str]:
    out = [
        '<table class="bench"><thead><tr><th>release</th>',
        *(f"<th>{e(k)} t/s</th>" for k in keys),
        "</tr></thead><tbody>",
    ]
    for r in rels:
        st = rp.bench_stats(mine[r])
        row = [f"<tr><th>{e(rp.release_label(report, r))}</th>"]
        for k in keys:
            s = st.get(k)
            if s is None:
                row.append("<td></td>")
                continue
            c = ch.get((r, plat, k))
            extra = [
                f"{label} {fmt(n)}"
                for kind, label, fmt in (
                    ("native_ratio", "ours ÷ native", lambda x: f"{x:.2f}"),
                    ("llama_bench", "llama-bench", fmt_rate),
                )
                if (n := rp.bench_extra(mine[r], kind, k)) is not None
            ]
            iqr = as_number(s.get("iqr"))
            rounds = s.get("rounds")
            row.append(
                f'<td class="v-{e(str((c or {}).get("verdict", "")).replace(" ", "-"))}">'
                f"<b>{e(fmt_rate(s.get('median')))}</b>"
                + (f" ±{e(fmt_rate(iqr))}" if iqr is not None else "")
                + (f' <span class="note">×{e(rounds)}</span>' if rounds is not None else "")
                + (f"<br>{e(rp.change_text(c))} vs {e(c.get('previous', ''))}" if c else "")
                + (f'<br><span class="note">{e(", ".join(extra))}</span>' if extra else "")
                + "</td>"
            )
        out.append("".join(row) + "</tr>")
    return [*out, "</tbody></table>"]


# --- comparison, API, cells ---------------------------------------------------------------------


def _comparison(report: dict[str, Any]) -> list[str]:
    entries = [x for x in report.get("comparison") or [] if isinstance(x, dict)]
    if not entries:
        return []
    rows = [
        f'<tr class="v-{e(str(x.get("verdict", "")).replace(" ", "-"))}">'
        f"<td>{e(x.get('release', ''))}</td><td>{e(rp.vs_text(x))}</td>"
        f"<td>{e(x.get('cell', ''))}</td><td>{e(rp.test_text(x))}</td>"
        f"<td>{e(percent(x.get('change')))}</td>"
        f"<td>{e(percent(x.get('noise'), sign=False))}</td>"
        f"<td>{rp.PERF_GLYPH.get(str(x.get('verdict')), '')} {e(rp.verdict_text(x))}</td></tr>"
        for x in entries
    ]
    return [
        '<section id="comparison"><h2>Throughput changes</h2><table class="comparison"><thead>'
        "<tr><th>release</th><th>vs</th><th>cell</th><th>test</th><th>change</th>"
        "<th>noise</th><th>verdict</th></tr></thead><tbody>",
        *rows,
        "</tbody></table></section>",
    ]


def _api(report: dict[str, Any]) -> list[str]:
    diffs = report.get("api_diffs") or []
    out = ['<section id="api"><h2>API changes</h2>']
    if not diffs:
        return [
            *out,
            '<p class="empty">No API diff: fewer than two headers were read.</p></section>',
        ]
    for d in diffs:
        diff = d.get("diff") or {}
        out.append(
            f"<details open><summary>{e(d.get('old'))} → {e(d.get('new'))}: "
            f"{e(d.get('summary', ''))}</summary>"
        )
        out += _names("functions added", diff.get("functions_added"))
        out += _names("functions removed", diff.get("functions_removed"))
        changed = diff.get("functions_changed") or []
        if changed:
            out.append("<p>functions changed:</p><ul>")
            out += [
                f"<li><code>{e(f.get('name'))}</code>: {e('; '.join(f.get('what') or []))}</li>"
                for f in changed
            ]
            out.append("</ul>")
        out += _names("structs added", diff.get("structs_added"))
        out += _names("structs removed", diff.get("structs_removed"))
        for s in diff.get("structs_changed") or []:
            out.append(f"<p>struct <code>{e(s.get('name'))}</code>: {e(_struct_text(s))}</p>")
        out += _names("enums added", diff.get("enums_added"))
        out += _names("enums removed", diff.get("enums_removed"))
        for en in diff.get("enums_changed") or []:
            bits = [f"+{k}" for k in en.get("added") or {}] + [
                f"−{k}" for k in en.get("removed") or {}
            ]
            bits += [
                f"{c.get('name')} {c.get('old')} → {c.get('new')}" for c in en.get("changed") or []
            ]
            out.append(f"<p>enum <code>{e(en.get('name'))}</code>: {e(', '.join(bits))}</p>")
        out.append("</details>")
    return [*out, "</section>"]


def _binding(report: dict[str, Any]) -> list[str]:
    """matrix.yaml's `binding:`: its declarations against each release (harness.binding)."""
    b = report.get("binding")
    if not b:
        return []
    out = [
        '<section id="binding"><h2>Your binding</h2>',
        f"<p><strong>{e(b.get('name'))}</strong> (<code>{e(b.get('source'))}</code>)</p>",
    ]
    for r in b.get("releases") or []:
        ok = r.get("verdict") == "compatible"
        breaks = r.get("breaks") or []
        out.append(
            f"<details{'' if ok else ' open'}><summary>{rp.GLYPH['pass' if ok else 'fail']} "
            f"<strong>{e(r.get('release'))}</strong>: {e(r.get('verdict'))} "
            f"({e(r.get('functions_checked'))} functions, {e(r.get('structs_checked'))} structs "
            f"checked{f', {len(breaks)} breaks' if breaks else ''})</summary>"
        )
        if breaks:
            out += ["<ul>", *(f"<li><code>{e(x)}</code></li>" for x in breaks), "</ul>"]
        out.append("</details>")
    return [*out, "</section>"]


def _names(label: str, names: Iterable[str] | None) -> list[str]:
    names = list(names or [])
    if not names:
        return []
    return [f"<p>{e(label)}: " + ", ".join(f"<code>{e(n)}</code>" for n in names) + "</p>"]


def _struct_text(s: dict[str, Any]) -> str:
    parts = []
    if isinstance(s.get("size"), dict):
        parts.append(f"size {s['size'].get('old')} → {s['size'].get('new')} bytes")
    if s.get("fields_added"):
        parts.append("fields added " + ", ".join(map(str, s["fields_added"])))
    if s.get("fields_removed"):
        parts.append("fields removed " + ", ".join(map(str, s["fields_removed"])))
    if s.get("fields_moved"):
        parts.append(
            "moved "
            + ", ".join(
                f"{m.get('field')} @{m.get('old')}→{m.get('new')}" for m in s["fields_moved"]
            )
        )
    if s.get("fields_retyped"):
        parts.append(
            "retyped "
            + ", ".join(
                f"{m.get('field')} {m.get('old')} → {m.get('new')}" for m in s["fields_retyped"]
            )
        )
    return "; ".join(parts) or "changed"


def _cells(report: dict[str, Any]) -> list[str]:
    out = ['<section id="cells"><h2>Cells</h2>', '<p class="note">Failed cells are open.</p>']
    for c in report["cells"]:
        out += _cell(c)
    return [*out, "</section>"]


def _cell(c: dict[str, Any]) -> list[str]:
    is_open = " open" if c["status"] in rp.FAILED else ""
    reason = c.get("reason") or ""
    out = [
        f'<details class="cell {status_class(c)}" id="{anchor(c)}" '
        f'data-status="{e(c["status"])}"{is_open}>',
        f"<summary>{rp.glyph(c)} {e(c['release'])} {e(rp.platform_of(c))}: {e(c['status'])}"
        + (f" — {e(reason)}" if reason else "")
        + "</summary>",
    ]
    facts = {
        "build": c.get("build"),
        "asset": c.get("asset"),
        "source": c.get("source"),
        "digest": c.get("digest"),
        "scope": "static checks only"
        if c.get("scope") == "static"
        else "ran here"
        if c.get("facts") or any(not k.startswith("static.") for k in c.get("checks") or {})
        else None,
        "seconds": ", ".join(f"{k} {v}" for k, v in (c.get("seconds") or {}).items()),
        "devices": ", ".join(map(str, c.get("devices") or [])),
    }
    api = c.get("api") or {}
    for k in (
        "header",
        "functions",
        "structs",
        "backends",
        "manifest",
        "diff_vs_previous",
        "error",
    ):
        if api.get(k) not in (None, "", []):
            facts[f"api {k}"] = api[k]
    if api.get("missing_symbols"):
        facts["api missing symbols"] = f"{len(api['missing_symbols'])}: " + ", ".join(
            map(str, api["missing_symbols"])
        )
    for k, v in (c.get("static") or {}).items():
        if v not in (None, "", [], {}):
            facts[f"static {k}"] = (
                ", ".join(f"{a}: {b}" for a, b in v.items())
                if isinstance(v, dict)
                else ", ".join(map(str, v))
                if isinstance(v, list)
                else v
            )
    if c.get("cpu_variants"):
        facts["CPU variants run"] = ", ".join(
            f"{k} {v.get('status')}" for k, v in c["cpu_variants"].items() if isinstance(v, dict)
        )
    out.append('<dl class="facts">')
    out += [f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts.items() if v not in (None, "")]
    out.append("</dl>")
    checks = c.get("checks") or {}
    if checks:
        out.append(
            '<table class="checks"><thead><tr><th>check</th><th>status</th><th>message</th>'
            "<th>s</th></tr></thead><tbody>"
        )
        for name, chk in checks.items():
            st = str(chk.get("status", ""))
            out.append(
                f'<tr class="st-{e(st)}"><td><code>{e(name)}</code></td><td>'
                f"{rp.GLYPH.get(st, '')} {e(st)}</td><td>{e(chk.get('message', ''))}</td>"
                f"<td>{e(chk.get('seconds', ''))}</td></tr>"
            )
        out.append("</tbody></table>")
    tail = c.get("log_tail") or []
    if tail:
        out.append(
            f"<details{is_open}><summary>log tail ({len(tail)} lines)</summary>"
            f'<pre class="log">{e(chr(10).join(map(str, tail)))}</pre></details>'
        )
    return [*out, "</details>"]
