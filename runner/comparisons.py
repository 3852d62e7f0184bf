"""Which cells of a run the report compares, by key (interpreter, cell id): shared by the run
loop (run/decide.py: a cell stops once its comparisons are decided) and the report
(reports/power.py: what a run's comparisons could find), so that the two cannot drift apart.

- within a workload on one interpreter: each cell against the workload's sequential cell, and
  against every other execution model at the same worker count (the verdict cards, the
  speedups);
- across interpreters: each cell against the same cell on the previous version of the same
  build kind (3.13 → 3.14, 3.13t → 3.14t), and a free-threaded build's against its default
  build's (3.14t → 3.14).
"""

from __future__ import annotations

from collections.abc import Iterable

from gilmatrix.harness.contract import CellId, interpreter_key

Key = tuple[str, str]  # (interpreter, cell id)


def comparisons(keys: Iterable[Key]) -> dict[Key, set[Key]]:
    """Every cell's comparison partners among ``keys`` (see the module's docstring)."""
    keys = list(keys)
    known = set(keys)
    parsed = {key: CellId.maybe(key[1]) for key in keys}
    out: dict[Key, set[Key]] = {key: set() for key in keys}

    def link(a: Key, b: Key) -> None:
        if a != b and b in known:
            out[a].add(b)
            out[b].add(a)

    by_group: dict[tuple[str, str, int], list[Key]] = {}
    for key, cell in parsed.items():
        if cell is None:
            continue
        link(key, (key[0], str(CellId(cell.workload, "sequential", 1))))
        by_group.setdefault((key[0], cell.workload, cell.workers), []).append(key)
    for group in by_group.values():
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                link(a, b)
    interpreters = sorted({key[0] for key in keys}, key=interpreter_key)
    previous: dict[str, str] = {}
    for free_threaded in (False, True):
        line = [i for i in interpreters if i.endswith("t") == free_threaded]
        previous.update(zip(line[1:], line, strict=False))
    for key in keys:
        if key[0] in previous:
            link(key, (previous[key[0]], key[1]))
        if key[0].endswith("t"):
            link(key, (key[0][:-1], key[1]))
    return out
