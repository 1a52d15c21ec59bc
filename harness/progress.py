"""Progress bars for downloads: one per active download and a total, only for a person at a TTY."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


class Bars:
    """No-op unless enabled; thread-safe (rich's Progress is)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._total: TaskID | None = None
        if enabled:
            self._progress = Progress(
                TextColumn("{task.description}", justify="left"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(file=sys.stderr),
                transient=False,
            )

    def __enter__(self) -> Bars:
        if self._progress:
            self._progress.start()
            self._total = self._progress.add_task("total", total=0)
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress:
            self._progress.stop()

    @contextmanager
    def download(self, name: str, size: int | None) -> Iterator[Callable[[int], None]]:
        progress, total = self._progress, self._total
        if progress is None or total is None:
            yield lambda n: None
            return
        task = progress.add_task(name, total=size or None)
        with self._lock:
            progress.update(total, total=(progress.tasks[total].total or 0) + (size or 0))

        def advance(n: int) -> None:
            progress.advance(task, n)
            progress.advance(total, n)

        try:
            yield advance
        finally:
            progress.remove_task(task)


    @contextmanager
    def status(self, description: str) -> Iterator[Callable[[str], None]]:
        """A line of text while something without a byte count runs (listing releases);
        yields a function that rewrites it."""
        progress = self._progress
        if progress is None:
            yield lambda text: None
            return
        task = progress.add_task(description, total=None)
        try:
            yield lambda text: progress.update(task, description=text)
        finally:
            progress.remove_task(task)


def wanted(json_output: bool, quiet: bool = False) -> bool:
    return not json_output and not quiet and sys.stderr.isatty()
