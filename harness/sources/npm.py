"""node-llama-cpp's prebuilt packages as a source of official llama.cpp builds.

`@node-llama-cpp/<platform>@<version>` carries `bins/<platform>/_nlcBuildMetadata.json`, which
names the llama.cpp release it was built from. We keep an index version → release in the cache,
built from that metadata, filled on demand (a bisection over the versions, since releases only
move forward) or all at once (`llama-harness npm-index --refresh`).

Everything goes through the `npm` CLI (`npm view`, `npm pack`), so the user's registry, proxy and
auth settings apply; no registry host is named here. Each package is checked against its
registry `dist.integrity` (sha512) by our own cache, like every other asset.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import filelock

from harness.cache import hashes
from harness.errors import AssetNotFound, ReleaseNotFound, SourceError
from harness.sources import stream as fetch
from harness.sources.assets import AssetMatch, default_variant
from harness.sources.base import Asset, Fetcher, Progress, Release, Want

log = logging.getLogger(__name__)

MAIN = "node-llama-cpp"
SCOPE = "@node-llama-cpp"
PROBE_PLATFORM = "linux-x64"  # published for every version, and small
METADATA = "_nlcBuildMetadata.json"
_OS = {"linux": "linux", "mac": "macos", "win": "windows", "android": "android"}
_STABLE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
_BUILD = re.compile(r"^b([0-9]+)$")
_NETWORK = re.compile(
    r"ENOTFOUND|ECONNREFUSED|ETIMEDOUT|EAI_AGAIN|ECONNRESET|ENETUNREACH|"
    r"EHOSTUNREACH|network|socket hang up",
    re.IGNORECASE,
)
NPM_TIMEOUT_S = 600


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

    # -- the npm CLI ---------------------------------------------------------------------------

    def _run(self, *args: str, what: str) -> str:
        try:
            proc = subprocess.run(
                [self.npm, *args],
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT_S,
                check=False,
            )
        except FileNotFoundError as err:
            raise SourceError("npm is not installed (the npm source needs the npm CLI)") from err
        except subprocess.TimeoutExpired as err:
            raise SourceError(f"npm timed out after {NPM_TIMEOUT_S} s ({what})") from err
        if proc.returncode != 0:
            err_text = proc.stderr.strip()
            first = next(
                (ln for ln in err_text.splitlines() if "ERR!" in ln and "code" not in ln),
                err_text.splitlines()[0] if err_text else f"exit {proc.returncode}",
            )
            if any(code in err_text for code in ("E404", "ETARGET", "No match found")):
                raise AssetNotFound(f"npm has no {what}")
            if _NETWORK.search(err_text):
                raise SourceError(f"npm registry unreachable ({what}): {first.strip()}")
            raise SourceError(f"npm failed ({what}): {first.strip()}")
        return proc.stdout

    def _view(self, spec: str, field: str) -> Any:
        out = self._run("view", spec, field, "--json", what=f"{spec} {field}").strip()
        if not out:
            return None
        try:
            return json.loads(out)
        except ValueError as err:
            raise SourceError(f"npm view {spec} {field} printed no JSON") from err

    def pack(self, spec: str, dest: Path) -> Path:
        """`npm pack` into `dest`; the path of the tarball."""
        out = self._run("pack", spec, "--pack-destination", str(dest), "--json", what=spec)
        try:
            name = json.loads(out)[0]["filename"]
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise SourceError(f"npm pack {spec} printed no file name") from err
        # npm names scoped packages `scope-name-ver.tgz`; take the one file it wrote
        path = dest / name.replace("@", "").replace("/", "-")
        if not path.is_file():
            found = list(dest.glob("*.tgz"))
            if len(found) != 1:
                raise SourceError(f"npm pack {spec} wrote no tarball")
            path = found[0]
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
            for key in ("tags", "platforms", "integrity"):
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
            got = self._view(f"{SCOPE}/{PROBE_PLATFORM}", "versions")
            got = [got] if isinstance(got, str) else (got or [])
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
        """Read the release a version carries from its own package metadata."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.folder, prefix=".probe-") as tmp:
            tgz = self.pack(f"{SCOPE}/{PROBE_PLATFORM}@{version}", Path(tmp))
            try:
                with tarfile.open(tgz, "r:gz") as tar:
                    for member in tar:
                        if member.isfile() and member.name.endswith("/" + METADATA):
                            f = tar.extractfile(member)
                            meta = json.loads(f.read(65536)) if f else {}
                            break
                    else:
                        raise SourceError(f"{MAIN} {version}: no {METADATA} in its package")
            except (tarfile.TarError, OSError, ValueError) as err:
                raise SourceError(f"{MAIN} {version}: unreadable package ({err})") from err
        try:
            return str(meta["buildOptions"]["llamaCpp"]["release"])
        except (KeyError, TypeError) as err:
            raise SourceError(f"{MAIN} {version}: {METADATA} names no llama.cpp release") from err

    def known(self) -> dict[str, str]:
        return dict(self._load()["tags"])

    def refresh(self) -> dict[str, str]:
        """Learn every version's release (the `npm-index --refresh` command)."""
        for v in self.versions(refresh=True):
            self.tag_of(v)
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
            deps = self._view(f"{MAIN}@{version}", "optionalDependencies") or {}
            index["platforms"][version] = sorted(
                p.split("/", 1)[1] for p in deps if p.startswith(f"{SCOPE}/")
            )
            self._save()
        return list(index["platforms"][version])

    def get_release(self, tag: str) -> Release:
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
                want.size,
                digest,
                f"npm:{spec}",
                want.source,
            )
        package, versions = first.rpartition("@")[0], [s.rpartition("@")[2] for s in tried]
        raise AssetNotFound(
            f"{MAIN} lists {package} for {want.build}, but npm never published it "
            f"(tried {', '.join(versions)})"
        )

    def _integrity(self, spec: str) -> str:
        index = self._load()
        if index["integrity"].get(spec, "") is None:
            raise AssetNotFound(f"npm has no package {spec}")
        if spec not in index["integrity"]:
            try:
                sri = self._view(spec, "dist.integrity")
            except AssetNotFound:
                index["integrity"][spec] = None  # listed but never published: remembered
                self._save()
                raise
            if not isinstance(sri, str) or not sri.startswith("sha512-"):
                raise SourceError(f"npm publishes no sha512 integrity for {spec}")
            index["integrity"][spec] = hashes.from_sri(sri)
            self._save()
        return str(index["integrity"][spec])

    def source_archive(self, release: Release, target: Path) -> Path:
        """npm packages carry a git bundle of the release instead (`abi.release` reads it)."""
        raise SourceError(f"npm has no source archive for {release.build or release.tag}")

    def fetcher(self, want: Want, progress: Progress) -> Fetcher:
        spec = want.url.removeprefix("npm:")

        def get(out: Any, algo: str) -> tuple[int, str]:
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=self.folder, prefix=".pack-") as tmp:
                return fetch.copy_file(self.pack(spec, Path(tmp)), out, algo, progress)

        return get
