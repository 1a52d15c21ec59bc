"""Writes a report in every format: report.json, report.md, report.html, report.xml, and the
Markdown again into `$GITHUB_STEP_SUMMARY` when CI sets it. The one module that knows all formats,
so that each rendering knows only the report (`model`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from harness.cache.atomic import write_text
from harness.report import html, junit
from harness.report.markdown import markdown
from harness.report.text import encodable


def write(report: dict[str, Any], out: Path) -> None:
    """report.json, report.md, report.html and report.xml in `out`, each replaced atomically;
    the Markdown is also appended to `$GITHUB_STEP_SUMMARY` when that is set."""
    md = markdown(report)
    for name, text in (
        ("report.json", json.dumps(report, indent=1)),
        ("report.md", md),
        ("report.html", html.render(report)),
        ("report.xml", junit.render(report)),
    ):
        write_text(out / name, encodable(text))
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        with open(summary_file, "a", encoding="utf-8") as f:
            f.write(encodable(md) + "\n")
