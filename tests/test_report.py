"""The report in every form it is written: report.json against its schema, report.md (first screen
answers "can I bump?", capped for a step summary), report.xml against a JUnit XSD, and report.html
rendered by a real browser (headless Chromium), checked on its DOM and on its pixels.

Reports come from synthetic cells (every status, static-only cells, a crash with its log, hostile
strings, bench data present and absent) and from a real run on two npm builds.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from harness.report import html as report_html
from harness.report import junit
from harness.report import model as report
from harness.report.markdown import MD_LIMIT, markdown
from harness.report.publish import write
from tests.conftest import ROOT

HOSTILE = "<script>alert('x')</script> & \"quotes\" <img src=x onerror=alert(1)>"
XSD = Path(__file__).parent / "data" / "junit.xsd"


# --- synthetic reports --------------------------------------------------------------------------


def check(status: str = "pass", message: str = "ok", seconds: float = 0.001) -> dict[str, Any]:
    return {"status": status, "message": message, "seconds": seconds}


def static_checks(fail: str | None = None) -> dict[str, Any]:
    names = ["libraries_present", "exports", "architecture", "glibc", "macos_min"]
    out = {f"static.{n}": {"status": "pass", "message": f"{n} fine"} for n in names}
    out["static.macos_min"] = {"status": "skip", "message": "only Mach-O builds"}
    if fail:
        out[f"static.{fail}"] = {"status": "fail", "message": f"{fail}: {HOSTILE}"}
    return out


def stats(median: float, iqr: float, rounds: int = 10) -> dict[str, Any]:
    return {"median": median, "iqr": iqr, "rounds": rounds}


def bench(pp: float, tg: float) -> dict[str, Any]:
    return {
        "tiny": {"pp64": stats(pp, pp * 0.02), "tg16": stats(tg, tg * 0.03)},
        "small-f16": {"pp64": stats(pp / 10, pp / 400), "tg16": stats(tg / 10, tg / 300)},
        "native_ratio": {"small-f16": {"pp64": 0.97, "tg16": 0.96}},
        "llama_bench": {"small-f16": {"pp64": {"median": pp / 9.5}}},
        "machine_info": {"cpu": "test"},
    }


def cell(
    release: str, os_: str, variant: str, status: str, build: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "release": release,
        "build": build or release,
        "os": os_,
        "arch": "x64",
        "variant": variant,
        "asset": f"llama-{release}-bin-{os_}-{variant}-x64.zip",
        "digest": "sha256:" + "ab" * 32,
        "source": "github",
        "status": status,
        "reason": "",
        "checks": {},
        "api": {"functions": 200, "structs": 40, "header": f"{build or release} llama.h"},
        "bench": {},
        **extra,
    }


def ran(pp: float | None, tg: float | None, **checks: dict[str, Any]) -> dict[str, Any]:
    """What a cell that ran here carries."""
    names = ["model_load", "tokenize", "greedy", "state_roundtrip"]
    return {
        "checks": {**{n: check() for n in names}, **checks, **static_checks()},
        "facts": {"greedy": [1, 2, 3, 4]},
        "log_tail": ["llama_model_load: loaded", "done"],
        "seconds": {"wall": 0.3},
        "bench": bench(pp, tg) if pp and tg else {},
    }


def synthetic(with_bench: bool = True) -> dict[str, Any]:
    """Three releases × three platforms, every status, one crash, hostile strings everywhere."""
    perf = {"b6000": (1000.0, 100.0), "b6673": (1350.0, 101.0), "latest": (1340.0, 88.0)}

    def runs(rel: str, **checks: dict[str, Any]) -> dict[str, Any]:
        pp, tg = perf[rel] if with_bench else (None, None)
        return ran(pp, tg, **checks)

    cells = [
        cell("b6000", "linux", "cpu", "pass", **runs("b6000")),
        cell(
            "b6000",
            "linux",
            "vulkan",
            "skip",
            reason="ggml accepted no vulkan device here (ggml_vulkan: No devices found)",
            **{**runs("b6000"), "bench": {}},
        ),
        cell(
            "b6000",
            "windows",
            "cpu",
            "pass",
            scope="static",
            reason="static checks only: built for windows/x64; this host is linux/x64",
            checks=static_checks(),
            static={"cpu_variants": ["haswell", "zen4"], "exports_missing": []},
        ),
        cell("b6673", "linux", "cpu", "pass", **runs("b6673")),
        cell(
            "b6673",
            "linux",
            "vulkan",
            "crash",
            reason="SIGSEGV in check greedy",
            checks={"model_load": check(), "tokenize": check()},
            log_tail=["ggml_vulkan: found 1 device", HOSTILE, "bad byte \x00\x07 here"],
            seconds={"wall": 1.5},
        ),
        cell(
            "b6673",
            "windows",
            "cpu",
            "fail",
            scope="static",
            reason=f"exports: {HOSTILE}",
            checks=static_checks(fail="exports"),
        ),
        cell(
            "latest",
            "linux",
            "cpu",
            "pass",
            build="b7000",
            **runs("latest", manifest=check(message="binding.yaml: compatible")),
        ),
        cell(
            "latest",
            "linux",
            "vulkan",
            "error",
            build="b7000",
            reason="download failed: HTTP 502 from the mirror",
            checks={},
            api={},
        ),
        cell(
            "latest",
            "windows",
            "cpu",
            "fail",
            build="b7000",
            scope="static",
            reason=f"binding.yaml breaks: llama_model_params.use_mmap: removed {HOSTILE}",
            checks={
                **static_checks(),
                "manifest": check("fail", f"binding.yaml breaks: {HOSTILE}", 0.0),
            },
        ),
    ]
    diffs = [
        {
            "old": "b6000",
            "new": "b6673",
            "summary": "+1 functions; 1 structs changed",
            "diff": {
                "functions_added": [f"llama_new_{HOSTILE}"],
                "functions_changed": [{"name": "llama_decode", "what": ["return type int → bool"]}],
                "structs_changed": [
                    {
                        "name": "llama_context_params",
                        "size": {"old": 120, "new": 128},
                        "fields_added": ["flash_attn_type"],
                        "fields_removed": [],
                        "fields_moved": [{"field": "n_threads", "old": 16, "new": 20}],
                        "fields_retyped": [],
                    }
                ],
                "enums_changed": [
                    {"name": "llama_ftype", "added": {"Q1": 40}, "removed": {}, "changed": []}
                ],
            },
        },
        {"old": "b6673", "new": "b7000", "summary": "no changes", "diff": {}},
    ]
    extra: dict[str, Any] = {"model": "/cache/tiny-1.gguf", "api_diffs": diffs}
    if with_bench:
        extra["comparison"] = [
            {
                "release": "b6673",
                "previous": "b6000",
                "cell": "linux-x64-cpu",
                "test": "tiny/pp64",
                "change": 0.35,
                "noise": 0.03,
                "verdict": "faster",
            },
            {
                "release": "b6673",
                "previous": "b6000",
                "cell": "linux-x64-cpu",
                "test": "tiny/tg16",
                "change": 0.01,
                "noise": 0.04,
                "verdict": "within noise",
            },
            {
                "release": "latest",
                "previous": "b6673",
                "cell": "linux-x64-cpu",
                "test": "tiny/tg16",
                "change": -0.129,
                "noise": 0.04,
                "verdict": "slower",
            },
        ]
    return report.build(cells, extra)


@pytest.fixture(params=[True, False], ids=["bench", "no-bench"])
def rep(request: pytest.FixtureRequest) -> dict[str, Any]:
    return synthetic(with_bench=request.param)


# --- report.json --------------------------------------------------------------------------------


def test_schema_is_a_valid_schema_and_synthetic_reports_validate(rep: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(report.schema())
    report.validate(rep)
    report.validate(json.loads(json.dumps(rep)))  # what report.json holds


@pytest.mark.parametrize(
    "doctor",
    [
        lambda r: r["cells"][0].update(status="passed"),
        lambda r: r["cells"][0].pop("release"),
        lambda r: r["cells"][0]["checks"]["greedy"].update(status="ok"),
        lambda r: r["cells"][0]["bench"]["tiny"]["pp64"].update(median="fast"),
        lambda r: r["cells"][0].update(digest="deadbeef"),
        lambda r: r["comparison"][0].update(verdict="better"),
        lambda r: r.pop("created"),
    ],
    ids=["status", "release", "check", "bench-median", "digest", "verdict", "created"],
)
def test_schema_rejects_a_broken_report(doctor: Any) -> None:
    bad = synthetic()
    doctor(bad)
    with pytest.raises(jsonschema.ValidationError):
        report.validate(bad)


# --- report.md ----------------------------------------------------------------------------------


def test_markdown_first_screen_answers_can_i_bump() -> None:
    md = markdown(synthetic())
    head = md.split("## Releases")[0]
    assert "## Can I bump?" in head
    verdicts = {ln.split("**")[1]: ln for ln in head.splitlines() if ln.startswith("- ")}
    assert verdicts["b6000"] == (
        "- ✅ **b6000**: bump — 2 of 3 platforms pass (1 ran here, 1 static checks only); "
        "1 not checked: linux/x64/vulkan"
    )
    b6673 = verdicts["b6673"]
    assert b6673.startswith("- ❌") and "don't bump — 2 of 3 platforms fail" in b6673
    assert "linux/x64/vulkan (crash: SIGSEGV in check greedy)" in b6673
    assert "windows/x64/cpu (static.exports)" in b6673
    latest = verdicts["latest (b7000)"]
    assert "don't bump" in latest and "🐢 slower: linux-x64-cpu tiny/tg16 −12.9 %" in latest
    # the matrix, in the format CI scripts grep
    assert "| release | linux/x64/cpu | linux/x64/vulkan | windows/x64/cpu |" in head
    assert "| b6000 | ✅ | ⏭️ | ☑️ |" in head
    assert "| b6673 | ✅ | 💥 | ❌ |" in head
    assert "| latest (b7000) | ✅ | ⚠️ | ❌ |" in head
    # the sections other tools look for
    for title in ("## Problems", "## Conformance", "## API changes", "## Static checks"):
        assert title in md
    assert "## Skipped" in md and "ggml accepted no vulkan device" in md


def test_markdown_release_sections_group_failures_and_show_throughput() -> None:
    md = markdown(synthetic())
    sections = md.split("### ")
    b6673 = next(s for s in sections if s.startswith("b6673"))
    assert "- API vs b6000: +1 functions; 1 structs changed" in b6673
    assert "- `static.exports` fails on windows/x64/cpu: exports: &lt;script&gt;" in b6673
    assert (
        "💥 linux/x64/vulkan crash: SIGSEGV in check greedy (last log line: `bad byte here`)"
        in b6673
    )
    # the throughput table: median ± IQR and the comparison's change and verdict
    row = next(ln for ln in b6673.splitlines() if ln.startswith("| linux/x64/cpu |"))
    assert "1,350 ±27 (+35.0 % ±3.0 ⚡)" in row
    assert "101 ±3.03 (+1.0 % ±4.0 ≈)" in row
    assert "ours÷native small-f16/pp64 0.97" in row and "llama-bench small-f16/pp64 142" in row
    # no comparison entry for small-f16: the plain change against the release before
    assert "135 ±3.38 (+35.0 %)" in row
    assert "## Throughput changes" in md and "| latest | b6673 | linux-x64-cpu | tiny/tg16 |" in md


def test_comparison_entries_match_cells_however_they_name_them() -> None:
    rep = synthetic()
    rep["comparison"] = [
        {  # the build instead of `latest`, the platform with slashes, model and test apart
            "release": "b7000",
            "previous": "baseline",
            "cell": "linux/x64/cpu",
            "model": "tiny",
            "test": "tg16",
            "change": -0.2,
            "noise": 0.02,
            "verdict": "slower",
        },
        {  # a bare test two models have: ambiguous, so not attached to either
            "release": "b6673",
            "cell": "b6673-linux-x64-cpu",
            "test": "pp64",
            "change": 0.5,
            "verdict": "faster",
        },
    ]
    ch = report.changes(rep)
    assert ch[("latest", "linux/x64/cpu", "tiny/tg16")]["previous"] == "baseline"
    assert "verdict" not in ch[("b6673", "linux/x64/cpu", "tiny/pp64")]  # the plain change
    assert "🐢 slower: linux/x64/cpu tiny tg16 −20.0 %" in markdown(rep)
    page = report_html.render(rep)
    assert page.count('class="point slower"') == 1 and 'class="point faster"' not in page
    assert "vs baseline" in page


def test_markdown_without_bench_or_comparison() -> None:
    md = markdown(synthetic(with_bench=False))
    assert "t/s" not in md and "## Throughput changes" not in md and "🐢" not in md
    assert "| b6673 | ✅ | 💥 | ❌ |" in md


def test_markdown_never_carries_raw_html() -> None:
    md = markdown(synthetic())
    assert "<script" not in md and "<img" not in md
    assert "&lt;script&gt;" in md


def test_markdown_is_capped_for_the_step_summary() -> None:
    big = synthetic()
    base = big["cells"]
    big["cells"] = []
    for i in range(400):  # 400 releases: far past any step summary
        for c in base:
            c = copy.deepcopy(c)
            c["release"] = c["build"] = f"b{7000 + i}"
            c["reason"] = (c["reason"] + " ") * 3
            big["cells"].append(c)
    full = markdown(big, limit=10**9)
    md = markdown(big)
    assert len(full.encode()) > MD_LIMIT
    assert len(md.encode()) <= MD_LIMIT
    assert md.startswith(full[:2000])  # the first screen is kept whole
    assert "✂️ Cut here" in md.splitlines()[-1] and "report.html" in md.splitlines()[-1]
    assert "✂️" not in markdown(synthetic())  # a small report is never cut


# --- report.xml ---------------------------------------------------------------------------------


def expected_cases(rep: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per release: how many testcases of each kind the JUnit file must hold."""
    out: dict[str, dict[str, int]] = {}
    for c in rep["cells"]:
        n = out.setdefault(c["release"], {"tests": 0, "failures": 0, "errors": 0, "skipped": 0})
        for chk in c["checks"].values():
            n["tests"] += 1
            key = {"fail": "failures", "error": "errors", "skip": "skipped"}.get(chk["status"])
            if key:
                n[key] += 1
        if c["status"] in ("crash", "error", "skip"):
            n["tests"] += 1
            n["errors" if c["status"] != "skip" else "skipped"] += 1
    return out


def test_junit_counts_and_outcomes(rep: dict[str, Any]) -> None:
    root = ET.fromstring(junit.render(rep))
    assert root.tag == "testsuites"
    want = expected_cases(rep)
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["b6000", "b6673", "latest"]
    for name, s in suites.items():
        got = {k: int(s.get(k, "-1")) for k in ("tests", "failures", "errors", "skipped")}
        assert got == want[name], name
        cases = s.findall("testcase")
        assert len(cases) == got["tests"]
        assert sum(len(c.findall("failure")) for c in cases) == got["failures"]
        assert sum(len(c.findall("error")) for c in cases) == got["errors"]
        assert sum(len(c.findall("skipped")) for c in cases) == got["skipped"]
    assert int(root.get("tests", "0")) == sum(w["tests"] for w in want.values())
    by = {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}
    crash = by[("b6673.linux-x64-vulkan", "run")].find("error")
    assert crash is not None and crash.get("message") == "crash: SIGSEGV in check greedy"
    assert HOSTILE in (crash.text or "") and "log tail:" in (crash.text or "")
    assert "\x00" not in (crash.text or "")  # XML 1.0 cannot carry it
    failure = by[("b6673.windows-x64-cpu", "static.exports")].find("failure")
    assert failure is not None and HOSTILE in (failure.get("message") or "")
    skipped = by[("b6000.linux-x64-vulkan", "run")].find("skipped")
    assert skipped is not None and "no vulkan device" in (skipped.get("message") or "")
    error = by[("latest.linux-x64-vulkan", "run")].find("error")
    assert error is not None and "HTTP 502" in (error.get("message") or "")
    assert ("b6000.linux-x64-cpu", "run") not in by  # a passing cell is told by its checks
    props = {p.get("name"): p.get("value") for p in suites["latest"].iter("property")}
    assert props["build"] == "b7000"


def test_junit_validates_against_the_xsd(rep: dict[str, Any]) -> None:
    xmlschema = pytest.importorskip("xmlschema", reason="pip install xmlschema (the test extra)")
    schema = xmlschema.XMLSchema(str(XSD))
    schema.validate(junit.render(rep))
    # and the XSD is not a rubber stamp
    bad = junit.render(rep).replace('classname="b6000.linux-x64-cpu"', "", 1)
    assert not schema.is_valid(bad)


# --- report.html (as text) ----------------------------------------------------------------------


def test_html_escapes_everything_and_fetches_nothing(rep: dict[str, Any]) -> None:
    page = report_html.render(rep)
    dom = Dom(page)
    tags = {t for t, _, _ in dom.elements}
    assert not tags & {"script", "img", "link", "iframe", "object", "embed"}
    for _, attrs, _ in dom.elements:
        assert not {"src", "onerror", "onload"} & set(attrs)
        assert attrs.get("href", "#").startswith("#")  # in-page anchors only
    assert "url(" not in page.split("</style>")[0] and "@import" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert HOSTILE in "".join(dom.text)  # every hostile string survives, as text
    assert "\x00" not in page


def test_html_shows_plots_only_with_bench_data() -> None:
    with_bench = report_html.render(synthetic())
    without = report_html.render(synthetic(with_bench=False))
    assert with_bench.count('<svg class="plot"') == 4  # linux/x64/cpu × 4 model/test series
    assert 'class="empty"' not in with_bench.split('id="api"')[0]
    assert '<svg class="plot"' not in without and "No throughput figures" in without


def test_write_writes_every_file_and_the_step_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    rep = synthetic()
    for c in rep["cells"]:
        c["reason"] += " undecodable \udcff byte"  # a lone surrogate cannot be UTF-8
    write(rep, tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["report.html", "report.json", "report.md", "report.xml"]
    report.validate(json.loads((tmp_path / "out" / "report.json").read_text()))
    ET.parse(tmp_path / "out" / "report.xml")
    assert summary.read_text(encoding="utf-8").startswith("# llama.cpp compatibility report")


# --- report.html in a real browser --------------------------------------------------------------


def chromium() -> str:
    found = next(
        (
            p
            for n in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
            if (p := shutil.which(n))
        ),
        None,
    )
    if found is None:
        pytest.skip("no chromium on the PATH (Debian: apt-get install chromium)")
    return found


def browse(page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp / 'profile'}",
        *args,
        page.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


class Dom(HTMLParser):
    """The elements of a dumped DOM: (tag, attributes, classes), and each element's text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str], set[str]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.elements.append((tag, a, set(a.get("class", "").split())))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, cls: str | None = None) -> list[dict[str, str]]:
        return [a for t, a, c in self.elements if t == tag and (cls is None or cls in c)]


def test_html_renders_in_chromium_with_matrix_and_plots(tmp_path: Path) -> None:
    rep = synthetic()
    page = tmp_path / "report.html"
    page.write_text(report_html.render(rep), encoding="utf-8")
    dom = Dom(browse(page, tmp_path, "--dump-dom").stdout)
    assert not dom.find("script") and not dom.find("img")
    cells = [a for a in dom.find("td") if "data-status" in a]
    assert len(cells) == len(rep["cells"]) == 9
    statuses = sorted(a["data-status"] for a in cells)
    assert statuses == sorted(c["status"] for c in rep["cells"])
    classes = {a["class"] for a in cells}
    assert {"st-pass", "st-static", "st-fail", "st-crash", "st-error", "st-skip"} <= classes
    assert len(dom.find("th", None)) >= 3 + 3  # platforms and releases are headed
    verdicts = dom.find("li")
    assert [v.get("data-release") for v in verdicts[:3]] == ["b6000", "b6673", "latest"]
    assert [v["class"] for v in verdicts[:3]] == ["v-bump", "v-dont", "v-dont"]
    # throughput: one plot per model/test on linux/x64/cpu, a point and whisker per release
    assert len(dom.find("svg", "plot")) == 4
    assert len(dom.find("circle", "point")) == 4 * 3
    assert len(dom.find("circle", "slower")) == 1 and len(dom.find("circle", "faster")) == 1
    assert len(dom.find("line", "whisker")) == 4 * 3 * 3
    assert len(dom.find("polyline", "series")) == 4
    # cells: one collapsible block each; the failed ones open
    blocks = dom.find("details", "cell")
    assert len(blocks) == 9
    assert sum("open" in b for b in blocks) == 4
    text = "".join(dom.text)
    assert HOSTILE in text  # shown as text, never run


def test_html_empty_state_in_chromium(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(report_html.render(synthetic(with_bench=False)), encoding="utf-8")
    dom = Dom(browse(page, tmp_path, "--dump-dom").stdout)
    assert not dom.find("svg", "plot")
    assert dom.find("p", "empty")
    assert len([a for a in dom.find("td") if "data-status" in a]) == 9


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit, non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", b""
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            ihdr = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    assert depth == 8 and interlace == 0 and colour in (2, 6)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def test_html_screenshot_shows_the_coloured_matrix(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(report_html.render(synthetic()), encoding="utf-8")
    shot = tmp_path / "shot.png"
    browse(page, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000")
    data = shot.read_bytes()
    assert len(data) > 20_000
    width, height, rows = png_pixels(data)
    assert (width, height) == (1280, 2000)
    bpp = len(rows[0]) // width
    seen: dict[tuple[int, int, int], int] = {}
    for row in rows[::2]:
        for x in range(0, len(row), bpp * 2):
            px = (row[x], row[x + 1], row[x + 2])
            seen[px] = seen.get(px, 0) + 1
    assert len(seen) > 50  # text, tables and plots, not a blank page

    def near(rgb: tuple[int, int, int]) -> int:
        return sum(
            n
            for px, n in seen.items()
            if all(abs(a - b) <= 3 for a, b in zip(px, rgb, strict=True))
        )

    # the pass / fail / crash fills of the matrix and the verdicts (CSS --pass, --fail, --crash)
    assert near((0xD8, 0xF3, 0xDC)) > 200
    assert near((0xFC, 0xD5, 0xD2)) > 200
    assert near((0xEC, 0xD5, 0xF2)) > 50


# --- a real run ---------------------------------------------------------------------------------


@pytest.mark.xdist_group("real-builds")
def test_a_real_run_writes_valid_reports(tmp_path: Path) -> None:
    from tests.realbuilds import CACHE, provision

    provision(["b8095", "b10361"])  # skips cleanly without npm
    (tmp_path / "matrix.yaml").write_text(
        "sources: [npm]\nreleases: [b8095, b10361]\n"
        "platforms:\n  - {os: linux, arch: x64}\n  - {os: linux, arch: arm64}\n"
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "-q",
            "--cache-dir",
            str(CACHE),
            "run",
            "--no-cpu-variants",
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((out / "report.json").read_text())
    report.validate(rep)
    md = (out / "report.md").read_text()
    assert "- ✅ **b10361**: bump — both platforms pass (1 ran here, 1 static checks only)" in md
    assert "| b10361 | ✅ | ☑️ |" in md
    xmlschema = pytest.importorskip("xmlschema")
    xmlschema.XMLSchema(str(XSD)).validate(str(out / "report.xml"))
    root = ET.parse(out / "report.xml").getroot()
    n_checks = sum(len(c["checks"]) for c in rep["cells"])
    assert int(root.get("tests", "0")) == n_checks and root.get("failures") == "0"
    page = (out / "report.html").read_text()
    assert "No throughput figures" in page or '<svg class="plot"' in page
    if shutil.which("chromium"):
        dom = Dom(browse(out / "report.html", tmp_path, "--dump-dom").stdout)
        assert len([a for a in dom.find("td") if "data-status" in a]) == 4


# --- matrix.yaml's binding: (issue 13) -----------------------------------------------------------


def _verdict(release: str, breaks: list[str]) -> dict[str, Any]:
    return {
        "release": release,
        "build": release,
        "verdict": "breaks" if breaks else "compatible",
        "breaks": breaks,
        "warnings": [],
        "functions_checked": 12,
        "structs_checked": 3,
        "unmapped": [],
    }


def test_binding_section_merges_renders_and_escapes(tmp_path: Path) -> None:
    """Shards that checked one binding on different releases merge into one section; report.md
    and report.html both show it, a build's text escaped."""
    bad = "llama_decode: binding passes 3 argument(s) <script>x</script>, b6673 takes 2"
    shards = []
    for i, verdict in enumerate([_verdict("b6673", [bad]), _verdict("b10361", [])]):
        one = synthetic(with_bench=False)
        one["binding"] = {"name": "mine <b>", "source": "./mine.py", "releases": [verdict]}
        (tmp_path / f"s{i}").mkdir()
        (tmp_path / f"s{i}" / "report.json").write_text(json.dumps(one))
        shards.append(tmp_path / f"s{i}")
    merged = report.merge(shards)
    report.validate(merged)
    assert [r["release"] for r in merged["binding"]["releases"]] == ["b6673", "b10361"]
    md = markdown(merged)
    assert "## Your binding" in md and "**mine &lt;b&gt;** (`./mine.py`)" in md
    assert "- ❌ **b6673**: breaks (12 functions, 3 structs checked, 1 break)" in md
    assert "- ✅ **b10361**: compatible (12 functions, 3 structs checked)" in md
    assert f"  - `{bad}`" in md  # a code span: shown as written, never read as HTML
    page = report_html.render(merged)
    assert '<section id="binding"><h2>Your binding</h2>' in page
    assert "<script" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
