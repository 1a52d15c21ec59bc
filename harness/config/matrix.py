"""matrix.yaml → validated config → cells (release × os × arch × variant), filtered and sharded.

Validation is a JSON schema (so the rules are data, and users can read them), but the error line is
ours: jsonschema's messages name neither the file nor what *is* allowed.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.config import quickcheck, yamlfile
from harness.errors import ConfigError

if TYPE_CHECKING:
    import jsonschema

OSES = ("linux", "macos", "windows", "android")
ARCHES = ("x64", "arm64", "armv7l", "x86", "s390x", "riscv64", "ppc64le", "loongarch64")
VERIFY_POLICIES = ("required", "if-available", "off")
SOURCES = ("github", "npm", "mirror")
RELEASE_PATTERN = r"^(b[0-9]+|v[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?|latest)$"
# Variant names as llama.cpp's release assets spell them (the part between OS and arch).
VARIANT_PATTERN = (
    r"^(cpu|metal|vulkan|kompute|blas|openblas|noavx|avx|avx2|avx512|msvc|llvm|kleidiai|rpc"
    r"|snapdragon|cuda|rocm|hip|sycl|openvino|opencl|musa|cann|openeuler)(-[a-z0-9][a-z0-9.]*)*$"
)
VARIANT_HELP = (
    "cpu, metal, vulkan, cuda-<ver>, rocm-<ver>, hip-<name>, sycl-<fp>, openvino-<ver>, …"
)

_PLATFORM = {
    "type": "object",
    "additionalProperties": False,
    "required": ["os", "arch"],
    "properties": {
        "os": {"enum": list(OSES)},
        "arch": {"enum": list(ARCHES)},
        "variant": {"type": "string", "pattern": VARIANT_PATTERN},
        "variants": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "pattern": VARIANT_PATTERN},
        },
    },
    "not": {"required": ["variant", "variants"]},
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["releases", "platforms"],
    "properties": {
        "repo": {"type": "string", "pattern": r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"},
        "sources": {"type": "array", "minItems": 1, "items": {"enum": list(SOURCES)}},
        "mirror": {"type": "string", "minLength": 1},
        "verify": {"enum": list(VERIFY_POLICIES)},
        "releases": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "pattern": RELEASE_PATTERN},
        },
        "platforms": {"type": "array", "minItems": 1, "items": _PLATFORM},
        "exclude": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "minProperties": 1,
                "properties": {
                    "release": {"type": "string", "pattern": RELEASE_PATTERN},
                    "os": {"enum": list(OSES)},
                    "arch": {"enum": list(ARCHES)},
                    "variant": {"type": "string", "pattern": VARIANT_PATTERN},
                },
            },
        },
        "model": {"type": "string", "minLength": 1},
        "manifest": {"type": "string", "minLength": 1},
        "binding": {"type": "string", "minLength": 1},
    },
}

_ALLOWED_BY_PATTERN = {
    RELEASE_PATTERN: "b<N>, v<semver> or latest",
    VARIANT_PATTERN: VARIANT_HELP,
}


@dataclass(frozen=True, order=True)
class Cell:
    release: str
    os: str
    arch: str
    variant: str

    @property
    def id(self) -> str:
        return f"{self.release}-{self.os}-{self.arch}-{self.variant}"


@dataclass(frozen=True)
class Platform:
    os: str
    arch: str
    variants: tuple[str, ...]


@dataclass(frozen=True)
class Matrix:
    releases: tuple[str, ...]
    platforms: tuple[Platform, ...]
    exclude: tuple[dict[str, str], ...] = ()
    repo: str = "ggml-org/llama.cpp"
    sources: tuple[str, ...] = ("github",)
    mirror: str | None = None
    verify: str = "if-available"
    model: str = "tiny"
    manifest: str | None = None
    binding: str | None = None  # a file, folder or pip requirement (harness.binding)
    path: Path | None = field(default=None, compare=False)

    def cells(self, releases: Sequence[str] | None = None) -> list[Cell]:
        """The cross product in matrix order, minus excludes. `releases` replaces the matrix's."""
        out: list[Cell] = []
        for release in releases if releases is not None else self.releases:
            for p in self.platforms:
                for variant in p.variants:
                    cell = Cell(release, p.os, p.arch, variant)
                    if not any(_excluded(cell, rule) for rule in self.exclude):
                        out.append(cell)
        return list(dict.fromkeys(out))


def _excluded(cell: Cell, rule: dict[str, str]) -> bool:
    return all(getattr(cell, key) == value for key, value in rule.items())


def _where(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "top level"


def _describe(err: jsonschema.ValidationError) -> str:
    """One human sentence: what is wrong and what is allowed."""
    v = err.validator
    if v == "additionalProperties":
        allowed = ", ".join(sorted(err.schema.get("properties", {})))
        extra = sorted(map(str, set(err.instance) - set(err.schema.get("properties", {}))))
        return f"unknown key {_clip(', '.join(map(repr, extra)), 80)} (allowed: {allowed})"
    if v == "enum":
        allowed = ", ".join(map(str, err.validator_value))
        return f"{_short(err.instance)} is not allowed (allowed: {allowed})"
    if v == "pattern":
        allowed = _ALLOWED_BY_PATTERN.get(str(err.validator_value), str(err.validator_value))
        return f"{_short(err.instance)} is not allowed (allowed: {allowed})"
    if v == "minItems":
        return "must not be empty"
    if v == "required":
        return err.message.replace("is a required property", "is required")
    if v == "type":
        return f"expected {err.validator_value}, got {type(err.instance).__name__}"
    if v == "not":
        return "give either 'variant' or 'variants', not both"
    if v == "minProperties":
        return "an exclude rule needs at least one of release, os, arch, variant"
    return _clip(err.message, 200)


def _short(value: Any) -> str:
    """A value as it appears in an error line: never the whole of a huge instance."""
    return _clip(reprlib.repr(value), 80)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def validate(data: Any, source: str) -> None:
    if quickcheck.valid(data, SCHEMA):
        return  # the usual case, without importing jsonschema (~45 ms of a warm run)
    import jsonschema  # lazy: for what quickcheck cannot show valid, and to word the error

    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(data), key=lambda e: (list(e.absolute_path), e.validator))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        assert err is not None
        raise ConfigError(f"{source}: {_where(err.absolute_path)}: {_describe(err)}")


def parse(data: Any, source: str = "matrix.yaml", path: Path | None = None) -> Matrix:
    if data is None:
        raise ConfigError(f"{source}: the file is empty (it needs 'releases' and 'platforms')")
    validate(data, source)
    platforms = tuple(
        Platform(
            p["os"],
            p["arch"],
            tuple(p["variants"]) if "variants" in p else (p.get("variant") or _default(p),),
        )
        for p in data["platforms"]
    )
    return Matrix(
        releases=tuple(dict.fromkeys(data["releases"])),
        platforms=platforms,
        exclude=tuple(data.get("exclude", ())),
        repo=data.get("repo", "ggml-org/llama.cpp"),
        sources=tuple(data.get("sources", ("github",))),
        mirror=_relative(data.get("mirror"), path),
        verify=data.get("verify", "if-available"),
        model=_relative(data.get("model", "tiny"), path),
        manifest=_relative(data.get("manifest"), path),
        binding=_binding(data.get("binding"), path),
        path=path,
    )


def _relative(location: Any, matrix_path: Path | None) -> Any:
    """A relative mirror folder or model file is relative to the matrix file, as a user reading
    it expects."""
    if not location or location == "tiny" or "://" in location or matrix_path is None:
        return location
    return str((matrix_path.parent / Path(location).expanduser()).resolve())


def _binding(location: Any, matrix_path: Path | None) -> Any:
    """A binding that names an existing file or folder beside the matrix is relative to it;
    anything else (`llama-cpp-python==0.3.16`) is a pip requirement, kept as written."""
    if location and matrix_path is not None:
        here = matrix_path.parent / Path(location).expanduser()
        if here.exists() or "/" in location or "\\" in location:
            return str(here.resolve())
    return location


def _default(p: dict[str, str]) -> str:
    return "metal" if (p["os"], p["arch"]) == ("macos", "arm64") else "cpu"


def load(path: Path | str) -> Matrix:
    path = Path(path)
    data = yamlfile.read(path, "matrix", " (give one with --matrix)")
    return parse(data, str(path), path)


def filter_cells(
    cells: Iterable[Cell],
    os: Sequence[str] = (),
    arch: Sequence[str] = (),
    variant: Sequence[str] = (),
) -> list[Cell]:
    return [
        c
        for c in cells
        if (not os or c.os in os)
        and (not arch or c.arch in arch)
        and (not variant or c.variant in variant)
    ]


_SHARD = re.compile(r"^([0-9]+)/([0-9]+)$")


def parse_shard(text: str) -> tuple[int, int]:
    m = _SHARD.match(text.strip())
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ConfigError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. 1/4")
    return int(m.group(1)), int(m.group(2))


def shard(cells: Sequence[Cell], k: int, n: int) -> list[Cell]:
    """Round-robin over the cells sorted by id: balanced, and independent of matrix order."""
    ordered = sorted(set(cells), key=lambda c: c.id)
    return [c for i, c in enumerate(ordered) if i % n == k - 1]
