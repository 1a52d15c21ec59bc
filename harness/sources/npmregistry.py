"""The npm registry, asked directly with the user's npm settings: registry (per scope), proxy,
CA file, and the auth `.npmrc` holds for that registry.

We ask the registry ourselves instead of through `npm pack` so that a package can be read only as
far as needed (the index needs a 200-byte file near the front of a 10 MB tarball) and stored once,
in our cache, not also in npm's. npm decides the settings: `npm config list --json` gives every
one of them but the secrets, which npm refuses to print; those are read from the same `.npmrc`
files npm reads (project, user, global), `${VAR}` expanded, and sent only to URLs under the
registry path they are written for (npm's "nerf dart" rule).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import subprocess
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from harness.errors import AssetNotFound, SourceError
from harness.sources import answers, limits

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

DEFAULT_REGISTRY = "https://registry.npmjs.org/"
_AUTH_KEYS = ("_authToken", "_auth", "username", "_password")
_VAR = re.compile(r"\$\{([^}]+)\}")
PARALLEL = 8  # registry requests at once
PACKUMENT = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8"


@dataclass
class NpmConfig:
    registries: dict[str, str] = field(default_factory=dict)  # "" or "@scope" → URL
    auth: dict[str, dict[str, str]] = field(default_factory=dict)  # "//host/path/" → keys
    proxy: str | None = None
    https_proxy: str | None = None
    noproxy: str | None = None
    cafile: str | None = None
    strict_ssl: bool = True

    def registry(self, package: str) -> str:
        scope = package.split("/", 1)[0] if package.startswith("@") else ""
        url = self.registries.get(scope) or self.registries.get("") or DEFAULT_REGISTRY
        return url if url.endswith("/") else url + "/"

    def headers_for(self, url: str) -> dict[str, str]:
        """npm's rule: credentials written for `//host/path/` go to URLs under that path only."""
        parts = urlsplit(url)
        here = f"//{parts.netloc}{parts.path}"
        best = max((k for k in self.auth if here.startswith(k)), key=len, default=None)
        creds = self.auth.get(best or "", {})
        if creds.get("_authToken"):
            return {"Authorization": f"Bearer {creds['_authToken']}"}
        if creds.get("_auth"):
            return {"Authorization": f"Basic {creds['_auth']}"}
        if creds.get("username") and creds.get("_password"):
            password = base64.b64decode(creds["_password"]).decode(errors="replace")
            basic = base64.b64encode(f"{creds['username']}:{password}".encode()).decode()
            return {"Authorization": f"Basic {basic}"}
        return {}

    def proxies(self) -> dict[str, str]:
        out = {}
        if self.https_proxy or self.proxy:
            out["https"] = str(self.https_proxy or self.proxy)
        if self.proxy:
            out["http"] = self.proxy
        if self.noproxy:
            out["no_proxy"] = self.noproxy
        return out

    def verify(self) -> bool | str:
        if not self.strict_ssl:
            return False
        return self.cafile or True


def load(npm: str, cwd: Path | None = None, timeout: float = 60) -> NpmConfig:
    """One `npm config list --json` (npm's own precedence: env, project, user, global), plus the
    credentials from the files it names."""
    try:
        proc = subprocess.run(
            [npm, "config", "list", "--json"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=cwd,
        )
    except FileNotFoundError as err:
        raise SourceError("npm is not installed (the npm source needs the npm CLI)") from err
    except subprocess.TimeoutExpired as err:
        raise SourceError(f"npm config list timed out after {timeout:.0f} s") from err
    try:
        data: dict[str, Any] = json.loads(proc.stdout) if proc.returncode == 0 else {}
    except ValueError:
        data = {}
    if not data:
        raise SourceError(f"npm config list failed: {proc.stderr.strip()[:200] or 'no output'}")
    cfg = NpmConfig(
        registries={
            k.removesuffix(":registry") if k != "registry" else "": str(v)
            for k, v in data.items()
            if (k == "registry" or k.endswith(":registry")) and isinstance(v, str)
        },
        proxy=_text(data.get("proxy")),
        https_proxy=_text(data.get("https-proxy")),
        noproxy=_text(data.get("noproxy")),
        cafile=_text(data.get("cafile")),
        strict_ssl=data.get("strict-ssl") is not False,
    )
    files = [
        Path(cwd or Path.cwd()) / ".npmrc",
        Path(str(data.get("userconfig") or Path.home() / ".npmrc")).expanduser(),
        Path(str(data.get("globalconfig") or "/etc/npmrc")).expanduser(),
    ]
    for path in reversed(files):  # the first file wins, as in npm
        for key, value in _read_ini(path).items():
            _take_auth(cfg, key, value)
    for key, value in os.environ.items():  # npm_config_//host/:_authToken=...
        low = key.lower()
        if low.startswith("npm_config_//"):
            _take_auth(cfg, key[len("npm_config_") :], value)
    return cfg


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _read_ini(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith((";", "#")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip().strip('"')
        out[key.strip()] = _VAR.sub(lambda m: os.environ.get(m.group(1), ""), value)
    return out


def _take_auth(cfg: NpmConfig, key: str, value: str) -> None:
    if not key.startswith("//"):
        return
    where, _, name = key.rpartition(":")
    if name in _AUTH_KEYS and value:
        if not where.endswith("/"):
            where += "/"
        cfg.auth.setdefault(where, {})[name] = value


class Registry:
    """One per run: npm's settings read once (`npm config list`, ~0.3 s of node start-up, only
    when a request is about to be made), every package document asked once."""

    def __init__(self, npm: str) -> None:
        self.npm = npm
        self._config: NpmConfig | None = None
        self._session: requests.Session | None = None
        self._docs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def session(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                from harness.sources import http  # lazy: a warm run makes no request

                self._config = load(self.npm)
                s = http.download_session(pool=PARALLEL)
                s.auth = _RegistryAuth(self._config)
                s.proxies.update(self._config.proxies())
                s.verify = self._config.verify()
                self._session = s
            return self._session

    def packument(self, name: str) -> dict[str, Any]:
        """The registry's document for a package (every version's dist)."""
        with self._lock:
            if name in self._docs:
                return self._docs[name]
        import requests

        from harness.sources import http  # lazy: a warm run makes no request

        session = self.session()
        assert self._config is not None
        url = self._config.registry(name) + quote(name, safe="@")
        what = f"npm registry ({name})"
        try:  # a capped body within a total deadline: the registry is untrusted too
            with http.deadline(limits.LIMITS.api_deadline_s, what):
                resp = session.get(url, headers={"Accept": PACKUMENT}, stream=True)
                if resp.status_code == 404:
                    resp.close()
                    raise AssetNotFound(f"npm has no package {name}")
                if resp.status_code >= 400:
                    resp.close()
                    raise SourceError(f"npm registry answered HTTP {resp.status_code} for {name}")
                body = http.read_capped(resp, what, limits.LIMITS.api_bytes)
        except requests.RequestException as err:
            raise SourceError(f"npm registry unreachable ({name}): {type(err).__name__}") from err
        doc = answers.json_or_invalid(body)
        if doc is answers.INVALID:
            raise SourceError(f"npm registry sent no JSON for {name}")
        if not isinstance(doc, dict) or not isinstance(doc.get("versions"), dict):
            raise SourceError(f"npm registry sent an unexpected document for {name}")
        with self._lock:
            self._docs[name] = doc
        return doc

    def dist(self, spec: str) -> dict[str, Any]:
        """`name@version` → its `dist` (tarball URL, integrity); AssetNotFound when unpublished."""
        name, _, version = spec.rpartition("@")
        info = self.packument(name)["versions"].get(version)
        dist = info.get("dist") if isinstance(info, dict) else None
        if not isinstance(dist, dict) or not isinstance(dist.get("tarball"), str):
            raise AssetNotFound(f"npm has no package {spec}")
        return dist

    def size(self, spec: str) -> int | None:
        """The tarball's size (a packument lists only the unpacked size): one HEAD."""
        import requests

        try:
            resp = self.session().head(self.dist(spec)["tarball"], allow_redirects=True)
            return int(resp.headers.get("Content-Length", "")) if resp.ok else None
        except (requests.RequestException, ValueError, SourceError):
            return None

    def read_member(self, spec: str, suffix: str, limit: int = 65536) -> bytes | None:
        """The first file of the tarball whose path ends with `suffix`, reading the tarball only
        that far: the connection is dropped as soon as it is found."""
        import requests

        from harness.sources import http  # lazy: a warm run makes no request

        url = self.dist(spec)["tarball"]
        try:  # within a total deadline: a tarball that never ends never holds us
            with (
                http.deadline(limits.LIMITS.api_deadline_s, f"npm registry ({spec})"),
                self.session().get(url, stream=True) as resp,
            ):
                if resp.status_code >= 400:
                    raise SourceError(f"npm registry answered HTTP {resp.status_code} for {spec}")
                resp.raw.decode_content = False
                with tarfile.open(fileobj=resp.raw, mode="r|gz") as tar:
                    for member in tar:
                        if member.isfile() and member.name.endswith(suffix):
                            f = tar.extractfile(member)
                            return f.read(limit) if f else b""
        except requests.RequestException as err:
            raise SourceError(f"npm registry unreachable ({spec}): {type(err).__name__}") from err
        except (tarfile.TarError, OSError, EOFError) as err:
            raise SourceError(f"{spec}: unreadable package ({err})") from err
        return None


class _RegistryAuth:
    """requests auth: the `.npmrc` credentials for the URL being asked, nothing elsewhere (a
    redirect to another host drops them: requests strips Authorization across hosts)."""

    def __init__(self, config: NpmConfig) -> None:
        self._config = config

    def __call__(self, r: Any) -> Any:
        r.headers.pop("Authorization", None)
        r.headers.update(self._config.headers_for(r.url or ""))
        return r

    def __repr__(self) -> str:  # never show a credential
        return "<npm registry auth>"
