"""node-llama-cpp's prebuilt packages as a source of official llama.cpp builds.

`@node-llama-cpp/<platform>@<version>` carries `bins/<platform>/_nlcBuildMetadata.json`, which
names the llama.cpp release it was built from. We keep an index version → release in the cache,
built from that metadata, filled on demand (a bisection over the versions, since releases only
move forward) or all at once (`llama-harness npm-index --refresh`).

The user's npm settings decide where and how we ask (registry per scope, proxy, CA, `.npmrc`
auth: see npmrc.py), but we talk to the registry ourselves: the index reads each probed tarball
only up to its metadata file (~10 kB of ~10 MB) and stops; a package is downloaded once, straight
into our cache (never into npm's too), verified against its registry `dist.integrity` (sha512)
while it streams. Registry answers (packuments) are asked once per run; what the index learnt
(versions, releases, platforms, integrity, sizes) is kept, so a warm run asks nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import filelock

from harness.cache import hashes
from harness.errors import AssetNotFound, DigestMismatch, ReleaseNotFound, SourceError
from harness.sources.assets import AssetMatch, default_variant
from harness.sources.base import Asset, Fetcher, Progress, Release, Want
from harness.sources.npmregistry import PARALLEL, Registry

if TYPE_CHECKING:
    from harness.progress import Reporter

log = logging.getLogger(__name__)

MAIN = "node-llama-cpp"
SCOPE = "@node-llama-cpp"
PROBE_PLATFORM = "linux-x64"  # published for every version, and small
METADATA = "_nlcBuildMetadata.json"
_OS = {"linux": "linux", "mac": "macos", "win": "windows", "android": "android"}
_STABLE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
_BUILD = re.compile(r"^b([0-9]+)$")


def platform_cell(platform: str) -> AssetMatch | None:
    """`linux-x64-vulkan` → linux/x64/vulkan, `mac-arm64-metal` → macos/arm64/metal, by rule."""
    parts = platform.split("-")
    if len(parts) < 2 or parts[0] not in _OS:
        return None
    os_, arch = _OS[parts[0]], parts[1]
    variant = "-".join(parts[2:]) or default_variant(os_, arch)
    return AssetMatch("binary", os_, arch, variant, "tar.gz")


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


class NpmSource:
    name = "npm"

    def __init__(self, cache_dir: Path, npm: str | None = None) -> None:
        self.folder = cache_dir / "npm"
        self.npm = npm or shutil.which("npm") or "npm"
        self._index: dict[str, Any] | None = None
        self._alternates: dict[str, list[str]] = {}  # spec → older specs of the same release
        self.registry = Registry(self.npm)
        self._lock = threading.RLock()  # one resolution at a time (the index is one dict)

    # -- packages ------------------------------------------------------------------------------

    def pack(self, spec: str, dest: Path) -> Path:
        """A package's tarball into `dest` (named as `npm pack` names it), from the registry and
        verified against its integrity; unlike `npm pack`, npm's own cache keeps no copy."""
        from harness.sources import stream as fetch  # lazy: a warm run makes no request

        dist = self.registry.dist(spec)
        name, _, version = spec.rpartition("@")
        path = dest / f"{name.removeprefix('@').replace('/', '-')}-{version}.tgz"
        sri = dist.get("integrity")
        algo = "sha512" if isinstance(sri, str) and sri.startswith("sha512-") else "sha256"
        with path.open("wb") as out:
            _, digest = fetch.stream(self.registry.session(), dist["tarball"], out, algo, name=spec)
        if algo == "sha512" and not hashes.same(digest, hashes.from_sri(str(sri))):
            path.unlink(missing_ok=True)
            raise DigestMismatch(f"{spec}: the registry's tarball does not match its integrity")
        return path

    # -- the index: version → llama.cpp release ------------------------------------------------

    def _load(self) -> dict[str, Any]:
        if self._index is None:
            try:
                data = json.loads((self.folder / "index.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}
            self._index = {
                "versions": data.get("versions", []),
                "tags": data.get("tags", {}),
                "platforms": data.get("platforms", {}),
                "integrity": data.get("integrity", {}),
                "sizes": data.get("sizes", {}),
            }
        return self._index

    def _save(self) -> None:
        """Merge into the file under a lock (other processes may have learnt other versions)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        mine = self._load()
        with filelock.FileLock(str(self.folder / "index.lock")):
            path = self.folder / "index.json"
            try:
                theirs = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                theirs = {}
            for key in ("tags", "platforms", "integrity", "sizes"):
                mine[key] = {**theirs.get(key, {}), **mine[key]}
            if len(theirs.get("versions", [])) > len(mine["versions"]):
                mine["versions"] = theirs["versions"]
            tmp = path.with_name(f"index.{id(self)}.json.incomplete")
            tmp.write_text(json.dumps(mine, indent=1, sort_keys=True), encoding="utf-8")
            tmp.replace(path)

    def versions(self, refresh: bool = False) -> list[str]:
        index = self._load()
        if refresh or not index["versions"]:
            # the platform packages start at 3.x; the main package has older versions too
            got = list(self.registry.packument(f"{SCOPE}/{PROBE_PLATFORM}")["versions"])
            index["versions"] = sorted((v for v in got if _STABLE.match(v)), key=_version_key)
            self._save()
        return list(index["versions"])

    def tag_of(self, version: str) -> str:
        index = self._load()
        if version not in index["tags"]:
            index["tags"][version] = self._probe(version)
            self._save()
        return str(index["tags"][version])

    def _probe(self, version: str) -> str:
        """Read the release a version carries from its own package metadata (the tarball is
        read only up to that file, ~10 kB of ~10 MB)."""
        spec = f"{SCOPE}/{PROBE_PLATFORM}@{version}"
        raw = self.registry.read_member(spec, "/" + METADATA)
        if raw is None:
            raise SourceError(f"{MAIN} {version}: no {METADATA} in its package")
        try:
            return str(json.loads(raw)["buildOptions"]["llamaCpp"]["release"])
        except (ValueError, KeyError, TypeError) as err:
            raise SourceError(f"{MAIN} {version}: {METADATA} names no llama.cpp release") from err

    def known(self) -> dict[str, str]:
        return dict(self._load()["tags"])

    def refresh(self, progress: Reporter | None = None) -> dict[str, str]:
        """Learn every version's release (the `npm-index --refresh` command): the versions not
        yet known are probed PARALLEL at a time, each reading ~10 kB of its package."""
        versions = self.versions(refresh=True)
        tags = self._load()["tags"]
        todo = [v for v in versions if v not in tags]
        if todo:
            stage = progress.stage("npm-index", len(todo)) if progress else None
            with stage or contextlib.nullcontext(), _pool() as pool:
                for v, tag in zip(todo, pool.map(self._probe, todo), strict=True):
                    tags[v] = tag
                    if stage:
                        stage.advance(f"{v} → {tag}")
            self._save()
        return dict(self._load()["tags"])

    def version_for(self, tag: str) -> str:
        """The newest package version that carries `tag` (`b<N>`, `v*` or `latest`)."""
        return self.versions_for(tag)[0]

    def versions_for(self, tag: str) -> list[str]:
        """Every version that carries `tag`, newest first (a rebuild may lack a platform)."""
        versions = self.versions(refresh=tag == "latest")
        if not versions:
            raise ReleaseNotFound(f"npm lists no versions of {MAIN}")
        if tag == "latest":
            tag = self.tag_of(versions[-1])
        known = [v for v in versions if self._load()["tags"].get(v) == tag]
        if not known:
            known = self._search(versions, tag)
        if not known:
            raise ReleaseNotFound(
                f"npm's {MAIN} carries no build of llama.cpp {tag} "
                f"(it carries {self.tag_of(versions[0])} … "
                f"{self.tag_of(versions[-1])})"
            )
        lo, hi = (
            versions.index(min(known, key=_version_key)),
            versions.index(max(known, key=_version_key)),
        )
        while lo > 0 and self.tag_of(versions[lo - 1]) == tag:
            lo -= 1
        while hi + 1 < len(versions) and self.tag_of(versions[hi + 1]) == tag:
            hi += 1
        return list(reversed(versions[lo : hi + 1]))

    def _search(self, versions: list[str], tag: str) -> list[str]:
        m = _BUILD.match(tag)
        if not m:  # v* tags: only the newest versions carry them; walk back until a b<N>
            found = []
            for v in reversed(versions):
                t = self.tag_of(v)
                if t == tag:
                    found.append(v)
                elif _BUILD.match(t):
                    break
            return found
        want = int(m.group(1))

        def key(i: int) -> float:
            t = _BUILD.match(self.tag_of(versions[i]))
            return float(t.group(1)) if t else float("inf")  # v* tags come after every b<N>

        lo, hi = 0, len(versions)
        while lo < hi:  # first index whose build >= want
            mid = (lo + hi) // 2
            if key(mid) < want:
                lo = mid + 1
            else:
                hi = mid
        found = []
        while lo < len(versions) and key(lo) == want:
            found.append(versions[lo])
            lo += 1
        return found

    # -- the Source protocol ------------------------------------------------------------------

    def _platforms(self, version: str) -> list[str]:
        index = self._load()
        if version not in index["platforms"]:
            info = self.registry.packument(MAIN)["versions"].get(version) or {}
            deps = info.get("optionalDependencies") or {}
            index["platforms"][version] = sorted(
                p.split("/", 1)[1] for p in deps if p.startswith(f"{SCOPE}/")
            )
            self._save()
        return list(index["platforms"][version])

    def get_release(self, tag: str) -> Release:
        with self._lock:  # releases are resolved concurrently; the index is one dict
            rel = self._get_release(tag)
        return self._sized(rel)

    def _learn(self, spec: str) -> None:
        index = self._load()
        with contextlib.suppress(SourceError):  # unpublished: the download says so, per cell
            self._integrity(spec, save=False)
        if spec not in index["sizes"] and index["integrity"].get(spec):
            n = self.registry.size(spec)
            if n is not None:
                index["sizes"][spec] = n

    def _sized(self, rel: Release) -> Release:
        """Each package's size and integrity, for `assets` and for progress: learnt once (a HEAD
        and the packument per package, PARALLEL at a time), then kept in the index."""
        index = self._load()
        specs = [a.url.removeprefix("npm:") for a in rel.assets]
        if any(s not in index["sizes"] or s not in index["integrity"] for s in specs):
            with _pool() as pool:
                list(pool.map(self._learn, specs))
            self._save()
        assets = tuple(
            dataclasses.replace(
                a, size=index["sizes"].get(spec) or 0, digest=index["integrity"].get(spec)
            )
            for a, spec in zip(rel.assets, specs, strict=True)
        )
        return dataclasses.replace(rel, assets=assets)

    def _get_release(self, tag: str) -> Release:
        versions = self.versions_for(tag)
        version, build = versions[0], self.tag_of(versions[0])
        assets = []
        seen: set[str] = set()
        for v in versions:
            for platform in self._platforms(v):
                cell = platform_cell(platform)
                if cell and platform not in seen:
                    seen.add(platform)
                    self._alternates[f"{SCOPE}/{platform}@{v}"] = [
                        f"{SCOPE}/{platform}@{o}" for o in versions[versions.index(v) + 1 :]
                    ]
                    assets.append(
                        Asset(
                            f"node-llama-cpp-{platform}-{v}.tgz",
                            0,
                            None,
                            f"npm:{SCOPE}/{platform}@{v}",
                            cell,
                        )
                    )
        return Release(
            tag=tag,
            build=build,
            name=f"{MAIN} {version}",
            published_at=None,
            prerelease=False,
            assets=tuple(assets),
            source=self.name,
            extra={"npm_version": version},
        )

    def list_releases(self, limit: int | None = None) -> list[Release]:
        versions = list(reversed(self.versions(refresh=True)))[: limit or None]
        return [
            Release(
                tag=self.tag_of(v),
                build=self.tag_of(v),
                name=f"{MAIN} {v}",
                published_at=None,
                prerelease=False,
                source=self.name,
                extra={"npm_version": v},
            )
            for v in versions
        ]

    def prepare(self, want: Want) -> Want:
        """Its registry integrity; when a version lists a platform it never published, the
        next older version that carries the same llama.cpp release."""
        if want.digest:
            return want
        first = want.url.removeprefix("npm:")
        tried = [first, *self._alternates.get(first, [])]
        for spec in tried:
            try:
                digest = self._integrity(spec)
            except AssetNotFound:
                continue
            platform, _, version = spec.removeprefix(f"{SCOPE}/").partition("@")
            return Want(
                want.build,
                f"node-llama-cpp-{platform}-{version}.tgz",
                self._load()["sizes"].get(spec) or None,
                digest,
                f"npm:{spec}",
                want.source,
            )
        package, versions = first.rpartition("@")[0], [s.rpartition("@")[2] for s in tried]
        raise AssetNotFound(
            f"{MAIN} lists {package} for {want.build}, but npm never published it "
            f"(tried {', '.join(versions)})"
        )

    def _integrity(self, spec: str, save: bool = True) -> str:
        index = self._load()
        if index["integrity"].get(spec, "") is None:
            raise AssetNotFound(f"npm has no package {spec}")
        if spec not in index["integrity"]:
            try:
                sri = self.registry.dist(spec).get("integrity")
            except AssetNotFound:
                index["integrity"][spec] = None  # listed but never published: remembered
                if save:
                    self._save()
                raise
            if not isinstance(sri, str) or not sri.startswith("sha512-"):
                raise SourceError(f"npm publishes no sha512 integrity for {spec}")
            index["integrity"][spec] = hashes.from_sri(sri)
            if save:
                self._save()
        return str(index["integrity"][spec])

    def source_archive(self, release: Release, target: Path) -> Path:
        """npm packages carry a git bundle of the release instead (`abi.release` reads it)."""
        raise SourceError(f"npm has no source archive for {release.build or release.tag}")

    def fetcher(self, want: Want, progress: Progress) -> Fetcher:
        """Straight from the registry into our cache, hashed as it streams (no `npm pack`, so
        npm's own cache never holds a second copy)."""
        from harness.sources import stream as fetch  # lazy: a warm run makes no request

        spec = want.url.removeprefix("npm:")

        def get(out: Any, algo: str) -> tuple[int, str]:
            url = self.registry.dist(spec)["tarball"]
            return fetch.stream(
                self.registry.session(),
                url,
                out,
                algo,
                name=want.name,
                expected_size=want.size,
                progress=progress,
            )

        return get


@contextlib.contextmanager
def _pool() -> Iterator[ThreadPoolExecutor]:
    """Registry requests PARALLEL at a time; on Ctrl-C the queued ones are dropped, not awaited."""
    pool = ThreadPoolExecutor(PARALLEL)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
