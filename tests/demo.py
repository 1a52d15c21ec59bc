"""The main job against a loopback fake GitHub, for a machine that cannot reach github.com.

    python -m tests.demo [--keep]      (or: nox -s demo)

Serves two llama.cpp builds with their real asset names (tar.gz era, from tests/data/assets),
a `v0.5.0` release that names the newer one (so `latest` resolves), and runs
`llama-harness download` on the project's own matrix.yaml, then `verify`.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from harness import cli
from tests.archives import make_archive_for
from tests.fakegithub import FakeGitHub

DATA = Path(__file__).parent / "data" / "assets"
ERA = "b10892"  # a complete, real asset list of the tar.gz era


def names_for(tag: str) -> list[str]:
    lines = (DATA / f"{ERA}.txt").read_text().splitlines()
    return [x.replace(ERA, tag) for x in lines if x.strip() and not x.startswith("#")]


def serve(folder: Path) -> FakeGitHub:
    gh = FakeGitHub()
    for tag, when in (("b10361", "2026-08-20T00:00:00Z"), ("b10400", "2026-08-25T00:00:00Z")):
        files = {n: make_archive_for(n, folder / n, tag).read_bytes() for n in names_for(tag)}
        gh.add_release(tag, files, prerelease=True, published_at=when)
    gh.add_release("v0.5.0", {"nightly-tag.txt": b"b10400\n"}, published_at="2026-08-26T00:00:00Z")
    return gh.start()


def main(argv: list[str]) -> int:
    work = Path(tempfile.mkdtemp(prefix="llama-harness-demo-"))
    gh = serve(work / "served")
    cache = work / "cache"
    base = ["--api-url", gh.api_url, "--cache-dir", str(cache)]
    matrix = Path(__file__).resolve().parent.parent / "matrix.yaml"
    try:
        print(f"fake GitHub at {gh.api_url}; cache {cache}", flush=True)
        code = cli.main([*base, "--matrix", str(matrix), "download"])
        if code == 0:
            code = cli.main([*base, "verify"])
        return code
    finally:
        gh.stop()
        if "--keep" not in argv:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
