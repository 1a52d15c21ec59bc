"""The cache root: what marks a folder as ours, and the only ways anything in it is locked or
deleted.

Nothing outside the root is ever written or deleted, whatever links the cache holds: a path is
written or deleted only when its folder resolves inside the root, and a link is removed as a link,
never followed. Deleting also needs the root's tag file (CACHEDIR.TAG, the convention backup tools
honour), so a `--cache-dir` pointed at a project folder by mistake loses nothing.

A folder becomes ours (is tagged) when it is new or empty, when it is the default cache folder
(named after us), or when it holds only what an earlier, untagged llama-harness cache holds at its
top level (`KNOWN`). Any other folder stays untagged: downloads still work there, but clean-cache
refuses it (exit 2).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import filelock

from harness.errors import CacheBusy, CacheError, ConfigError

log = logging.getLogger(__name__)

TAG = "CACHEDIR.TAG"
TAG_TEXT = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by llama-harness.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)
# Top-level names an untagged cache of an earlier llama-harness holds: such a folder is adopted.
KNOWN = frozenset(
    {"api", "releases", "locks", "models", "headers", "native", "npm", "bindings", "sdists", TAG}
)
ENV_LOCK_TIMEOUT = "LLAMA_HARNESS_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 900.0
# errnos that describe the place we write to, not the data: a cache error, not a bad archive
_PLACE_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.EISDIR,
        errno.ENOTDIR,
        errno.ELOOP,
        errno.EIO,
        errno.EMFILE,
        errno.ENFILE,
    }
)


def resolve(chosen: str | Path) -> Path:
    """The real path of the root; a symlink loop is a configuration error, not a traceback."""
    path = Path(chosen).expanduser()
    try:
        return path.resolve()
    except (RuntimeError, OSError) as err:  # 3.10-3.12: RuntimeError; 3.13: OSError(ELOOP)
        raise ConfigError(
            f"cache folder {path} cannot be used: it is a symlink loop; "
            "choose another with --cache-dir or LLAMA_HARNESS_CACHE"
        ) from err


def lock_timeout(value: str | float | None = None) -> float:
    """Seconds to wait for an entry another process holds: the option, else the environment."""
    raw = value if value is not None else os.environ.get(ENV_LOCK_TIMEOUT)
    if raw is None or raw == "":
        return DEFAULT_LOCK_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(
            f"lock timeout {raw!r}: must be a number of seconds, 0 or more "
            f"(--lock-timeout or {ENV_LOCK_TIMEOUT})"
        )
    return seconds


def is_place_error(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in _PLACE_ERRNOS


def place_error(err: OSError, doing: str, path: Path | str | None = None) -> CacheError:
    """One line naming the path and the cause (`No space left on device`)."""
    where = err.filename if err.filename is not None else path
    cause = err.strerror or type(err).__name__
    return CacheError(f"cache: cannot {doing} {where}: {cause}")


def tagged(root: Path) -> bool:
    return (root / TAG).is_file()


def claim(root: Path, *, ours_by_name: bool) -> bool:
    """Tag `root` as a llama-harness cache when it is new, empty, the default folder or an earlier
    version's cache; True when it is tagged. Any other folder stays untagged: downloads still go
    there, but nothing is deleted in it in bulk (clean-cache refuses, exit 2)."""
    if tagged(root):
        return True
    try:
        root.mkdir(parents=True, exist_ok=True)
        present = {p.name for p in root.iterdir()}
    except OSError as err:
        raise ConfigError(
            f"cache folder {root} is not usable ({err.strerror or err}); "
            "choose another with --cache-dir or LLAMA_HARNESS_CACHE"
        ) from err
    strangers = sorted(n for n in present - KNOWN if not n.startswith(".probe."))
    if strangers and not ours_by_name:
        log.info("%s holds %r and no %s: not tagged as a cache", root, strangers[0], TAG)
        return False
    try:
        (root / TAG).write_text(TAG_TEXT, encoding="utf-8")
    except OSError as err:
        raise place_error(err, "write", root / TAG) from err
    if present:
        log.info("adopted %s as a llama-harness cache (wrote %s)", root, TAG)
    return True


def require_tag(root: Path) -> None:
    if not tagged(root):
        raise ConfigError(
            f"refusing to delete in {root}: it has no {TAG}, and holds more than a llama-harness "
            f"cache does; if it really is one, create {root / TAG} (see docs/security-cache.md)"
        )


def inside(root: Path, path: Path) -> bool:
    """Does `path` (links followed as far as they exist) stay inside the root?"""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + os.sep)


def require_inside(root: Path, path: Path, doing: str) -> None:
    if not inside(root, path):
        raise CacheError(
            f"cache: refusing to {doing} {path}: it leads outside the cache root {root} "
            f"(to {os.path.realpath(path)}); remove that link from the cache"
        )


def remove(root: Path, path: Path) -> bool:
    """Delete one file, link or folder of the cache; never anything outside the root, never
    through a link (a link goes, its target stays). False when there was nothing to delete."""
    if not os.path.lexists(path):
        return False
    require_inside(root, path.parent, "delete in")
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path)  # does not follow links inside the tree
    except OSError as err:
        raise place_error(err, "delete", path) from err
    return True


def try_lock(path: Path, timeout: float) -> filelock.BaseFileLock | None:
    """The entry's lock, or None when another process still holds it after `timeout` seconds."""
    lock = filelock.FileLock(str(path), thread_local=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire(timeout=timeout)
    except filelock.Timeout:
        return None
    except OSError as err:  # EISDIR, EACCES, EPERM, ENOSPC on the lock file itself
        raise place_error(err, "lock", path) from err
    return lock


@contextlib.contextmanager
def locked(path: Path, timeout: float, what: str) -> Iterator[None]:
    """Hold an entry's lock, waiting at most `timeout` seconds for another process to let go."""
    lock = try_lock(path, 0)
    if lock is None:
        log.warning("waiting for lock on %s (up to %g s)", path, timeout)
        lock = try_lock(path, timeout)
    if lock is None:
        raise CacheBusy(
            f"{what}: still locked by another process after {timeout:g} s ({path}); wait for "
            f"it to finish, or raise --lock-timeout (or {ENV_LOCK_TIMEOUT})"
        )
    try:
        yield
    finally:
        lock.release()
