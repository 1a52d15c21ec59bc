"""One binding against many releases: each release named, or the range a source knows.

What a release is (its ABI, the exports of a build of it) comes from a callable the caller
supplies (the CLI and the pipeline get them through the library API, a layer above this one).
Every release costs a download (its headers, and a build for the exports), so the range search
checks a few points and bisects where the verdict changes; see `scan`.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from harness.abi.model import Api
from harness.binding import names
from harness.binding.check import BindingVerdict, check
from harness.binding.model import BindingDecl
from harness.errors import HarnessError

log = logging.getLogger(__name__)

GRID = 8  # points checked first across the whole list of releases
BUDGET = 24  # at most this many releases checked by one scan


@dataclass
class ReleaseAbi:
    """What a binding is checked against: a release's ABI and a build's exports."""

    tag: str
    build: str
    api: Api
    exports: set[str] | None  # None: no build at hand (`note` says why)
    platform: str = ""  # whose exports: "linux x64 cpu (npm)"
    note: str = ""


AbiOf = Callable[[str], ReleaseAbi]


def check_release(
    decl: BindingDecl, rel: ReleaseAbi, overrides: names.Overrides | None = None
) -> BindingVerdict:
    mapping, unmapped = names.map_structs(decl, set(rel.api.structs), overrides)
    v = check(
        decl,
        rel.api,
        release=rel.tag,
        build=rel.build,
        structs=mapping,
        unmapped=list(unmapped),
        exports=rel.exports,
        functions=overrides.functions if overrides is not None else None,
    )
    if rel.exports is None and rel.note:
        v.warnings.append(f"no {rel.tag} build for its exports: {rel.note}")
    return v


def check_releases(
    decl: BindingDecl, tags: Sequence[str], abi_of: AbiOf, overrides: names.Overrides | None = None
) -> list[BindingVerdict]:
    return [check_release(decl, abi_of(tag), overrides) for tag in tags]


@dataclass
class Scan:
    """`--all`: the releases a source knows (old → new) and the verdicts of those checked."""

    name: str
    points: list[str]
    verdicts: dict[int, BindingVerdict] = field(default_factory=dict)

    def ordered(self) -> list[BindingVerdict]:
        """One verdict per release (npm has several versions of some), old → new."""
        out: dict[str, BindingVerdict] = {}
        for i in sorted(self.verdicts):
            out.setdefault(self.verdicts[i].release, self.verdicts[i])
        return list(out.values())

    def ranges(self) -> list[tuple[int, int]]:
        """Runs of checked points that are all compatible, as (first, last) point indices."""
        runs: list[tuple[int, int]] = []
        for i in sorted(self.verdicts):
            if self.verdicts[i].verdict != "compatible":
                continue
            if runs and _next_checked(self, runs[-1][1]) == i:
                runs[-1] = (runs[-1][0], i)
            else:
                runs.append((i, i))
        return runs

    def summary(self) -> list[str]:
        head = f"{self.name}: "
        tail = f"(checked {len(self.verdicts)} of {len(self.points)} releases)"
        runs = self.ranges()
        if not runs:
            checked = [v for v in self.verdicts.values() if not v.error]
            if not checked:
                return [f"{head}no release could be checked {tail}"]
            near = min(checked, key=lambda v: len(v.breaks))
            return [
                f"{head}no compatible release found {tail}; closest {near.release} with "
                f"{len(near.breaks)} break(s), the first: {near.breaks[0]}"
            ]
        out = []
        for a, b in runs:
            first, last = self.verdicts[a], self.verdicts[b]
            span = first.release if a == b else f"{first.release} … {last.release}"
            line = f"{head}{span}"
            before = max((j for j in self.verdicts if j < a), default=None)
            if before is not None:
                line += f" ({self.verdicts[before].release} {self.verdicts[before].verdict})"
            after = _next_checked(self, b)
            if after is not None:
                brk = self.verdicts[after]
                why = brk.breaks[0] if brk.breaks else brk.error
                line += f"; first break {brk.release}: {why}"
            out.append(f"{line} {tail}")
        return out


def _next_checked(scan: Scan, i: int) -> int | None:
    later = [j for j in scan.verdicts if j > i]
    return min(later) if later else None


def scan(
    decl: BindingDecl,
    points: Sequence[str],
    abi_of: AbiOf,
    overrides: names.Overrides | None = None,
    *,
    grid: int = GRID,
    budget: int = BUDGET,
) -> Scan:
    """Check `grid` evenly spread points, then bisect between neighbours whose verdicts differ
    (so each edge of a compatible range is exact), and while nothing is compatible, close in on
    the point with the fewest breaks (a binding fits the releases near the one it was written
    for). Assumes a verdict does not flip and flip back between two checked points."""
    s = Scan(decl.name, list(points))
    n = len(points)
    if n == 0:
        return s

    def visit(i: int) -> BindingVerdict:
        if i not in s.verdicts:
            try:
                s.verdicts[i] = check_release(decl, abi_of(points[i]), overrides)
            except HarnessError as err:
                log.info("%s: %s", points[i], err)
                s.verdicts[i] = BindingVerdict(points[i], "", error=str(err))
        return s.verdicts[i]

    step = max(1, (n - 1) / max(1, grid - 1))
    for i in sorted({min(n - 1, round(k * step)) for k in range(grid)} | {n - 1}):
        visit(i)
    while len(s.verdicts) < min(budget, n):
        todo = _edges(s) or _toward_fewest(s)
        if not todo:
            break
        for i in todo[: budget - len(s.verdicts)]:
            visit(i)
    return s


def _ok(v: BindingVerdict) -> bool:
    return v.verdict == "compatible"


def _edges(s: Scan) -> list[int]:
    """The midpoint of each gap whose two ends disagree."""
    idx = sorted(s.verdicts)
    return [
        (a + b) // 2
        for a, b in itertools.pairwise(idx)
        if b - a > 1 and _ok(s.verdicts[a]) != _ok(s.verdicts[b])
    ]


def _toward_fewest(s: Scan) -> list[int]:
    if any(_ok(v) for v in s.verdicts.values()):
        return []
    idx = sorted(i for i, v in s.verdicts.items() if not v.error)
    if not idx:
        return []
    best = min(idx, key=lambda i: len(s.verdicts[i].breaks))
    k = idx.index(best)
    out = []
    if k > 0 and best - idx[k - 1] > 1:
        out.append((best + idx[k - 1]) // 2)
    if k + 1 < len(idx) and idx[k + 1] - best > 1:
        out.append((best + idx[k + 1]) // 2)
    return out


def render(verdicts: Sequence[BindingVerdict], name: str, limit: int = 40) -> list[str]:
    """Plain text: one line per release, then its breaks (capped) and warnings count."""
    out = []
    for v in verdicts:
        build = f" ({v.build})" if v.build and v.build != v.release else ""
        head = f"{name} vs {v.release}{build}: {v.verdict}"
        counts = f" — {len(v.breaks)} break(s)" if v.breaks else ""
        out.append(
            f"{head}{counts}; {v.functions_checked} functions, {v.structs_checked} structs "
            f"checked, {len(v.warnings)} warning(s), {len(v.unmapped)} unmapped"
        )
        if v.error:
            out.append(f"  error: {v.error}")
        out += [f"  - {b}" for b in v.breaks[:limit]]
        if len(v.breaks) > limit:
            out.append(f"  … {len(v.breaks) - limit} more (--json lists them all)")
    return out
