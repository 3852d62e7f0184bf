"""Selfbench's stop-rule replay: what the run loop's precision stop would have made of stored
runs, at the profile's target and at looser ones, judged as the report judges.

A stored run of the noisy matrix (selfbench noisy: twins, +5% cells) records, for every kept
worker process, the round it ran in. The replay walks those rounds again: after each, every
cell still measuring is given the typical scatter of its model from what the cells had then
(``schedule.typical_scatter``) and asked ``Sampling.stop`` whether it has reached ``target``;
a cell that stops keeps the processes it had. Only stops on precision are replayed: a cell the
rule does not stop keeps all it was measured with (a replay cannot add processes), so at the
run's own target the replay gives back the run as it was, and at a looser one it shows what
early stops do. Then the report's test (``stats.compare_cells`` at the within-run floor) on
the twins (A/A: called different), on the +5% pairs (power: called slower), and the cost: the
processes kept and the cells stopped at 6 processes or fewer.

    python -m devtools.selfbench.replay RUN… [--targets 0.02,0.03,0.04]

Stage: development (a figure about the run loop, printed; never a timed test).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

EARLY = 6  # a stop at this many processes or fewer is an early one

Key = tuple[str, str]


def process_means(table: Any) -> dict[Key, list[tuple[int, float]]]:
    """Per cell of a cell table (``stats.cell_table``), (round, raw mean) of each kept worker
    process, in round order: its ``series``, as the run loop saw them."""
    return {
        (str(row.interpreter), str(row.cell)): sorted(zip(row.series.rounds, row.series.raw, strict=True))
        for row in table.itertuples(index=False)
    }


def replay_stops(means: Mapping[Key, Sequence[tuple[int, float]]], sampling: Any) -> dict[Key, int]:
    """Per cell the rule stops on precision, the round it stops after (cells it does not stop:
    absent)."""
    from gilmatrix.harness.contract import Status, Stopped
    from gilmatrix.run.schedule import CellState, typical_scatter

    last = max((r for seq in means.values() for r, _ in seq), default=0)
    stopped: dict[Key, int] = {}
    for number in range(1, last + 1):
        states = [
            CellState(
                key[0],
                key[1],
                means=[m for r, m in seq if r <= stopped.get(key, number)],
                status=Status.DONE if key in stopped else Status.PENDING,
            )
            for key, seq in means.items()
        ]
        typical = typical_scatter(states)
        for state in states:
            ran = any(r == number for r, _ in means[state.key])
            if state.key in stopped or not ran:
                continue
            if sampling.stop(state.means, 0.0, 0.0, typical.get(state.key)) == Stopped.PRECISION:
                stopped[state.key] = number
    return stopped


def replay_run(run_dir: Path, target: float) -> dict[str, int]:
    """One stored run replayed at ``target``: its twins, those called different, its +5%
    pairs, those found, processes kept, cells stopped on precision and those stopped early."""
    from devtools.selfbench.noisy import comparisons
    from gilmatrix.confidence import within_run_floor
    from gilmatrix.reports.results import load_run, noise_floor
    from gilmatrix.reports.stats import cell_table, compare_cells
    from gilmatrix.run.schedule import Sampling

    run = load_run(run_dir)
    schedule = run.manifest.get("schedule") or {}
    recorded = schedule.get("sampling") or {}
    if recorded.get("mode") != "adaptive":
        raise ValueError(f"{run_dir}: not a run of adaptive sampling: nothing to replay")
    if schedule.get("pairing") == "calls":
        raise ValueError(f"{run_dir}: measured with pairing: calls, whose cells stop on their ratios")
    least = int(recorded["min_processes"])
    # budgets are not replayed (the data end where the run ended them), nor `decide` stops
    sampling = Sampling(processes=least, target=target, min_processes=least, max_processes=10**6)
    frame = run.frame
    means = process_means(cell_table(frame))
    stopped = replay_stops(means, sampling)
    keys = zip(frame["interpreter"].astype(str), frame["cell"].astype(str), strict=True)
    last = [stopped.get(key, 10**9) for key in keys]
    table = cell_table(frame[frame["round"].to_numpy() <= last])
    floor = within_run_floor(noise_floor(run.manifest))
    twins, plus, _ = comparisons(table)
    judged_twins = [compare_cells(a, b, floor) for a, b in twins]
    judged_plus = [compare_cells(a, b, floor) for a, b in plus]
    kept = {key: sum(1 for r, _ in means[key] if r <= number) for key, number in stopped.items()}
    return {
        "twins": len(twins),
        "twins_flagged": sum(bool(c.significant) for c in judged_twins),
        "plus": len(plus),
        "plus_detected": sum(bool(c.significant and c.ratio > 1.0) for c in judged_plus),
        "processes": int(table["processes"].sum()),
        "stopped": len(stopped),
        "early": sum(1 for n in kept.values() if n <= EARLY),
    }


def replayed(runs: Sequence[Path], target: float, skipped: Callable[[str], object]) -> dict[str, int]:
    """:func:`replay_run` of every run at ``target``, summed ({} when none could be replayed;
    ``skipped`` is told why a run was not)."""
    total: dict[str, int] = {}
    for run_dir in runs:
        try:
            figures = replay_run(run_dir, target)
        except (OSError, ValueError) as exc:
            skipped(f"skipped: {exc}")
            continue
        for name, value in {**figures, "runs": 1}.items():
            total[name] = total.get(name, 0) + value
    return total


def describe(total: Mapping[str, int]) -> str:
    """One line of :func:`replayed`'s figures."""
    share = total["twins_flagged"] / total["twins"] if total["twins"] else float("nan")
    return (
        f"A/A {total['twins_flagged']}/{total['twins']} ({share:.1%}), "
        f"power {total['plus_detected']}/{total['plus']}, processes {total['processes']}, "
        f"stopped on precision {total['stopped']} ({total['early']} at {EARLY} processes or fewer), "
        f"{total['runs']} runs"
    )


def main(argv: Sequence[str] | None = None) -> int:
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m devtools.selfbench.replay", description=summary)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories of the noisy matrix")
    parser.add_argument("--targets", default="0.02,0.03,0.04", help="precision targets, comma-separated")
    args = parser.parse_args(argv)
    try:
        targets = [float(t) for t in args.targets.split(",")]
    except ValueError:
        parser.error(f"--targets: numbers separated by commas, not {args.targets!r}")
    for target in targets:
        total = replayed(args.runs, target, lambda why: print(why, file=sys.stderr))
        if not total:
            return 1
        print(f"target ±{target:.1%}: {describe(total)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
