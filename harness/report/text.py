"""How every rendering writes a value: numbers, percentages, clipped text, and text that XML and
HTML can carry. Kept apart from `model` so that the renderings share one copy of each rule
(reasons and log lines come from builds we do not control: they must never break a page)."""

from __future__ import annotations

import html
import re
from typing import Any

# characters XML 1.0 forbids (NUL, most C0 controls, lone surrogates, the two non-characters)
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def as_number(v: Any) -> float | None:
    """`v` as a float when it is a real number (not a bool, not NaN), else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        return None
    return float(v)


def percent(v: Any, sign: bool = True) -> str:
    n = as_number(v)
    if n is None:
        return ""
    return f"{n * 100:+.1f} %".replace("-", "−") if sign else f"{abs(n) * 100:.1f} %"


def fmt_rate(v: Any) -> str:
    n = as_number(v)
    if n is None:
        return ""
    return f"{n:,.0f}" if abs(n) >= 100 else f"{n:.3g}"


def clip(s: str, width: int) -> str:
    return s if len(s) <= width else s[: width - 1] + "…"


def plural(n: int, word: str, words: str | None = None) -> str:
    """`1 platform`, `2 platforms` (`words` for an irregular plural)."""
    return f"{n} {word if n == 1 else words or word + 's'}"


def xml_text(s: Any) -> str:
    """Text XML 1.0 (and so HTML) can carry: forbidden characters become U+FFFD. Escaping of
    `<`, `&`, quotes is left to the writer (ElementTree, `html.escape`)."""
    return _XML_BAD.sub("\ufffd", str(s))


def html_text(s: Any) -> str:
    """Text for HTML (and SVG), element or attribute: XML-safe, then escaped."""
    return html.escape(xml_text(s), quote=True)


def encodable(text: str) -> str:
    """Lone surrogates (undecodable bytes let through somewhere) cannot be written as UTF-8."""
    return text.encode("utf-8", "replace").decode("utf-8")
