"""Selfbench's ``noisy`` section: verdicts on a machine made noisy on purpose, by each estimator.

A seeded burner (``Burner``: one or more processes, bursts of pure-Python work of random length
and random pauses, the same bursts for the same seed) runs during the whole section. Under it,
runs of the within-run matrix (verdicts.within_matrix: ``crunch`` and ``sum_squares``, their
identical twins, and ``crunch_plus`` with 5% more work) alternate between the *arms* — e.g.
``shuffle`` (every cell of a round mixed: the default), ``pairs`` (the same with ``pairing:
calls``: each cell times its workload's sequential run around each call), ``decide`` (cells stop
once their comparisons are decided: ``precision.decide``), ``blocks`` (each workload's cells
side by side) — shuffle, pairs, shuffle, pairs, so that every arm meets the
same noise. With several run budgets (``--minutes 4,12``) each arm's runs alternate between
them too, and every figure is given per arm and budget: what a run's minutes buy on this noise.
Every run is then judged by every estimator, on the same processes:

- ``welch``: Welch's test on the raw process means (the report's test until session 15);
- ``welch+ref``: the same on the process means adjusted by the covariates (the reference loop,
  and each call's run-queue wait where recorded: the report's until session 20);
- ``welch+ref, with others``: the same, pools also adjusted by other work's share of their CPUs
  (``cell_table(..., others=True)``: a study, not the report's);
- ``welch+ref alone``: the same adjusted by the reference loop alone (the report before the
  wait);
- ``paired``: the per-round log ratios of the two cells (paired t), raw;
- ``paired+ref``: the same, adjusted;
- ``yuen+ref``: Yuen's test (Welch's on 20% trimmed means: stats.trimmed) of the adjusted
  process means, the report's test inside a run in session 20;
- ``yuen pools+ref``: the same where a pool is on either side, welch+ref between two cells of one
  in-process worker (stats.pool_compared): the report's test inside a run since session 21;
- ``hl+ref``: the Hodges-Lehmann shift of the logs of the adjusted process means, tested by
  Mann-Whitney's U (a lead: not the report's);
- ``pairs``: the report's test (stats.compare_cells): per-call pairs where the run has them
  (reports/pairs.py), else yuen pools+ref (the pairs that fall back are counted);

and, at the 1% floor, each estimator's power at matched A/A (``matched_power``: its α lowered or
raised until it calls a given share of the twins different), so that a liberal test is not
credited with power it buys with false changes;

each with the floor the report holds a comparison inside a run to (1%:
confidence.within_run_floor) and, suffixed ", band", with the run's noise floor scaled to the
means (the report's until session 17). For
each: the A/A rate (twins called a change), the power (crunch_plus called slower than crunch; also
apart for cells of one in-process worker and for pools),
and the median half-width of the comparison intervals (every execution model and worker count
against sequential, of crunch and sum_squares: the report's comparisons).
"""

from __future__ import annotations

import itertools
import math
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

BURNER = r"""
import os, random, signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
rng = random.Random(int(sys.argv[1]))
low, high, pause = (float(a) for a in sys.argv[2:5])
parent = os.getppid()
start = time.monotonic(); busy = 0.0
try:
    while os.getppid() == parent:  # the benchmark that started it is gone: stop
        burst = rng.uniform(low, high); t0 = time.monotonic(); x = 0
        while time.monotonic() - t0 < burst:
            for i in range(10000): x += i * i
        busy += time.monotonic() - t0
        time.sleep(rng.uniform(0.0, pause))
finally:
    total = time.monotonic() - start
    print(f"{busy / max(total, 1e-9):.4f} {total:.1f}", flush=True)
"""


BURSTS = (0.2, 2.0)  # seconds of one burst: uniform between these
PAUSE = 1.0  # seconds of a pause: uniform from 0 to this


class Burner:
    """A seeded CPU burner for the duration of a ``with`` block: ``processes`` processes (seeds
    seed, seed+1, ...), each bursts of pure-Python work (0.2-2 s by default: ``bursts``) and
    pauses (0-1 s: ``pause``; busy ~70% of one core each); none with ``processes`` 0 (a quiet
    machine's check). ``busy`` (in cores: the processes' shares summed) and ``seconds`` are read
    when it stops."""

    def __init__(
        self, seed: int, processes: int = 1, bursts: tuple[float, float] = BURSTS, pause: float = PAUSE
    ) -> None:
        self.seed, self.processes = seed, max(0, processes)
        self.bursts, self.pause = bursts, pause
        self.busy: float | None = None
        self.seconds: float | None = None
        self._running: list[subprocess.Popen[str]] = []

    def __enter__(self) -> Burner:
        self._running = [
            subprocess.Popen(
                [sys.executable, "-c", BURNER, str(self.seed + i), *map(str, (*self.bursts, self.pause))],
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(self.processes)
        ]
        return self

    def __exit__(self, *exc: Any) -> None:
        found = []
        for process in self._running:
            process.terminate()
        for process in self._running:
            out, _ = process.communicate(timeout=30)
            fields = out.split()
            if len(fields) == 2:
                found.append((float(fields[0]), float(fields[1])))
        if found:
            self.busy = sum(busy for busy, _ in found)
            self.seconds = max(seconds for _, seconds in found)

    def describe(self) -> str:
        if not self.processes:
            return "no burner"
        who = (
            f"seed {self.seed}" if self.processes == 1 else f"{self.processes} processes, seeds {self.seed}+"
        )
        shape = f"bursts {self.bursts[0]:g}-{self.bursts[1]:g} s, pauses 0-{self.pause:g} s"
        return f"burner {who} ({shape}), busy {self.busy or math.nan:.2f} cores"


# an arm: the profile's round order, pairing, and whether cells stop once their comparisons are
# decided (precision.decide)
ARMS = {
    "shuffle": ("shuffle", "none", False),
    "blocks": ("blocks", "none", False),
    "pairs": ("shuffle", "calls", False),
    "decide": ("shuffle", "none", True),
}


def noisy_matrix(
    within: Path, dest: Path, arm: str, minutes: float, max_processes: int | None = None
) -> Path:
    """The within-run matrix whose default profile has this ``arm``'s round order and pairing,
    and this run budget; with ``max_processes``, that cap on a cell's processes (and as many
    seconds of worker time: a process takes well under one)."""
    data = yaml.safe_load(within.read_text())
    profile = data["profiles"]["default"]
    profile["order"], profile["pairing"], decide = ARMS[arm]
    profile["precision"] = {**profile["precision"], "run_minutes": minutes, "decide": decide}
    if max_processes is not None:
        profile["precision"].update(max_processes=max_processes, max_seconds=max_processes)
    dest.write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


def arm_of(manifest: Mapping[str, Any]) -> str:
    """The arm a run was made with, from its manifest's schedule."""
    schedule = manifest.get("schedule") or {}
    if schedule.get("pairing") == "calls":
        return "pairs"
    if (schedule.get("sampling") or {}).get("decide"):
        return "decide"
    return str(schedule.get("order") or "shuffle")


def _welch(a: Any, b: Any, floor: float) -> Any:
    """Welch on the raw process means."""
    from gilmatrix.reports.stats import welch_from_stats

    return welch_from_stats(a.mean, a.proc_sd, int(a.processes), b.mean, b.proc_sd, int(b.processes), floor)


def _paired(adjusted: bool) -> Callable[[Any, Any, float], Any]:
    from gilmatrix.reports.stats import paired

    def compare(a: Any, b: Any, floor: float) -> Any:
        return paired(a.series, b.series, floor, adjusted=adjusted)

    return compare


def _pairs(a: Any, b: Any, floor: float) -> Any:
    from gilmatrix.reports.stats import compare_pairs

    return compare_pairs(a, b, floor)


def _adjusted_only(a: Any, b: Any, floor: float) -> Any:
    """welch+ref on the adjusted means even where the rows have pairs."""
    from gilmatrix.reports.stats import adjusted_stats, welch_from_stats

    (ma, sa), (mb, sb) = adjusted_stats(a), adjusted_stats(b)
    return welch_from_stats(ma, sa, int(a.processes), mb, sb, int(b.processes), floor)


def _located(everywhere: bool) -> Callable[[Any, Any, float], Any]:
    """Welch's test on the location stats.location_stats gives each row, even where the rows
    have pairs: trimmed ``everywhere``, else where a pool is compared (stats.pool_compared)."""

    def compare(a: Any, b: Any, floor: float) -> Any:
        from gilmatrix.reports.stats import location_stats, pool_compared, welch_from_stats

        trim = everywhere or pool_compared(a, b)
        (ma, sa, da), (mb, sb, db) = location_stats(a, trim), location_stats(b, trim)
        return welch_from_stats(ma, sa, int(a.processes), mb, sb, int(b.processes), floor, df_a=da, df_b=db)

    return compare


def hodges_lehmann(a: Sequence[float], b: Sequence[float], floor: float) -> Any:
    """a against b (process means) by the Hodges-Lehmann shift of their logs (the median of
    every difference of a log of a and a log of b), tested by Mann-Whitney's U (two-sided); its
    95% interval from the order statistics of those differences (normal approximation), the
    floor the report's (confidence.mean_floor)."""
    import numpy as np
    from scipy import stats

    from gilmatrix.confidence import ALPHA, mean_floor
    from gilmatrix.reports.stats import Comparison

    la, lb = np.log(np.asarray(a, float)), np.log(np.asarray(b, float))
    m, n = len(la), len(lb)
    f = mean_floor(floor, m, n)
    if m < 2 or n < 2:
        return Comparison(math.nan, math.nan, m, n, math.nan, -math.inf, math.inf, 1.0, False, f)
    diffs = np.sort((la[:, None] - lb[None, :]).ravel())
    ratio = math.exp(float(np.median(diffs)))
    p_value = float(stats.mannwhitneyu(la, lb, alternative="two-sided").pvalue)
    z = stats.norm.ppf(1.0 - ALPHA / 2.0)
    k = math.floor(m * n / 2.0 - z * math.sqrt(m * n * (m + n + 1) / 12.0))
    low, high = (
        (math.exp(diffs[k]), math.exp(diffs[m * n - 1 - k])) if 0 <= k < m * n // 2 else (0.0, math.inf)
    )
    tested, beyond = p_value < ALPHA, abs(ratio - 1.0) > f
    mean_a, mean_b = float(np.exp(la).mean()), float(np.exp(lb).mean())
    return Comparison(
        mean_a, mean_b, m, n, ratio, low, high, p_value, tested and beyond, f, tested and not beyond
    )


def _hl(a: Any, b: Any, floor: float) -> Any:
    return hodges_lehmann(a.series.adjusted, b.series.adjusted, floor)


ESTIMATORS = {
    "welch": _welch,
    "welch+ref": _adjusted_only,
    "welch+ref/process": _adjusted_only,
    "welch+ref, with others": _adjusted_only,
    "welch+ref alone": _adjusted_only,
    "paired": _paired(False),
    "paired+ref": _paired(True),
    "yuen+ref": _located(everywhere=True),
    "yuen pools+ref": _located(everywhere=False),
    "hl+ref": _hl,
    "pairs": _pairs,
}


def reference_only(frame: Any) -> Any:
    """The cell table of ``frame`` adjusted by the reference loop alone (its waits left out)."""
    from gilmatrix.reports.stats import cell_table

    return cell_table(frame.drop(columns=["wait"], errors="ignore"))


def run_minutes(manifest: Mapping[str, Any]) -> float | None:
    """The run's budget in minutes, from its manifest's schedule (None: none was set)."""
    sampling = (manifest.get("schedule") or {}).get("sampling") or {}
    value = sampling.get("run_minutes")
    return float(value) if isinstance(value, int | float) else None


def run_cap(manifest: Mapping[str, Any]) -> int | None:
    """The cap on a cell's processes the run was made with, from its manifest's schedule."""
    sampling = (manifest.get("schedule") or {}).get("sampling") or {}
    value = sampling.get("max_processes")
    return int(value) if isinstance(value, int) else None


def half_width(cmp: Any) -> float | None:
    """The interval's half-width on the log scale, as a relative figure (±x%)."""
    if not (cmp.ratio_low > 0 and math.isfinite(cmp.ratio_high)):
        return None
    return math.sqrt(cmp.ratio_high / cmp.ratio_low) - 1.0


def judged(
    compare: Callable[[Any, Any, float], Any], pairs: list[tuple[Any, Any]], floor: float, fallback: list[int]
) -> list[Any]:
    """Each pair by ``compare``; one it cannot judge (too few common rounds) by the report's test
    of cells without pairs, counted in ``fallback``."""
    found = []
    for a, b in pairs:
        cmp = compare(a, b, floor)
        if cmp is None:
            fallback[0] += 1
            cmp = ESTIMATORS["yuen pools+ref"](a, b, floor)
        found.append(cmp)
    return found


def comparisons(table: Any) -> tuple[list[Any], list[Any], list[Any]]:
    """(twins, plus, models): the pairs of cell-table rows each figure judges."""
    from devtools.selfbench.verdicts import AFFECTED, PLUS, TWINS, WORKLOADS

    rows = {(r.workload, r.executor, int(r.workers)): r for r in table.itertuples(index=False)}
    twins = [
        (rows[(t, e, w)], rows[(of, e, w)])
        for t, of in TWINS.items()
        for (name, e, w) in rows
        if name == t and (of, e, w) in rows
    ]
    plus = [
        (rows[k], rows[(AFFECTED, k[1], k[2])]) for k in rows if k[0] == PLUS and (AFFECTED, *k[1:]) in rows
    ]
    models = [
        (rows[k], rows[(k[0], "sequential", 1)])
        for k in rows
        if k[0] in WORKLOADS and k[1] != "sequential" and (k[0], "sequential", 1) in rows
    ]
    return twins, plus, models


# which cell table each estimator reads: "value" (each value adjusted by its own call's
# reference, the report's), "process" (every value of a process by the process' median reference)
# "reference" (the values adjusted by the reference alone: the run-queue wait and other work's
# share left out), "with others" (pools adjusted by other work's share too)
TABLE_OF = {
    "welch+ref/process": "process",
    "welch+ref alone": "reference",
    "welch+ref, with others": "with others",
}


def _trimmed(values: Sequence[float], cut: float = 0.2) -> float:
    """The ``cut`` trimmed mean: the report's (stats.trimmed)."""
    from gilmatrix.reports.stats import trimmed

    return trimmed(values, cut)[0]


# a cell's location from its process means: which is the most efficient here is a question of
# data (the "estimators that survive bursts"); twins answer it, their true ratio being 1
LOCATIONS: dict[str, Callable[[Any], float]] = {
    "mean": lambda s: statistics.fmean(s.raw),
    "median": lambda s: statistics.median(s.raw),
    "trimmed 20%": lambda s: _trimmed(s.raw),
    "mean, adjusted": lambda s: statistics.fmean(s.adjusted),
    "median, adjusted": lambda s: statistics.median(s.adjusted),
    "trimmed 20%, adjusted": lambda s: _trimmed(s.adjusted),
}


def twin_errors(twins: Sequence[tuple[Any, Any]]) -> dict[str, list[float]]:
    """Per location estimator, log(twin / original) of every twin pair: 0 is the truth, so the
    root mean square of these is the estimator's error on this run's noise."""
    out: dict[str, list[float]] = {name: [] for name in LOCATIONS}
    for a, b in twins:
        for name, location in LOCATIONS.items():
            la, lb = location(a.series), location(b.series)
            if la > 0 and lb > 0:
                out[name].append(math.log(la / lb))
    return out


def plus_scatter(plus: Sequence[tuple[Any, Any]]) -> list[tuple[str, float, int, float, int, float]]:
    """Each +5% comparison as the report's reach (reports/power.py) sees it: (kind, scatter and
    processes of crunch_plus, of crunch, the log of the ratio of what the report tests: their
    adjusted means, trimmed where a pool is compared)."""
    from gilmatrix.reports.power import scatter
    from gilmatrix.reports.stats import location_stats, pool_compared

    out = []
    for a, b in plus:
        trim = pool_compared(a, b)
        ratio = location_stats(a, trim)[0] / location_stats(b, trim)[0]
        out.append(
            (
                "pools" if trim else "one worker",
                scatter(a, trim),
                int(a.processes),
                scatter(b, trim),
                int(b.processes),
                math.log(ratio),
            )
        )
    return out


def predicted_power(figures: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """What the report's reach predicts of the +5% comparisons of several runs, per kind: the
    sum of each one's chance (power.chance, from its cells' scatter and processes) of finding
    the change as built (+5% work) and as measured (the kind's mean ratio over every run: the
    time does not grow quite as the work does), with the binomial standard deviation."""
    from devtools.selfbench.verdicts import POWER_FACTOR
    from gilmatrix.reports.power import chance

    rows = [tuple(r) for run in figures for r in run.get("plus_scatter") or []]
    out: dict[str, dict[str, float]] = {}
    for kind in sorted({r[0] for r in rows}):
        mine = [r for r in rows if r[0] == kind]
        measured = math.expm1(statistics.fmean(r[5] for r in mine))
        trim = kind == "pools"
        built = [chance(r[1], r[2], r[3], r[4], POWER_FACTOR - 1.0, trim) for r in mine]
        seen = [chance(r[1], r[2], r[3], r[4], measured, trim) for r in mine]
        out[kind] = {
            "comparisons": len(mine),
            "built": sum(built),
            "measured_change": measured,
            "at_measured": sum(seen),
            "sd": math.sqrt(sum(p * (1.0 - p) for p in seen)),
        }
    return out


def predicted_text(predicted: Mapping[str, Mapping[str, float]]) -> str:
    """predicted_power as one line."""
    return "; ".join(
        f"{kind}: {p['at_measured']:.1f} ± {p['sd']:.1f} of {p['comparisons']:.0f} at the "
        f"measured {p['measured_change']:+.2%} ({p['built']:.1f} at +5%)"
        for kind, p in predicted.items()
    )


def run_figures(run_dir: Path) -> dict[str, Any]:
    """Every estimator, with and without the run's floor, on one run of the noisy matrix."""
    from gilmatrix.confidence import within_run_floor
    from gilmatrix.reports.results import load_run, noise, noise_floor
    from gilmatrix.reports.sidebyside import in_process
    from gilmatrix.reports.stats import cell_table

    run = load_run(run_dir)
    floor = noise_floor(run.manifest)
    frame = run.frame
    per_process = frame.assign(
        reference=frame.groupby(["interpreter", "cell", "run"], observed=True)["reference"].transform(
            "median"
        )
    )
    tables = {
        "value": cell_table(frame),
        "process": cell_table(per_process),
        "reference": reference_only(frame),
        "with others": cell_table(frame, others=True),
    }
    pairs = {name: comparisons(table) for name, table in tables.items()}
    out: dict[str, Any] = {
        "floor": floor,
        "noise": dict(noise(run.manifest)),
        "order": arm_of(run.manifest),
        "budget": run_minutes(run.manifest),
        "cap": run_cap(run.manifest),
        "processes_median": float(tables["value"]["processes"].median()) if len(tables["value"]) else None,
        "twin_errors": twin_errors(pairs["value"][0]),
        "plus_scatter": plus_scatter(pairs["value"][1]),
        "estimators": {},
        "p_values": {},
    }
    for name, compare in ESTIMATORS.items():
        twins, plus, models = pairs[TABLE_OF.get(name, "value")]
        for suffix, f in (("", within_run_floor(floor)), (", band", floor)):
            fallback = [0]
            t, p, m = (judged(compare, chosen, f, fallback) for chosen in (twins, plus, models))
            if not suffix:
                called = {"twins": called_at(t, either=True), "plus": called_at(p, either=False)}
                out["p_values"][name] = called
            widths = [h for h in (half_width(c) for c in m) if h is not None]
            # cells of one in-process worker (the wait adjusts them) apart from pools
            one = [c for c, (a, _) in zip(p, plus, strict=True) if in_process(a.model, int(a.workers))]
            entry = dict(
                fallback=fallback[0],
                twins=len(t),
                twins_flagged=sum(c.significant for c in t),
                plus=len(p),
                plus_detected=sum(c.significant and c.ratio > 1.0 for c in p),
                plus_one=len(one),
                plus_one_detected=sum(c.significant and c.ratio > 1.0 for c in one),
                models=len(m),
                models_tied=sum(not c.significant for c in m),
                half_width_median=statistics.median(widths) if widths else None,
                twin_half_width_median=statistics.median(
                    [h for h in (half_width(c) for c in t) if h is not None] or [math.nan]
                ),
            )
            out["estimators"][f"{name}{suffix}"] = entry
    return out


def called_at(found: Sequence[Any], either: bool) -> list[float]:
    """Each comparison's p-value where it is beyond its floor (and, unless ``either``, slower:
    the +5% side), else 1: below which α the test would call it."""
    return [
        float(c.p_value) if abs(c.ratio - 1.0) > c.floor and (either or c.ratio > 1.0) else 1.0 for c in found
    ]


MATCHED = (0.03, 0.05)  # A/A rates at which the estimators' power is compared


def matched_power(figures: Sequence[Mapping[str, Any]], level: float) -> dict[str, dict[str, Any]]:
    """Per estimator, over every run's twins and +5% pairs: the α at which it calls at most
    ``level`` of the twins different (the ones it calls: below α), and the +5% changes it finds
    at that α — power at matched A/A, so that a test is not credited for a liberal level."""
    out: dict[str, dict[str, Any]] = {}
    names = {name for run in figures for name in run.get("p_values") or {}}
    for name in sorted(names):
        twins = sorted(p for run in figures for p in run["p_values"].get(name, {}).get("twins", []))
        plus = [p for run in figures for p in run["p_values"].get(name, {}).get("plus", [])]
        if not twins or not plus:
            continue
        k = math.floor(level * len(twins))
        alpha = twins[k] if k < len(twins) else 1.0
        out[name] = {
            "alpha": alpha,
            "twins": len(twins),
            "flagged": sum(p < alpha for p in twins),
            "plus": len(plus),
            "detected": sum(p < alpha for p in plus),
        }
    return out


def pooled(figures: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per arm and estimator — and per budget and cap, when the runs had different ones — the
    runs pooled: A/A rate, power, median half-widths."""
    out: dict[str, dict[str, Any]] = {}
    budgets = {run.get("budget") for run in figures}
    caps = {run.get("cap") for run in figures}
    for run in figures:
        arm = run["order"] if len(budgets) < 2 else f"{run['order']}, {run.get('budget') or math.nan:g} min"
        if len(caps) > 1:
            arm = f"{arm}, cap {run.get('cap')}"
        for name, e in run["estimators"].items():
            key = f"{arm}: {name}"
            acc = out.setdefault(
                key,
                {
                    "twins": 0,
                    "flagged": 0,
                    "plus": 0,
                    "detected": 0,
                    "plus_one": 0,
                    "detected_one": 0,
                    "widths": [],
                    "twin_widths": [],
                },
            )
            acc["plus_one"] += e.get("plus_one", 0)
            acc["detected_one"] += e.get("plus_one_detected", 0)
            acc["fallback"] = acc.get("fallback", 0) + e["fallback"]
            acc["twins"] += e["twins"]
            acc["flagged"] += e["twins_flagged"]
            acc["plus"] += e["plus"]
            acc["detected"] += e["plus_detected"]
            acc["widths"].append(e["half_width_median"])
            acc["twin_widths"].append(e["twin_half_width_median"])
    for acc in out.values():
        acc["aa_rate"] = acc["flagged"] / acc["twins"] if acc["twins"] else None
        acc["power"] = acc["detected"] / acc["plus"] if acc["plus"] else None
        widths = [w for w in acc.pop("widths") if w is not None]
        twin_widths = [w for w in acc.pop("twin_widths") if w is not None and math.isfinite(w)]
        acc["half_width"] = statistics.median(widths) if widths else None
        acc["twin_half_width"] = statistics.median(twin_widths) if twin_widths else None
    return out


def location_rms(figures: Sequence[Mapping[str, Any]]) -> dict[str, tuple[float, int]]:
    """Per location estimator, over every run's twin pairs: (root mean square error, pairs)."""
    pooled_errors: dict[str, list[float]] = {}
    for run in figures:
        for name, errors in (run.get("twin_errors") or {}).items():
            pooled_errors.setdefault(name, []).extend(errors)
    return {
        name: (math.sqrt(statistics.fmean(e * e for e in errors)), len(errors))
        for name, errors in pooled_errors.items()
        if errors
    }


def load_now() -> float:
    return os.getloadavg()[0]


def matrix_figures(run_dir: Path) -> dict[str, Any]:
    """A whole run (the full default matrix) judged on the same processes: on the raw means (the
    report before), adjusted for the machine's speed by the reference loop alone, by it and the
    run-queue wait (the report's: Yuen's test; also by Welch's on the adjusted means, the report's
    until session 20), by those and other work's share of the pools' CPUs, and — a run
    made with ``pairing: calls`` — by its pairs (reports/pairs.py). For each:
    the verdict cards' ties, the median half-width of every execution model against sequential
    and of every cell against the previous release, and how many of those are changes."""
    from gilmatrix.confidence import within_run_floor
    from gilmatrix.reports.compare import version_changes
    from gilmatrix.reports.results import load_run, noise_floor
    from gilmatrix.reports.stats import TRIMMED, cell_table, compare_cells
    from gilmatrix.reports.verdicts import decide

    run = load_run(run_dir)
    band = noise_floor(run.manifest)
    floor = within_run_floor(band)
    adjusted = cell_table(run.frame)
    out: dict[str, Any] = {
        "run": run_dir.name,
        "floor": band,
        "cells": len(adjusted),
        "precision_median": float(adjusted["precision"].median()),
        "processes_median": float(adjusted["processes"].median()),
    }
    from gilmatrix.reports.pairs import PAIR_COLUMNS

    unpaired = adjusted.drop(columns=list(PAIR_COLUMNS))
    by_reference = reference_only(run.frame).drop(columns=list(PAIR_COLUMNS))
    with_others = cell_table(run.frame, others=True).drop(columns=list(PAIR_COLUMNS))
    ways = [
        ("raw", unpaired.drop(columns=["adj_mean", "adj_sd", *TRIMMED]), floor),
        ("adjusted, reference only", by_reference, floor),
        ("adjusted, Welch", unpaired.drop(columns=TRIMMED), floor),  # the report's until session 20
        ("adjusted", unpaired, floor),
        ("adjusted, band", unpaired, band),  # the report's until session 17
        ("adjusted, with others", with_others, floor),
    ]
    if (adjusted["pair_n"] > 1).any():  # a run made with pairing: its pairs, where they apply
        ways.append(("pairs", adjusted, floor))
    for name, table, held_to in ways:
        cards = decide(table, None, held_to)
        rows = list(table.itertuples(index=False))
        seq = {(r.interpreter, r.workload): r for r in rows if r.executor == "sequential"}
        models = [
            compare_cells(r, seq[(r.interpreter, r.workload)], held_to)
            for r in rows
            if r.executor != "sequential" and (r.interpreter, r.workload) in seq
        ]
        widths = [h for h in (half_width(c) for c in models) if h is not None]
        versions = version_changes(table, held_to)
        version_widths = [
            math.sqrt(h / lo) - 1.0
            for lo, h in zip(versions["ratio_low"], versions["ratio_high"], strict=True)
            if lo > 0 and math.isfinite(h)
        ]
        out[name] = {
            "cards": len(cards),
            "ties": sum(card.is_tie for card in cards),
            "models": len(models),
            "models_changed": sum(c.significant for c in models),
            "models_half_width": statistics.median(widths) if widths else None,
            "versions": len(versions),
            "versions_changed": int(versions["significant"].fillna(False).astype(bool).sum()),
            "versions_half_width": statistics.median(version_widths) if version_widths else None,
        }
    return out


def collect(
    out: Path,
    stamp: str,
    *,
    arms: Sequence[str],
    runs: int,
    minutes: Sequence[float],
    seed: int,
    burners: int,
    interpreter: str,
    bursts: tuple[float, float] = BURSTS,
    pause: float = PAUSE,
    log: Callable[[str], None],
    record: Callable[[str, Any, Path], object] | None = None,
    workloads: Sequence[str] | None = None,
    max_processes: Sequence[int | None] = (None,),
) -> tuple[list[dict[str, Any]], Burner]:
    """Under a seeded burner, ``runs`` runs of each arm at each budget (``minutes``: one, or
    several; alternating, the same noise for all) of the within-run matrix on one local
    interpreter; each run's figures (run_figures). ``workloads``: a part of the within-run
    matrix's (crunch, crunch_twin, crunch_plus: the power and A/A of one workload at a fraction
    of the rounds); ``max_processes``: the profile's cap on a cell's processes (None: the
    profile's), one or several (each arm's runs alternate between them, as between budgets)."""
    from devtools.selfbench import measure as sm
    from devtools.selfbench import verdicts as sv

    work = out / "selfbench" / f"noisy-{stamp}"
    work.mkdir(parents=True, exist_ok=True)
    within = sv.within_matrix(sm.ROOT / "matrix.yaml", work / "matrix-within.yaml")
    every = [*sv.WORKLOADS, *sv.TWINS, sv.PLUS]
    only = list(workloads or every)
    if unknown := sorted(set(only) - set(every)):
        raise ValueError(
            f"not workloads of the within-run matrix: {', '.join(unknown)} (known: {', '.join(every)})"
        )
    budgets = [float(m) for m in minutes]
    found: list[dict[str, Any]] = []
    with Burner(seed, burners, bursts, pause) as burner:
        for number, arm, budget, cap in itertools.product(range(1, runs + 1), arms, budgets, max_processes):
            matrix_file = work / f"matrix-{arm}-{budget:g}-{cap or 'default'}.yaml"
            matrix = noisy_matrix(within, matrix_file, arm, budget, cap)
            name = "-".join(
                [f"noisy-{arm}"]
                + ([f"{budget:g}min"] if len(budgets) > 1 else [])
                + ([f"cap{cap or 'default'}"] if len(max_processes) > 1 else [])
                + [str(number)]
            )
            measured, run_dir = sv.run_cli(
                out, f"selfbench-{stamp}-{name}", matrix, "default", interpreter, only, log
            )
            if record is not None:
                record(name, measured, run_dir)
            log(f"  {name}: {measured.wall:.1f} s, exit {measured.returncode} (load {load_now():.2f})")
            if measured.returncode == 0:
                figures = run_figures(run_dir)
                figures["run"], figures["dir"] = name, str(run_dir)
                found.append(figures)
                log(f"    floor {figures['floor']:.1%}, median processes {figures['processes_median']}")
    return found, burner


def print_figures(found: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The pooled table of ``found`` (run_figures of several runs), printed; returned."""
    table = pooled(found)
    width = max(len(k) for k in table)
    print(
        f"{'arm: estimator':<{width}}  A/A         power       ±model-vs-seq  ±twins   fallback"
        "  power: one worker / pools"
    )
    for key, acc in table.items():
        print(
            f"{key:<{width}}  {acc['flagged']:>3}/{acc['twins']:<3} {100 * (acc['aa_rate'] or 0):4.1f}%"
            f"  {acc['detected']:>3}/{acc['plus']:<3} {100 * (acc['power'] or 0):3.0f}%"
            f"  {100 * (acc['half_width'] or math.nan):6.1f}%"
            f"        {100 * (acc['twin_half_width'] or math.nan):5.1f}%   {acc.get('fallback', 0):<8}"
            f"  {acc['detected_one']}/{acc['plus_one']} / {acc['detected'] - acc['detected_one']}"
            f"/{acc['plus'] - acc['plus_one']}"
        )
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m devtools.selfbench.noisy RUN_DIR...``: the section's figures again, from kept
    run folders (``_build/selfbench/runs/selfbench-<stamp>-noisy-*``), by today's estimators."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m devtools.selfbench.noisy", description=main.__doc__)
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument(
        "--collect", action="store_true", help="make the runs first: the arms under a seeded burner"
    )
    parser.add_argument("--arms", default="shuffle,pairs", help="--collect: arms (%(default)s)")
    parser.add_argument("--runs-per-arm", type=int, default=2, help="--collect: runs of each arm")
    parser.add_argument(
        "--minutes",
        type=lambda v: [float(m) for m in v.split(",")],
        default=[4.0],
        help="--collect: each run's run_minutes; several (4,12): each arm's runs alternate between them",
    )
    parser.add_argument("--seed", type=int, default=25, help="--collect: the burner's seed")
    parser.add_argument(
        "--bursts",
        type=float,
        nargs=2,
        default=list(BURSTS),
        metavar=("LOW", "HIGH"),
        help="--collect: burst seconds",
    )
    parser.add_argument("--pause", type=float, default=PAUSE, help="--collect: longest pause, seconds")
    parser.add_argument("--interpreter", default="3.13", help="--collect: the local interpreter")
    parser.add_argument(
        "--workloads",
        type=lambda v: v.split(","),
        help="--collect: a part of the within-run matrix (e.g. crunch,crunch_twin,crunch_plus)",
    )
    parser.add_argument(
        "--max-processes",
        type=lambda v: [int(m) for m in v.split(",")],
        default=[None],
        help="--collect: the cap on a cell's processes; several (24,96): each arm's runs alternate",
    )
    parser.add_argument(
        "--burners", type=int, default=1, help="--collect: burner processes (0: none, a quiet check)"
    )
    parser.add_argument("--out", type=Path, default=Path("_build"), help="--collect: work folder")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument(
        "--matrix",
        action="store_true",
        help="the runs are whole matrices: raw against adjusted (matrix_figures)",
    )
    args = parser.parse_args(argv)
    if args.matrix:
        for run_dir in args.runs:
            print(json.dumps(matrix_figures(run_dir), indent=1, default=str))
        return 0
    found: list[dict[str, Any]] = []
    if args.collect:
        import time

        stamp = time.strftime("%Y%m%d-%H%M%S")
        found, burner = collect(
            args.out, stamp, arms=args.arms.split(","), runs=args.runs_per_arm, minutes=args.minutes,
            seed=args.seed, burners=args.burners, interpreter=args.interpreter, log=print,
            bursts=(args.bursts[0], args.bursts[1]), pause=args.pause, workloads=args.workloads,
            max_processes=args.max_processes,
        )  # fmt: skip
        print(f"{burner.describe()} for {burner.seconds:.0f} s" if burner.seconds else burner.describe())
    for run_dir in args.runs:
        figures = run_figures(run_dir)
        figures["run"] = run_dir.name
        found.append(figures)
    for figures in found:
        print(
            f"{figures['run']}: arm {figures['order']}, floor {figures['floor']:.1%}, "
            f"median processes {figures['processes_median']}"
        )
    table = print_figures(found)
    print(
        "power the report's reach predicts (each +5% comparison's chance from its cells' scatter "
        f"and processes, summed): {predicted_text(predicted_power(found))}"
    )
    for level in MATCHED:
        print(f"power at matched A/A ({level:.0%} of the twins called different at most):")
        for name, m in matched_power(found, level).items():
            print(
                f"  {name:<24} α {m['alpha']:.4f}  A/A {m['flagged']}/{m['twins']}"
                f"  power {m['detected']}/{m['plus']}"
            )
    errors = location_rms(found)
    print("a cell's location (twins: log ratio, truth 0): root mean square over the pairs")
    for name, (rms, n) in errors.items():
        print(f"  {name:<22} ±{100 * rms:5.2f}%  ({n} pairs)")
    if args.json:
        payload = {"runs": found, "pooled": table, "locations": errors}
        args.json.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
