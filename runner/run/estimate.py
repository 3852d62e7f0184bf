"""How long the pending cells still need: processes each cell is expected to take (from its
interval so far) and the seconds they cost (from the worker lives so far). Stage: run (the
progress lines' "~time left")."""

from __future__ import annotations

import math
from collections.abc import Sequence

from gilmatrix.run.schedule import CellState, Sampling, pooled_precision


def needed_processes(sampling: Sampling, means: Sequence[float], typical: float | None = None) -> int:
    """How many worker processes a cell will have in all, as far as can be told now: the fixed
    count; adaptive, from its interval so far (the half-width shrinks as 1/sqrt(n): n × (p /
    target)², between min_processes and max_processes), min_processes before it has one."""
    if not sampling.adaptive:
        return sampling.processes
    assert sampling.target is not None
    # a cell waiting for its model's scatter (typical inf) is guessed from its own
    precision = pooled_precision(means, None if typical == math.inf else typical)
    if precision is None:
        return sampling.min_processes
    wanted = math.ceil(len(means) * (precision / sampling.target) ** 2) if sampling.target > 0 else 10**9
    return min(max(wanted, sampling.min_processes), sampling.max_processes)


def estimate_seconds(
    sampling: Sampling,
    states: list[CellState],
    coming: Sequence[CellState],
    ran: Sequence[CellState] = (),
    *,
    overhead: float = 1.0,
    run_left: float | None = None,
) -> float | None:
    """Seconds the pending cells still need: ``coming``, those that get a worker process in the
    current (or next) round, at least that one; ``ran``, those that had theirs in the current
    round already. From the worker processes' lives so far (``states``: every cell of the run);
    None before any worker has run.

    A cell's first worker calibrates the loops (unless the profile fixes them) and lives longer
    than its later ones: a cell that has run gets its own later workers' mean life (else the
    run's), a cell that has not one first worker (the run's mean first life) then later ones.
    Each cell takes the processes :func:`needed_processes` expects, within its own budget
    (``max_seconds`` of worker time); ``overhead`` (wall time per second of worker life) adds
    the host's share. ``run_left``, the run's budget left (``run_minutes``): once it is spent,
    cells with their minimum of processes stop after that round."""
    firsts = [state.seconds[0] for state in states if state.seconds]
    if not firsts:
        return None
    laters = [s for state in states for s in state.seconds[1:]]
    first = sum(firsts) / len(firsts)
    later = sum(laters) / len(laters) if laters else first
    total = one_round = to_minimum = 0.0
    for cell, least in [(c, 1) for c in coming] + [(c, 0) for c in ran]:
        n = len(cell.means)
        more = max(needed_processes(sampling, cell.measured, cell.typical) - n, least)
        if not more:
            continue
        own = cell.seconds[1:]
        per = sum(own) / len(own) if own else later
        start = first if not cell.means and not cell.seconds else per
        need = start + (more - 1) * per
        if sampling.max_seconds is not None:
            need = min(need, max(sampling.max_seconds - cell.kept_seconds, start))
        total += need
        one_round += start * least
        to_minimum += per * max(sampling.min_processes - n - least, 0) if sampling.adaptive else 0.0
    if run_left is not None:
        total = min(total, max(run_left, 0.0) + one_round + to_minimum)
    return total * overhead
