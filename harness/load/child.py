"""The one way the harness starts a child process, and the one protocol it speaks.

Everything that loads a llama.cpp release runs in a child process: every release has the SONAME
libggml-base.so (one release per process), and a release that crashes must not take the run with
it. The protocol, the same for every child (conformance, throughput, CPU-variant probes, the
pytest stage):

- in: one spec JSON file, `python -m <module> SPEC.json` (the launcher adds the paths below to the
  spec: `log`, `progress`, `result`, `scratch`);
- as it goes: progress lines, one JSON object per line, each flushed and fsync'd before the next
  step starts: `{"start": STEP}` before a step, `{"done": STEP, ...}` after it. A child killed by
  a signal still leaves them, so the parent names the step it died in (crash attribution);
- out: one result JSON file, written atomically as the last thing the child does; then the child
  leaves with `os._exit(0)`, skipping the interpreter teardown (some releases' static
  destructors crash at exit, and the result is already safe on disk).

The parent side (`launch`) is the one place for timeouts, signal names, log tails and crash
attribution; the child side (`Child`, `child_main`) is the one place that writes the files.
Each launch also appends a line to `<name>.starts.jsonl` in its folder, which a reader (a test,
a person debugging a report) can count: a cell's child starts once per run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn

from harness.cache import atomic

LOG_TAIL_LINES = 30
LOADING = "while loading the library"  # where a child died before its first step
_ROOT = str(Path(__file__).resolve().parents[2])  # the folder that holds `harness`


def signal_name(returncode: int) -> str:
    """SIGSEGV for a child killed by signal 11 (subprocess's returncode -11)."""
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def tail(path: Path, n: int = LOG_TAIL_LINES) -> list[str]:
    """The last `n` non-blank lines of a text file ([] when there is none)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return [ln for ln in lines if ln.strip()][-n:]


def read_progress(path: Path) -> list[dict[str, Any]]:
    """The progress lines a child wrote; a torn last line (the child died writing it) is dropped."""
    out = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


@dataclass(frozen=True)
class Files:
    """Where one child's files live: `<workdir>/<name>.{spec.json,log,progress.jsonl,...}`."""

    workdir: Path
    name: str = "child"

    def _file(self, ext: str) -> Path:
        return self.workdir / f"{self.name}.{ext}"

    @property
    def spec(self) -> Path:
        return self._file("spec.json")

    @property
    def log(self) -> Path:
        return self._file("log")

    @property
    def progress(self) -> Path:
        return self._file("progress.jsonl")

    @property
    def result(self) -> Path:
        return self._file("result.json")

    @property
    def stderr(self) -> Path:
        return self._file("stderr")

    @property
    def starts(self) -> Path:
        """One line per launch, never removed by the launcher: count them."""
        return self._file("starts.jsonl")

    @property
    def scratch(self) -> Path:
        return self._file("scratch")


@dataclass
class Finished:
    """What one child did. `result` is its result file (None when it wrote none); `error` says
    why it did not finish cleanly (None when it did), crash attribution included."""

    result: dict[str, Any] | None
    progress: list[dict[str, Any]]
    returncode: int | None  # None: timed out (killed)
    wall: float
    error: str | None = None
    log_tail: list[str] = field(default_factory=list)  # the child's log, then its stderr
    files: Files | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.result is not None

    @property
    def crashed(self) -> bool:
        """Killed by a signal (SIGSEGV, SIGABRT, ...), not by our timeout."""
        return self.returncode is not None and self.returncode < 0

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    @property
    def done(self) -> dict[str, dict[str, Any]]:
        """{step: its `done` line, without the `done` key} for every step that finished."""
        return {
            str(item["done"]): {k: v for k, v in item.items() if k != "done"}
            for item in self.progress
            if "done" in item
        }

    @property
    def running(self) -> str | None:
        """The step the child started and did not finish (where it died), or None."""
        open_: list[str] = []
        for item in self.progress:
            if "start" in item:
                open_.append(str(item["start"]))
            elif "done" in item and str(item["done"]) in open_:
                open_.remove(str(item["done"]))
        return open_[-1] if open_ else None

    def where(self) -> str:
        """' in STEP', ' while loading the library' (no step yet), or ' after STEP' (the last)."""
        if (step := self.running) is not None:
            return f" in {step}"
        done = [str(i["done"]) for i in self.progress if "done" in i]
        return f" after {done[-1]}" if done else f" {LOADING}"


def _child_env(env: Mapping[str, str] | None, drop: Sequence[str]) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in drop}
    out.update(env or {})
    out["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, out.get("PYTHONPATH", "")) if p)
    return out


def launch(
    module: str,
    spec: Mapping[str, Any],
    workdir: Path,
    *,
    timeout: float | None,
    env: Mapping[str, str] | None = None,
    name: str = "child",
    args: Sequence[str] | None = None,
    drop_env: Sequence[str] = (),
    output: IO[str] | int | None = None,
) -> Finished:
    """Run `python -m module SPEC.json` and say what happened; never raises for the child's sake.

    `spec` is written to `<workdir>/<name>.spec.json` with the protocol's paths added (earlier
    files of the same name are removed first). `args` replaces the command's arguments (`{spec}`
    in one is replaced by the spec's path), for a module that takes its spec by an option. The
    child's environment is ours without `drop_env`, updated with `env`, with this package on
    PYTHONPATH. `output`: where the child's stdout and stderr go (default: captured, and the
    last lines of stderr join the log tail).
    """
    files = Files(workdir, name)
    workdir.mkdir(parents=True, exist_ok=True)
    for old in (files.spec, files.log, files.progress, files.result, files.stderr):
        old.unlink(missing_ok=True)
    files.scratch.mkdir(exist_ok=True)
    full = {
        **spec,
        "log": str(files.log),
        "progress": str(files.progress),
        "result": str(files.result),
        "scratch": str(files.scratch),
    }
    atomic.write_text(files.spec, json.dumps(full))
    argv = [a.replace("{spec}", str(files.spec)) for a in args] if args else [str(files.spec)]
    with files.starts.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"pid": os.getpid(), "time": time.time(), "module": module}) + "\n")
    t0 = time.perf_counter()
    rc: int | None
    with files.stderr.open("w", encoding="utf-8") as err_file:
        try:
            proc = subprocess.run(
                [sys.executable, "-m", module, *argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL if output is None else output,
                stderr=err_file if output is None else output,
                timeout=timeout,
                env=_child_env(env, drop_env),
                check=False,
            )
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = None
    wall = round(time.perf_counter() - t0, 4)
    result: dict[str, Any] | None = None
    if files.result.is_file():
        try:
            result = json.loads(files.result.read_text(encoding="utf-8"))
        except ValueError:
            result = None
    stderr = tail(files.stderr)
    done = Finished(
        result, read_progress(files.progress), rc, wall, None,
        (tail(files.log) + stderr)[-LOG_TAIL_LINES:], files,
    )  # fmt: skip
    if rc is None:
        done.error = f"timed out after {timeout:.0f} s{done.where()}"
    elif rc < 0:
        done.error = f"{signal_name(rc)}{done.where()}"
    elif result is None or rc != 0:
        said = stderr[-1] if stderr else f"exit status {rc}"
        done.error = f"the child failed: {said}"
    return done


# ---------------------------------------------------------------------- the child's side


class Child:
    """The child's end of the protocol: the spec, a log sink, progress lines, the result."""

    def __init__(self, spec_path: str | Path) -> None:
        self.spec: dict[str, Any] = json.loads(Path(spec_path).read_text(encoding="utf-8"))
        # open until os._exit: line-buffered so a crash loses at most the line being written
        self._log = open(self.spec["log"], "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self._progress = open(self.spec["progress"], "a", encoding="utf-8")  # noqa: SIM115

    def log(self, _level: int, text: str) -> None:
        """A `LogSink` (harness.load.loader): llama.cpp's log goes to the log file as written."""
        self._log.write(text)

    def note(self, item: Mapping[str, Any]) -> None:
        """One progress line, on disk (fsync'd) before this returns."""
        self._progress.write(json.dumps(item) + "\n")
        self._progress.flush()
        os.fsync(self._progress.fileno())

    def start(self, step: str) -> None:
        self.note({"start": step})

    def done(self, step: str, **facts: Any) -> None:
        self.note({"done": step, **facts})

    def finish(self, result: Mapping[str, Any]) -> NoReturn:
        """Write the result atomically, then leave without interpreter teardown."""
        atomic.write_text(Path(self.spec["result"]), json.dumps(result))
        self._log.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def child_main(
    body: Callable[[Child], Mapping[str, Any]], argv: Sequence[str] | None = None
) -> NoReturn:
    """`if __name__ == "__main__": child_main(body)`: read the spec named on the command line,
    run `body`, write what it returns as the result. An exception propagates (a traceback on
    stderr, exit status 1): the parent reports its last line."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit(f"usage: python -m {body.__module__} SPEC.json")
    child = Child(argv[0])
    child.finish(body(child))
