"""Rules that map llama.cpp release asset names, of every era, to cells (os, arch, variant).

The names changed many times (`win-avx2-x64`, `win-cuda-cu12.4-x64`, `win-cuda-12.4-x64`,
`win-hip-x64-gfx1030`, `win-llvm-arm64-opencl-adreno`, `910b-openEuler-x86-aclgraph`,
`.zip` then `.tar.gz`, ...), so nothing here builds a name from a template: a name is split
into dash tokens and read by rules.

`llama-<tag>-bin-<rest>.<zip|tar.gz>` is a binary. In `<rest>`:

- the OS token is the first token that names an OS (`ubuntu`/`linux` -> linux, `win`/`windows`
  -> windows, `macos`, `android`); with none, the first token, lower-cased (an OS we do not
  know yet keeps its own name). `openEuler` is a Linux distribution: the os is `linux` and
  `openeuler` leads the variant (`910b-openEuler-x86-aclgraph` -> linux/x64/
  `openeuler-910b-aclgraph`), so the cell stays in the os vocabulary the other stages know
  (ELF, host checks) and never collides with the Ubuntu build.
- the arch is the last arch token after the OS (`aarch64` -> arm64; `x86_64`, `amd64` and
  `x86` -> x64: the openEuler `x86` builds are x86-64).
- the variant is every other token, in order: those before the OS, between OS and arch, and
  after the arch. So an arch that sits before a suffix does not end the variant:
  `win-hip-x64-gfx1030` -> hip-gfx1030, `macos-arm64-kleidiai` -> kleidiai,
  `android-arm64-snapdragon` -> snapdragon. A toolchain token (`llvm`, `msvc`) right after
  the OS is dropped when other tokens remain, so `win-llvm-arm64-opencl-adreno` (early 2025)
  and `win-opencl-adreno-arm64` (later) are the same cell, windows/arm64/opencl-adreno;
  alone it is the variant (`win-llvm-arm64` -> llvm), because llvm and msvc CPU builds
  shipped side by side. Old CPU flavours keep their name (avx2, noavx, openblas, ...);
  `cpu` is only what the name says or, with no token, what it means (`ubuntu-x64`); macOS
  arm64 with no token is `metal`.
- a token `cu<version>` is the old spelling of a CUDA version: `cuda-cu12.4` is `cuda-12.4`,
  so one matrix cell names the same CUDA build across eras.

`cudart-llama-[<tag>-]bin-<rest>` is a companion: the CUDA runtime a CUDA binary needs,
with variant `cuda-<version>`. Everything else (`nightly-tag.txt`, xcframework, ui bundle,
source archives) is unmatched.
"""

from __future__ import annotations

import functools
import platform
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

_OS = {
    "ubuntu": "linux",
    "linux": "linux",
    "win": "windows",
    "windows": "windows",
    "macos": "macos",
    "android": "android",
}
_DISTROS = {"openeuler": "linux"}  # the OS token stays in the variant
_ARCH = {
    "x64": "x64",
    "x86_64": "x64",
    "amd64": "x64",
    "x86": "x64",
    "arm64": "arm64",
    "aarch64": "arm64",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "ppc64le": "ppc64le",
    "loongarch64": "loongarch64",
}
_TOOLCHAINS = ("llvm", "msvc")
_TAG = r"(?:(?!-bin-).)+"  # anything up to the first "-bin-"
_EXT = r"(?P<ext>zip|tar\.gz)"
_BINARY = re.compile(rf"llama-(?P<tag>{_TAG})-bin-(?P<rest>.+)\.{_EXT}", re.IGNORECASE)
_COMPANION = re.compile(
    rf"cudart-llama-(?:(?P<tag>{_TAG})-)?bin-(?P<rest>.+)\.{_EXT}", re.IGNORECASE
)
_TOKEN = re.compile(r"[a-z0-9._]+")
_VERSION = re.compile(r"\d+(?:\.\d+)*")
_CU = re.compile(r"cu(\d+(?:\.\d+)*)")


@dataclass(frozen=True)
class AssetMatch:
    kind: str  # "binary" | "companion" | "unmatched"
    os: str | None
    arch: str | None
    variant: str | None
    archive: str | None  # "zip" | "tar.gz"


UNMATCHED = AssetMatch("unmatched", None, None, None, None)


def default_variant(os: str, arch: str) -> str:
    """What a name with no variant token means: Metal is built in on Apple silicon."""
    return "metal" if (os, arch) == ("macos", "arm64") else "cpu"


def _parse_rest(rest: str) -> tuple[str, str, str] | None:
    """(os, arch, variant) of the part between `-bin-` and the extension, or None."""
    toks = rest.lower().split("-")
    if not all(_TOKEN.fullmatch(t) for t in toks):
        return None
    os_i = next((i for i, t in enumerate(toks) if t in _OS or t in _DISTROS), 0)
    arch_i = max((i for i, t in enumerate(toks) if t in _ARCH and i > os_i), default=None)
    if arch_i is None:
        return None
    os_tok, arch = toks[os_i], _ARCH[toks[arch_i]]
    os_ = _OS.get(os_tok) or _DISTROS.get(os_tok) or os_tok
    between = toks[os_i + 1 : arch_i]
    others = toks[:os_i] + between[1:] + toks[arch_i + 1 :]
    if between and between[0] in _TOOLCHAINS and others:
        between = between[1:]
    parts = toks[:os_i] + between + toks[arch_i + 1 :]
    if os_tok in _DISTROS:
        parts = [os_tok, *parts]
    parts = [m.group(1) if (m := _CU.fullmatch(t)) else t for t in parts]
    return os_, arch, "-".join(parts) or default_variant(os_, arch)


def _split(name: str) -> tuple[str, str | None, tuple[str, str, str], str] | None:
    """(kind, tag, (os, arch, variant), archive) of a binary or companion name."""
    for kind, rx in (("binary", _BINARY), ("companion", _COMPANION)):
        m = rx.fullmatch(name)
        if m and (cell := _parse_rest(m["rest"])):
            return kind, m["tag"], cell, m["ext"].lower()
    return None


def cuda_version(variant: str) -> str | None:
    """The CUDA version a variant names (`cuda-12.4` -> 12.4, old `cublas-cu12.2.0` too)."""
    toks = variant.lower().split("-")
    for i, t in enumerate(toks[:-1]):
        if t in ("cuda", "cublas") and _VERSION.fullmatch(toks[i + 1]):
            return toks[i + 1]
    return None


def classify_asset(name: str) -> AssetMatch:
    split = _split(name)
    if split is None:
        return UNMATCHED
    kind, _tag, (os_, arch, variant), archive = split
    if kind == "companion":
        ver = next((t for t in reversed(variant.split("-")) if _VERSION.fullmatch(t)), None)
        variant = f"cuda-{ver}" if ver else variant
    return AssetMatch(kind, os_, arch, variant, archive)


def companions_for(binary_name: str, all_names: Iterable[str]) -> list[str]:
    """Companion assets of a binary: CUDA runtimes of the same os, arch and CUDA version.

    A companion that carries a tag (the Linux ones do) must carry the binary's tag.
    """
    split = _split(binary_name)
    if split is None or split[0] != "binary":
        return []
    _, tag, (os_, arch, variant), _ = split
    want = cuda_version(variant)
    if want is None:
        return []
    found = []
    for name in all_names:
        other = _split(name)
        if other is None or other[0] != "companion" or other[1] not in (None, tag):
            continue
        m = classify_asset(name)
        if (m.os, m.arch, m.variant) == (os_, arch, f"cuda-{want}"):
            found.append(name)
    return found


def host_platform() -> tuple[str, str]:
    """This machine in cell vocabulary; unknown systems and machines stay lower-cased."""
    system = platform.system().lower()
    machine = platform.machine().lower()
    os_ = {"darwin": "macos"}.get(system, system)
    # a 32-bit x86 host is not x64, whatever the openEuler asset names mean by "x86"
    arch = machine if machine == "x86" else _ARCH.get(machine, machine)
    return os_, arch


def _spellings(table: dict[str, str], value: str) -> list[str]:
    return [k for k, v in table.items() if v == value] or [value.lower()]


def _cu_forms(toks: list[str]) -> Iterator[list[str]]:
    """Each version token as written now and in the old `cu<version>` spelling."""
    if not toks:
        yield []
        return
    heads = [toks[0], f"cu{toks[0]}"] if _VERSION.fullmatch(toks[0]) else [toks[0]]
    for head in heads:
        for tail in _cu_forms(toks[1:]):
            yield [head, *tail]


def _layouts(os_: str, arch: str, variant: str) -> Iterator[str]:
    """Every `<rest>` that might spell this cell; the caller keeps those that do."""
    toks = variant.lower().split("-")
    choices = [toks, []] if variant == default_variant(os_, arch) else [toks]
    for vt in choices:
        heads = [(s, vt) for s in _spellings(_OS, os_)]
        if vt and _DISTROS.get(vt[0]) == os_:
            heads.append((vt[0], vt[1:]))
        for os_tok, rest in heads:
            for form in _cu_forms(rest):
                for tool in ([], *([t] for t in _TOOLCHAINS)) if form else ([],):
                    n = len(form)
                    for i in range(n + 1):
                        for j in range(i, n + 1):
                            for a in _spellings(_ARCH, arch):
                                yield "-".join([*form[:i], os_tok, *tool, *form[i:j], a, *form[j:]])


@functools.lru_cache(maxsize=512)
def platform_asset_pattern(os: str, arch: str, variant: str) -> re.Pattern[str]:
    """A regex that fullmatches exactly the binary names `classify_asset` puts in this cell.

    Built by spelling the cell every way the rules allow (OS and arch aliases, the variant
    split around the arch, a toolchain token, old CUDA spelling) and keeping only the
    spellings the classifier reads back as this cell, so the two cannot disagree.
    """
    cell = (os, arch, variant)
    rests = sorted({r for r in _layouts(*cell) if _parse_rest(r) == cell})
    alts = "|".join(re.escape(r) for r in rests) or "(?!)"
    return re.compile(rf"llama-{_TAG}-bin-(?:{alts})\.(?:zip|tar\.gz)", re.IGNORECASE)


def match_asset(names: Iterable[str], os: str, arch: str, variant: str) -> str | None:
    """The binary asset of that cell among `names`; a tar.gz wins over a zip."""
    hits = []
    for name in names:
        m = classify_asset(name)
        if m.kind == "binary" and (m.os, m.arch, m.variant) == (os, arch, variant):
            hits.append(name)
    return next((n for n in hits if n.lower().endswith(".tar.gz")), hits[0] if hits else None)
