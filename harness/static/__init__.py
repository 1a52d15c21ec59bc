"""Static checks of every cell's binaries, host and non-host alike (ELF, Mach-O and PE via LIEF).

`check_tree(tree, os, arch, variant, api)` → `StaticResult` with one named result per check in
`CHECKS` and the facts found on the way. `binary` parses, `allow` holds the outside libraries a
build may need, `checks` runs the checks.
"""

from __future__ import annotations

from harness.static.checks import CHECKS, StaticResult, check_tree, find_libdir

__all__ = ["CHECKS", "StaticResult", "check_tree", "find_libdir"]
