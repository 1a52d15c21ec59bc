"""Reading a report.json that someone else wrote (a shard's result, a `--baseline`).

Those files come from other runners, artifacts, old versions: inputs we do not trust. Each is
checked against report.schema.json before any rendering touches it, so a malformed one is one
line naming the file and the place (exit 2), never a KeyError deep in the Markdown.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from harness.errors import ConfigError

MAX_BYTES = 256 << 20  # a report of 10,000 cells is ~30 MB


@cache
def schema() -> dict[str, Any]:
    """The JSON schema of report.json (shipped as package data)."""
    return dict(json.loads(Path(__file__).with_name("report.schema.json").read_text("utf-8")))


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema())


def load(path: Path, what: str = "report") -> dict[str, Any]:
    """A report.json, parsed and valid; ConfigError naming `path` (and the place) otherwise."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_BYTES:,} bytes; not a {what}")
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the {what}: {err.strerror or err}") from err
    except (ValueError, RecursionError) as err:  # RecursionError: JSON nested past Python's stack
        raise ConfigError(f"{path}: not a llama-harness {what} (invalid JSON)") from err
    check(data, str(path), what)
    return data


def check(data: Any, source: str, what: str = "report") -> None:
    try:
        error = jsonschema.exceptions.best_match(_validator().iter_errors(data))
    except RecursionError as err:
        raise ConfigError(f"{source}: not a llama-harness {what} (nested too deeply)") from err
    if error is not None:
        raise ConfigError(
            f"{source}: not a llama-harness {what}: {_where(error.absolute_path)}: "
            f"{_clip(error.message)}"
        )


def _where(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "top level"


def _clip(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
