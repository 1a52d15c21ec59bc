"""GitHub REST releases of ggml-org/llama.cpp (a fork, GitHub Enterprise, a mirror).

Every API response is kept on disk with its ETag; the next request sends `If-None-Match`, and a 304
costs nothing against the rate limit. When the API cannot be reached at all, the last good answer is
used (with a warning) so a warm cache keeps working offline.

A `b<N>` release is asked for once: its kept answer is used without any request (without a token
GitHub counts even a 304 against the 60/hour limit, and a pinned build does not change). Should a
cell's asset be missing from a kept answer (fetched while CI was still uploading), the provisioner
asks again once (`refresh_release`). `latest` and `v*` are asked every time. A long matrix's
releases are listed 100 a call (`prefetch`); a `b<N>` found there is kept as if asked for alone,
and one already kept is never listed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from harness.cache import atomic
from harness.errors import HarnessError, RateLimited, ReleaseNotFound, SourceError
from harness.sources import answers, limits
from harness.sources.base import Asset, Fetcher, Progress, Release, Want

if TYPE_CHECKING:
    import requests

# requests, the sessions and the stream are imported when a request is about to be made: a warm
# run answers from kept releases and makes none (~45 ms of start-up saved).

log = logging.getLogger(__name__)

BUILD_TAG = re.compile(r"^b[0-9]+$")
_BUILD_IN_TEXT = re.compile(r"\bb[0-9]+\b")
NIGHTLY_TAG_ASSET = "nightly-tag.txt"
KEPT = "kept"  # Release.extra key: answered from disk, no request made
BULK_RELEASES = 20  # more distinct releases than this: prefetch() lists them
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
        downloads: requests.Session | Callable[[], requests.Session] | None = None,
        *,
        env_token: bool = False,
    ) -> None:
        """`downloads`: the session for assets, or a function that makes it when first needed;
        `env_token`: without `token`, take GITHUB_TOKEN/GH_TOKEN when the first request is made."""
        self.api_url = api_url.rstrip("/")
        self.repo = repo
        self._token = token
        self._env_token = env_token
        self._given_downloads = downloads
        self._etags = cache_dir / "api"
        self._listed: dict[str, dict[str, Any]] = {}  # tag → release item, from prefetch()
        self._absent: set[str] = set()  # wanted by prefetch() and not in a complete listing

    @functools.cached_property
    def _api(self) -> requests.Session:
        from harness.sources import http  # lazy: see the imports

        token = self._token or (http.token_from_env() if self._env_token else None)
        return http.api_session(self.api_url, token)

    @functools.cached_property
    def _downloads(self) -> requests.Session:
        from harness.sources import http  # lazy: see the imports

        given = self._given_downloads
        return (given() if callable(given) else given) or http.download_session()

    # -- API plumbing -------------------------------------------------------------------------

    def _cache_file(self, url: str) -> Path:
        return self._etags / f"{hashlib.sha256(url.encode()).hexdigest()[:32]}.json"

    def _get(self, url: str) -> tuple[Any, str | None] | None:
        """GET an API URL → (json body, Link header), or None on 404. 304 → the cached body."""
        cache = self._cache_file(url)
        cached = _read_json(cache)
        headers = {"If-None-Match": cached["etag"]} if cached and cached.get("etag") else {}
        import requests  # lazy: see the imports

        from harness.sources import http

        cap = limits.LIMITS
        what = f"{self.label} {_path(url)}"
        with http.deadline(cap.api_deadline_s, what):
            try:
                resp = self._api.get(url, headers=headers, stream=True)
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
            raw = http.read_capped(resp, what, cap.api_bytes)
        if resp.status_code == 304 and cached:
            return cached["body"], cached.get("link")
        if resp.status_code == 404:
            return None
        self._raise_for_limits(resp)
        if resp.status_code >= 400:
            raise SourceError(
                f"{self.label} answered HTTP {resp.status_code} for {_path(url)}: "
                f"{_message(resp, raw)}"
            )
        body = answers.json_or_invalid(raw)
        if body is answers.INVALID:
            raise SourceError(f"{self.label} sent invalid JSON for {_path(url)}")
        link = resp.headers.get("Link")
        if etag := resp.headers.get("ETag"):
            _write_json(cache, {"url": url, "etag": etag, "link": link, "body": body})
        return body, link

    def _raise_for_limits(self, resp: requests.Response) -> None:
        if resp.status_code not in (403, 429):
            return
        h = resp.headers
        if h.get("x-ratelimit-remaining") == "0":
            limit = answers.header(h.get("x-ratelimit-limit", "?"))
            raise RateLimited(
                f"GitHub API rate limit exhausted ({limit} requests/hour); it resets "
                f"{answers.reset_time(h.get('x-ratelimit-reset', ''))}; "
                "set GITHUB_TOKEN (or GH_TOKEN) to raise the limit"
            )
        if "retry-after" in h:
            raise RateLimited(
                "GitHub API secondary rate limit hit; retry after "
                f"{answers.header(h['retry-after'])} s; "
                "set GITHUB_TOKEN (or GH_TOKEN) to raise the limit"
            )

    # -- releases -------------------------------------------------------------------------------

    def list_releases(self, limit: int | None = None) -> list[Release]:
        out: list[Release] = []
        for page in self._pages():
            for item in page:
                if not item.get("draft"):
                    out.append(self._release(item))
                if limit is not None and len(out) >= limit:
                    return out
        return out

    def _pages(self) -> Iterator[list[dict[str, Any]]]:
        """Each page of /releases, following `Link: next`; a page seen twice (a server that
        links back) or more than LIMITS.max_pages is a source error, never an endless loop."""
        url: str | None = f"{self.api_url}/repos/{self.repo}/releases?per_page=100"
        seen: set[str] = set()
        while url:
            if url in seen:
                raise SourceError(f"{self.label} pagination loops back to {_path(url)[:80]}")
            if len(seen) >= limits.LIMITS.max_pages:
                raise SourceError(
                    f"{self.label} lists more than {limits.LIMITS.max_pages} pages of releases"
                )
            seen.add(url)
            got = self._get(url)
            if got is None:
                raise SourceError(f"repository {self.repo} not found at {self.api_url}")
            body, link = got
            if not isinstance(body, list) or not all(isinstance(i, dict) for i in body):
                raise SourceError(f"{self.label} sent an unexpected answer for {_path(url)}")
            yield body
            url = _next_link(link, self.api_url)

    def prefetch(self, tags: Sequence[str], show: Callable[[str], None] | None = None) -> None:
        """Many releases wanted (a long matrix): list them page by page, 100 a call, instead of
        one call each. Stops when all are found, or once listing costs more calls than asking
        for each would; whatever it did not find is asked for one by one as before. A `b<N>`
        with a kept answer is not wanted: it costs no request (a warm matrix lists nothing)."""
        wanted = {t for t in tags if t != "latest" and not self._has_kept(t)}
        wanted -= self._listed.keys() | self._absent
        if len(wanted) <= BULK_RELEASES:
            return
        found: set[str] = set()
        pages = 0
        try:
            for page in self._pages():
                pages += 1
                for item in page:
                    tag = item.get("tag_name")
                    if isinstance(tag, str) and tag in wanted and not item.get("draft"):
                        self._listed[tag] = item
                        found.add(tag)
                note = f"listing releases: page {pages}, {len(found):,} of {len(wanted):,} found"
                log.info("%s", note)
                if show:
                    show(note)
                if found == wanted or pages >= len(wanted - found):
                    return
        except HarnessError as err:  # each release is then asked for, and reports it
            log.info("listing releases failed (%s); asking for each", err)
            return
        self._absent |= wanted - found  # the whole list was read: these do not exist

    def _tag_url(self, tag: str) -> str:
        return f"{self.api_url}/repos/{self.repo}/releases/tags/{quote(tag, safe='')}"

    def _has_kept(self, tag: str) -> bool:
        return bool(BUILD_TAG.match(tag)) and self._cache_file(self._tag_url(tag)).is_file()

    def get_release(self, tag: str) -> Release:
        if tag in self._listed:
            item = self._listed[tag]
            rel = self._with_binaries(self._release(item))
            if BUILD_TAG.match(tag):  # kept as if asked for alone: the next run asks nothing
                _write_json(
                    self._cache_file(self._tag_url(tag)),
                    {"url": self._tag_url(tag), "etag": None, "link": None, "body": item},
                )
            return rel
        if tag in self._absent:
            raise ReleaseNotFound(f"release {tag!r} not found in {self.repo} (at {self.api_url})")
        if tag == "latest":
            got = self._get(f"{self.api_url}/repos/{self.repo}/releases/latest")
            if got is None:  # no non-prerelease release: take the newest one
                newest = self.list_releases(limit=1)
                if not newest:
                    raise ReleaseNotFound(f"no releases in {self.repo} at {self.api_url}")
                return self._with_binaries(newest[0])
            return self._with_binaries(self._release(got[0]))
        kept = _read_json(self._cache_file(self._tag_url(tag))) if BUILD_TAG.match(tag) else None
        if kept and isinstance(kept.get("body"), dict) and kept["body"].get("tag_name") == tag:
            rel = self._with_binaries(self._release(kept["body"]))
            return dataclasses.replace(rel, extra={**rel.extra, KEPT: "yes"})
        return self.refresh_release(tag)

    def refresh_release(self, tag: str) -> Release:
        """Ask the API again, even for a kept `b<N>` answer."""
        got = self._get(self._tag_url(tag))
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
        tag = answers.text(item, "tag_name")
        assets = tuple(
            Asset(
                name=answers.text(a, "name"),
                size=answers.size(a.get("size")),
                digest=answers.digest(a.get("digest")),
                url=self._asset_url(tag, a),
            )
            for a in answers.list_of_dicts(item.get("assets"), "assets")
        )
        build = tag if BUILD_TAG.match(tag) else self._nightly_build(tag, assets)
        return Release(
            tag=tag,
            build=build,
            name=answers.text(item, "name", optional=True) or tag,
            published_at=answers.text(item, "published_at", optional=True),
            prerelease=item.get("prerelease") is True,
            assets=assets,
            tarball_url=answers.text(item, "tarball_url", optional=True),
            source=self.name,
        )

    # -- hooks a GitHub-shaped mirror overrides ---------------------------------------------

    def _asset_url(self, tag: str, asset: dict[str, Any]) -> str:
        url = answers.text(asset, "browser_download_url")
        if limits.origin(url)[0] not in ("http", "https"):
            raise ValueError(f"browser_download_url {url[:80]!r} is not http(s)")
        return url

    def _read_small(self, url: str, what: str) -> str:
        import requests  # lazy: see the imports

        from harness.sources import http

        cap = limits.LIMITS
        with http.deadline(cap.api_deadline_s, what):
            try:
                resp = self._downloads.get(url, stream=True)
                if resp.status_code >= 400:
                    resp.close()
                    raise SourceError(f"cannot read {what}: HTTP {resp.status_code}")
            except requests.RequestException as err:
                raise SourceError(f"cannot read {what}: {_why(err)}") from err
            raw = http.read_capped(resp, what, cap.small_bytes)
        return raw[:4096].decode("utf-8", errors="replace")

    # -- downloads -------------------------------------------------------------------------

    def prepare(self, want: Want) -> Want:
        return want

    def download_to(self, url: str, target: Path) -> None:
        """A file that is not a release asset (the source archive behind `tarball_url`). It lives
        on the API host, so it goes through the API session: the token applies, and requests
        drops it when the answer redirects elsewhere."""
        from harness.sources import stream as fetch

        session = (
            self._api if limits.origin(url) == limits.origin(self.api_url) else self._downloads
        )
        try:
            with target.open("wb") as out:
                fetch.stream(session, url, out, name=target.name)
        except OSError as err:
            raise SourceError(f"{target}: cannot write: {err.strerror}") from err

    def fetcher(self, want: Want, progress: Progress) -> Fetcher:
        from harness.sources import stream as fetch

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


def _next_link(link: str | None, api_url: str) -> str | None:
    if not link:
        return None
    from requests.utils import parse_header_links  # lazy: see the imports

    for item in parse_header_links(link[:8192]):
        if item.get("rel") == "next" and item.get("url"):
            url = str(item["url"])
            if limits.origin(url) != limits.origin(api_url):
                raise SourceError(f"the API's next page is on another host ({url[:80]!r})")
            return url
    return None


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[-1].partition("/")[2]


def _message(resp: requests.Response, raw: bytes) -> str:
    body = answers.json_or_invalid(raw)
    message = body.get("message") if isinstance(body, dict) else None
    return answers.header(message) if isinstance(message, str) and message else (resp.reason or "")


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
