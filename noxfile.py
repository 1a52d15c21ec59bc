"""Sessions for llama-harness: `nox -l` lists them. Thin wrappers: the logic lives in `harness/`."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False


@nox.session
def tests(session: nox.Session) -> None:
    """The project's test suite in parallel (pytest-xdist); extra args go to pytest."""
    session.install("-e", ".[test]")
    # loadfile: a module's tests (and its module-scoped real-build run) stay on one worker;
    # loadgroup's marks do not survive pytest 9 + pytest-xdist 3.8
    args = session.posargs or ["-n", "auto", "--dist", "loadfile"]
    session.run("pytest", *args)


# The oldest and the newest pytest / pytest-xdist that pyproject.toml allows.
PYTEST_RANGE = [
    nox.param("8.0.0", "3.5.0", id="oldest"),
    nox.param("9.2.0", "3.8.0", id="newest"),
]


@nox.session
@nox.parametrize(("pytest", "xdist"), PYTEST_RANGE)
def verdicts(session: nox.Session, pytest: str, xdist: str) -> None:
    """Each cell's child runs once and the report agrees with its tests, under the oldest and the
    newest pytest / pytest-xdist supported (`run` drives its conformance suite through them)."""
    session.install("-e", ".[test]", f"pytest=={pytest}", f"pytest-xdist=={xdist}")
    session.run("pytest", "-p", "no:cacheprovider", "tests/test_verdicts.py", "tests/test_child.py")


@nox.session
def matrix(session: nox.Session) -> None:
    """The main job: `llama-harness run` on ./matrix.yaml (args after -- go to `run`)."""
    session.install("-e", ".")
    session.run("llama-harness", "run", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Provisioning against the loopback fake GitHub (fake archives): no network needed."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "tests.demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (pytest-benchmark): downloads (warm cache, parallel speed-up, hashing overhead),
    throughput harness vs native, and throughput verdicts under load (A/A, flips, detection)."""
    session.install("-e", ".[test]")
    session.run(
        "pytest",
        "benchmarks",
        "-p",
        "no:xdist",
        "--benchmark-only",
        "--benchmark-json",
        "bench.json",
        *session.posargs,
    )


@nox.session
def download_libs(session: nox.Session) -> None:
    """Download this machine's build of every release in matrix.yaml."""
    session.install("-e", ".")
    session.run("llama-harness", "download", "--host", *session.posargs)


@nox.session
def download_libs_all(session: nox.Session) -> None:
    """Download every platform's build of every release in matrix.yaml (all binary assets)."""
    session.install("-e", ".")
    session.run("llama-harness", "download", "--all-platforms", *session.posargs)


@nox.session
def test_download(session: nox.Session) -> None:
    """Check that this machine's asset of the newest release is reachable."""
    session.install("-e", ".")
    session.run("llama-harness", "test-download", *session.posargs)


@nox.session
def clean_libs(session: nox.Session) -> None:
    """Remove cached releases (all, or the release named after `--`)."""
    session.install("-e", ".")
    session.run("llama-harness", "clean-cache", *session.posargs)


@nox.session
def report(session: nox.Session) -> None:
    """Merge shard results into one report: `nox -s report -- --out DIR RESULTS_DIR...`."""
    if not session.posargs:
        session.error("usage: nox -s report -- --out DIR RESULTS_DIR... (folders with report.json)")
    session.install("-e", ".")
    session.run("llama-harness", "report", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint), mypy (types of the package), lint-imports (the stage layers, pyproject.toml)."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("mypy")
    session.run("lint-imports")
