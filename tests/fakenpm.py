"""A loopback npm registry: packuments and tarballs of node-llama-cpp's prebuilt packages, shaped
like the real ones (`package/bins/<platform>/_nlcBuildMetadata.json` near the front, the binaries
after it), with the counters tests assert on: requests, Authorization headers, bytes really sent
per tarball (a client that stops reading makes the server's writes fail)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import sys
import tarfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

SCOPE = "@node-llama-cpp"


def package_tgz(platform: str, release: str, payload: int) -> bytes:
    """A platform package: metadata first, then `payload` incompressible bytes of "binary"."""
    import os

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(f"package/{name}")
            info.size, info.mtime = len(data), 1_735_689_600
            tar.addfile(info, io.BytesIO(data))

        add("LICENSE", b"MIT\n")
        meta = {"buildOptions": {"platform": platform, "llamaCpp": {"release": release}}}
        add(f"bins/{platform}/_nlcBuildMetadata.json", json.dumps(meta).encode())
        add(f"bins/{platform}/libllama.so", b"fake libllama " + release.encode())
        add(f"bins/{platform}/libggml-cpu.so", os.urandom(payload))
    return buf.getvalue()


@dataclass
class Package:
    platform: str
    version: str
    data: bytes

    @property
    def file(self) -> str:
        return f"{self.platform}-{self.version}.tgz"

    @property
    def integrity(self) -> str:
        return "sha512-" + base64.b64encode(hashlib.sha512(self.data).digest()).decode()


class FakeNpm:
    def __init__(self, token: str | None = None, rate_bps: int = 0) -> None:
        self.token = token
        self.rate_bps = rate_bps
        self.pad = 0  # a hostile switch: bytes of filler in every package document
        self.releases: dict[str, str] = {}  # version → llama.cpp release
        self.packages: dict[tuple[str, str], Package] = {}
        self.hits: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()  # tarball file → bytes written successfully
        self.auth: list[str | None] = []
        self.lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def add(self, version: str, release: str, platforms: dict[str, int]) -> None:
        """`platforms`: name → payload bytes."""
        self.releases[version] = release
        for platform, payload in platforms.items():
            data = package_tgz(platform, release, payload)
            self.packages[(platform, version)] = Package(platform, version, data)

    def packument(self, name: str) -> dict[str, Any] | None:
        if name == "node-llama-cpp":
            versions = {
                v: {
                    "version": v,
                    "optionalDependencies": {
                        f"{SCOPE}/{p}": v for (p, pv) in self.packages if pv == v
                    },
                }
                for v in self.releases
            }
            return {"name": name, "versions": versions}
        platform = name.removeprefix(f"{SCOPE}/")
        versions = {
            v: {
                "version": v,
                "dist": {"integrity": pkg.integrity, "tarball": f"{self.url}tarballs/{pkg.file}"},
            }
            for (p, v), pkg in self.packages.items()
            if p == platform
        }
        return {"name": name, "versions": versions} if versions else None

    def __enter__(self) -> FakeNpm:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-answer (the harness refusing an oversized one) is not an error
    worth a traceback on stderr, where the tests read the harness's one error line."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def _handler(npm: FakeNpm) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path).lstrip("/")
            with npm.lock:
                npm.hits[f"{self.command} {path}"] += 1
                npm.auth.append(self.headers.get("Authorization"))
            if npm.token and self.headers.get("Authorization") != f"Bearer {npm.token}":
                self._send(401, b'{"error":"unauthorized"}')
                return
            if path.startswith("tarballs/"):
                pkg = next((p for p in npm.packages.values() if p.file == path[9:]), None)
                if pkg is None:
                    self._send(404, b"{}")
                else:
                    self._tarball(pkg)
                return
            doc = npm.packument(path)
            if doc is None:
                self._send(404, b'{"error":"Not found"}')
            else:
                if npm.pad:
                    doc = {**doc, "readme": "x" * npm.pad}
                self._send(200, json.dumps(doc).encode())

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                # the client may stop reading (a capped answer): not the server's error
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

        def _tarball(self, pkg: Package) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(pkg.data)))
            self.end_headers()
            if self.command == "HEAD":
                return
            step, t0, sent = 64 * 1024, time.monotonic(), 0
            try:
                for i in range(0, len(pkg.data), step):
                    self.wfile.write(pkg.data[i : i + step])
                    sent += len(pkg.data[i : i + step])
                    with npm.lock:
                        npm.sent[pkg.file] += len(pkg.data[i : i + step])
                    if npm.rate_bps and (delay := t0 + sent / npm.rate_bps - time.monotonic()) > 0:
                        time.sleep(delay)
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler
