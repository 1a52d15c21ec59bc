"""A loopback GitHub: REST releases API + a second host that serves the asset bytes.

Speaks the real shape: `Link` pagination, `ETag`/304 (not counted against the budget),
`x-ratelimit-*` with a budget, 403 when it is spent, `browser_download_url` that 302s to the asset
host, `Content-Length` and `Range` on the asset host, and fault switches (5xx, cut connections,
wrong bytes, per-connection throttling). Used by tests, benchmarks and `python -m tests.fakegithub`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit


@dataclass
class FakeAsset:
    name: str
    data: bytes
    digest: str | None  # as the API reports it (None on old assets)


@dataclass
class FakeRelease:
    tag: str
    assets: list[FakeAsset]
    prerelease: bool = False
    draft: bool = False
    published_at: str = "2025-01-01T00:00:00Z"
    id: int = 0


@dataclass
class Faults:
    api_errors: int = 0  # next N API requests answer 500
    api_status: int = 500
    retry_after: str | None = None
    cut: dict[str, int] = field(default_factory=dict)  # asset → bytes sent before cutting (once)
    cut_times: dict[str, int] = field(default_factory=dict)
    corrupt: dict[str, int] = field(default_factory=dict)  # asset → how many times to serve junk
    throttle_bps: int = 0  # per connection, 0 = unthrottled
    ignore_range: bool = False
    missing: set[str] = field(default_factory=set)  # asset host answers 404
    extra_bytes: dict[str, int] = field(default_factory=dict)  # serve more than the API's size
    release_body: Any = None  # replace every API body with this (a malformed answer)
    stall: dict[str, int] = field(default_factory=dict)  # asset → bytes sent, then silence
    # hostile servers (issue 11): bodies without end, trickles, loops, odd headers
    api_raw: bytes | None = None  # every API JSON answer is these bytes, as they are
    api_endless: bool = False  # API answers are `[` and then whitespace without end
    api_trickle: bool = False  # API answers send one byte every 50 ms, without end
    api_slow_headers: bool = False  # API answers trickle one header line, a byte every 50 ms
    self_link: bool = False  # the release list's `Link: next` points at the same page
    api_headers: dict[str, str] = field(default_factory=dict)  # override on every API answer
    endless_assets: set[str] = field(default_factory=set)  # asset bytes without end
    declared_size: dict[str, int | None] = field(default_factory=dict)  # the API's `size`


class FakeGitHub:
    """Two loopback servers; `api_url` for --api-url. Thread-safe counters for assertions."""

    def __init__(self, repo: str = "ggml-org/llama.cpp", rate_limit: int = 60) -> None:
        self.repo = repo
        self.releases: list[FakeRelease] = []  # newest first, as GitHub lists them
        self.rate_limit = rate_limit
        self.remaining = rate_limit
        self.reset_at = int(time.time()) + 3600
        self.faults = Faults()
        self.lock = threading.Lock()
        self.source_tarballs: dict[str, bytes] = {}  # tag → what tarball_url serves
        self.api_hits: Counter[str] = Counter()  # path → count (304s included)
        self.api_304 = 0
        self.asset_hits: Counter[str] = Counter()  # asset name → GETs on the asset host
        self.api_headers: list[dict[str, str]] = []
        self.asset_headers: list[dict[str, str]] = []
        self.redirect_headers: list[dict[str, str]] = []
        self._api = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, "api"))
        self._assets = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, "assets"))
        for s in (self._api, self._assets):
            s.daemon_threads = True
        self.stopping = threading.Event()  # ends the endless bodies
        self._threads = [
            threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True)
            for s in (self._api, self._assets)
        ]

    # -- set-up ---------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self._api.server_address[1]}"

    @property
    def asset_url(self) -> str:
        return f"http://127.0.0.1:{self._assets.server_address[1]}"

    def add_release(
        self, tag: str, assets: dict[str, bytes], *, digests: bool = True, **kw: Any
    ) -> FakeRelease:
        rel = FakeRelease(
            tag,
            [
                FakeAsset(n, d, f"sha256:{hashlib.sha256(d).hexdigest()}" if digests else None)
                for n, d in assets.items()
            ],
            id=len(self.releases) + 1,
            **kw,
        )
        self.releases.insert(0, rel)
        return rel

    def asset(self, name: str) -> FakeAsset:
        return next(a for r in self.releases for a in r.assets if a.name == name)

    def start(self) -> FakeGitHub:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for s in (self._api, self._assets):
            s.shutdown()
            s.server_close()

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- JSON shapes ------------------------------------------------------------------------------

    def release_json(self, rel: FakeRelease) -> dict[str, Any]:
        base = f"{self.api_url}/repos/{self.repo}"
        return {
            "url": f"{base}/releases/{rel.id}",
            "html_url": f"https://github.com/{self.repo}/releases/tag/{rel.tag}",
            "assets_url": f"{base}/releases/{rel.id}/assets",
            "tarball_url": f"{base}/tarball/{rel.tag}",
            "zipball_url": f"{base}/zipball/{rel.tag}",
            "id": rel.id,
            "node_id": f"RE_{rel.id}",
            "tag_name": rel.tag,
            "target_commitish": "master",
            "name": rel.tag,
            "draft": rel.draft,
            "prerelease": rel.prerelease,
            "created_at": rel.published_at,
            "published_at": rel.published_at,
            "author": {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"},
            "body": "",
            "assets": [
                {
                    "url": f"{base}/releases/assets/{rel.id * 1000 + i}",
                    "id": rel.id * 1000 + i,
                    "node_id": f"RA_{rel.id}_{i}",
                    "name": a.name,
                    "label": "",
                    "content_type": "application/zip",
                    "state": "uploaded",
                    "size": self.faults.declared_size.get(a.name, len(a.data)),
                    "digest": a.digest,
                    "download_count": 0,
                    "created_at": rel.published_at,
                    "updated_at": rel.published_at,
                    "browser_download_url": (
                        f"{self.api_url}/{self.repo}/releases/download/"
                        f"{quote(rel.tag)}/{quote(a.name)}"
                    ),
                }
                for i, a in enumerate(rel.assets)
            ],
        }


def _handler(gh: FakeGitHub, role: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            try:
                if role == "api":
                    self._api()
                else:
                    self._asset()
            except (BrokenPipeError, ConnectionResetError):
                pass

        # -- helpers --------------------------------------------------------------------------

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _endless(self, first: bytes, fill: bytes, pause: float = 0.0) -> None:
            """200 and a body that never ends (until the client goes or the server stops)."""
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            for k, v in {**self._limits(), **gh.faults.api_headers}.items():
                self.send_header(k, v)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            self.wfile.write(first)
            while not gh.stopping.is_set():
                self.wfile.write(fill)
                self.wfile.flush()
                if pause:
                    time.sleep(pause)

        def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
            f = gh.faults
            if f.api_endless or f.api_trickle:
                self._endless(b"[", b" " * (1 if f.api_trickle else 65536), 0.05 * f.api_trickle)
                return
            if f.release_body is not None:
                data = f.release_body
            body = json.dumps(data).encode() if f.api_raw is None else f.api_raw
            etag = f'"{hashlib.sha1(body).hexdigest()}"'
            h = {
                "Content-Type": "application/json; charset=utf-8",
                "ETag": etag,
                **self._limits(),
                **(headers or {}),
                **gh.faults.api_headers,
            }
            if status == 200 and self.headers.get("If-None-Match") == etag:
                with gh.lock:
                    gh.api_304 += 1
                    gh.remaining += 1  # conditional hits are free
                self._send(304, b"", {"ETag": etag, **self._limits()})
                return
            self._send(status, body, h)

        def _limits(self) -> dict[str, str]:
            return {
                "x-ratelimit-limit": str(gh.rate_limit),
                "x-ratelimit-remaining": str(max(gh.remaining, 0)),
                "x-ratelimit-reset": str(gh.reset_at),
                "x-ratelimit-used": str(gh.rate_limit - max(gh.remaining, 0)),
                "x-ratelimit-resource": "core",
                **{k: v for k, v in gh.faults.api_headers.items() if k.startswith("x-ratelimit")},
            }

        # -- the API host -------------------------------------------------------------------------

        def _api(self) -> None:
            if gh.faults.api_slow_headers:
                self.close_connection = True
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while not gh.stopping.is_set():
                    self.wfile.write(b"a")
                    self.wfile.flush()
                    time.sleep(0.05)
                return
            url = urlsplit(self.path)
            path = unquote(url.path)
            with gh.lock:
                gh.api_hits[path] += 1
                gh.api_headers.append(dict(self.headers))
            tarball = f"/repos/{gh.repo}/tarball/"
            if path.startswith(tarball):  # the source archive: 302 to codeload, like GitHub
                tag = path[len(tarball):]
                if tag not in gh.source_tarballs:
                    self._send(404, b'{"message":"Not Found"}')
                    return
                self._send(302, b"", {"Location": f"{gh.asset_url}/source/{quote(tag)}"})
                return
            prefix = f"/{gh.repo}/releases/download/"
            if path.startswith(prefix):  # github.com's download URL → 302 to the asset host
                with gh.lock:
                    gh.redirect_headers.append(dict(self.headers))
                tag, _, name = path[len(prefix) :].partition("/")
                loc = f"{gh.asset_url}/assets/{quote(tag)}/{quote(name)}?X-Amz-Signature=fake"
                self._send(302, b"", {"Location": loc})
                return
            with gh.lock:
                if gh.faults.api_errors > 0:
                    gh.faults.api_errors -= 1
                    h = {"Retry-After": gh.faults.retry_after} if gh.faults.retry_after else {}
                    self._send(gh.faults.api_status, b'{"message":"Server Error"}', h)
                    return
                if gh.remaining <= 0:
                    self._send(
                        403,
                        json.dumps(
                            {
                                "message": "API rate limit exceeded for 127.0.0.1. (But here's the "
                                "good "
                                "news: Authenticated requests get a higher rate limit.)",
                                "documentation_url": "https://docs.github.com/rest/rate-limit",
                            }
                        ).encode(),
                        {**self._limits(), "Content-Type": "application/json"},
                    )
                    return
                gh.remaining -= 1
            base = f"/repos/{gh.repo}/releases"
            visible = [r for r in gh.releases]
            if path == base:
                q = parse_qs(url.query)
                per_page = min(int(q.get("per_page", ["30"])[0]), 100)
                page = int(q.get("page", ["1"])[0])
                chunk = visible[(page - 1) * per_page : page * per_page]
                last = max(1, -(-len(visible) // per_page))
                links = []
                if gh.faults.self_link:
                    links.append(
                        f'<{gh.api_url}{base}?per_page={per_page}&page={page}>; rel="next"'
                    )
                elif page < last:
                    links.append(
                        f'<{gh.api_url}{base}?per_page={per_page}&page={page + 1}>; rel="next"'
                    )
                    links.append(
                        f'<{gh.api_url}{base}?per_page={per_page}&page={last}>; rel="last"'
                    )
                if page > 1:
                    links.append(f'<{gh.api_url}{base}?per_page={per_page}&page=1>; rel="first"')
                h = {"Link": ", ".join(links)} if links else {}
                self._json(200, [gh.release_json(r) for r in chunk], h)
                return
            if path == f"{base}/latest":
                rel = next((r for r in visible if not r.prerelease and not r.draft), None)
            elif path.startswith(f"{base}/tags/"):
                tag = path[len(f"{base}/tags/") :]
                rel = next((r for r in visible if r.tag == tag and not r.draft), None)
            else:
                rel = None
            if rel is None:
                self._json(
                    404,
                    {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"},
                )
            else:
                self._json(200, gh.release_json(rel))

        # -- the asset host ---------------------------------------------------------------------

        def _asset(self) -> None:
            path = unquote(urlsplit(self.path).path)
            if path.startswith("/source/"):
                data = gh.source_tarballs.get(path[len("/source/"):])
                if data is None:
                    self._send(404, b"Not Found")
                else:
                    self._send(200, data, {"Content-Type": "application/x-gzip"})
                return
            _, _, rest = path.partition("/assets/")
            tag, _, name = rest.partition("/")
            with gh.lock:
                gh.asset_hits[name] += 1
                gh.asset_headers.append({**dict(self.headers), "_asset": name})
                f = gh.faults
                rel = next((r for r in gh.releases if r.tag == tag), None)
                asset = next((a for a in rel.assets if a.name == name), None) if rel else None
                if asset is None or name in f.missing:
                    asset = None
                junk = f.corrupt.get(name, 0) > 0
                if junk:
                    f.corrupt[name] -= 1
                cut_at = None
                if f.cut_times.get(name, 0) > 0 and name in f.cut:
                    f.cut_times[name] -= 1
                    cut_at = f.cut[name]
            if asset is None:
                self._send(404, b"Not Found")
                return
            if name in f.endless_assets:
                self._endless(asset.data, b"\0" * 65536)
                return
            data = asset.data + b"\0" * f.extra_bytes.get(name, 0)
            if junk:
                data = bytes((b ^ 0xFF) for b in data[:64]) + data[64:]
            start = 0
            rng = self.headers.get("Range")
            status = 200
            headers = {
                "Content-Type": "application/octet-stream",
                "Accept-Ranges": "bytes",
                "ETag": f'"{hashlib.md5(data).hexdigest()}"',
            }
            if rng and rng.startswith("bytes=") and not f.ignore_range:
                start = int(rng[6:].split("-")[0] or 0)
                end_s = rng[6:].split("-")[1]
                end = int(end_s) if end_s else len(data) - 1
                if start >= len(data):
                    self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                    return
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                data = data[start : end + 1]
                status = 206
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if cut_at is not None:
                self.wfile.write(data[:cut_at])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if name in f.stall:  # headers and a few bytes, then a server that never answers
                self.wfile.write(data[: f.stall[name]])
                self.wfile.flush()
                time.sleep(120)
                return
            self._write(data, f.throttle_bps)

        def _write(self, data: bytes, bps: int) -> None:
            if not bps:
                self.wfile.write(data)
                return
            step = max(1024, bps // 20)
            t0 = time.monotonic()
            sent = 0
            for i in range(0, len(data), step):
                self.wfile.write(data[i : i + step])
                sent += len(data[i : i + step])
                delay = t0 + sent / bps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)

    return Handler


def main() -> None:  # pragma: no cover - a manual playground: python -m tests.fakegithub
    from tests.archives import make_archive_for

    gh = FakeGitHub()
    import tempfile
    from pathlib import Path

    tmp = Path(tempfile.mkdtemp())
    for tag in ("b8000", "b8095"):
        names = [
            f"llama-{tag}-bin-ubuntu-x64.tar.gz",
            f"llama-{tag}-bin-win-cpu-x64.zip",
            f"llama-{tag}-bin-macos-arm64.tar.gz",
        ]
        gh.add_release(
            tag, {n: make_archive_for(n, tmp / n, tag).read_bytes() for n in names}, prerelease=True
        )
    with gh:
        print(f"--api-url {gh.api_url}", flush=True)
        threading.Event().wait()


if __name__ == "__main__":  # pragma: no cover
    main()
