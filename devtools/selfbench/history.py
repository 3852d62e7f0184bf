"""Selfbench's ``history`` section: change point detection on histories of known answer, and the
site's scale. Figures printed, never asserted.

**detect** — the noise of synthetic histories comes from real runs: unchanged runs of one matrix
(e.g. selfbench's A/A runs, or a history's runs before a change) give each cell's three parts
(gilmatrix.reports.stats.pool_baselines): its interval (the processes of a run), a shift common
to its group (workload × execution model × interpreter) in each run, and a part of its own. A
synthetic history is a noise group as the site sees one (a workload under one execution model:
every interpreter and worker count of a real run, each cell drawing its parts from a real
cell's), with the site's own noise scale (gilmatrix.history.site.noise_scales) estimated from
its series. One series of the group takes a step of ``--step`` (5%) after ``before`` runs; the
history ends two runs after it — the question is whether the step is found *within two runs of
where it begins*, at its run (and within one run of it). A flat series of the same group
measures how often nothing is called something. Also with "noisy Mondays": one run in ten with
three times the run-to-run scatter. Then the site's whole rule (Benjamini-Hochberg over every
series of a default-matrix-sized history, ten series stepped): found and false discoveries.

**scale** — a real run (``--run``, e.g. the full default matrix, 738 cells) added to a history,
then weekly copies of it (each cell's values moved by a seeded 2% factor) added as any run is,
up to ~40,000 and ~100,000 cells; ``gilmatrix site --no-reports`` timed in a process of its own
(the index holds the runs already; the site checks every kept run's digest against it first):
wall, peak RSS, the pages' sizes; and the history page opened in headless Chromium: time to
draw, and time for a filter to answer (a select changed until the chart shows the new series).

    python -m devtools.selfbench.history detect RUN_DIR... [--trials N] [--json OUT]
    python -m devtools.selfbench.history scale --run RUN_DIR [--cells 40000,100000] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

# -- detect ----------------------------------------------------------------------------------


def noise_model(run_dirs: Sequence[Path]) -> dict[str, Any]:
    """Each cell's noise parts from unchanged real runs: relative variances ``within`` (one
    run's interval), ``shift`` (its group's common shift) and ``own``; and their medians."""
    from gilmatrix.reports.results import load_run
    from gilmatrix.reports.stats import cell_table, pool_baselines

    tables = [cell_table(load_run(Path(d)).frame) for d in run_dirs]
    pooled = pool_baselines(tables)
    k = len(tables)
    cells: list[dict[str, Any]] = [
        {
            "cell": f"{r.interpreter} {r.workload}/{r.executor}/{r.workers}",
            "within": float(r.within) * k,  # pool_baselines gives the mean of k runs: one run's
            "shift": float(r.shift),
            "own": float(r.own),
            "processes": max(2, round(int(r.processes) / k)),  # a run's
        }
        for r in pooled.itertuples(index=False)
    ]
    med = {part: statistics.median(float(c[part]) for c in cells) for part in ("within", "shift", "own")}
    total = [math.sqrt(float(c["within"]) + float(c["shift"]) + float(c["own"])) for c in cells]
    return {
        "runs": [Path(d).name for d in run_dirs],
        "cells": cells,
        "median_sd": {part: math.sqrt(v) for part, v in med.items()},
        "median_total_sd": statistics.median(total),
    }


def synthetic_group(
    rng: np.random.Generator, cells: Sequence[dict[str, float]], size: int, runs: int, mondays: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log values (size series × runs) of one noise group, each run's own variance as its
    interval would record it, and its processes. Every series shares its group's shift in each
    run (the shift of one real cell drawn for the group), each adds its own part and its
    interval's (another real cell's each); a run records its variance from its processes (a χ²
    draw of processes − 1 degrees of freedom around the truth). With ``mondays`` one run in ten
    has 3× the scatter (and says so in its interval)."""
    picks = [cells[int(p)] for p in rng.integers(0, len(cells), size=size)]
    scale = np.where(rng.random(runs) < 0.1, 3.0, 1.0) if mondays else np.ones(runs)
    shift = rng.normal(0.0, math.sqrt(picks[0]["shift"]), runs) * scale
    own = np.array([math.sqrt(c["own"]) for c in picks])[:, None] * scale[None, :]
    within = np.array([c["within"] for c in picks])[:, None] * scale[None, :] ** 2
    df = np.array([c["processes"] - 1 for c in picks], dtype=float)[:, None]
    noise = rng.normal(0.0, 1.0, (size, runs)) * own + rng.normal(0.0, 1.0, (size, runs)) * np.sqrt(within)
    recorded = within * rng.chisquare(df, (size, runs)) / df
    return shift[None, :] + noise, recorded, np.broadcast_to(df + 1.0, (size, runs))


def group_sds(values: np.ndarray, recorded: np.ndarray, processes: np.ndarray) -> np.ndarray:
    """Each run's sd as the site gives it: √(τ² + the run's recorded variance), τ from the
    group (gilmatrix.history.site.run_sds)."""
    from gilmatrix.history.changes import noise_scale, run_variances

    tau = noise_scale(np.exp(values), recorded)
    own = np.array([run_variances(w, n) for w, n in zip(recorded, processes, strict=True)])
    out: np.ndarray = np.sqrt(tau * tau + own)
    return out


def scaled(model: dict[str, Any], factor: float) -> dict[str, Any]:
    """The model with every noise part's sd times ``factor`` (a quieter or noisier machine)."""
    parts = ("within", "shift", "own")
    cells = [{**c, **{k: c[k] * factor * factor for k in parts}} for c in model["cells"]]
    return {**model, "cells": cells, "median_total_sd": model["median_total_sd"] * factor}


def detection(
    model: dict[str, Any],
    *,
    step: float = 0.05,
    befores: Sequence[int] = (4, 8, 20, 50),
    factors: Sequence[float] = (1.0, 0.5, 0.35),
    trials: int = 400,
    group_size: int = 12,
    seed: int = 1,
) -> list[dict[str, Any]]:
    """Per noise level (the model's sd times each of ``factors``), noise kind and history
    length: the share of steps found at their run and within one, the share of flat series
    flagged (each with the site's sds, alpha 0.05 per series)."""
    from gilmatrix.history.changes import change_points

    rng = np.random.default_rng(seed)
    out = []
    for factor in factors:
        noise = scaled(model, factor)
        for mondays in (False, True):
            for before in befores:
                runs = before + 2
                exact = near = flagged = 0
                for _ in range(trials):
                    z, recorded, processes = synthetic_group(rng, noise["cells"], group_size, runs, mondays)
                    z[0, before:] += math.log1p(step)
                    sds = group_sds(z, recorded, processes)
                    values = np.exp(z)
                    found = [p.index for p in change_points(values[0], sigma=sds[0])]
                    exact += before in found
                    near += any(abs(i - before) <= 1 for i in found)
                    flagged += bool(change_points(values[1], sigma=sds[1]))
                out.append(
                    {
                        "factor": factor,
                        "run_sd": noise["median_total_sd"],
                        "noise": "with noisy Mondays" if mondays else "measured",
                        "runs_before": before,
                        "trials": trials,
                        "found_at_its_run": exact / trials,
                        "found_within_one": near / trials,
                        "flat_flagged": flagged / trials,
                    }
                )
    return out


def site_rule(
    model: dict[str, Any],
    *,
    step: float = 0.05,
    runs: int = 26,
    series: int = 738,
    stepped: int = 10,
    after: int = 2,
    seed: int = 2,
) -> dict[str, Any]:
    """The site's whole rule on one synthetic history of ``series`` series in groups of 12:
    ``stepped`` series of the first group step by ``step`` ``after`` runs before the end."""
    from gilmatrix.history.site import find_changes

    rng = np.random.default_rng(seed)
    rows = []
    start = datetime(2026, 1, 5, 6, tzinfo=UTC)
    for g in range(math.ceil(series / 12)):
        z, recorded, processes = synthetic_group(rng, model["cells"], 12, runs, mondays=False)
        if g == 0:
            z[:stepped, runs - after :] += math.log1p(step)
        for s in range(12):
            for r in range(runs):
                rows.append(
                    {"workload": f"w{g}", "executor": "threads", "workers": s, "interpreter": "3.x",
                     "status": "ok", "mean": math.exp(float(z[s, r])), "run_id": f"r{r:03d}",
                     "proc_sd": math.exp(float(z[s, r])) * math.sqrt(float(processes[s, r] * recorded[s, r])),
                     "processes": int(processes[s, r]),
                     "started": (start + timedelta(weeks=r)).isoformat()}
                )  # fmt: skip
    found, sigma = find_changes(rows)
    stepped_series = [f for f in found if f.series[0] == "w0" and f.series[2] < stepped]
    true = [f for f in stepped_series if f.point.index == runs - after]
    return {
        "series": math.ceil(series / 12) * 12,
        "stepped": stepped,
        "after": after,
        "runs": runs,
        "found": len({f.series for f in true}),
        "misplaced": len(stepped_series) - len(true),
        "false": len(found) - len(stepped_series),
        "sigma": sigma,
    }


# -- scale -----------------------------------------------------------------------------------


def synthetic_history(real_run: Path, root: Path, runs: int, seed: int = 3) -> dict[str, Any]:
    """A history of ``runs`` weekly runs made from ``real_run``: each a copy of its kept files
    (manifest and pyperf suites) with another run id, a start a week later and every cell's
    values moved by one seeded 2% factor, added as any run is (``History.add``)."""
    from gilmatrix.history.store import History, kept_files

    history = History(root)
    first = history.add(real_run)
    clones = runs - 1
    rng = np.random.default_rng(seed)
    manifest = json.loads((real_run / "manifest.json").read_text())
    started = datetime.fromisoformat(manifest["started"])
    suites = [f for f in kept_files(real_run) if f.name != "manifest.json"]
    work = root.parent / "incoming"
    made = time.perf_counter()
    for week in range(1, clones + 1):
        clone = work / f"{first.run_id}-w{week:03d}"
        clone.mkdir(parents=True)
        for rel in suites:
            suite = json.loads((real_run / rel).read_text())
            for bench in suite.get("benchmarks", []):
                factor = math.exp(float(rng.normal(0.0, 0.02)))
                for one in bench.get("runs", []):
                    if one.get("values"):
                        one["values"] = [v * factor for v in one["values"]]
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            (clone / rel).write_text(json.dumps(suite))
        copy = {**manifest, "run_id": clone.name, "started": (started + timedelta(weeks=week)).isoformat()}
        (clone / "manifest.json").write_text(json.dumps(copy))
        history.add(clone)
        shutil.rmtree(clone)
    db = sqlite3.connect(history.index_path)
    total = db.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
    measured = db.execute("SELECT COUNT(*) FROM cells WHERE status = 'ok'").fetchone()[0]
    db.close()
    size = sum(f.stat().st_size for f in history.runs.rglob("*") if f.is_file())
    return {
        "runs": runs,
        "cells": total,
        "measured": measured,
        "index_bytes": history.index_path.stat().st_size,
        "runs_bytes": size,
        "setup_s": time.perf_counter() - made,
    }


def time_site(history: Path, out: Path) -> dict[str, Any]:
    """``gilmatrix site --no-reports`` in a process of its own: wall seconds, peak RSS, sizes.

    The peak is the process' own high-water mark (VmHWM, in kB): ``ru_maxrss`` of a process
    started from this one would start at this one's size (Linux carries it across fork and
    exec), and this one holds the history it just made."""
    script = (
        "import re, sys, time\n"
        "from gilmatrix.cli import main\n"
        "t = time.perf_counter(); code = main(sys.argv[1:]); wall = time.perf_counter() - t\n"
        "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
        "print('TIMING', wall, hwm)\n"
        "sys.exit(code)\n"
    )
    cmd = [sys.executable, "-c", script, "site", "--history", str(history), "--out", str(out), "--no-reports"]
    builds = []
    for _ in ("first", "again"):  # again: the weekly build, its vega.js and index kept
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        total = time.perf_counter() - started
        wall, rss = next(line.split()[1:] for line in done.stdout.splitlines() if line.startswith("TIMING"))
        builds.append((total, float(wall), int(rss) / 1024))
    sizes = {p.name: p.stat().st_size for p in sorted([*out.glob("*.html"), *out.glob("*.js")])}
    return {
        "command_s": builds[0][0],
        "build_s": builds[0][1],
        "peak_rss_mb": builds[0][2],
        "again_s": builds[1][1],
        "again_peak_rss_mb": builds[1][2],
        "sizes_mb": {k: v / 1e6 for k, v in sizes.items()},
        "site_mb": sum(sizes.values()) / 1e6,
    }


def scale_figures(real_run: Path, runs: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A history of ``runs`` weekly copies of ``real_run`` (synthetic_history), its site timed
    (time_site) and its history page in Chromium (time_browser), in a folder removed after."""
    work = Path(tempfile.mkdtemp(prefix="gilmatrix-history-scale-"))
    try:
        made = synthetic_history(real_run, work / "history", runs)
        timed = time_site(work / "history", work / "site")
        browser = time_browser(work / "site" / "history.html", work / "history")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return made, timed, browser


FILTER_JS = """async ([value, expected]) => {
  const select = document.querySelectorAll('#chart select')[0];
  const count = () => document.querySelectorAll('#chart g.mark-symbol.role-mark path').length;
  const drawn = () => document.querySelector('#chart svg').innerHTML;
  const before = drawn();
  const t0 = performance.now();
  select.value = value;
  select.dispatchEvent(new Event('change', {bubbles: true}));
  while (count() !== expected || drawn() === before) {
    await new Promise(r => requestAnimationFrame(r));
    if (performance.now() - t0 > 30000) return -1;
  }
  return performance.now() - t0;
}"""


def time_browser(page_path: Path, history: Path) -> dict[str, Any]:
    """The history page in headless Chromium: seconds to draw; milliseconds for each of three
    filter changes (first select: another workload) until the chart holds the new points."""
    from playwright.sync_api import sync_playwright

    from gilmatrix.history.store import History

    rows = [r for r in History(history).series() if r["status"] == "ok"]
    first = {k: sorted({r[k] for r in rows})[0] for k in ("executor", "workers")}
    workloads = sorted({r["workload"] for r in rows})
    expected = {
        w: sum(r["workload"] == w and all(r[k] == v for k, v in first.items()) for r in rows)
        for w in workloads
    }
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
        t = time.perf_counter()
        page.goto(page_path.as_uri())
        page.wait_for_function("document.body.dataset.rendered === 'yes'", timeout=120_000)
        draw = time.perf_counter() - t
        filters = []
        for w in [*workloads[1:], workloads[0]][:3]:
            filters.append(page.evaluate(FILTER_JS, [w, expected[w]]))
        browser.close()
    return {"draw_s": draw, "filter_ms": filters}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.selfbench.history", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    d = commands.add_parser("detect", help="detection on synthetic histories with the noise of real runs")
    d.add_argument("runs", nargs="+", type=Path, help="unchanged runs of one matrix (at least 3)")
    d.add_argument("--trials", type=int, default=400)
    d.add_argument("--step", type=float, default=0.05)
    d.add_argument("--json", type=Path)
    s = commands.add_parser(
        "scale", help="the site's build time, size and filters at 40,000 and 100,000 cells"
    )
    s.add_argument(
        "--run", type=Path, required=True, help="a real run to clone (e.g. the full default matrix)"
    )
    s.add_argument(
        "--runs",
        default="52,136",
        help="history lengths (default 52,136: a year of weekly full default matrices, ~38,000 "
        "measured cells, and ~100,000)",
    )
    s.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    load = os.getloadavg()
    figures: dict[str, Any] = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "load_before": load}
    if args.command == "detect":
        model = noise_model(args.runs)
        figures["model"] = {k: v for k, v in model.items() if k != "cells"}
        print(
            f"noise from {len(args.runs)} runs, {len(model['cells'])} cells (median sd): "
            + ", ".join(f"{k} {100 * v:.2f}%" for k, v in model["median_sd"].items())
            + f"; total {100 * model['median_total_sd']:.2f}%"
        )
        figures["detection"] = detection(model, step=args.step, trials=args.trials)
        print(f"a {100 * args.step:.0f}% step, history ending two runs after it (alpha 0.05 a series):")
        print("  run sd  noise                 runs before  found at its run  within one  flat flagged")
        for r in figures["detection"]:
            print(
                f"  {100 * r['run_sd']:5.2f}%  {r['noise']:<21} {r['runs_before']:>11}"
                f"  {100 * r['found_at_its_run']:15.1f}%  {100 * r['found_within_one']:9.1f}%"
                f"  {100 * r['flat_flagged']:11.1f}%"
            )
        figures["site_rule"] = []
        for factor in (1.0, 0.5, 0.35):
            for after in (2, 4):
                rule = {"factor": factor, **site_rule(scaled(model, factor), step=args.step, after=after)}
                figures["site_rule"].append(rule)
                print(
                    f"the site's rule (FDR 5%), run sd x{factor}: {rule['series']} series x {rule['runs']} "
                    f"runs, {rule['stepped']} stepped {after} runs before the end: {rule['found']} found "
                    f"at their run, {rule['misplaced']} elsewhere in them, {rule['false']} in flat series "
                    f"(tau {100 * rule['sigma']:.2f}%)"
                )
    else:
        figures["scale"] = []
        for runs in (int(c) for c in args.runs.split(",")):
            made, timed, browser = scale_figures(args.run, runs)
            figures["scale"].append({**made, **timed, **browser})
            print(
                f"{made['measured']:>7} measured cells ({made['cells']} with the unsupported; "
                f"{made['runs']} runs; runs "
                f"{made['runs_bytes'] / 1e6:.0f} MB, index {made['index_bytes'] / 1e6:.1f} MB): "
                f"site {timed['build_s']:.1f} s (command {timed['command_s']:.1f} s), peak RSS "
                f"{timed['peak_rss_mb']:.0f} MB; again {timed['again_s']:.1f} s, "
                f"{timed['again_peak_rss_mb']:.0f} MB; pages {timed['site_mb']:.1f} MB "
                f"({', '.join(f'{k} {v:.2f}' for k, v in timed['sizes_mb'].items())}); Chromium: drawn in "
                f"{browser['draw_s']:.1f} s, filters {', '.join(f'{m:.0f}' for m in browser['filter_ms'])} ms"
            )
    figures["load_after"] = os.getloadavg()
    print(f"load before {load[0]:.2f}, after {figures['load_after'][0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
