"""Measure gilmatrix itself: pipeline overhead, container fidelity, stability, image cache,
report scale and memory, each figure next to its target (reported, never asserted).

    python -m devtools.selfbench [--quick] [--json OUT] [--backends local,docker] [--only SECTION]
                               [--interpreters 3.12,...] [--workloads crunch,...]
                               [--sources DIR] [--compare PREVIOUS.json]

Prints one table and writes it as JSON (default ``_build/selfbench/selfbench-<date>.json``) so
that later runs can be compared (``--compare`` adds their values as a column). The runs it
makes are real ``gilmatrix run`` commands with ``--out _build`` (warm venvs, images, wheels);
their folders are moved to ``_build/selfbench/runs/`` afterwards, out of ``gilmatrix report``'s
way. Sections:

- overhead: wall time of ``gilmatrix run`` / the floor (pyperf's own ``duration`` of every run of
  every cell), smoke profile on every interpreter the backend has, and — unless ``--quick`` —
  the default profile on a reduced interpreter set (3.12: the whole set takes hours on 2 cores);
- fidelity: the 3.12 cells run on the host (local backend, pyenv's 3.12.1) and in the 3.12
  prefix image (a copy of that same install), twice each in the order host, container, host,
  container: container / host per cell (geometric mean of the two pairs), median, CPU-bound
  apart, next to the noise of each side run twice;
- stability: two local runs of the same profile (with a docker run between them when both
  backends are measured), |Δ| of each cell's median, by workload kind;
- images: ``gilmatrix images --only 3.12`` with nothing changed, then from a copy of the
  repository whose harness differs by one comment (only the last layers rebuild);
- verdicts (devtools/selfbench/verdicts.py): A/A false-positive rate, power against a known 5%
  change, run-to-run |Δ| of CPU-bound cells, precision per second against plain pyperf, and
  with ``--full-matrix`` the wall time of the default profile on every interpreter (docker);
- noisy (devtools/selfbench/noisy.py): under a seeded CPU burner, runs of twins and a +5% change
  alternating between the round orders ``blocks`` and ``shuffle``; every estimator (Welch on
  raw or reference-adjusted process means, round pairs raw or adjusted; with and without the
  floor): A/A rate, power, median half-width of the comparisons' intervals;
- settings: the default profile's per-process pyperf settings against pyperf's own, four cells
  of fixed process counts, alternating: pyperf's cost of a given precision / the default's;
- report: build time and index.html size for synthetic runs of 100, 1,000 and 10,000 cells;
- history (devtools/selfbench/history.py): change points on synthetic histories with the noise
  of the A/A runs (this invocation's, else the newest kept): a 5% step found within two runs,
  flat series flagged; with ``--history-run RUN_DIR`` (a full default matrix) also
  ``gilmatrix site`` at 40,000 and 100,000 cells: seconds, peak RSS, pages' MB, filters in
  Chromium;
- memory: peak RSS of the gilmatrix process itself during a run and during reports.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devtools.selfbench import figures as sf
from devtools.selfbench import measure as sm
from devtools.selfbench.figures import row
from gilmatrix.cli import out_arg

SECTIONS = (
    "images",
    "overhead",
    "fidelity",
    "stability",
    "verdicts",
    "noisy",
    "settings",
    "report",
    "history",
    "memory",
)
VERDICT_INTERPRETER = "3.13"  # the A/A test of the issue: 3.13, crunch and sum_squares
REPLAY_TARGETS = (0.02, 0.03, 0.04)  # noisy: the stop replayed at the profile's target and looser ones
FIDELITY_INTERPRETER = "3.12"  # matrix.yaml: prefix ~/.pyenv/versions/3.12.1, the local build
DEFAULT_PROFILE_INTERPRETERS = ("3.12",)
REPORT_SIZES = (100, 1_000, 10_000)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m devtools.selfbench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--quick", action="store_true", help="smoke profile only (no default-profile runs): a few minutes"
    )
    p.add_argument(
        "--json", type=Path, help="write the table here (default: _build/selfbench/selfbench-<date>.json)"
    )
    p.add_argument(
        "--backends",
        type=_csv,
        default=["local", "docker"],
        help="comma-separated: local,docker (default: both)",
    )
    p.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        default=[],
        help="only this section (repeatable; default: all)",
    )
    p.add_argument(
        "--interpreters",
        type=_csv,
        default=[],
        help="restrict the runs to these interpreter ids (comma-separated)",
    )
    p.add_argument(
        "--workloads", type=_csv, default=[], help="restrict the runs to these workload ids (comma-separated)"
    )
    p.add_argument(
        "--sources",
        type=Path,
        default=os.environ.get("GILMATRIX_SOURCES"),
        help="CPython source mirror for the docker backend and images (default: $GILMATRIX_SOURCES)",
    )
    out_arg(p, "gilmatrix's work folder, shared with the real runs")
    p.add_argument(
        "--report-sizes",
        type=lambda v: [int(x) for x in _csv(v)],
        default=list(REPORT_SIZES),
        help="synthetic report sizes (default: 100,1000,10000)",
    )
    p.add_argument(
        "--noisy-runs", type=int, default=2, help="noisy: runs of each arm (alternating; default 2)"
    )
    p.add_argument(
        "--noisy-arms",
        type=_csv,
        default=["shuffle", "pairs"],
        help="noisy: the arms, alternating (shuffle, pairs, blocks; default shuffle,pairs)",
    )
    p.add_argument(
        "--noisy-burners", type=int, default=1, help="noisy: burner processes (default 1: ~70%% of one core)"
    )
    p.add_argument(
        "--noisy-minutes",
        type=lambda v: [float(x) for x in _csv(v)],
        default=[4.0],
        help="noisy: each run's run_minutes; several (4,12): the runs alternate between them, "
        "figures per budget (default 4)",
    )
    p.add_argument("--noisy-seed", type=int, default=25, help="noisy: the burner's seed (default 25)")
    p.add_argument(
        "--history-run",
        type=Path,
        metavar="RUN_DIR",
        help="history: a real run (the full default matrix) to clone into histories of 40,000 and "
        "100,000 cells for the site's scale",
    )
    p.add_argument("--compare", type=Path, help="a previous selfbench JSON: show its values too")
    p.add_argument(
        "--full-matrix",
        action="store_true",
        help="verdicts: also time the default profile on every interpreter with the "
        "docker backend (about half an hour on 2 cores)",
    )
    return p


class SelfBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sections = set(args.only or SECTIONS)
        self.backends = [b for b in args.backends if b in ("local", "docker")]
        self.out = args.out.resolve()
        self.stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        self.runs: dict[str, dict[str, Any]] = {}  # name -> measurement, run folder, figures
        self.rows: list[sf.Row] = []
        self.details: dict[str, Any] = {}
        self.images_state: dict[str, str | None] | None = None  # interp -> why not current

    # -- runs ----------------------------------------------------------------------------------

    def run(
        self, profile: str, backend: str, number: int = 1, interpreters: Sequence[str] | None = None
    ) -> dict[str, Any] | None:
        """One ``gilmatrix run`` (made once, shared by the sections that need it)."""
        name = f"{profile}-{backend}-{number}"
        if name in self.runs:
            return self.runs[name]
        if backend not in self.backends:
            return None
        interps = list(interpreters if interpreters is not None else self.args.interpreters)
        if backend == "docker":
            interps = self.docker_ready(interps)
            if not interps:
                return None
        only = [*interps, *self.args.workloads]
        measured, run_dir = sm.gilmatrix_run(
            out=self.out,
            run_id=f"selfbench-{self.stamp}-{name}",
            profile=profile,
            backend=backend,
            only=only,
            sources=self.args.sources if backend == "docker" else None,
            log=log,
        )
        entry = self.record(name, measured, run_dir)
        if (run_dir / "manifest.json").is_file():
            entry["manifest"], entry["cells"] = sf.load_run(run_dir)
        log(
            f"  {name}: {measured.wall:.1f} s, exit {measured.returncode}, "
            f"{len(entry['cells'])} cells ok" + (f" — {measured.tail()}" if measured.returncode else "")
        )
        return entry

    def verdict(self, *fields: Any) -> None:
        """A figure of the verdicts section (row()'s fields after the section)."""
        self.rows.append(row("verdicts", *fields))

    def record(self, name: str, measured: Any, run_dir: Path) -> dict[str, Any]:
        """A run of the bench, kept under ``name`` (its manifest and cells filled in later)."""
        entry: dict[str, Any] = {
            "name": name,
            "measured": measured,
            "run_dir": run_dir,
            "manifest": None,
            "cells": [],
        }
        self.runs[name] = entry
        return entry

    def docker_ready(self, interpreters: Sequence[str]) -> list[str]:
        """Of ``interpreters`` (all of the matrix when empty), those whose image is up to date."""
        if self.images_state is None:
            self.images_state = sm.current_images(
                sm.matrix_interpreters(), out=self.out, sources=self.args.sources
            )
            stale = {k: v for k, v in self.images_state.items() if v}
            self.details["docker images not up to date (left out of docker runs)"] = stale
            if stale:
                log(f"docker: left out, image not up to date: {', '.join(stale)}")
        wanted = list(interpreters) or list(self.images_state)
        return [i for i in wanted if self.images_state.get(i) is None and i in self.images_state]

    def docker_note(self, entry: dict[str, Any]) -> str:
        ran = sorted({c.interpreter for c in entry["cells"]})
        stale = sorted(k for k, v in (self.images_state or {}).items() if v)
        return f"docker: {', '.join(ran)}" + (
            f" (left out, image out of date: {', '.join(stale)})" if stale else ""
        )

    def default_interpreters(self) -> list[str]:
        return list(self.args.interpreters or DEFAULT_PROFILE_INTERPRETERS)

    def profile_runs(self, profile: str, interps: Sequence[str] | None) -> None:
        """Make a profile's runs in the order host, container, host, container: overhead counts
        the second (warm) local run and the first docker one, stability compares the two local
        runs, fidelity pairs each local run with the docker run after it, so that a drift of the
        machine during the benchmark weighs on both sides."""
        order = [("local", 1), ("docker", 1), ("local", 2)]
        if "fidelity" in self.sections:
            order.append(("docker", 2))
        for backend, number in order:
            self.run(profile, backend, number, interps)

    # -- sections ------------------------------------------------------------------------------

    def overhead(self) -> None:
        """On a warm cache: local runs twice (the first makes venvs and stages the harness when
        they are missing) and the second counts; docker after the images section checked them."""
        plans = (
            [("smoke", None)]
            if self.args.quick
            else [("smoke", None), ("default", self.default_interpreters())]
        )
        for profile, interps in plans:
            self.profile_runs(profile, interps)
            for backend in self.backends:
                # local: the first run was the warm-up (venvs, harness staging)
                entry = self.run(profile, backend, 2 if backend == "local" else 1, interps)
                label = f"{profile} {backend}"
                if not entry or not entry["cells"]:
                    self.rows.append(
                        row("overhead", f"{label} wall/floor", None, "x", "overhead", _why_not(entry))
                    )
                    continue
                figures = sf.overhead(entry["measured"].wall, entry["manifest"], entry["cells"])
                self.details[f"overhead {label}"] = figures
                notes = [f"{entry['name']}"]
                if interps:
                    notes.append(f"reduced set: {', '.join(interps)}")
                if backend == "docker":
                    notes.append(self.docker_note(entry))
                self.rows += sf.overhead_rows(label, figures, "; ".join(notes))
        self.start_up()

    def start_up(self) -> None:
        """What each pyperf worker pays before its first run, per local interpreter: the part of
        the overhead that is pyperf's process model rather than gilmatrix."""
        entry = self.runs.get("smoke-local-2")
        if not entry or not entry["manifest"]:
            return
        for interp, info in sorted(entry["manifest"].get("interpreters", {}).items()):
            python = (info.get("environment") or {}).get("python")
            if info.get("status") != "ran" or not python:
                continue
            costs = sm.start_up_costs(python)
            self.details[f"worker start-up {interp}"] = costs
            ms = {k: 1000 * v for k, v in costs.items()}
            self.rows.append(
                row(
                    "overhead",
                    f"worker start-up {interp}",
                    round(ms["harness"], 1),
                    "ms",
                    note=(
                        f"interpreter {ms['interpreter']:.0f} ms, import pyperf "
                        f"+{ms['pyperf'] - ms['interpreter']:.0f} ms, harness modules "
                        f"+{ms['harness'] - ms['pyperf']:.0f} ms (median of 7); paid by every "
                        f"pyperf worker: `processes` per cell, +1 when loops are calibrated"
                    ),
                )
            )

    def fidelity(self) -> None:
        profile = "smoke" if self.args.quick else "default"
        interps = None if self.args.quick else self.default_interpreters()
        self.profile_runs(profile, interps)
        host, box = self.run(profile, "local", 1, interps), self.run(profile, "docker", 1, interps)
        host2, box2 = self.run(profile, "local", 2, interps), self.run(profile, "docker", 2, interps)
        label = f"{profile} {FIDELITY_INTERPRETER}"
        if not host or not box or not host["cells"] or not box["cells"]:
            missing = (
                "both backends are needed"
                if len(self.backends) < 2
                else _why_not(host if not (host and host["cells"]) else box)
            )
            self.rows.append(row("fidelity", f"{label} container/host", None, "x", "fidelity", missing))
            return
        again = host2 and box2 and host2["cells"] and box2["cells"]
        figures = sf.fidelity(
            host["cells"],
            box["cells"],
            FIDELITY_INTERPRETER,
            host2["cells"] if again and host2 else None,
            box2["cells"] if again and box2 else None,
        )
        self.details[f"fidelity {label}"] = figures
        self.rows += sf.fidelity_rows(label, figures)

    def stability(self) -> None:
        plans = (
            [("smoke", None)]
            if self.args.quick
            else [("smoke", None), ("default", self.default_interpreters())]
        )
        backend = "local" if "local" in self.backends else "docker"
        for profile, interps in plans:
            self.profile_runs(profile, interps)
            first = self.run(profile, backend, 1, interps)
            second = self.run(profile, backend, 2, interps)
            label = f"{profile} {backend}"
            if not first or not second or not first["cells"] or not second["cells"]:
                self.rows.append(
                    row(
                        "stability",
                        f"{label} cpu median |Δ|",
                        None,
                        "%",
                        "stability_cpu",
                        _why_not(first if not first or not first["cells"] else second),
                    )
                )
                continue
            figures = sf.stability(first["cells"], second["cells"])
            self.details[f"stability {label}"] = figures
            self.rows += sf.stability_rows(label, figures)

    def images(self) -> None:
        if "docker" not in self.backends:
            return
        interp = FIDELITY_INTERPRETER
        measured, entry = sm.gilmatrix_images(interp, out=self.out, sources=self.args.sources, log=log)
        if entry and entry.get("status") == "built":  # it was out of date: now it is not
            measured, entry = sm.gilmatrix_images(interp, out=self.out, sources=self.args.sources, log=log)
        ok = measured.returncode == 0 and entry and entry.get("status") == "cached"
        self.details["images unchanged"] = {**sm.describe(measured), "result": entry}
        self.rows.append(
            row(
                "images",
                f"{interp} unchanged",
                round(measured.wall, 2) if ok else None,
                "s",
                "image_unchanged",
                f"command wall time; gilmatrix's own {entry['seconds']:.1f} s"
                if ok and entry
                else f"failed: {measured.tail()}",
            )
        )
        if not ok or entry is None:
            return
        original = entry["tag"]
        with tempfile.TemporaryDirectory(prefix="gilmatrix-selfbench-") as tmp:
            copy = sm.copy_with_harness_change(Path(tmp) / "repo", self.stamp)
            changed, new = sm.gilmatrix_images(
                interp, out=self.out, sources=self.args.sources, cwd=copy, log=log
            )
        rebuilt = changed.returncode == 0 and new and new.get("status") == "built"
        restored = sm.restore_tags(original, new.get("tag") if new else None)
        self.details["images harness-only"] = {**sm.describe(changed), "result": new, "restored": restored}
        note = (
            f"command wall time; docker build {new['seconds']:.1f} s; then {'; '.join(restored)}"
            if rebuilt and new
            else f"not rebuilt: {new.get('status') if new else changed.tail()}"
        )
        self.rows.append(
            row(
                "images",
                f"{interp} harness-only change",
                round(changed.wall, 2) if rebuilt else None,
                "s",
                "image_harness",
                note,
            )
        )

    def verdicts(self) -> None:
        from devtools.selfbench import verdicts as sv
        from gilmatrix.matrix.model import load_matrix

        interp = (self.args.interpreters or [VERDICT_INTERPRETER])[0]
        work = self.out / "selfbench" / f"verdicts-{self.stamp}"
        work.mkdir(parents=True, exist_ok=True)
        plain = sv.matrix_with(sm.ROOT / "matrix.yaml", work / "matrix.yaml")
        scaled = sv.matrix_with(
            sm.ROOT / "matrix.yaml", work / "matrix-crunch-5pc.yaml", scale=sv.POWER_FACTOR
        )
        runs = {}
        order = (
            ("aa-a", plain),
            ("aa-b", plain),
            ("power-c", scaled),
            ("aa-d", plain),
            ("aa-e", plain),
            ("aa-f", plain),
        )
        for name, matrix in order:
            measured, run_dir = sv.run_cli(
                self.out, f"selfbench-{self.stamp}-{name}", matrix, "default", interp, sv.WORKLOADS, log
            )
            log(
                f"  {name}: {measured.wall:.1f} s, exit {measured.returncode} (load {os.getloadavg()[0]:.2f})"
            )
            self.record(name, measured, run_dir)
            runs[name] = run_dir if measured.returncode == 0 else None
        if runs["aa-a"] and runs["aa-b"]:
            kinds = {w.id: w.kind for w in load_matrix(plain).workloads}
            aa = sv.aa_figures(runs["aa-a"], runs["aa-b"], kinds)
            self.details["aa"] = aa
            self.verdict(
                f"A/A false positives ({interp}, {aa['compared']} cells)",
                round(100 * aa["rate"], 1),
                "%",
                "aa_rate",
                f"{aa['flagged']} of {aa['compared']} called changes "
                f"({', '.join(aa['flagged_cells']) or 'none'}); "
                f"{aa['below_floor']} significant by the test but within the "
                f"floor {aa['floor']:.1%}",
            )
            self.verdict(
                "run-to-run CPU-bound median |Δ|",
                None if aa["cpu_median_abs_delta"] is None else round(100 * aa["cpu_median_abs_delta"], 2),
                "%",
                "stability_cpu",
                f"{aa['cpu_cells']} crunch cells, A vs B",
            )
        if runs["aa-b"] and runs["power-c"]:
            power = sv.power_figures(runs["power-c"], runs["aa-b"])
            self.details["power"] = power
            self.verdict(
                f"power: crunch +{sv.POWER_FACTOR - 1:.0%} work detected",
                round(100 * power["power"], 1),
                "%",
                "power",
                f"{power['detected']} of {power['affected']} crunch cells "
                f"called regressions (missed: {', '.join(power['missed']) or 'none'}); "
                f"{power['unaffected_flagged']} of {power['unaffected']} unchanged "
                f"cells flagged; floor {power['floor']:.1%}",
            )
        if runs["aa-a"] and runs["aa-b"] and runs["aa-d"] and runs["power-c"]:
            kinds = {w.id: w.kind for w in load_matrix(plain).workloads}
            aa2 = sv.aa_figures(runs["aa-a"], runs["aa-d"], kinds, runs["aa-b"])
            power2 = sv.power_figures(runs["power-c"], runs["aa-a"], runs["aa-b"])
            self.details["replicated"] = {"aa": aa2, "power": power2}
            self.verdict(
                "A/A false positives, two baseline runs pooled",
                round(100 * aa2["rate"], 1),
                "%",
                "aa_rate",
                f"D against A+B: {aa2['flagged']} of {aa2['compared']} called changes "
                f"({', '.join(aa2['flagged_cells']) or 'none'}); {aa2['below_floor']} significant by "
                f"the test but within the floor {aa2['floor']:.1%}",
            )
            self.verdict(
                f"power, two baseline runs pooled: crunch +{sv.POWER_FACTOR - 1:.0%}",
                round(100 * power2["power"], 1),
                "%",
                "power",
                f"C against A+B: {power2['detected']} of {power2['affected']} crunch cells called "
                f"regressions (missed: {', '.join(power2['missed']) or 'none'}); "
                f"{power2['unaffected_flagged']} of {power2['unaffected']} unchanged cells flagged",
            )
        self.four_baselines(sv, runs)
        self.within_run(sv, interp, work)
        self.pyperf_comparison(sv, interp, work)
        if self.args.full_matrix:
            self.full_matrix()

    def four_baselines(self, sv: Any, runs: dict[str, Path | None]) -> None:
        """A/A and power against four baseline runs pooled (A, B, E, F), and the A/A rate of
        each unchanged run against the other four."""
        names = ("aa-a", "aa-b", "aa-e", "aa-f")
        if not all(runs[n] for n in (*names, "aa-d", "power-c")):
            return
        bases = [runs[n] for n in names]
        aa = sv.aa_figures(bases[0], runs["aa-d"], {}, *bases[1:])
        power = sv.power_figures(runs["power-c"], *bases)
        loo = sv.leave_one_out([runs[n] for n in ("aa-a", "aa-b", "aa-d", "aa-e", "aa-f")])
        self.details["four_baselines"] = {"aa": aa, "power": power, "leave_one_out": loo}
        self.verdict(
            "A/A false positives, four baseline runs pooled",
            round(100 * aa["rate"], 1),
            "%",
            "aa_rate",
            f"D against A+B+E+F: {aa['flagged']} of {aa['compared']} called changes "
            f"({', '.join(aa['flagged_cells']) or 'none'})",
        )
        self.verdict(
            "A/A false positives, each unchanged run against the other four",
            round(100 * loo["rate"], 1),
            "%",
            "aa_rate",
            f"{loo['flagged']} of {loo['compared']} cells of A, B, D, E, F called changes ("
            + "; ".join(f"{n}: {', '.join(r['flagged']) or 'none'}" for n, r in loo["runs"].items())
            + ")",
        )
        self.verdict(
            f"power, four baseline runs pooled: crunch +{sv.POWER_FACTOR - 1:.0%}",
            round(100 * power["power"], 1),
            "%",
            "power",
            f"C against A+B+E+F: {power['detected']} of {power['affected']} crunch cells called "
            f"regressions (missed: {', '.join(power['missed']) or 'none'}); "
            f"{power['unaffected_flagged']} of {power['unaffected']} unchanged cells flagged",
        )

    def noisy(self) -> None:
        """Verdicts on a machine made noisy by a seeded burner, by every estimator."""
        from devtools.selfbench import noisy as sn

        interp = (self.args.interpreters or [VERDICT_INTERPRETER])[0]
        load_before = os.getloadavg()[0]
        found, burner = sn.collect(
            self.out,
            self.stamp,
            arms=self.args.noisy_arms,
            runs=self.args.noisy_runs,
            minutes=self.args.noisy_minutes,
            seed=self.args.noisy_seed,
            burners=self.args.noisy_burners,
            interpreter=interp,
            log=log,
            record=self.record,
        )
        pooled = sn.pooled(found)
        self.details["noisy"] = {
            "burner": {
                "seed": burner.seed,
                "processes": burner.processes,
                "busy": burner.busy,
                "seconds": burner.seconds,
            },
            "load_before": load_before,
            "interpreter": interp,
            "runs": found,
            "pooled": pooled,
        }
        floors = ", ".join(f"{f['run']} {f['floor']:.1%}" for f in found)
        noise = f"{burner.describe()}; floors {floors}"
        locations = sn.location_rms(found)
        self.details["noisy"]["locations"] = locations
        for name, (rms, pairs) in locations.items():
            self.rows.append(
                row(
                    "noisy",
                    f"a cell's location by the {name} of its process means: twins' error",
                    round(100 * rms, 2),
                    "%",
                    None,
                    f"root mean square of log(twin / original) over {pairs} twin pairs, truth 0 ({noise})",
                )
            )
        predicted = sn.predicted_power(found)
        self.details["noisy"]["predicted"] = predicted
        for kind, p in predicted.items():
            self.rows.append(
                row(
                    "noisy",
                    f"power the report's reach predicts, {kind}",
                    round(p["at_measured"], 1),
                    "comparisons",
                    None,
                    f"± {p['sd']:.1f} of {p['comparisons']} +5% comparisons, at the measured change "
                    f"{p['measured_change']:+.2%} ({p['built']:.1f} at +5%): compare with the report's "
                    f"power below ({noise})",
                )
            )
        self.matched_power(found, noise)
        self.stop_replay([Path(f["dir"]) for f in found], noise)
        for key, acc in pooled.items():
            self.rows.append(
                row(
                    "noisy",
                    f"{key}: A/A, power, ±median interval",
                    None if acc["aa_rate"] is None else round(100 * acc["aa_rate"], 1),
                    "%",
                    "aa_rate",
                    f"A/A {acc['flagged']}/{acc['twins']}; power {acc['detected']}/{acc['plus']}"
                    f" = {100 * (acc['power'] or 0):.0f}% (one in-process worker "
                    f"{acc['detected_one']}/{acc['plus_one']}, pools {acc['detected'] - acc['detected_one']}"
                    f"/{acc['plus'] - acc['plus_one']}); model-vs-sequential ±"
                    f"{100 * (acc['half_width'] or math.nan):.1f}%, twins ±"
                    f"{100 * (acc['twin_half_width'] or math.nan):.1f}% ({noise})",
                )
            )

    def matched_power(self, found: Sequence[Mapping[str, Any]], noise: str) -> None:
        """Each estimator's power at matched A/A over the noisy runs (noisy.matched_power): a
        test that calls more twins different is not credited with the changes that buys."""
        from devtools.selfbench import noisy as sn

        for level in sn.MATCHED:
            matched = sn.matched_power(found, level)
            self.details["noisy"][f"matched {level:g}"] = matched
            for name, m in matched.items():
                self.rows.append(
                    row(
                        "noisy",
                        f"{name}: power at {level:.0%} A/A",
                        round(100 * m["detected"] / m["plus"], 1),
                        "%",
                        None,
                        f"{m['detected']}/{m['plus']} +5% changes found at α {m['alpha']:.4f}, where "
                        f"{m['flagged']}/{m['twins']} twins are called different ({noise})",
                    )
                )

    def stop_replay(self, runs: Sequence[Path], noise: str) -> None:
        """The noisy runs replayed with the run loop's precision stop at their target and looser
        ones (devtools/selfbench/replay.py): does early stopping raise the A/A rate?"""
        from devtools.selfbench import replay

        self.details["noisy"]["replay"] = {}
        for target in REPLAY_TARGETS:
            total = replay.replayed(runs, target, log)
            self.details["noisy"]["replay"][f"{target:g}"] = total
            rate = total["twins_flagged"] / total["twins"] if total.get("twins") else None
            self.rows.append(
                row(
                    "noisy",
                    f"stop replayed at ±{target:.0%}: A/A",
                    None if rate is None else round(100 * rate, 1),
                    "%",
                    "aa_rate",
                    f"{replay.describe(total)} ({noise})" if total else "no adaptive run to replay",
                )
            )

    def within_run(self, sv: Any, interp: str, work: Path) -> None:
        """A/A and power inside one run: twins and crunch +5%, interleaved with the originals."""
        matrix = sv.within_matrix(sm.ROOT / "matrix.yaml", work / "matrix-within.yaml")
        only = [*sv.WORKLOADS, *sv.TWINS, sv.PLUS]
        measured, run_dir = sv.run_cli(
            self.out, f"selfbench-{self.stamp}-within", matrix, "default", interp, only, log
        )
        log(f"  within: {measured.wall:.1f} s, exit {measured.returncode} (load {os.getloadavg()[0]:.2f})")
        self.record("within", measured, run_dir)
        if measured.returncode != 0:
            for figure, key in (
                ("A/A false positives within one run", "aa_rate"),
                ("power within one run", "power"),
            ):
                self.verdict(figure, None, "%", key, _why_not(self.runs["within"]))
            return
        found = sv.within_figures(run_dir)
        self.details["within"] = found
        self.verdict(
            f"A/A false positives within one run ({found['twins']} twin cells)",
            round(100 * found["aa_rate"], 1),
            "%",
            "aa_rate",
            f"{len(found['twins_flagged'])} of {found['twins']} called changes "
            f"({', '.join(found['twins_flagged']) or 'none'}); {found['twins_below_floor']} significant by "
            f"the test but within the floor {found['floor']:.1%}",
        )
        self.verdict(
            f"power within one run: crunch +{sv.POWER_FACTOR - 1:.0%} work detected",
            round(100 * found["power"], 1),
            "%",
            "power",
            f"{found['detected']} of {found['affected']} crunch_plus cells called regressions against crunch "
            f"(missed: {', '.join(found['missed']) or 'none'}); floor {found['floor']:.1%}",
        )

    def one_cell_run(
        self,
        sv: Any,
        work: Path,
        interp: str,
        cell: Mapping[str, Any],
        name: str,
        pyperf: Mapping[str, Any],
        precision: Mapping[str, Any] | None = None,
    ) -> tuple[Any, Path]:
        """``gilmatrix run`` of one cell with these pyperf settings (and precision target, if
        given), from a matrix written for it in ``work``; the run is kept under ``name``."""
        profile: dict[str, Any] = {
            "pyperf": dict(pyperf),
            "timeout": 600,
            "workloads": [cell["workload"]],
            "executors": [cell["executor"]],
            "workers": [cell["workers"]],
        }
        if precision is not None:
            profile["precision"] = dict(precision)
        matrix = sv.matrix_with(sm.ROOT / "matrix.yaml", work / f"matrix-{name}.yaml", profile=profile)
        measured, run_dir = sv.run_cli(
            self.out, f"selfbench-{self.stamp}-{name}", matrix, "selfbench", interp, [cell["workload"]], log
        )
        self.record(name, measured, run_dir)
        return measured, run_dir

    def pyperf_comparison(self, sv: Any, interp: str, work: Path) -> None:
        """Each of a few cells by plain pyperf (its defaults), then by gilmatrix asked for the
        precision pyperf reached *on that cell* (its default settings otherwise), cell after
        cell, so that both sides of each ratio are measured the same minutes: the sum of
        gilmatrix's whole CLI runs over the sum of pyperf's, and every precision.

        (Until session 6 gilmatrix had one run for all cells with pyperf's *median* precision
        as its target: it had to beat pyperf on the cells pyperf measured less precisely than
        its median, and could fall short on the others; per cell, each side reaches the same.)"""
        base = sm.ROOT / "matrix.yaml"
        cells = sv.planned_cells(base, "default", interp, sv.PYPERF_CELLS)
        python = sv.local_python(self.out, interp)
        log(
            f"  plain pyperf (defaults: 20 processes x 3 values, 1 warm-up, min time 0.1 s) and "
            f"gilmatrix, cell after cell, {len(cells)} cells (load {os.getloadavg()[0]:.2f})"
        )
        from gilmatrix.matrix.model import load_matrix

        default = load_matrix(base).profile("default").pyperf
        ref: dict[str, Any] = {"cells": {}, "seconds": 0.0}
        ours: dict[str, Any] = {}
        ours_seconds = 0.0
        for cell in cells:
            one = sv.pyperf_reference(python, [cell], work / "pyperf", log)
            ref["cells"].update(one["cells"])
            ref["seconds"] = round(ref["seconds"] + one["seconds"], 2)
            target = one["cells"][cell["id"]]["precision"]
            name = f"vs-pyperf-{cell['id'].replace('/', '-')}"
            measured, run_dir = self.one_cell_run(
                sv,
                work,
                interp,
                cell,
                name,
                {"values": default.values, "warmups": default.warmups, "min_time": default.min_time},
                # room for twice pyperf's processes
                {"target": round(target, 4), "min_processes": 4, "max_processes": 40},
            )
            if measured.returncode != 0:
                self.verdict(
                    "time to pyperf's precision / pyperf's time",
                    None,
                    "x",
                    "pyperf_time",
                    _why_not(self.runs[name]),
                )
                return
            manifest = json.loads((run_dir / "manifest.json").read_text())
            (mine,) = [c for c in manifest["cells"] if c["status"] == "ok" and c["id"] == cell["id"]]
            ours[cell["id"]] = {**mine, "wall": round(measured.wall, 2)}
            ours_seconds += measured.wall
            log(
                f"  gilmatrix {cell['id']}: {measured.wall:.1f} s, {mine['processes']} processes, "
                f"±{mine['precision']:.2%} (target ±{target:.2%})"
            )
        self.details["vs_pyperf"] = {
            "pyperf": ref,
            "gilmatrix_seconds": round(ours_seconds, 2),
            "gilmatrix_cells": ours,
        }
        per_cell = ", ".join(
            f"{i} {ours[i]['wall']:.1f}/{ref['cells'][i]['seconds']:.1f} s "
            f"(±{ours[i]['precision']:.2%} vs ±{ref['cells'][i]['precision']:.2%})"
            for i in ours
        )
        self.verdict(
            "time to pyperf's precision / pyperf's time",
            round(ours_seconds / ref["seconds"], 3),
            "x",
            "pyperf_time",
            f"gilmatrix {ours_seconds:.1f} s (whole CLI runs) vs pyperf {ref['seconds']:.1f} s, each cell "
            f"to pyperf's precision on it: {per_cell}; processes "
            f"{', '.join(str(c['processes']) for c in ours.values())}",
        )

    def settings(self) -> None:
        """The default profile's per-process pyperf settings against pyperf's own: the cost of
        a given precision (scatter² of a process mean × seconds per process) on each side, from
        runs of a fixed number of processes, the two sides alternating cell by cell."""
        from devtools.selfbench import verdicts as sv
        from gilmatrix.matrix.model import load_matrix

        if "local" not in self.backends:
            return
        interp = (self.args.interpreters or [VERDICT_INTERPRETER])[0]
        work = self.out / "selfbench" / f"settings-{self.stamp}"
        work.mkdir(parents=True, exist_ok=True)
        base = sm.ROOT / "matrix.yaml"
        default = load_matrix(base).profile("default").pyperf
        sides = {
            "default": {"values": default.values, "min_time": default.min_time},
            "pyperf": {"values": 3, "min_time": 0.1},  # pyperf's defaults
        }
        log(
            f"  {sv.SETTINGS_PROCESSES} processes a run, {sv.SETTINGS_REPEATS} runs a cell and side: "
            + "; ".join(f"{k} {v['values']} values, min time {v['min_time']} s" for k, v in sides.items())
            + f" (load {os.getloadavg()[0]:.2f})"
        )
        figure = "pyperf's cost of precision / the default profile's"
        cells = sv.planned_cells(base, "default", interp, sv.PYPERF_CELLS)
        runs: list[dict[str, Any]] = []
        for repeat in range(sv.SETTINGS_REPEATS):
            for index, cell in enumerate(cells):
                order = list(sides) if (repeat + index) % 2 == 0 else list(reversed(sides))
                for side in order:
                    name = f"settings-{repeat}-{cell['id'].replace('/', '-')}-{side}"
                    pyperf = {"processes": sv.SETTINGS_PROCESSES, "warmups": default.warmups, **sides[side]}
                    measured, run_dir = self.one_cell_run(sv, work, interp, cell, name, pyperf)
                    if measured.returncode != 0:
                        self.rows.append(row("settings", figure, None, "x", note=_why_not(self.runs[name])))
                        return
                    manifest = json.loads((run_dir / "manifest.json").read_text())
                    rounds = [r["seconds"] for r in manifest["schedule"]["rounds"]]
                    means = sv.process_means(run_dir)
                    runs.append(
                        {
                            "cell": cell["id"],
                            "side": side,
                            "means": means,
                            "per_process": sum(rounds) / max(len(means), 1),
                            "load": os.getloadavg()[0],
                        }
                    )
        cost = sv.settings_cost(runs)
        self.details["settings"] = {"sides": sides, "runs": runs, **cost}
        loads = [r["load"] for r in runs]
        per_cell = ", ".join(
            f"{cell} {c['ratio']:.2f} (sd ±{c['default']['sd']:.2%} at {c['default']['per_process']:.2f} s "
            f"vs ±{c['pyperf']['sd']:.2%} at {c['pyperf']['per_process']:.2f} s)"
            for cell, c in cost["cells"].items()
        )
        self.rows.append(
            row(
                "settings",
                figure,
                None if cost["geomean"] is None else round(cost["geomean"], 2),
                "x",
                note=f"geometric mean over cells: {per_cell}; load {min(loads):.2f}-{max(loads):.2f}",
            )
        )

    def full_matrix(self) -> None:
        measured, run_dir = sm.gilmatrix_run(
            out=self.out,
            run_id=f"selfbench-{self.stamp}-full-default-docker",
            profile="default",
            backend="docker",
            sources=self.args.sources,
            log=log,
        )
        name = "full-default-docker"
        self.record(name, measured, run_dir)
        note = f"exit {measured.returncode}"
        if (run_dir / "manifest.json").is_file():
            manifest = json.loads((run_dir / "manifest.json").read_text())
            counts: dict[str, int] = {}
            for cell in manifest["cells"]:
                counts[cell["status"]] = counts.get(cell["status"], 0) + 1
            stopped: dict[str, int] = {}
            for cell in manifest["cells"]:
                if cell.get("stopped"):
                    stopped[cell["stopped"]] = stopped.get(cell["stopped"], 0) + 1
            note += (
                f"; {len(manifest['interpreters'])} interpreters, "
                + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                + "; stopped by "
                + ", ".join(f"{s} {n}" for s, n in sorted(stopped.items()))
                + f"; noise {manifest['schedule']['noise']}"
            )
        self.verdict(
            "default matrix, every interpreter, docker",
            round(measured.wall / 60, 1),
            "min",
            "matrix_minutes",
            note,
        )

    def history(self) -> None:
        """Change points found in histories with this machine's run-to-run noise; the site's scale."""
        from devtools.selfbench import history as sh

        aa = sorted(str(e["run_dir"]) for name, e in self.runs.items() if "-aa-" in name)
        if not aa:
            kept = sorted((self.out / "selfbench" / "runs").glob("selfbench-*-aa-*"))
            stamps = sorted({p.name.split("-aa-")[0] for p in kept})
            aa = [str(p) for p in kept if stamps and p.name.startswith(stamps[-1] + "-aa-")]
        if len(aa) >= 3:
            model = sh.noise_model([Path(p) for p in aa])
            found = sh.detection(model)
            self.details["history detection"] = {"runs": aa, "model": model["median_sd"], "rows": found}
            for r in found:
                label = f"run sd {100 * r['run_sd']:.1f}%, {r['noise']}, {r['runs_before']} runs before"
                self.rows.append(
                    row("history", f"5% step found within two runs ({label})",
                        100 * r["found_at_its_run"], "%", "step_found",
                        f"within one run of it {100 * r['found_within_one']:.0f}%; {r['trials']} trials")
                )  # fmt: skip
                flat = 100 * r["flat_flagged"]
                self.rows.append(row("history", f"flat series flagged ({label})", flat, "%", "flat_flagged"))
        else:
            self.rows.append(row("history", "5% step found within two runs", None, "%", "step_found",
                                 "no A/A runs: run the verdicts section first"))  # fmt: skip
        if self.args.history_run is None:
            return
        for runs in (52, 136):  # a year of weekly full default matrices (~38,000 cells), ~100,000
            made, timed, browser = sh.scale_figures(self.args.history_run, runs)
            self.details[f"site {runs} runs"] = {**made, **timed, **browser}
            label = f"site of {made['measured']:,} measured cells"
            slowest = max(browser["filter_ms"])
            self.rows += [
                row("history", f"{label} ({made['runs']} runs)", timed["build_s"], "s", "site_seconds",
                    f"peak RSS {timed['peak_rss_mb']:.0f} MB; --no-reports; built again (a weekly build): "
                    f"{timed['again_s']:.1f} s, {timed['again_peak_rss_mb']:.0f} MB"),
                row("history", f"{label}: pages", timed["site_mb"], "MB", "site_mb"),
                row("history", f"{label}: slowest filter in Chromium", slowest, "ms", "site_filter_ms",
                    f"drawn in {browser['draw_s']:.1f} s"),
            ]  # fmt: skip

    def report(self) -> None:
        for cells in self.args.report_sizes:
            with tempfile.TemporaryDirectory(prefix="gilmatrix-selfbench-report-") as tmp:
                measured = sm.run_measured(["report", str(cells), tmp], log=log)
            try:
                figures = json.loads(measured.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                self.rows.append(
                    row(
                        "report",
                        f"{cells:,} cells build",
                        None,
                        "s",
                        "report_seconds_10000" if cells == 10_000 else None,
                        f"failed: {measured.tail()}",
                    )
                )
                continue
            figures["self_rss"] = measured.self_rss
            self.details[f"report {cells}"] = figures
            big = figures["cells"] >= 10_000
            self.rows.append(
                row(
                    "report",
                    f"{figures['cells']:,} cells build",
                    figures["build_seconds"],
                    "s",
                    "report_seconds_10000" if big else None,
                    "page only, as devtools.report_bench (chart SVG/PNG files not counted)",
                )
            )
            self.rows.append(
                row(
                    "report",
                    f"{figures['cells']:,} cells index.html",
                    round(figures["html_bytes"] / 1e6, 2),
                    "MB",
                    "report_mb_10000" if big else None,
                )
            )
            self.rows.append(
                row(
                    "memory",
                    f"report of {figures['cells']:,} cells, peak RSS",
                    sm.mb(measured.self_rss),
                    "MB",
                    note="the report-building process",
                )
            )

    def memory(self) -> None:
        backend = "local" if "local" in self.backends else "docker"
        entry = self.runs.get(f"smoke-{backend}-2") or self.run("smoke", backend)
        if entry:
            m = entry["measured"]
            self.rows.append(
                row(
                    "memory",
                    f"{entry['name']} run, host process peak RSS",
                    sm.mb(m.self_rss),
                    "MB",
                    note="gilmatrix run itself (ru_maxrss); its children: JSON details",
                )
            )
            if entry["manifest"]:
                with tempfile.TemporaryDirectory(prefix="gilmatrix-selfbench-") as tmp:
                    rep = sm.gilmatrix_report(entry["run_dir"], Path(tmp), log=log)
                self.rows.append(
                    row(
                        "memory",
                        f"report of {entry['name']}, peak RSS",
                        sm.mb(rep.self_rss),
                        "MB",
                        note=f"gilmatrix report: {rep.wall:.1f} s wall incl. start-up",
                    )
                )

    # -- all -----------------------------------------------------------------------------------

    def execute(self) -> int:
        started = time.perf_counter()
        for section in SECTIONS:  # a fixed order: images first, so that docker runs are warm
            if section in self.sections:
                log(f"== {section}")
                getattr(self, section)()
        self.details["runs"] = {
            name: {**sm.describe(e["measured"]), "run_dir": str(e["run_dir"])}
            for name, e in self.runs.items()
        }
        self.keep_runs()
        previous = None
        if self.args.compare:
            previous = sf.rows_from_json(json.loads(self.args.compare.read_text()))
        table = sf.format_table(self.rows, previous)
        print(table)
        print(sf.summary(self.rows))
        target = self.args.json or self.out / "selfbench" / f"selfbench-{self.stamp}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        context = {
            "date": self.stamp,
            "command": " ".join(["python -m devtools.selfbench", *sys.argv[1:]]),
            "quick": self.args.quick,
            "backends": self.backends,
            "sections": sorted(self.sections),
            "seconds": round(time.perf_counter() - started, 1),
            "host": _host(),
        }
        target.write_text(
            json.dumps(sf.to_json(self.rows, context=context, details=self.details), indent=1, default=str)
            + "\n"
        )
        print(f"json: {target}")
        return 0

    def keep_runs(self) -> None:
        """Move this benchmark's run folders out of OUT/results (where `gilmatrix report` looks
        for the newest run) into OUT/selfbench/runs/."""
        dest = self.out / "selfbench" / "runs"
        for entry in self.runs.values():
            if entry["run_dir"].is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                moved = dest / entry["run_dir"].name
                shutil.move(str(entry["run_dir"]), moved)
                entry["run_dir"] = moved
                self.details["runs"][entry["name"]]["run_dir"] = str(moved)


def _why_not(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "not run: backend not selected, or no docker image up to date"
    m = entry["measured"]
    return f"no finished cells (exit {m.returncode}): {m.tail(2)}"


def _host() -> dict[str, Any]:
    from gilmatrix.run.store import host_facts, load_average

    return {**host_facts(), "load_average": load_average()}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    unknown = set(args.backends) - {"local", "docker"}
    if unknown:
        build_parser().error(f"--backends: unknown {', '.join(sorted(unknown))} (local, docker)")
    return SelfBench(args).execute()


if __name__ == "__main__":
    sys.exit(main())
