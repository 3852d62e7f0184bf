"""Selfbench's duet study: can two interpreters be compared at the same time, on disjoint CPUs?

Issue #25 asks for cells of two interpreters "run at the same time on disjoint CPU sets where
the machine has the cores" (Duet benchmarking: the two feel the same noise). Before the run
loop schedules such pairs, this study measures, under the same seeded noise, whether the ratio
of two interpreters' times is more precise — and as unbiased — measured that way than as the run
loop measures it today. Comparisons: two releases (``--a`` against ``--b``) and the same release
against itself (twins: an A/A check). Each comparison is made by every *arm*, alternated in a
seeded shuffled order through the whole study so that all meet the same noise:

- ``apart``: today's way — one worker process at a time, unpinned: A's process, then B's (in a
  random order); judged raw, CUPED-adjusted (paired), and adjusted by Welch (the report's test);
- ``lockstep``: A's and B's processes at the same time, pinned to two CPUs (swapped every other
  pair), call i of A at the same time as call i of B; the faster one idles while it waits;
  a pair's figure is the mean over calls of ``log(a_i / b_i)``;
- ``spin``: the same, the faster one busy in an untimed loop while it waits;
- ``duet``: both at the same time, pinned, free-running: each calls back to back over the same
  window (``--window``), then keeps calling untimed until both are done; a pair's figure is the
  log ratio of the two processes' mean call.

Every process is fresh (its start-up, hash seed and layout are part of the scatter, as in a
run), runs ``--warmups`` calls and then ``--calls`` timed calls (or its window) of the
``crunch`` workload's sequential run (``--tasks`` × ``crunch_task(--size)``,
gilmatrix.harness.workloads, loaded from its file by each interpreter), with the harness'
reference loop timed around each call. Printed per comparison and estimator: pairs, the ratio,
the sd of the pair figures, the 95% half-width, and for the simultaneous arms the half-width in
the *same wall-clock time* as the apart pairs took. Figures: docs/results-log.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from devtools.selfbench.noisy import BURSTS, PAUSE, Burner, load_now
from gilmatrix.confidence import t_quantile, two_sided
from gilmatrix.harness.bench import REFERENCE_ITERATIONS

WORKLOADS = Path(__file__).resolve().parents[2] / "runner" / "harness" / "workloads.py"

CHILD = r"""
import importlib.util, os, select, sys, time
spec = importlib.util.spec_from_file_location("gilmatrix_workloads", sys.argv[1])
w = importlib.util.module_from_spec(spec); spec.loader.exec_module(w)
cpu, size, tasks, iterations = (int(a) for a in sys.argv[2:6])
if cpu >= 0:
    os.sched_setaffinity(0, {cpu})
def reference():  # gilmatrix.harness.bench.reference_seconds
    t0 = time.perf_counter(); total = 0
    for i in range(iterations):
        total += i * i
    return time.perf_counter() - t0
def call():
    before = reference()
    t0 = time.perf_counter()
    for _ in range(tasks):
        w.crunch_task(size)
    elapsed = time.perf_counter() - t0
    return elapsed, (before + reference()) / 2
print("ready", *sorted(os.sched_getaffinity(0)), flush=True)
while True:
    command = sys.stdin.readline().split()
    if command[:1] == ["go"]:  # one call
        print(*map(repr, call()), flush=True)
        if command[1:] == ["spin"]:  # then keep the CPU busy (untimed) until the next line
            while not select.select([sys.stdin], [], [], 0)[0]:
                for i in range(1000):
                    pass
    elif command[:1] == ["run"]:  # calls back to back for a window, then untimed ones until told
        window, found, start = float(command[1]), [], time.perf_counter()
        while time.perf_counter() - start < window:
            found.append(call())
        print(*(f"{value!r},{ref!r}" for value, ref in found), flush=True)
        while not select.select([sys.stdin], [], [], 0)[0]:
            call()  # the CPU stays as busy as the partner's while the partner's window ends
    else:
        break
"""

ARMS = ("apart", "lockstep", "spin", "duet")
Calls = list[tuple[float, float]]  # a process' timed calls: (seconds, reference loop's seconds)
SIMULTANEOUS = ("lockstep", "spin", "duet")


class Child:
    """One fresh worker process of ``python``, pinned to ``cpu`` (-1: not pinned)."""

    def __init__(self, python: str, cpu: int, size: int, tasks: int) -> None:
        self.process = subprocess.Popen(
            [python, "-c", CHILD, str(WORKLOADS), str(cpu), str(size), str(tasks), str(REFERENCE_ITERATIONS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        ready, *cpus = self.stdout.readline().split() or [""]
        if ready != "ready":
            raise RuntimeError(f"{python}: the worker did not start")
        self.cpus = [int(c) for c in cpus]  # where it may run

    def go(self, spin: bool = False) -> None:
        self.stdin.write("go spin\n" if spin else "go\n")
        self.stdin.flush()

    def run(self, window: float) -> None:
        self.stdin.write(f"run {window}\n")
        self.stdin.flush()

    def window(self) -> Calls:
        """The calls of a ``run``: (seconds, reference loop's seconds) each."""
        return [(float(v), float(r)) for v, r in (c.split(",") for c in self.stdout.readline().split())]

    def result(self) -> tuple[float, float]:
        """The call's seconds, and the reference loop's around it."""
        value, reference = self.stdout.readline().split()
        return float(value), float(reference)

    def close(self) -> None:
        self.stdin.write("end\n")
        self.stdin.flush()
        self.process.wait(timeout=60)


def timed_calls(
    children: Sequence[Child], warmups: int, calls: int, close: bool = True, spin: bool = False
) -> list[Calls]:
    """``warmups`` + ``calls`` calls of every child in lockstep (call i of each at the same
    time), the timed ones kept; each child closed (with ``close``). With ``spin`` a child that
    is done keeps its CPU busy until the next call."""
    kept: list[Calls] = [[] for _ in children]
    for i in range(warmups + calls):
        for child in children:
            child.go(spin)
        for out, child in zip(kept, children, strict=True):
            result = child.result()
            if i >= warmups:
                out.append(result)
    if close:
        for child in children:
            child.close()
    return kept


def apart(a: str, b: str, rng: random.Random, size: int, tasks: int, warmups: int, calls: int) -> list[Calls]:
    """One pair the way the run loop measures today: A's process, then B's (in a random
    order), one at a time, unpinned; (A's calls, B's calls)."""
    out: list[Calls] = [[], []]
    for side in rng.sample([0, 1], 2):
        (out[side],) = timed_calls([Child((a, b)[side], -1, size, tasks)], warmups, calls)
    return out


def duet_cpus() -> tuple[int, int]:
    """Two CPUs this process may run on (the first two of its affinity)."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        raise SystemExit("the duet study needs two CPUs")
    return allowed[0], allowed[1]


def lockstep(
    a: str, b: str, swap: bool, size: int, tasks: int, warmups: int, calls: int, spin: bool = False
) -> list[Calls]:
    """One pair at the same time on disjoint CPUs (swapped with ``swap``), call i of each at the
    same time: the faster one waits for the slower one after every call (idle; with ``spin``,
    busy in an untimed loop, so that its CPU looks as taken as the other's)."""
    first, second = duet_cpus()[:: -1 if swap else 1]
    children = [Child(a, first, size, tasks), Child(b, second, size, tasks)]
    return timed_calls(children, warmups, calls, spin=spin)


def duet(a: str, b: str, swap: bool, size: int, tasks: int, warmups: int, window: float) -> list[Calls]:
    """One pair at the same time on disjoint CPUs (swapped with ``swap``), free-running: after
    ``warmups`` calls each, both call back to back for the same ``window`` of seconds, and each
    keeps calling (untimed) until both are done, so neither CPU idles while the other is timed."""
    first, second = duet_cpus()[:: -1 if swap else 1]
    children = [Child(a, first, size, tasks), Child(b, second, size, tasks)]
    timed_calls(children, warmups, 0, close=False)
    for child in children:
        child.run(window)
    found = [child.window() for child in children]
    for child in children:
        child.close()
    return found


def t95(df: float) -> float:
    return float(t_quantile(two_sided(), df))


def theta(pairs: Sequence[list[Calls]]) -> float:
    """The CUPED slope of log seconds on x = log(reference / the side's median reference),
    within each side (a cell, as reports/sidebyside.py fits it within cells), clipped to [0, 2]."""
    sxy = sxx = 0.0
    for side in (0, 1):
        calls = [call for pair in pairs for call in pair[side]]
        median = statistics.median(ref for _, ref in calls)
        xs = [math.log(ref / median) for _, ref in calls]
        ys = [math.log(value) for value, _ in calls]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        sxy += sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
        sxx += sum((x - mx) ** 2 for x in xs)
    return min(max(sxy / sxx, 0.0), 2.0) if sxx else 0.0


def process_logs(pairs: Sequence[list[Calls]], side: int, slope: float) -> list[float]:
    """Each process' log mean seconds of one side, adjusted by ``slope`` (0: raw)."""
    median = statistics.median(ref for pair in pairs for _, ref in pair[side])
    return [
        math.log(statistics.fmean(value * (ref / median) ** -slope for value, ref in pair[side]))
        for pair in pairs
    ]


def paired(figures: Sequence[float]) -> dict[str, Any]:
    """Pair figures (log ratios): the ratio, their sd, the 95% half-width of the ratio."""
    n = len(figures)
    sd = statistics.stdev(figures) if n > 1 else math.nan
    return {
        "pairs": n,
        "ratio": math.exp(statistics.fmean(figures)) if n else math.nan,
        "sd": sd,
        "half_width": math.expm1(t95(n - 1) * sd / math.sqrt(n)) if n > 1 else math.nan,
    }


def welch(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Two sides' process log means compared as the report compares two cells (unpaired)."""
    if min(len(a), len(b)) < 2:
        return {"pairs": len(a), "ratio": math.nan, "sd": math.nan, "half_width": math.nan}
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if not va and not vb:
        half = 0.0
    else:
        df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
        half = t95(df) * math.sqrt(va + vb)
    return {
        "pairs": len(a),
        "ratio": math.exp(statistics.fmean(a) - statistics.fmean(b)),
        "sd": math.nan,
        "half_width": math.expm1(half),
    }


def estimates(pairs: dict[str, list[list[Calls]]], seconds: dict[str, float]) -> dict[str, dict[str, Any]]:
    """One comparison's figures by every estimator: ``apart`` (raw, each pair's processes),
    ``apart+ref`` (the same, CUPED-adjusted), ``apart+ref welch`` (adjusted, unpaired: today's
    report), ``lockstep`` (mean of per-call log ratios), ``duet`` (each pair's log ratio of its
    two processes' mean seconds over the shared window) — with each arm's seconds per pair, and
    the simultaneous arms' half-widths scaled to the wall-clock time the apart pairs took."""
    apart_pairs = pairs["apart"]
    slope = theta(apart_pairs)
    raw = [process_logs(apart_pairs, side, 0.0) for side in (0, 1)]
    adjusted = [process_logs(apart_pairs, side, slope) for side in (0, 1)]
    out = {
        "apart": paired([x - y for x, y in zip(*raw, strict=True)]),
        "apart+ref": paired([x - y for x, y in zip(*adjusted, strict=True)]) | {"theta": slope},
        "apart+ref welch": welch(*adjusted),
        **{
            arm: paired(
                [
                    statistics.fmean(math.log(x[0] / y[0]) for x, y in zip(*pair, strict=True))
                    for pair in pairs[arm]
                ]
            )
            for arm in ("lockstep", "spin")
        },
        "duet": paired(
            [
                math.log(statistics.fmean(v for v, _ in pair[0]) / statistics.fmean(v for v, _ in pair[1]))
                for pair in pairs["duet"]
            ]
        ),
    }
    for arm in ARMS:
        for key in out:
            if key.startswith(arm):
                out[key]["seconds_per_pair"] = seconds[arm] / max(1, len(pairs[arm]))
    for arm in SIMULTANEOUS:
        share = seconds[arm] / seconds["apart"]
        out[arm]["half_width_in_apart_time"] = math.expm1(
            math.log1p(out[arm]["half_width"]) * math.sqrt(share)
        )
    return out


def study(
    pythons: dict[str, tuple[str, str]],
    minutes: float,
    *,
    seed: int,
    size: int,
    tasks: int,
    warmups: int,
    calls: int,
    window: float,
    log: Any = print,
) -> dict[str, dict[str, Any]]:
    """Every comparison (name → (A, B)) by every arm, alternated in a seeded shuffled order,
    until ``minutes`` have passed: each comparison's pairs and seconds by arm."""
    rng = random.Random(seed)
    found: dict[str, dict[str, Any]] = {
        c: {"pairs": {arm: [] for arm in ARMS}, "seconds": dict.fromkeys(ARMS, 0.0)} for c in pythons
    }
    end = time.monotonic() + minutes * 60
    rounds = 0
    while rounds == 0 or time.monotonic() < end:
        rounds += 1
        order = [(c, arm) for c in pythons for arm in ARMS]
        rng.shuffle(order)
        for comparison, arm in order:
            a, b = pythons[comparison]
            into = found[comparison]
            swap = len(into["pairs"][arm]) % 2 == 1
            t0 = time.perf_counter()
            if arm == "apart":
                pair = apart(a, b, rng, size, tasks, warmups, calls)
            elif arm in ("lockstep", "spin"):
                pair = lockstep(a, b, swap, size, tasks, warmups, calls, spin=arm == "spin")
            else:
                pair = duet(a, b, swap, size, tasks, warmups, window)
            into["seconds"][arm] += time.perf_counter() - t0
            into["pairs"][arm].append(pair)
        if rounds % 20 == 0:
            log(f"  round {rounds}: load {load_now():.2f}")
    return found


def resolve(version: str) -> str:
    """A local interpreter for ``version`` (a path, or 3.X: found as the local backend finds it)."""
    if os.sep in version:
        return version
    from gilmatrix.backends.local import managed_candidates, path_candidates
    from gilmatrix.matrix.model import Interpreter

    free_threaded = version.endswith("t")
    major, minor = version.rstrip("t").split(".")
    interp = Interpreter(id=version, version=(int(major), int(minor)), free_threaded=free_threaded)
    for candidate in [*managed_candidates(interp), *path_candidates(interp)]:
        if candidate.exists():
            return str(candidate)
    raise SystemExit(f"no local interpreter for {version}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m devtools.selfbench.duet``: the duet study (module docstring), printed."""
    parser = argparse.ArgumentParser(prog="python -m devtools.selfbench.duet", description=main.__doc__)
    parser.add_argument("--a", default="3.12", help="the earlier release (%(default)s)")
    parser.add_argument("--b", default="3.13", help="the later release, also the twins (%(default)s)")
    parser.add_argument("--minutes", type=float, default=4.0, help="the study's length")
    parser.add_argument("--seed", type=int, default=25, help="the order's and the burner's seed")
    parser.add_argument("--burners", type=int, default=0, help="seeded burner processes (0: none)")
    parser.add_argument("--bursts", type=float, nargs=2, default=list(BURSTS), metavar=("LOW", "HIGH"))
    parser.add_argument("--pause", type=float, default=PAUSE)
    parser.add_argument("--size", type=int, default=50000)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--warmups", type=int, default=1)
    parser.add_argument("--calls", type=int, default=10, help="timed calls of an apart or lockstep process")
    parser.add_argument("--window", type=float, default=0.25, help="seconds of a duet pair's timed calls")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    duet_cpus()
    a, b = resolve(args.a), resolve(args.b)
    pythons = {f"{args.a}-vs-{args.b}": (a, b), f"{args.b}-twins": (b, b)}
    settings = {"seed": args.seed, "size": args.size, "tasks": args.tasks, "warmups": args.warmups}
    print(f"duet study: {pythons}, {args.minutes} min, load {load_now():.2f}")
    burner = Burner(args.seed, args.burners, (args.bursts[0], args.bursts[1]), args.pause)
    started = time.strftime("%H:%M:%S")
    with burner if args.burners else contextlib.nullcontext():
        out = study(pythons, args.minutes, calls=args.calls, window=args.window, **settings)
    noise = f"{burner.describe()} for {burner.seconds or math.nan:.0f} s" if args.burners else "no burner"
    print(f"{started}–{time.strftime('%H:%M:%S')} UTC, {noise}, load after {load_now():.2f}")
    print(f"{'comparison: estimator':<30} pairs  ratio    sd     ±95%   s/pair  ±95% in apart's time")
    figures = {}
    for comparison, data in out.items():
        figures[comparison] = estimates(data["pairs"], data["seconds"])
        for name, f in figures[comparison].items():
            extra = f"{100 * f['half_width_in_apart_time']:6.2f}%" if name in SIMULTANEOUS else ""
            print(
                f"{comparison + ': ' + name:<30} {f['pairs']:5}  {f['ratio']:.4f}  {f['sd']:.4f}"
                f"  {100 * f['half_width']:5.2f}%  {f['seconds_per_pair']:6.2f}  {extra}"
            )
    if args.json:
        args.json.write_text(json.dumps({"noise": noise, "figures": figures, "raw": out}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
