"""Progress for every phase a person waits on: rich bars at a terminal, plain lines in a CI log.

Three modes, picked once per run by `mode_for`:
- `bars`: stderr is a terminal; rich draws a bar per stage (`headers 12/31`) and per transfer.
- `lines`: no terminal (a CI log, a pipe); one line per stage item and per finished transfer,
  each with its count (`download 3/15 …`), nothing redrawn.
- `off`: `-q`.

Nothing starts drawing until there is work: a warm run prints nothing. rich is imported only in
`bars` mode (it costs ~30 ms of start-up that a warm `download` does not otherwise need).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID

T = TypeVar("T")
MODES = ("bars", "lines", "off")
POLL_S = 0.5


def mode_for(json_output: bool, quiet: bool = False, stream: Any = None) -> str:
    """`bars` for a person at a terminal (never with --json: that output is for a program),
    `lines` for a log, `off` with -q."""
    if quiet:
        return "off"
    stream = stream or sys.stderr
    return "bars" if stream.isatty() and not json_output else "lines"


def wanted(json_output: bool, quiet: bool = False) -> bool:
    """Kept for callers that ask yes/no: bars at a terminal."""
    return mode_for(json_output, quiet) == "bars"


def size_text(n: int | None) -> str:
    if n is None:
        return "? bytes"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


class Reporter:
    """One per run; thread-safe. `stage()` for counted phases, `transfer()` for bytes."""

    def __init__(self, mode: str | bool = "off", stream: Any = None) -> None:
        if isinstance(mode, bool):  # the old Bars(enabled) spelling
            mode = "bars" if mode else "off"
        if mode not in MODES:
            raise ValueError(f"progress mode {mode!r} is not one of {MODES}")
        self.mode = mode
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._rich: RichProgress | None = None
        self._depth = 0
        self._total: TaskID | None = None
        self._done = 0
        self._count = 0
        self._bytes: int | None = 0  # expected in all; None once any size is unknown

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    # -- the run's lifetime: bars are drawn between __enter__ and __exit__ ---------------------

    def __enter__(self) -> Reporter:
        with self._lock:
            self._depth += 1
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._rich is not None:
                self._rich.stop()
                self._rich, self._total = None, None

    def _bars(self) -> RichProgress:
        """Started on first use, so a run with nothing to show draws nothing."""
        if self._rich is None:
            from rich.console import Console  # lazy: see the module docstring
            from rich.progress import (
                BarColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._rich = Progress(
                TextColumn("{task.description}", justify="left"),
                BarColumn(),
                _amount_column(),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=False,
            )
            self._rich.start()
        return self._rich

    def _line(self, text: str) -> None:
        with self._lock:
            print(f"llama-harness: {text}", file=self.stream, flush=True)

    # -- counted phases --------------------------------------------------------------------------

    def stage(self, name: str, total: int | None = None, after: float = 0.0) -> Stage:
        """A counted phase; with `after`, shown only once it has run that many seconds."""
        return Stage(self, name, total, after)

    def each(
        self, name: str, items: Iterable[T], label: Callable[[T], str] = str, after: float = 0.0
    ) -> Iterator[T]:
        """`for x in reporter.each("prepare", xs, label):` counts each item as its loop body
        finishes (a `continue` counts too): progress for a loop without re-indenting it."""
        todo = list(items)
        with self.stage(name, len(todo), after) as st:
            for item in todo:
                yield item
                st.advance(label(item))

    @contextmanager
    def watching(self, name: str, paths: Iterable[tuple[Path, str]]) -> Iterator[Stage]:
        """A stage whose items are files other processes write (one result per cell): counted
        as they appear, while the body runs."""
        todo = list(paths)
        with self.stage(name, len(todo)) as st, st.watch(todo):
            yield st

    @contextmanager
    def status(self, description: str) -> Iterator[Callable[[str], None]]:
        """A line of text while something without a count runs (listing releases); yields a
        function that replaces it (in a log: prints it)."""
        if self.mode == "off":
            yield lambda text: None
            return
        if self.mode == "lines":
            yield self._line
            return
        with self._lock:
            bars = self._bars()
            task = bars.add_task(description, total=None, unit="items")
        try:
            yield lambda text: bars.update(task, description=text)
        finally:
            bars.remove_task(task)

    # -- byte transfers ------------------------------------------------------------------------

    def expect(self, count: int, size: int | None) -> None:
        """How many transfers (and bytes, when every size is known) this run is about to make."""
        with self._lock:
            self._count += count
            self._bytes = None if self._bytes is None or size is None else self._bytes + size
            if self.mode != "bars" or not count:
                return
            bars = self._bars()
            if self._total is None:
                self._total = bars.add_task(self._total_text(), total=self._bytes, unit="bytes")
            else:
                bars.update(self._total, total=self._bytes, description=self._total_text())

    def _total_text(self) -> str:
        return f"download {self._done}/{self._count}"

    @contextmanager
    def transfer(self, name: str, size: int | None) -> Iterator[Callable[[int], None]]:
        """Yields `advance(nbytes)` (negative when a transfer starts over)."""
        size = size if size and size > 0 else None  # 0 means "not known", never "empty"
        t0 = time.monotonic()
        got = [0]
        if self.mode != "bars":

            def count(n: int) -> None:
                got[0] += n

            yield count
            self._finished(name, got[0], time.monotonic() - t0)
            return
        with self._lock:
            bars = self._bars()
            task = bars.add_task(name, total=size, unit="bytes")

        def advance(n: int) -> None:
            got[0] += n
            bars.advance(task, n)
            if self._total is not None:
                bars.advance(self._total, n)

        try:
            yield advance
        finally:
            bars.remove_task(task)
        self._finished(name, got[0], time.monotonic() - t0)

    def _finished(self, name: str, nbytes: int, took: float) -> None:
        with self._lock:
            self._done += 1
            done, count = self._done, max(self._count, self._done)
        if self.mode == "lines":
            self._line(f"download {done}/{count} {name} {size_text(nbytes)} in {took:.1f} s")
        elif self.mode == "bars" and self._rich is not None and self._total is not None:
            self._rich.update(self._total, description=self._total_text())


class Stage:
    """A counted phase: `with reporter.stage("headers", 31) as st: ... st.advance("b8095")`."""

    def __init__(
        self, reporter: Reporter, name: str, total: int | None, after: float = 0.0
    ) -> None:
        self.reporter = reporter
        self.name = name
        self.total = total
        self.after = after
        self.done = 0
        self._t0 = time.monotonic()
        self._task: TaskID | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> Stage:
        self.reporter.__enter__()
        self._t0 = time.monotonic()
        if not self.after:
            self._show()
        return self

    def _show(self) -> None:
        if self.reporter.mode == "bars" and self.total != 0 and self._task is None:
            with self.reporter._lock:
                self._task = self.reporter._bars().add_task(
                    self._text(), total=self.total, unit="items", completed=self.done
                )

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        rich = self.reporter._rich
        if self._task is not None and rich is not None:
            rich.update(self._task, description=self._text(), completed=self.done)
        self.reporter.__exit__(et, e, tb)

    def _text(self) -> str:
        return f"{self.name} {self.done}/{self.total if self.total is not None else '?'}"

    def advance(self, label: str = "", n: int = 1) -> None:
        with self._lock:
            self.done += n
            text = self._text()
        r = self.reporter
        took = time.monotonic() - self._t0
        if took < self.after:
            return
        self._show()
        if r.mode == "lines":
            r._line(f"{text}{' ' + label if label else ''} ({took:.1f} s)")
        elif r.mode == "bars" and self._task is not None and r._rich is not None:
            r._rich.update(self._task, description=self._text(), completed=self.done)

    @contextmanager
    def watch(self, paths: Iterable[tuple[Path, str]]) -> Iterator[None]:
        """Advance once per file that appears (a child process's per-cell result), while the
        body runs: progress for work done in other processes, with no protocol between them."""
        pending = dict(paths)
        stop = threading.Event()
        since = time.time() - 1  # a result left by an earlier run in the same folder is not one

        def poll() -> None:
            while pending and not stop.wait(POLL_S):
                self._seen(pending, since)

        t = threading.Thread(target=poll, name="llama-harness-watch", daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join()
            self._seen(pending, since)

    def _seen(self, pending: dict[Path, str], since: float) -> None:
        for path in list(pending):
            try:
                fresh = path.stat().st_mtime >= since
            except OSError:
                continue
            if fresh:
                self.advance(pending.pop(path))


def _amount_column() -> Any:
    from rich.progress import DownloadColumn, ProgressColumn
    from rich.text import Text

    class Amount(ProgressColumn):
        """Bytes (with speed) for transfers, `M/N` for counted stages; `?` never shown."""

        def __init__(self) -> None:
            super().__init__()
            self._bytes = DownloadColumn()

        def render(self, task: Any) -> Text:
            if task.fields.get("unit") != "bytes":
                return Text("")
            speed = f"  {size_text(int(task.speed))}/s" if task.speed else ""
            if task.total is None:
                return Text(f"{size_text(int(task.completed))}{speed}", style="progress.download")
            return self._bytes.render(task) + Text(speed, style="progress.data.speed")

    return Amount()


# The old name: provision and library construct `Bars(enabled)`.
Bars = Reporter
