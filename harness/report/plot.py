"""The throughput plots of report.html: hand-written inline SVG (no script, nothing fetched, no
plotting library to install for a CI job), one line chart per platform and benchmark."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from harness.report.text import as_number, fmt_rate
from harness.report.text import html_text as e

CHART_W, CHART_H = 380, 220
PAD_L, PAD_R, PAD_T, PAD_B = 56, 14, 22, 58


def chart(title: str, points: Sequence[tuple[str, dict[str, Any] | None, Any]]) -> str:
    """A hand-written SVG line chart: one x position per release, the median as a point, the
    interquartile range (q1..q3 when given, else median ± iqr/2) as a whisker."""
    vals: list[tuple[float, float, float] | None] = []
    for _, st, _ in points:
        if st is None:
            vals.append(None)
            continue
        med = float(st["median"])
        lo, hi = _spread(st, med)
        vals.append((med, lo, hi))
    top = max((v[2] for v in vals if v), default=1.0) or 1.0
    step = _nice_step(top / 4)
    ymax = step * math.ceil(top * 1.08 / step)
    w, h = CHART_W - PAD_L - PAD_R, CHART_H - PAD_T - PAD_B
    n = len(points)

    def x(i: int) -> float:
        return PAD_L + (w * (i + 0.5) / n)

    def y(v: float) -> float:
        return PAD_T + h - h * max(v, 0.0) / ymax

    out = [
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{CHART_W}" '
        f'height="{CHART_H}" viewBox="0 0 {CHART_W} {CHART_H}" role="img" '
        f'aria-label="{e(title)}: tokens per second by release">',
        f'<text x="{PAD_L}" y="14">{e(title)} · t/s</text>',
    ]
    tick = 0.0
    while tick <= ymax + step / 2:
        ty = y(tick)
        out.append(
            f'<line class="grid" x1="{PAD_L}" x2="{PAD_L + w}" y1="{ty:.1f}" y2="{ty:.1f}"/>'
            f'<text x="{PAD_L - 6}" y="{ty + 4:.1f}" text-anchor="end">'
            f"{e(fmt_rate(tick))}</text>"
        )
        tick += step
    out.append(
        f'<line class="axis" x1="{PAD_L}" x2="{PAD_L}" y1="{PAD_T}" y2="{PAD_T + h}"/>'
        f'<line class="axis" x1="{PAD_L}" x2="{PAD_L + w}" y1="{PAD_T + h}" y2="{PAD_T + h}"/>'
    )
    line = " ".join(f"{x(i):.1f},{y(v[0]):.1f}" for i, v in enumerate(vals) if v)
    if line.count(",") > 1:
        out.append(f'<polyline class="series" points="{line}"/>')
    for i, ((label, st, verdict), v) in enumerate(zip(points, vals, strict=True)):
        lx, ly = x(i), PAD_T + h + 12
        out.append(
            f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="end" '
            f'transform="rotate(-35 {lx:.1f} {ly:.1f})">{e(label)}</text>'
        )
        if v is None or st is None:
            continue
        med, lo, hi = v
        cls = f"point {verdict}" if verdict in ("slower", "faster") else "point"
        tip = (
            f"{label}: {fmt_rate(med)} t/s (IQR {fmt_rate(st.get('iqr'))}, "
            f"{st.get('rounds', '?')} rounds)"
        )
        out.append(
            f'<line class="whisker" x1="{lx:.1f}" x2="{lx:.1f}" y1="{y(lo):.1f}" y2="{y(hi):.1f}"/>'
            f'<line class="whisker" x1="{lx - 4:.1f}" x2="{lx + 4:.1f}" y1="{y(lo):.1f}" '
            f'y2="{y(lo):.1f}"/><line class="whisker" x1="{lx - 4:.1f}" x2="{lx + 4:.1f}" '
            f'y1="{y(hi):.1f}" y2="{y(hi):.1f}"/>'
            f'<circle class="{cls}" cx="{lx:.1f}" cy="{y(med):.1f}" r="4">'
            f"<title>{e(tip)}</title></circle>"
        )
    return "".join(out) + "</svg>"


def _spread(st: dict[str, Any], med: float) -> tuple[float, float]:
    q1, q3 = as_number(st.get("q1")), as_number(st.get("q3"))
    if q1 is not None and q3 is not None:
        return q1, q3
    iqr = as_number(st.get("iqr")) or 0.0
    return med - iqr / 2, med + iqr / 2


def _nice_step(raw: float) -> float:
    if raw <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
