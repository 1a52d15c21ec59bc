"""`llama-harness` / `python -m harness`: thin commands over the package.

Every failure is one line on stderr and a documented exit code (see harness.errors); a traceback
is shown only with `-v` and only for a bug.

One module on purpose: it is the whole command-line contract (every command, option and exit code
in one place), and each command is a few lines over the package. Imports inside a command are
lazy on purpose, for start-up time: `llama-harness releases` must not pay for numpy, LIEF,
libclang or the report renderers that only `run` needs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from harness import __version__, progress
from harness.cache import maintain
from harness.cache import root as cache_root
from harness.config import matrix
from harness.config.matrix import Cell, Matrix
from harness.errors import EXIT_FAILED, EXIT_OK, ConfigError, HarnessError, SourceError
from harness.library import BUILD, DEFAULT_REPO, LibraryDownloader
from harness.provision import all_platform_cells
from harness.sources import assets, limits

log = logging.getLogger("harness")

EPILOG = """exit codes: 0 all good; 1 some cell failed; 2 usage or configuration error;
3 source error (unreachable, HTTP error, rate limited, asset missing);
4 integrity error (digest mismatch, unsafe archive)"""


def _count(minimum: int) -> Any:
    """An argparse type: an integer of at least `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: must be at least {minimum}")
        return value

    return parse


MAX_TIMEOUT_S = 7 * 24 * 3600.0


def _seconds(text: str) -> float:
    """An argparse type: a finite, positive number of seconds (nan, inf, -1 and 0 are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= MAX_TIMEOUT_S:  # also false for nan
        raise argparse.ArgumentTypeError(
            f"{text!r}: must be more than 0 and at most {MAX_TIMEOUT_S:.0f} seconds"
        )
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"llama-harness: error: {message} (see --help)\n")


def _globals(p: argparse.ArgumentParser, suppress: bool) -> None:
    d = argparse.SUPPRESS if suppress else None
    p.add_argument(
        "--matrix", metavar="PATH", default=d, help="matrix file (default: ./matrix.yaml)"
    )
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        default=d,
        help="cache folder (env LLAMA_HARNESS_CACHE; default: the user cache dir)",
    )
    p.add_argument(
        "--lock-timeout",
        metavar="S",
        default=d,
        help="seconds to wait for a cache entry another process is writing "
        "(env LLAMA_HARNESS_LOCK_TIMEOUT; default 900), then exit 5",
    )
    p.add_argument(
        "--api-url",
        metavar="URL",
        default=d,
        help="GitHub API (env LLAMA_HARNESS_API_URL; default https://api.github.com)",
    )
    p.add_argument(
        "--repo",
        metavar="OWNER/NAME",
        default=d,
        help=f"release repository (default: matrix.yaml's, else {DEFAULT_REPO})",
    )
    p.add_argument("--jobs", metavar="N", type=_count(1), default=d, help="parallel downloads (8)")
    p.add_argument(
        "--source",
        action="append",
        choices=matrix.SOURCES,
        default=d,
        help="where releases come from, in fallback order (repeatable; "
        "default: matrix.yaml's `sources`, else github)",
    )
    p.add_argument(
        "--mirror",
        metavar="URL|DIR",
        default=d,
        help="a mirror laid out like GitHub releases (env LLAMA_HARNESS_MIRROR)",
    )
    p.add_argument("--json", action="store_true", default=d, help="machine-readable stdout")
    p.add_argument("-v", "--verbose", action="count", default=d, help="more log lines")
    p.add_argument("-q", "--quiet", action="store_true", default=d, help="errors only")


def _selection(p: argparse.ArgumentParser) -> None:
    """The options that pick cells, shared by `download` and `run`."""
    for axis in ("os", "arch", "variant"):
        p.add_argument(
            f"--{axis}",
            action="append",
            default=[],
            metavar=axis.upper(),
            help=f"only this {axis} (repeatable, or comma-separated)",
        )
    p.add_argument("--shard", metavar="K/N", help="only shard K of N of the cells")
    p.add_argument(
        "--verify",
        choices=matrix.VERIFY_POLICIES,
        default=None,
        help="digest policy (default: matrix.yaml's, else if-available)",
    )


def _gates(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--baseline",
        metavar="REPORT.json",
        help="compare throughput with this earlier report.json too",
    )
    p.add_argument(
        "--fail-on-regression",
        metavar="PCT",
        help="exit 1 when a release is slower than the previous one measured beside it "
        "by more than PCT (e.g. 5%%), beyond the noise",
    )
    p.add_argument(
        "--gate-baseline",
        action="store_true",
        help="let --fail-on-regression also judge comparisons across runs (the baseline), "
        "whose interval is widened for the machine's drift",
    )


def _load_gates(args: argparse.Namespace) -> tuple[dict[str, Any] | None, float | None]:
    from harness.report.compare import parse_threshold

    threshold = parse_threshold(args.fail_on_regression) if args.fail_on_regression else None
    baseline = None
    if args.baseline:
        from harness.report import inputs

        baseline = inputs.load(Path(args.baseline), "report (--baseline)")
    return baseline, threshold


def _regressions(
    rep: dict[str, Any], threshold: float | None, across_runs: bool = False
) -> list[str]:
    if threshold is None:
        return []
    from harness.report.compare import gate

    lines = gate(rep.get("comparison") or [], threshold, across_runs)
    for line in lines:
        print(f"llama-harness: regression: {line}", file=sys.stderr)
    return lines


def build_parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog="llama-harness",
        description="Does a llama.cpp release work on every platform it ships, for your API, "
        "and how fast? Global options go before the command (after it works too).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"llama-harness {__version__}")
    _globals(top, suppress=False)
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def cmd(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, epilog=EPILOG)
        _globals(p, suppress=True)
        return p

    p = cmd("releases", "list releases (tag, date, prerelease, assets, the build a v* names)")
    p.add_argument("--limit", type=_count(0), default=30, help="how many (default 30; 0 = all)")
    p = cmd("assets", "each asset of a release with size, digest and the cell it serves")
    p.add_argument("release")
    p = cmd(
        "download", "provision cells: verified, extracted, cached (default: all of matrix.yaml)"
    )
    p.add_argument("releases", nargs="*", metavar="RELEASE")
    _selection(p)
    p.add_argument("--host", action="store_true", help="this machine's asset only")
    p.add_argument("--all-platforms", action="store_true", help="every binary asset")
    cmd("test-download", "check the host's asset of the newest release is reachable")
    p = cmd("verify", "re-hash every cached archive and extracted tree against its record")
    p.add_argument(
        "--repair", action="store_true", help="re-extract (or re-download) what is wrong"
    )
    p = cmd("clean-cache", "remove cached releases (all by default)")
    p.add_argument("release", nargs="?")
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait (up to --lock-timeout) for entries another process is writing, "
        "instead of skipping them",
    )
    p = cmd("run", "the matrix job: provision, conformance on this host's cells, report")
    p.add_argument("releases", nargs="*", metavar="RELEASE", help="instead of matrix.yaml's")
    _selection(p)
    p.add_argument(
        "--suite",
        action="append",
        choices=["conformance", "bench"],
        default=None,
        help="which suites to run (repeatable; default: conformance and bench)",
    )
    p.add_argument(
        "--bench-presets",
        default="tiny,small-f16,small-q8_0",
        help="models the throughput suite times (default tiny,small-f16,small-q8_0)",
    )
    p.add_argument(
        "--bench-rounds",
        type=int,
        default=None,
        metavar="N",
        help="interleaved rounds per platform (default 10; at least 6 for a 95%% verdict)",
    )
    p.add_argument(
        "--aa",
        action="store_true",
        help="A/A: also time each build against itself, to see this machine's false-alarm rate",
    )
    _gates(p)
    p.add_argument(
        "--out",
        metavar="DIR",
        default="llama-harness-report",
        help="where report.json/.md/.html/.xml go (default ./llama-harness-report)",
    )
    p.add_argument(
        "--workers",
        type=_count(1),
        default=os.cpu_count() or 1,
        help="cells run in parallel (pytest-xdist workers; default: CPU count)",
    )
    p.add_argument("--threads", type=_count(1), default=1, help="llama.cpp threads per cell (1)")
    p.add_argument("--timeout", type=_seconds, default=120.0, help="seconds per cell (120)")
    p.add_argument(
        "--no-cpu-variants",
        action="store_true",
        help="run each CPU build once (default: once per CPU variant this CPU runs)",
    )
    p = cmd("report", "merge shard results (folders holding report.json) into one report")
    p.add_argument("results", nargs="+", metavar="RESULTS_DIR")
    p.add_argument("--out", metavar="DIR", required=True, help="where the merged report goes")
    _gates(p)
    p = cmd("inspect-host", "this machine: OS, CPU features, GPU runtimes; the variant to use")
    p.add_argument(
        "release",
        nargs="?",
        help="also: which of its builds this host should use, "
        "and which ggml CPU backend it picks here",
    )
    p = cmd("api-diff", "what changed in llama.h between two releases (functions, structs, enums)")
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument(
        "--prefix",
        action="append",
        default=None,
        help="names to compare (repeatable; default llama_)",
    )
    p = cmd("api-manifest", "write a consumer manifest (YAML) of the API a binding uses")
    p.add_argument("--from", dest="release", required=True, metavar="RELEASE")
    p.add_argument("--functions", required=True, help="comma-separated function names")
    p.add_argument(
        "--struct",
        action="append",
        default=None,
        metavar="NAME[:FIELD,...]",
        help="a struct and the fields the binding sets (repeatable; default: the "
        "by-value structs of the functions, all fields)",
    )
    p = cmd("api-check", "does a consumer manifest still match a release?")
    p.add_argument("manifest", metavar="MANIFEST.yaml")
    p.add_argument("release")
    p = cmd("binding-check", "a binding's own declarations against each release's ABI")
    p.add_argument(
        "binding",
        metavar="SOURCE",
        help="the binding: a file or folder (Python ctypes, Go purego/libffi), "
        "or a pip requirement (llama-cpp-python==0.3.16)",
    )
    p.add_argument("releases", nargs="*", metavar="RELEASE", help="default: matrix.yaml's")
    p.add_argument(
        "--all", action="store_true", help="every release the source knows: the compatible range"
    )
    p.add_argument(
        "--live",
        action="store_true",
        help="also install the binding (pip requirement) and run its own API on each release",
    )
    p.add_argument("--names", metavar="OVERRIDES.yaml", help="binding name → C name overrides")
    p = cmd("npm-index", "which llama.cpp release each node-llama-cpp npm version carries")
    p.add_argument("--refresh", action="store_true", help="learn every version (downloads each)")
    return top


def _split(values: Sequence[str]) -> list[str]:
    return [v for item in values for v in item.split(",") if v]


def _matrix(args: argparse.Namespace, required: bool) -> Matrix | None:
    path = Path(args.matrix or "matrix.yaml")
    if args.matrix or path.exists() or required:
        return matrix.load(path)
    return None


def _downloader(
    args: argparse.Namespace, m: Matrix | None, verify: str | None = None
) -> LibraryDownloader:
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: must be at least 1")
    limits.asset_ceiling()  # a bad LLAMA_HARNESS_MAX_ASSET_BYTES is a usage error up front
    dl = LibraryDownloader(
        args.cache_dir,
        api_url=args.api_url,
        repo=args.repo or (m.repo if m else DEFAULT_REPO),
        jobs=args.jobs or 8,
        verify=verify or (m.verify if m else "if-available"),
        progress=progress.mode_for(args.json, args.quiet),
        sources=args.source or (m.sources if m else ("github",)),
        mirror=args.mirror or (m.mirror if m else None),
    )
    if getattr(args, "lock_timeout", None) is not None:
        dl.cache.lock_timeout = cache_root.lock_timeout(args.lock_timeout)
    dl.cache.check_writable()
    return dl


def _print(args: argparse.Namespace, data: Any, lines: Sequence[str]) -> None:
    if args.json:
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for line in lines:
            print(line)


def cmd_releases(args: argparse.Namespace) -> int:
    dl = _downloader(args, _matrix(args, False))
    rels = dl.list_releases(args.limit or None)
    rows = [r.to_json() for r in rels]
    lines = [
        f"{r['tag']:<12} {str(r['published_at'] or '')[:10]:<10} "
        f"{'prerelease' if r['prerelease'] else 'release':<10} {r['assets']:>3} assets"
        + (f"  → {r['build']}" if r["build"] and r["build"] != r["tag"] else "")
        for r in rows
    ]
    _print(args, rows, lines)
    return EXIT_OK


def cmd_assets(args: argparse.Namespace) -> int:
    dl = _downloader(args, _matrix(args, False))
    rel = dl.get_release(args.release)
    rows = [a.to_json() for a in rel.assets]
    lines = [f"{rel.tag} (build {rel.build})"] + [
        f"  {r['name']:<60} {r['size']:>12,}  {str(r['digest'] or 'no digest')[:23]:<23}  "
        + (f"{r['os']}/{r['arch']}/{r['variant']}" if r["kind"] != "unmatched" else "unmatched")
        + (" (companion)" if r["kind"] == "companion" else "")
        for r in rows
    ]
    _print(args, rows, lines)
    return EXIT_OK


def _download_cells(
    args: argparse.Namespace, m: Matrix | None, dl: LibraryDownloader
) -> list[Cell]:
    oses, arches, variants = _split(args.os), _split(args.arch), _split(args.variant)
    for axis, values, allowed in (("os", oses, matrix.OSES), ("arch", arches, matrix.ARCHES)):
        for value in values:
            if value not in allowed:
                raise ConfigError(f"--{axis} {value!r}: allowed: {', '.join(allowed)}")
    tags = list(args.releases) or (list(m.releases) if m else [])
    unresolved: list[Cell] = []
    if args.host:
        cells = [_host_cell(dl, t) for t in tags]
    elif args.all_platforms or (args.releases and m is None):
        cells = []
        for tag in dict.fromkeys(tags):
            try:
                cells += all_platform_cells(tag, dl.get_release(tag))
            except SourceError:  # no platforms to name: one row that the download reports
                one = [v[0] if len(v) == 1 else "*" for v in (oses, arches, variants)]
                unresolved.append(Cell(tag, *one))
    else:
        assert m is not None
        cells = m.cells(tags)
    cells = matrix.filter_cells(cells, oses, arches, variants) + unresolved
    if args.shard:
        cells = matrix.shard(cells, *matrix.parse_shard(args.shard))
    return cells


def host_variants(rel: Any) -> list[str]:
    hos, harch = assets.host_platform()
    return list(
        dict.fromkeys(
            a.match.variant
            for a in rel.assets
            if a.match.kind == "binary"
            and (a.match.os, a.match.arch) == (hos, harch)
            and a.match.variant
        )
    )


def _host_cell(dl: LibraryDownloader, tag: str) -> Cell:
    """This machine's cell of a release: the variant `inspect-host` would choose."""
    from harness.host.choose import choose_variant
    from harness.host.probe import inspect_host

    hos, harch = assets.host_platform()
    try:
        variants = host_variants(dl.get_release(tag))
    except SourceError:
        variants = []  # reported by the download itself
    choice = choose_variant(inspect_host(), variants) if variants else None
    if choice and choice.variant:
        log.info("%s: %s", tag, choice.summary())
        return Cell(tag, hos, harch, choice.variant)
    return Cell(tag, hos, harch, assets.default_variant(hos, harch))


def cmd_inspect_host(args: argparse.Namespace) -> int:
    from harness.host.choose import choose_variant, render
    from harness.host.probe import inspect_host
    from harness.load.backends import cpu_backend_choice
    from harness.load.loader import find_libdir

    info = inspect_host()
    data: dict[str, Any] = {"host": info.to_json()}
    lines = []
    choice = None
    of = None  # which release the variant is of, when the user named none
    m = _matrix(args, False)
    if not args.release and m is not None and m.releases:
        # no release named: the variant this host would pick of the matrix's newest release
        dl = _downloader(args, m)
        try:
            tag = _newest_release(dl, list(m.releases))
            rel = dl.get_release(tag)
        except SourceError as err:  # the host is still worth printing
            data["choice_error"] = f"cannot resolve the newest release of the matrix: {err}"
            lines.append(f"variant   unknown: {data['choice_error']}")
        else:
            variants = host_variants(rel)
            choice = choose_variant(info, variants)
            label = tag if rel.build in (None, tag) else f"{tag} ({rel.build})"
            data.update(release=tag, build=rel.build, variants=variants)
            data["choice"] = choice.to_json()
            data["release_from"] = f"the newest release of {args.matrix or 'matrix.yaml'}"
            of = f"{label}, {data['release_from']}"
    elif args.release:
        dl = _downloader(args, m)
        rel = dl.get_release(args.release)
        variants = host_variants(rel)
        choice = choose_variant(info, variants)
        data["release"], data["build"], data["variants"] = args.release, rel.build, variants
        data["choice"] = choice.to_json()
        hos, harch = assets.host_platform()
        cpu = [v for v in variants if v in ("cpu", "metal")] or variants[:1]
        if cpu:
            res = dl.download_cells([Cell(args.release, hos, harch, cpu[0])], raise_errors=False)[0]
            if res.stored:
                pick = cpu_backend_choice(find_libdir(Path(res.stored.path)))
                data["cpu_backend"] = pick
                lines.append(
                    f"ggml CPU backend {rel.build} picks here: {pick.get('variant')} "
                    f"(of {', '.join(pick.get('available') or []) or 'none shipped'})"
                )
            else:
                lines.append(f"ggml CPU backend: not checked ({res.error})")
    _print(args, data, [render(info, choice, of), *lines])
    return EXIT_OK


def _newest_release(dl: LibraryDownloader, tags: list[str]) -> str:
    """`latest` when the matrix lists it, else the tag whose build number is highest (a `v*`
    tag is resolved to the build it names)."""
    if "latest" in tags:
        return "latest"

    def build(tag: str) -> int:
        b = tag if BUILD.fullmatch(tag) else dl.get_release(tag).build or ""
        return int(b[1:]) if BUILD.fullmatch(b) else -1

    return max(tags, key=build)


def cmd_download(args: argparse.Namespace) -> int:
    needs_matrix = not args.releases and not args.host and not args.all_platforms
    m = _matrix(args, required=needs_matrix or (not args.releases))
    dl = _downloader(args, m, args.verify)
    cells = _download_cells(args, m, dl)
    if not cells:
        raise ConfigError("no cells to download (check the filters and excludes)")
    results = dl.download_cells(cells, raise_errors=False)
    lines = []
    for r in results:
        c = r.cell
        head = f"{c.release:<10} {c.os + '/' + c.arch + '/' + c.variant:<24}"
        if r.error:
            lines.append(f"{head} ERROR {r.error}")
        else:
            assert r.stored
            how = "cached" if r.stored.cached else f"downloaded from {r.source}"
            lines.append(f"{head} {r.asset} ({how}, {r.stored.verify}) → {r.stored.path}")
    _print(args, [r.to_json() for r in results], lines)
    errors = [r.error for r in results if r.error]
    for err in errors:
        print(f"llama-harness: error: {err}", file=sys.stderr)
    return max((e.exit_code for e in errors), default=EXIT_OK)


def cmd_test_download(args: argparse.Namespace) -> int:
    dl = _downloader(args, _matrix(args, False))
    data = dl.test_download()
    _print(
        args,
        data,
        [
            f"{data['release']} (build {data['build']}) at {data['source']}: {data['asset']} "
            f"({data['size']:,} bytes, {data['digest'] or 'no digest'}) is reachable"
        ],
    )
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    dl = _downloader(args, None)
    rows = dl.verify(repair=args.repair)
    lines = [
        f"{r['status']:<8} {r['build']}/{r['asset']}"
        + (f": {r['problem']}" if r["problem"] else "")
        for r in rows
    ]
    lines.append(f"{len(rows)} archives and their extracted trees checked in {dl.cache.root}")
    _print(args, rows, lines)
    bad = [r for r in rows if r["status"] in ("bad", "failed")]
    for r in bad:
        print(f"llama-harness: error: {r['build']}/{r['asset']}: {r['problem']}", file=sys.stderr)
    return 4 if bad else EXIT_OK


def cmd_clean_cache(args: argparse.Namespace) -> int:
    dl = _downloader(args, _matrix(args, False))
    done = dl.clean_cache(args.release, wait=args.wait)
    removed = done.removed
    _print(
        args, [str(p) for p in removed], [f"removed {p}" for p in removed] or ["nothing to remove"]
    )
    if done.in_use and args.wait:
        raise maintain.wait_error(done.in_use, dl.cache.lock_timeout)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from harness.pipeline import Options, run

    m = _matrix(args, required=True)
    assert m is not None
    baseline, threshold = _load_gates(args)
    if args.workers < 1 or args.threads < 1:
        raise ConfigError("--workers and --threads must be at least 1")
    dl = _downloader(args, m, args.verify)
    args.host = args.all_platforms = False
    cells = _download_cells(args, m, dl)
    if not cells:
        raise ConfigError("no cells to run (check the filters and excludes)")
    out = _out_dir(args.out)
    opts = Options(
        out,
        workers=args.workers,
        threads=args.threads,
        timeout=args.timeout,
        model=m.model,
        quiet=bool(args.json or args.quiet),
        manifest=m.manifest,
        binding=m.binding,
        cpu_variants=not args.no_cpu_variants,
        suites=tuple(args.suite or ("conformance", "bench")),
        bench_presets=tuple(p for p in args.bench_presets.split(",") if p),
        baseline=baseline,
        bench_rounds=args.bench_rounds,
        bench_aa=args.aa,
    )
    if args.bench_rounds is not None and args.bench_rounds < 1:
        raise ConfigError("--bench-rounds must be at least 1")
    return _publish(args, run(dl, cells, opts), out, threshold)


def _out_dir(text: str) -> Path:
    """`--out`, checked before any work: a folder, or a path where one can be made."""
    out = Path(text).resolve()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {text}: exists and is not a folder")
    if any(p.exists() and not p.is_dir() for p in out.parents):
        raise ConfigError(f"--out {text}: a parent of it is not a folder")
    return out


def _publish(
    args: argparse.Namespace, rep: dict[str, Any], out: Path, threshold: float | None
) -> int:
    """Write the report files, say whether to bump, name each problem on stderr, and pick the
    exit code."""
    from harness.report import model as report
    from harness.report.publish import write

    try:
        write(rep, out)  # the whole Markdown goes to report.md and to $GITHUB_STEP_SUMMARY
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot write the report: {err.strerror or err}") from err
    if args.json:
        json.dump(rep, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:  # the answer, not the 14 KB page: one line per release, and where the rest is
        for v in report.verdicts(rep):
            print(f"{v['glyph']} {v['label']}: {v['text']}")
        print(f"report: {out / 'report.md'} (also report.json, report.html, report.xml)")
    for c in rep["cells"]:
        if c["status"] in ("fail", "error", "crash"):
            line = (
                f"llama-harness: {c['status']}: {c['release']} {c['os']}/{c['arch']}/"
                f"{c['variant']}: {c['reason']}"
            )  # one line, and no terminal escapes from a report someone else wrote
            print(
                " ".join("".join(ch if ch.isprintable() else " " for ch in line).split()),
                file=sys.stderr,
            )
    aa = [e for e in rep.get("comparison") or [] if e.get("against") == "A/A"]
    if aa and not args.json:
        called = sum(e["verdict"] in ("faster", "slower") for e in aa)
        unsure = sum(e["verdict"] == "inconclusive" for e in aa)
        print(
            f"A/A (each build against itself): {len(aa)} comparisons, {called} false alarms, "
            f"{unsure} inconclusive"
        )
    slower = _regressions(rep, threshold, bool(getattr(args, "gate_baseline", False)))
    counts = report.summary(rep)
    bad = counts["fail"] + counts["error"] + counts["crash"]
    return EXIT_FAILED if bad or slower else EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report import model as report
    from harness.report.compare import compare

    baseline, threshold = _load_gates(args)
    out = _out_dir(args.out)
    rep = report.merge([Path(r) for r in args.results])
    rep["comparison"] = compare(rep, baseline)  # release-to-release spans the shards
    return _publish(args, rep, out, threshold)


def cmd_api_diff(args: argparse.Namespace) -> int:
    from harness.abi import diff as apidiff
    from harness.abi.release import api_for_release

    dl = _downloader(args, _matrix(args, False))
    old_build, old = api_for_release(dl, args.old)
    new_build, new = api_for_release(dl, args.new)
    d = apidiff.diff(old, new, prefixes=tuple(args.prefix or ("llama_",)))
    data = {
        "old": args.old,
        "old_build": old_build,
        "new": args.new,
        "new_build": new_build,
        **d.to_json(),
    }
    _print(args, data, [apidiff.render_text(d, args.old, args.new)])
    return EXIT_OK


def cmd_api_manifest(args: argparse.Namespace) -> int:
    from harness.abi import manifest
    from harness.abi.release import api_for_release

    dl = _downloader(args, _matrix(args, False))
    _, api = api_for_release(dl, args.release)
    fns = [f.strip() for f in args.functions.split(",") if f.strip()]
    data = manifest.generate(api, fns, args.struct, tag=args.release)
    if args.json:
        _print(args, data, [])
    else:
        sys.stdout.write(manifest.dump(data))
    return EXIT_OK


def cmd_api_check(args: argparse.Namespace) -> int:
    from harness.abi import manifest
    from harness.abi.release import api_for_release

    wanted = manifest.load(args.manifest)
    dl = _downloader(args, _matrix(args, False))
    _, api = api_for_release(dl, args.release)
    verdict = manifest.check(wanted, api)
    _print(
        args,
        {"manifest": args.manifest, "release": args.release, **verdict.to_json()},
        [manifest.render_verdict(verdict, args.manifest, args.release)],
    )
    return EXIT_OK if verdict.compatible else EXIT_FAILED


def cmd_binding_check(args: argparse.Namespace) -> int:
    # lazy: the binding readers pull in tree-sitter, which `--help` should not pay for
    from harness.binding import fetch as binding_fetch
    from harness.binding import names, releases

    if args.live and binding_fetch.requirement(args.binding) is None:
        raise ConfigError("--live needs an installable Python binding: a pip requirement")
    m = _matrix(args, False)
    tags = list(args.releases) or list(m.releases if m else [])
    if not tags and not args.all:
        raise ConfigError("binding-check: name releases, or give a matrix.yaml with releases")
    dl = _downloader(args, m)
    overrides = names.load_overrides(Path(args.names)) if args.names else None
    decl = binding_fetch.open_source(args.binding, dl.cache.root)
    abi_of = binding_abi(dl)
    lines: list[str] = []
    if args.all:
        points, abi_of = _all_points(dl, abi_of)
        found = releases.scan(decl, points, abi_of, overrides)
        verdicts = found.ordered()
        lines += found.summary()
    else:
        verdicts = releases.check_releases(decl, tags, abi_of, overrides)
    lines += releases.render(verdicts, decl.name)
    rows = [v.to_json() for v in verdicts]
    if args.live:
        _live(dl, args.binding, decl.name, rows, lines)
    _print(args, rows, lines)
    ok = all(r["verdict"] == "compatible" and r.get("live", {}).get("ok", True) for r in rows)
    return EXIT_OK if ok else EXIT_FAILED


def _live(
    dl: LibraryDownloader, source: str, name: str, rows: list[dict[str, Any]], lines: list[str]
) -> None:
    """Install the binding (once per version) and run its own API on each release's host build."""
    from harness.binding import live
    from harness.load.loader import find_libdir
    from harness.suites.fixtures import model as models
    from harness.suites.fixtures import reference

    python, took = live.venv_for(dl.cache.root, source)
    if took is not None:
        lines.append(f"{name}: installed in {took:.0f} s (native part not built)")
    model = models.ensure_model(dl.cache.root, models.TINY)
    expected = reference.greedy(model, reference.tokenize(model, models.PROMPT), live.N_PREDICT)
    for row in rows:
        tag = row["release"]
        try:
            res = dl.download(tag)
            assert res.stored
            libdir = find_libdir(Path(res.stored.path))
            result = live.run_one(python, libdir, model, models.PROMPT, expected, tag)
        except HarnessError as err:
            result = live.LiveResult(tag, False, "not run", str(err))
        row["live"] = result.to_json()
        lines.append(f"{name} vs {tag} live: {result.line()}")


def binding_abi(dl: LibraryDownloader) -> Callable[[str], Any]:
    """tag → ReleaseAbi: the release's own headers, and the exports of this host's build of it
    (provisioned like `download` does; without one, only the headers decide)."""
    from harness.abi.release import api_for_release
    from harness.binding.check import exports_of
    from harness.binding.releases import ReleaseAbi
    from harness.load.loader import find_libdir

    def abi_of(tag: str) -> ReleaseAbi:
        build, api = api_for_release(dl, tag)
        try:
            res = dl.download(tag)
            assert res.stored
            exports = exports_of(find_libdir(Path(res.stored.path)))
        except (HarnessError, ValueError) as err:
            return ReleaseAbi(tag, build, api, None, note=str(err))
        where = f"{res.cell.os} {res.cell.arch} {res.cell.variant} ({res.source})"
        return ReleaseAbi(tag, build, api, exports, where)

    return abi_of


def _all_points(
    dl: LibraryDownloader, abi_of: Callable[[str], Any]
) -> tuple[list[str], Callable[[str], Any]]:
    """Every release the first source knows, old → new. npm knows package versions and learns
    which release each carries only by fetching it, so those points are versions."""
    from harness.sources.npm import NpmSource  # lazy: see harness/library.py

    source = dl.sources[0]
    if isinstance(source, NpmSource):
        npm = source
        return npm.versions(), lambda version: abi_of(npm.tag_of(version))
    tags = [r.tag for r in dl.list_releases(None) if BUILD.fullmatch(r.tag)]
    return sorted(tags, key=lambda t: int(t[1:])), abi_of


def cmd_npm_index(args: argparse.Namespace) -> int:
    dl = _downloader(args, _matrix(args, False))
    from harness.sources.npm import NpmSource  # lazy: only this command needs it by name

    npm = dl.source_named("npm")
    assert isinstance(npm, NpmSource)
    tags = npm.refresh(dl.progress) if args.refresh else npm.known()
    rows = [
        {"version": v, "release": t} for v, t in sorted(tags.items(), key=lambda kv: _vkey(kv[0]))
    ]
    _print(
        args,
        rows,
        [f"{r['version']:<10} {r['release']}" for r in rows]
        or ["the index is empty: run `llama-harness npm-index --refresh`"],
    )
    return EXIT_OK


def _vkey(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".") if x.isdigit())


COMMANDS = {
    "releases": cmd_releases,
    "assets": cmd_assets,
    "download": cmd_download,
    "test-download": cmd_test_download,
    "verify": cmd_verify,
    "clean-cache": cmd_clean_cache,
    "npm-index": cmd_npm_index,
    "run": cmd_run,
    "report": cmd_report,
    "api-diff": cmd_api_diff,
    "inspect-host": cmd_inspect_host,
    "api-manifest": cmd_api_manifest,
    "api-check": cmd_api_check,
    "binding-check": cmd_binding_check,
}


def _logging(verbose: int, quiet: bool) -> None:
    level = (
        logging.ERROR
        if quiet
        else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("llama-harness: %(message)s"))
    root = logging.getLogger("harness")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM (a CI job cancelled, `kill`) stops like Ctrl-C: cleanly, at once, exit 130."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _logging(args.verbose or 0, bool(args.quiet))
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return COMMANDS[args.command](args)
    except HarnessError as err:
        print(f"llama-harness: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("llama-harness: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug: still one line unless asked for more
        if args.verbose:
            raise
        print(
            f"llama-harness: internal error: {type(err).__name__}: {err} (rerun with -v)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
