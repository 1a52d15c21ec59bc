"""GitHub REST releases of ggml-org/llama.cpp (a fork, GitHub Enterprise, a mirror).

Every API response is kept on disk with its ETag; the next request sends `If-None-Match`, and a 304
costs nothing against the rate limit. When the API cannot be reached at all, the last good answer is
used (with a warning) so a warm cache keeps working offline.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from requests.utils import parse_header_links

from harness.cache import atomic
from harness.errors import RateLimited, ReleaseNotFound, SourceError
from harness.sources import http
from harness.sources import stream as fetch
from harness.sources.base import Asset, Fetcher, Progress, Release, Want

log = logging.getLogger(__name__)

BUILD_TAG = re.compile(r"^b[0-9]+$")
_BUILD_IN_TEXT = re.compile(r"\bb[0-9]+\b")
NIGHTLY_TAG_ASSET = "nightly-tag.txt"
DEFAULT_API = "https://api.github.com"


class GitHubSource:
    name = "github"
    label = "GitHub API"

    def __init__(
        self,
        cache_dir: Path,
        api_url: str = DEFAULT_API,
        repo: str = "ggml-org/llama.cpp",
        token: str | None = None,
        downloads: requests.Session | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.repo = repo
        self._api = http.api_session(self.api_url, token)
        self._downloads = downloads or http.download_session()
        self._etags = cache_dir / "api"

    # -- API plumbing -------------------------------------------------------------------------

    def _cache_file(self, url: str) -> Path:
        return self._etags / f"{hashlib.sha256(url.encode()).hexdigest()[:32]}.json"

    def _get(self, url: str) -> tuple[Any, str | None] | None:
        """GET an API URL → (json body, Link header), or None on 404. 304 → the cached body."""
        cache = self._cache_file(url)
        cached = _read_json(cache)
        headers = {"If-None-Match": cached["etag"]} if cached and cached.get("etag") else {}
        try:
            resp = self._api.get(url, headers=headers)
        except requests.RequestException as err:
            if cached:
                log.warning(
                    "GitHub API unreachable (%s); using the cached answer for %s",
                    type(err).__name__,
                    url,
                )
                return cached["body"], cached.get("link")
            raise SourceError(
                f"cannot reach the {self.label} at {self.api_url}: {_why(err)}"
            ) from err
        if resp.status_code == 304 and cached:
            return cached["body"], cached.get("link")
        if resp.status_code == 404:
            return None
        self._raise_for_limits(resp)
        if resp.status_code >= 400:
            raise SourceError(
                f"{self.label} answered HTTP {resp.status_code} for {_path(url)}: {_message(resp)}"
            )
        try:
            body = resp.json()
        except ValueError as err:
            raise SourceError(f"{self.label} sent invalid JSON for {_path(url)}") from err
        link = resp.headers.get("Link")
        if etag := resp.headers.get("ETag"):
            _write_json(cache, {"url": url, "etag": etag, "link": link, "body": body})
        return body, link

    def _raise_for_limits(self, resp: requests.Response) -> None:
        if resp.status_code not in (403, 429):
            return
        h = resp.headers
        if h.get("x-ratelimit-remaining") == "0":
            reset = h.get("x-ratelimit-reset", "")
            when = "at an unknown time"
            if reset.isdigit():
                at = dt.datetime.fromtimestamp(int(reset), dt.timezone.utc)
                minutes = max(0, int((at - dt.datetime.now(dt.timezone.utc)).total_seconds() // 60))
                when = f"at {at:%Y-%m-%d %H:%M:%S} UTC (in {minutes} min)"
            limit = h.get("x-ratelimit-limit", "?")
            raise RateLimited(
                f"GitHub API rate limit exhausted ({limit} requests/hour); it resets {when}; "
                "set GITHUB_TOKEN (or GH_TOKEN) to raise the limit"
            )
        if "retry-after" in h:
            raise RateLimited(
                f"GitHub API secondary rate limit hit; retry after {h['retry-after']} s; "
                "set GITHUB_TOKEN (or GH_TOKEN) to raise the limit"
            )

    # -- releases -------------------------------------------------------------------------------

    def list_releases(self, limit: int | None = None) -> list[Release]:
        out: list[Release] = []
        url: str | None = f"{self.api_url}/repos/{self.repo}/releases?per_page=100"
        while url:
            got = self._get(url)
            if got is None:
                raise SourceError(f"repository {self.repo} not found at {self.api_url}")
            body, link = got
            if not isinstance(body, list) or not all(isinstance(i, dict) for i in body):
                raise SourceError(f"{self.label} sent an unexpected answer for {_path(url)}")
            for item in body:
                if not item.get("draft"):
                    out.append(self._release(item))
                if limit is not None and len(out) >= limit:
                    return out
            url = _next_link(link)
        return out

    def get_release(self, tag: str) -> Release:
        if tag == "latest":
            got = self._get(f"{self.api_url}/repos/{self.repo}/releases/latest")
            if got is None:  # no non-prerelease release: take the newest one
                newest = self.list_releases(limit=1)
                if not newest:
                    raise ReleaseNotFound(f"no releases in {self.repo} at {self.api_url}")
                return self._with_binaries(newest[0])
            return self._with_binaries(self._release(got[0]))
        got = self._get(f"{self.api_url}/repos/{self.repo}/releases/tags/{quote(tag, safe='')}")
        if got is None or (isinstance(got[0], dict) and got[0].get("draft")):
            raise ReleaseNotFound(f"release {tag!r} not found in {self.repo} (at {self.api_url})")
        return self._with_binaries(self._release(got[0]))

    def _with_binaries(self, rel: Release) -> Release:
        """A `v*` release carries only `nightly-tag.txt`: return its `b<N>` build's assets."""
        if any(a.match.kind == "binary" for a in rel.assets) or not rel.build:
            if not rel.build:
                raise ReleaseNotFound(
                    f"release {rel.tag!r} in {self.repo} names no b<N> build with binaries"
                )
            return rel
        if rel.build == rel.tag:
            return rel  # a b<N> release without binaries: partial; callers report missing cells
        build = self.get_release(rel.build)
        return Release(
            tag=rel.tag,
            build=build.tag,
            name=rel.name,
            published_at=rel.published_at,
            prerelease=rel.prerelease,
            assets=build.assets,
            tarball_url=build.tarball_url,
            source=self.name,
        )

    def _release(self, item: Any) -> Release:
        try:
            return self._parse_release(item)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise SourceError(
                f"{self.label} sent a release of an unexpected shape ({type(err).__name__}: {err})"
            ) from err

    def _parse_release(self, item: dict[str, Any]) -> Release:
        tag = str(item["tag_name"])
        assets = tuple(
            Asset(
                name=a["name"],
                size=int(a.get("size") or 0),
                digest=a.get("digest") or None,
                url=self._asset_url(tag, a),
            )
            for a in item.get("assets", [])
        )
        build = tag if BUILD_TAG.match(tag) else self._nightly_build(tag, assets)
        return Release(
            tag=tag,
            build=build,
            name=item.get("name") or tag,
            published_at=item.get("published_at"),
            prerelease=bool(item.get("prerelease")),
            assets=assets,
            tarball_url=item.get("tarball_url"),
            source=self.name,
        )

    # -- hooks a GitHub-shaped mirror overrides ---------------------------------------------

    def _asset_url(self, tag: str, asset: dict[str, Any]) -> str:
        return str(asset["browser_download_url"])

    def _read_small(self, url: str, what: str) -> str:
        try:
            resp = self._downloads.get(url)
            resp.raise_for_status()
        except requests.RequestException as err:
            raise SourceError(f"cannot read {what}: {_why(err)}") from err
        return resp.text[:4096]

    # -- downloads -------------------------------------------------------------------------

    def prepare(self, want: Want) -> Want:
        return want

    def download_to(self, url: str, target: Path) -> None:
        """A file that is not a release asset (the source archive behind `tarball_url`). It lives
        on the API host, so it goes through the API session: the token applies, and requests
        drops it when the answer redirects elsewhere."""
        session = self._api if http.origin(url) == http.origin(self.api_url) else self._downloads
        try:
            with target.open("wb") as out:
                fetch.stream(session, url, out, name=target.name)
        except OSError as err:
            raise SourceError(f"{target}: cannot write: {err.strerror}") from err

    def fetcher(self, want: Want, progress: Progress) -> Fetcher:
        return fetch.http_fetcher(self._downloads, want, progress)

    def source_archive(self, release: Release, target: Path) -> Path:
        url = self._source_archive_url(release)
        if not url:
            tag = release.build or release.tag
            raise SourceError(f"{self.name} has no source archive for {tag}")
        self.download_to(url, target)
        return target

    def _source_archive_url(self, release: Release) -> str | None:
        return release.tarball_url

    def _nightly_build(self, tag: str, assets: tuple[Asset, ...]) -> str | None:
        asset = next((a for a in assets if a.name == NIGHTLY_TAG_ASSET), None)
        if asset is None:
            return None
        key = hashlib.sha256(f"{self.api_url} {self.repo} {tag}".encode()).hexdigest()[:32]
        memo = self._etags / "nightly" / f"{key}.txt"  # tags come from a server: never a path
        if memo.is_file():
            return memo.read_text().strip() or None
        m = _BUILD_IN_TEXT.search(self._read_small(asset.url, f"{NIGHTLY_TAG_ASSET} of {tag}"))
        build = m.group(0) if m else None
        if build:
            _write_text(memo, build)
        return build


def _next_link(link: str | None) -> str | None:
    if not link:
        return None
    for item in parse_header_links(link):
        if item.get("rel") == "next":
            return item.get("url")
    return None


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[-1].partition("/")[2]


def _message(resp: requests.Response) -> str:
    try:
        return str(resp.json().get("message", "")) or resp.reason
    except ValueError:
        return resp.reason or ""


def _why(err: Exception) -> str:
    text = str(err)
    return f"{type(err).__name__}" + (f" ({text[:200]})" if text else "")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _write_text(path: Path, text: str) -> None:
    atomic.write_text(path, text)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    _write_text(path, json.dumps(data))
