"""A release's own public headers, as a flat include folder for the ABI parser.

The binary archives carry no headers, so the layout of `llama_model_params` & co. must come from
the release's source: either node-llama-cpp's `llama/gitRelease.bundle` (a git bundle of the tag)
or GitHub's source tarball. Only `llama.h` and the headers it pulls in from the repository are
copied (ggml.h, ggml-backend.h, gguf.h ...); where a release keeps them moved over time
(top level, `ggml/include/`), so each `#include` name is looked up in the tree, not in a fixed
list. The folder appears all at once (temp folder + rename): a half-written one would parse into
a wrong ABI.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import posixpath
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.cache.extract import safe_extract
from harness.errors import SourceError

__all__ = ["SOURCE_FILE", "headers_from_bundle", "headers_from_source_tarball"]

log = logging.getLogger(__name__)

ROOT_HEADER = "llama.h"
SOURCE_FILE = ".source.json"  # provenance, written into the include folder
# Where releases keep public headers, most likely first; `<...>` includes are looked up only here,
# anything else is the C library's.
_PUBLIC_DIRS = ("include", "ggml/include", "")
_INCLUDE = re.compile(rb'^[ \t]*#[ \t]*include[ \t]*([<"])([^>"\n]+)[>"]', re.MULTILINE)
_MAX_LINK_HOPS = 40
_GIT_TIMEOUT_S = 600


@dataclass
class _Tree:
    """A source tree seen as paths → readers, whether it lives in git or on disk."""

    paths: dict[str, Callable[[], bytes]]
    links: dict[str, str] = field(default_factory=dict)  # symlink path → target (git only)

    def resolve(self, path: str) -> str | None:
        """Follow symlinks as git stores them (spm-headers/ links to the real headers)."""
        for _ in range(_MAX_LINK_HOPS):
            target = self.links.get(path)
            if target is None:
                return path if path in self.paths else None
            path = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
        return None

    def find(self, name: str, near: str, quoted: bool) -> str | None:
        """Where the compiler would find `#include name`, as seen from the file `near`."""
        tried = [posixpath.join(posixpath.dirname(near), name)] if quoted else []
        tried += [posixpath.join(d, name) if d else name for d in _PUBLIC_DIRS]
        for path in tried:
            hit = self.resolve(posixpath.normpath(path))
            if hit is not None:
                return hit
        if not quoted:
            return None
        # Older layouts: the header sits somewhere else in the tree; take the shortest path.
        suffix = "/" + name
        found = sorted(
            (p for p in (*self.paths, *self.links) if p.endswith(suffix)),
            key=lambda p: (p.count("/"), p),
        )
        for path in found:
            hit = self.resolve(path)
            if hit is not None:
                return hit
        return None


def _collect(tree: _Tree, origin: str) -> dict[str, tuple[str, bytes]]:
    """`llama.h` and its transitive in-repo includes: include name → (repo path, bytes)."""
    root = tree.find(ROOT_HEADER, "", quoted=True)
    if root is None:
        raise SourceError(f"no {ROOT_HEADER} found in {origin}")
    out: dict[str, tuple[str, bytes]] = {}
    todo = [(ROOT_HEADER, root)]
    while todo:
        name, path = todo.pop()
        if name in out:
            continue
        data = tree.paths[path]()
        out[name] = (path, data)
        for m in _INCLUDE.finditer(data):
            inc = m.group(2).decode("utf-8", "replace").strip()
            hit = tree.find(inc, path, quoted=m.group(1) == b'"')
            if hit is not None:
                todo.append((inc, hit))
            elif m.group(1) == b'"':
                log.warning("%s: %s includes %r, not found in the tree", origin, path, inc)
    return out


def _publish(files: dict[str, tuple[str, bytes]], dest: Path, source: dict[str, str]) -> Path:
    """Write into a sibling temp folder and rename it into place, replacing an older one."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmp.mkdir()
        for name, (_, data) in files.items():
            target = tmp / name
            if not target.resolve().is_relative_to(tmp.resolve()):
                raise SourceError(f"{source['origin']}: refusing include name {name!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        meta = {**source, "files": {name: path for name, (path, _) in sorted(files.items())}}
        (tmp / SOURCE_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        if os.path.lexists(dest):
            old = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.old"
            os.rename(dest, old)
            os.rename(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, dest)
    except OSError as err:
        raise SourceError(f"cannot write headers to {dest}: {err}") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.debug("headers of %s → %s: %s", source["origin"], dest, ", ".join(sorted(files)))
    return dest


def _git(repo: Path, *args: str, what: str) -> bytes:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"}
    cmd = ["git", "-c", "init.defaultBranch=main", "-C", str(repo), *args]
    try:
        done = subprocess.run(cmd, capture_output=True, env=env, timeout=_GIT_TIMEOUT_S)
    except FileNotFoundError as err:
        raise SourceError(f"{what}: the git command is needed to read a git bundle") from err
    except subprocess.TimeoutExpired as err:
        raise SourceError(f"{what}: git {args[0]} took over {_GIT_TIMEOUT_S} s") from err
    if done.returncode != 0:
        msg = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise SourceError(f"{what}: git {args[0]} failed: {msg[-1] if msg else done.returncode}")
    return done.stdout


def headers_from_bundle(bundle: Path, dest: Path) -> Path:
    """Extract the headers of the tag that a git bundle holds (node-llama-cpp's
    `llama/gitRelease.bundle`) into the flat include folder `dest`; return `dest`."""
    bundle = Path(bundle).resolve()
    what = bundle.name
    if not bundle.is_file():
        raise SourceError(f"{bundle}: no such git bundle")
    with tempfile.TemporaryDirectory(prefix="harness-bundle-") as tmp:
        repo = Path(tmp)
        _git(repo, "init", "-q", "--bare", ".", what=what)
        heads = _git(repo, "bundle", "list-heads", str(bundle), what=what).decode().split()
        refs = heads[1::2]
        if not refs:
            raise SourceError(f"{what}: the bundle names no ref")
        ref = "HEAD" if "HEAD" in refs else refs[0]
        _git(repo, "fetch", "-q", "--no-tags", str(bundle), ref, what=what)
        commit = _git(repo, "rev-parse", "FETCH_HEAD^{commit}", what=what).decode().strip()
        listing = _git(repo, "ls-tree", "-r", "-z", commit, what=what)
        tree = _Tree({})
        for entry in listing.split(b"\0"):
            meta, _, raw_path = entry.partition(b"\t")
            mode, kind, sha = meta.decode().split() if meta else ("", "", "")
            path = raw_path.decode("utf-8", "surrogateescape")
            if kind != "blob" or not path.endswith(".h"):
                continue
            if mode == "120000":  # a symlink: its blob is the target path
                tree.links[path] = _git(repo, "cat-file", "blob", sha, what=what).decode().strip()
            else:
                tree.paths[path] = functools.partial(_git, repo, "cat-file", "blob", sha, what=what)
        files = _collect(tree, what)
        source = {"origin": what, "kind": "git-bundle", "ref": ref, "commit": commit}
        return _publish(files, dest, source)


def headers_from_source_tarball(tarball: Path, dest: Path) -> Path:
    """Extract the headers from a GitHub source archive (`tarball_url`: one top folder
    `<owner>-llama.cpp-<sha>/`) into the flat include folder `dest`; return `dest`."""
    tarball = Path(tarball)
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="harness-src-", dir=Path(dest).parent) as tmp:
        unpacked = safe_extract(tarball, Path(tmp) / "src", kind="tar.gz")
        tops = [p for p in unpacked.iterdir() if not p.name.startswith(".")]
        top = tops[0] if len(tops) == 1 and tops[0].is_dir() else unpacked
        tree = _Tree({})
        for path in top.rglob("*.h"):
            if path.is_file():  # follows links; safe_extract kept only those inside the tree
                rel = path.relative_to(top).as_posix()
                tree.paths[rel] = path.read_bytes
        files = _collect(tree, tarball.name)
        source = {"origin": tarball.name, "kind": "source-tarball", "top": top.name}
        return _publish(files, dest, source)
