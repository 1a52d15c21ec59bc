"""Static checks of every cell's binaries, host and non-host alike (ELF, Mach-O and PE via LIEF).

`check_tree(tree, os, arch, variant, api)` → `StaticResult` with one named result per check in
`CHECKS` and the facts found on the way. `binary` parses, `allow` holds the outside libraries a
build may need, `names` says what llama.cpp's libraries are called (the loader shares it),
`checks` runs the checks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["CHECKS", "StaticResult", "check_tree", "find_libdir"]

if TYPE_CHECKING:
    from harness.static.checks import CHECKS, StaticResult, check_tree, find_libdir


def __getattr__(name: str) -> Any:
    """Lazy: `checks` imports LIEF (~0.3 s), which the child that loads a release (it needs only
    `names`) must not pay for."""
    if name in __all__:
        from harness.static import checks

        return getattr(checks, name)
    raise AttributeError(name)
