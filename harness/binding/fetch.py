"""A binding named as a pip requirement, fetched as its source distribution into the cache.

    <cache>/bindings/<name>-<version>/<sdist>          what pip downloaded
    <cache>/bindings/<name>-<version>/src/             its safe extraction
    <cache>/bindings/<name>-<version>/ready.json       written last

Only the sdist: a wheel holds a compiled libllama that we would never read, and the sdist has the
binding's Python sources as the maintainer wrote them. pip does the talking to the index (the
user's index, proxy and auth settings apply); nothing is ever imported from what it fetched.
Like the release cache, the lock only avoids duplicate work: each writer downloads into its own
temp folder and the tree is renamed into place before the marker.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import filelock
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name, parse_sdist_filename

from harness.binding.model import BindingDecl
from harness.binding.read import read_binding
from harness.cache import atomic
from harness.cache.extract import safe_extract
from harness.errors import ConfigError, SourceError

log = logging.getLogger(__name__)

FOLDER = "bindings"
MARKER = "ready.json"
PIP_TIMEOUT_S = 600.0


def open_source(source: str, root: Path) -> BindingDecl:
    """Read a binding from a file or folder, or from a requirement's sdist (fetched first)."""
    if os.path.exists(source):
        return read_binding(Path(source))
    if requirement(source) is None:
        raise ConfigError(
            f"binding {source!r}: no such file or folder, and not a pip requirement (NAME==VERSION)"
        )
    name, tree = fetch(root, source)
    decl = read_binding(tree)
    decl.name = name
    return decl


def requirement(source: str) -> Requirement | None:
    """`source` read as a pip requirement naming a package (`llama-cpp-python==0.3.16`), or None
    when it is not one. A path that exists is never a requirement."""
    if os.path.exists(source) or "/" in source or "\\" in source:
        return None
    try:
        req = Requirement(source)
    except InvalidRequirement:
        return None
    return req if req.url is None else None


def pinned(req: Requirement) -> str | None:
    """The exact version of a `NAME==X` requirement: its cache entry is known before pip runs."""
    specs = list(req.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return specs[0].version
    return None


def _entry(root: Path, name: str, version: str) -> Path:
    return root / FOLDER / f"{canonicalize_name(name)}-{version}"


def _ready(entry: Path) -> Path | None:
    try:
        marker = json.loads((entry / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    src = entry / marker.get("tree", "")
    return src if marker.get("tree") and src.is_dir() else None


def fetch(root: Path, source: str) -> tuple[str, Path]:
    """(`name version`, the unpacked source tree) of a requirement; cached per name and version.

    Raises SourceError (exit 3) when pip cannot get an sdist, ConfigError for a bad requirement.
    """
    req = requirement(source)
    if req is None:
        raise ConfigError(f"{source!r} is not a pip requirement (NAME==VERSION)")
    version = pinned(req)
    if version is None:  # which version pip picks is known only once it has
        with tempfile.TemporaryDirectory(dir=_base(root), prefix=".pip-") as tmp:
            sdist = _download(str(req), Path(tmp))
            name, ver = parse_sdist_filename(sdist.name)
            entry = _entry(root, str(name), str(ver))
            with filelock.FileLock(str(entry) + ".lock"):
                return f"{req.name} {ver}", _store(entry, req, sdist)
    entry = _entry(root, req.name, version)
    if (tree := _ready(entry)) is not None:
        log.info("%s: cached at %s", source, tree)
        return f"{req.name} {version}", tree
    with filelock.FileLock(str(entry) + ".lock"):  # one process downloads, the others wait
        if (tree := _ready(entry)) is not None:
            return f"{req.name} {version}", tree
        with tempfile.TemporaryDirectory(dir=_base(root), prefix=".pip-") as tmp:
            return f"{req.name} {version}", _store(entry, req, _download(str(req), Path(tmp)))


def _base(root: Path) -> Path:
    (root / FOLDER).mkdir(parents=True, exist_ok=True)
    return root / FOLDER


def _store(entry: Path, req: Requirement, sdist: Path) -> Path:
    """Move the sdist into its entry, extract it, write the marker last; the caller holds the
    entry's lock."""
    if (tree := _ready(entry)) is not None:
        return tree
    entry.mkdir(parents=True, exist_ok=True)
    (entry / MARKER).unlink(missing_ok=True)
    kept = entry / sdist.name
    os.replace(sdist, kept)
    tree = _top(safe_extract(kept, entry / "src", kind=_kind(kept.name)))
    marker = {"requirement": str(req), "sdist": kept.name, "tree": str(tree.relative_to(entry))}
    atomic.write_text(entry / MARKER, json.dumps(marker), durable=True)
    return tree


def _download(req: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    cmd += ["--disable-pip-version-check", "--dest", str(dest), req]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        raise SourceError(f"{req}: pip download took more than {PIP_TIMEOUT_S:.0f} s") from err
    except OSError as err:
        raise SourceError(f"{req}: cannot run pip: {err}") from err
    files = [p for p in dest.iterdir() if p.is_file()]
    if done.returncode != 0 or len(files) != 1:
        lines = [ln for ln in done.stderr.splitlines() if ln.startswith("ERROR")]
        why = lines[-1] if lines else (done.stderr.strip().splitlines() or ["no sdist"])[-1]
        raise SourceError(f"{req}: no source distribution from pip: {why}")
    return files[0]


def _kind(name: str) -> str:
    return "zip" if name.lower().endswith(".zip") else "tar.gz"


def _top(src: Path) -> Path:
    """An sdist holds one folder, `<name>-<version>/`: the binding's root."""
    inside = [p for p in src.iterdir() if not p.name.startswith(".")]
    return inside[0] if len(inside) == 1 and inside[0].is_dir() else src


def remove(root: Path, name: str, version: str) -> None:
    """Forget one fetched binding (tests; a corrupt entry)."""
    entry = _entry(root, name, version)
    with filelock.FileLock(str(entry) + ".lock"):
        shutil.rmtree(entry, ignore_errors=True)
