"""Merge runs made on several machines (CI's shards and their replicates) into one run folder.

Each input is a run folder as ``gilmatrix run`` writes it (``manifest.json``, ``<interp>.json``,
``cells/<interp>/``, ``jobs/<interp>.json``); a CI bench job's manifest says which shard and
which replicate it is (``ci``). The output is one run folder of the same format, so
``gilmatrix report`` and ``pyperf compare_to`` work on it unchanged:

- **Shards are joined**: inputs of one replicate hold disjoint cells (a shard is a set of
  workloads, on every interpreter), so each interpreter's suite is the union of its cells
  from every shard, and every cell keeps the machine that ran it (``cells[i]["machine"]``).
- **Replicates are kept apart**: the same cells run on another runner are a replicate, never a
  silent overwrite. Replicate 1 (the lowest present) is the merged run itself; each other one
  is a complete run folder of the same format in ``replicates/<n>/``, listed in
  ``manifest["replicates"]``. The report compares within each and says whether each verdict
  holds on all.
- Two copies of one cell in one replicate: identical copies are taken once, a copy that ran
  wins over one that was skipped (the interpreter was not found there), and two different
  results are an error: the merge cannot know which one to keep.
- Machines: each distinct machine gets a name (its runner's name in CI, else its hostname;
  ``name#2`` when two differ but share one); ``manifest["hosts"]`` lists them with their facts.
  A workload whose cells ran on more than one machine is named in a warning: the report does
  not present comparisons between cells of different machines as verdicts.
- Given ``--matrix``, every cell of the plan (its interpreters, or ``--expect``; the profile's
  workloads, or ``--only``) that no input holds is recorded ``missing``, with the reason.
"""

from __future__ import annotations

import filecmp
import math
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyperf

from gilmatrix.errors import UserError
from gilmatrix.github import RUNNER_FACTS
from gilmatrix.harness.contract import Status, cell_slug, interpreter_key
from gilmatrix.matrix.model import Matrix
from gilmatrix.matrix.plan import plan_cells
from gilmatrix.run.manifest import (
    MANIFEST,
    PARTIAL,
    RUNNER_FACTS_SHAPE,
    FileProblem,
    file_problem,
    folder_problem,
    new_manifest,
    read_json,
    run_state,
)
from gilmatrix.run.store import RunDir, load_suite, now, read_facts, suite_problem

MISSING_REASON = (
    "no results from any machine: no input holds this cell (the job that ran it failed before "
    "uploading, was cancelled, or its artifact is absent)"
)
REPLICATES = "replicates"
_IDENTITY = ("hostname", "machine", "platform", "cpu_model", "cpu_count", "kernel")
_NOT_RUN = (Status.SKIPPED, Status.MISSING)


@dataclass(slots=True, eq=False)  # one per input folder: compared and hashed by identity
class Source:
    """One input run folder and what it holds."""

    path: Path
    manifest: dict[str, Any]
    machine: str = ""  # name given to its host in the merged run
    runner: dict[str, Any] | None = None  # github-runner.json, when a CI job wrote one
    files: frozenset[Path] = frozenset()  # its interpreters' files merge may copy (checked)

    @property
    def host(self) -> dict[str, Any]:
        facts = dict(self.manifest.get("host") or {}) if isinstance(self.manifest.get("host"), dict) else {}
        if self.runner:
            facts["github_runner"] = self.runner
        return facts

    @property
    def ci(self) -> Mapping[str, Any]:
        ci = self.manifest.get("ci")
        return ci if isinstance(ci, Mapping) else {}

    @property
    def replicate(self) -> int:
        value = self.ci.get("replicate")
        return value if isinstance(value, int) and value >= 1 else 1

    @property
    def shard(self) -> str | None:
        value = self.ci.get("shard")
        return str(value) if value is not None else None

    def cells_of(self, interpreter: str) -> list[dict[str, Any]]:
        return [c for c in self.manifest.get("cells", []) if c["interpreter"] == interpreter]


@dataclass(slots=True)
class Pick:
    """The copy of one cell that goes into a merged run."""

    source: Source
    cell: dict[str, Any]


@dataclass(slots=True)
class Replicate:
    """The inputs of one replicate and the cells taken from them."""

    number: int
    sources: list[Source]
    picks: dict[tuple[str, str], Pick] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def expand_inputs(paths: Iterable[Path]) -> list[Path]:
    """Run folders named directly, or the run folders one level below a named folder (a folder
    of downloaded artifacts); a named path that is neither is an error. A folder holding any
    ``manifest.json`` (a FIFO, a link, a directory) counts as a run folder, so that reading it
    names what is wrong with it; a run folder below a named folder that is a link is refused
    (artifacts hold folders, and a link could name any folder of the machine)."""
    found: list[Path] = []
    for path in paths:
        if os.path.lexists(path / MANIFEST):
            found.append(path)
        elif path.is_dir():
            runs = sorted(p.parent for p in path.glob(f"*/{MANIFEST}"))
            for run in runs:
                if run.is_symlink():
                    raise UserError(
                        f"{run}: a link to {run.resolve()}, not a run folder of {path}: "
                        "name the run folder itself"
                    )
            found.extend(runs)
        else:
            raise UserError(f"{path}: no such folder")
    unique: list[Path] = []
    for path in found:
        if path.resolve() not in {p.resolve() for p in unique}:
            unique.append(path)
    return unique


def load_sources(paths: Sequence[Path]) -> list[Source]:
    """The run folders, read as input from elsewhere (CI artifacts): a manifest that cannot be
    read is an error naming it (read_manifest); a file that cannot be merged — a results file,
    a cell file, a job, a log or github-runner.json that leads out of the folder, is not a
    regular file, is too large, or (runner facts) cannot be read — is left out with a warning
    in the source's warnings, which the merged manifest and its report show. An interpreter
    whose results file is left out is merged without one, its finished cells as missing."""
    sources = []
    for path in paths:
        manifest = RunDir.open(path).manifest()
        warnings = list(manifest.get("warnings") or [])
        facts_file = path / RUNNER_FACTS
        runner_facts, problem = read_facts(facts_file, path, RUNNER_FACTS_SHAPE)
        if problem is not None:
            warnings.append(f"{facts_file}: {problem}: its runner facts are left out")
        files: set[Path] = set()
        for ident, entry in manifest["interpreters"].items():
            results = entry.get("results")
            problem = file_problem(path / results, path) if results else None
            if problem is not None:
                warnings.append(f"{path / results}: {problem}: {ident}'s results are not merged")
                entry["results"] = None
                for cell in manifest["cells"]:
                    if cell["interpreter"] == ident and cell["status"] == Status.OK:
                        cell["status"] = Status.MISSING
                        cell["reason"] = f"its results file {results} was not merged: {problem}"
            allowed, left_out = _interpreter_files(path, ident)
            files.update(allowed)
            warnings.extend(left_out)
        manifest["warnings"] = warnings
        sources.append(Source(path, manifest, runner=runner_facts, files=frozenset(files)))
    return sources


def _interpreter_files(src: Path, ident: str) -> tuple[list[Path], list[str]]:
    """The files of interpreter ``ident`` in the run folder ``src`` that merge copies (its cells
    folder, harness log and job), relative to ``src``; and a warning for each one left out: a
    link out of the folder, not a regular file, or larger than MAX_FILE_BYTES."""
    candidates: list[Path] = []
    problems: list[str] = []
    cells = src / "cells" / ident
    if os.path.lexists(cells):
        problem = folder_problem(cells, src)
        if problem is not None:
            problems.append(f"{cells}: {problem}: not merged")
        else:
            for root, folders, names in os.walk(cells):  # links to folders: listed, not entered
                candidates.extend(Path(root) / name for name in sorted(names))
                candidates.extend(Path(root) / name for name in folders if (Path(root) / name).is_symlink())
    candidates.extend(
        p
        for p in (src / "cells" / f"{ident}.harness.log", src / "jobs" / f"{ident}.json")
        if os.path.lexists(p)
    )
    files: list[Path] = []
    for path in candidates:
        problem = file_problem(path, src)
        if problem is None:
            files.append(path.relative_to(src))
        else:
            problems.append(f"{path}: {problem}: not merged")
    return files, problems


def name_machines(sources: Sequence[Source]) -> dict[str, dict[str, Any]]:
    """Give each distinct machine a name (its CI runner's name, else its hostname; ``name#2``
    when two differ in facts but share a name); returns {name: facts}. Runs of one machine
    share its name."""
    machines: dict[str, dict[str, Any]] = {}
    identities: dict[tuple[Any, ...], str] = {}
    for source in sources:
        facts = source.host
        runner_name = (source.runner or {}).get("name")
        identity = (*(str(facts.get(k)) for k in _IDENTITY), str(runner_name))
        if identity not in identities:
            base = str(runner_name or facts.get("hostname") or "unknown-host")
            name, n = base, 1
            while name in machines:
                n += 1
                name = f"{base}#{n}"
            identities[identity] = name
            machines[name] = facts
        source.machine = identities[identity]
    return machines


def _cell_files(source: Source, interpreter: str, cell_id: str) -> list[Path]:
    """A cell's files in ``source`` (``cells/<interp>/<slug>.*``) that load_sources checked."""
    folder = Path("cells") / interpreter
    slug = cell_slug(cell_id)
    return sorted(
        source.path / rel
        for rel in source.files
        if rel.parent == folder and rel.name.split(".", 1)[0] == slug
    )


def _same_cell(a: Pick, b: Pick) -> bool:
    if a.cell != b.cell:
        return False
    interp, cell_id = a.cell["interpreter"], a.cell["id"]
    files_a = _cell_files(a.source, interp, cell_id)
    files_b = _cell_files(b.source, interp, cell_id)
    if [f.name for f in files_a] != [f.name for f in files_b]:
        return False
    return all(
        filecmp.cmp(x, y, shallow=False) for x, y in zip(files_a, files_b, strict=True) if x.suffix == ".json"
    )


def pick_cells(replicate: Replicate) -> None:
    """Fill ``replicate.picks``: one copy of every cell its inputs hold (rules: module doc)."""
    copies: dict[tuple[str, str], list[Pick]] = {}
    for source in replicate.sources:
        for cell in source.manifest.get("cells", []):
            copies.setdefault((cell["interpreter"], cell["id"]), []).append(Pick(source, dict(cell)))
    for key, found in copies.items():
        distinct: list[Pick] = []
        for copy in found:
            if not any(_same_cell(copy, kept) for kept in distinct):
                distinct.append(copy)
        ran = [c for c in distinct if c.cell.get("status") not in _NOT_RUN]
        if len(ran) > 1:
            where = ", ".join(str(c.source.path) for c in ran)
            raise UserError(
                f"cell {key[1]} of interpreter {key[0]} has different results in several inputs "
                f"of replicate {replicate.number} ({where}): give each job its own --replicate, "
                "merge one of them, or re-run it once"
            )
        chosen = (
            ran[0]
            if ran
            else next((c for c in distinct if c.cell.get("status") == Status.SKIPPED), distinct[0])
        )
        replicate.picks[key] = chosen
        for other in distinct:
            if other is not chosen and ran:
                replicate.notes.append(
                    f"{key[0]} {key[1]}: {other.cell.get('status')} in {other.source.path} "
                    f"({other.cell.get('reason')}); taken from {chosen.source.path}"
                )


def _check_compatible(sources: Sequence[Source], matrix: Matrix | None) -> tuple[str, list[str]]:
    """Inputs must come from one matrix file and profile; returns (profile, warnings)."""
    profiles = {s.manifest["matrix"]["profile"] for s in sources}
    if len(profiles) > 1:
        raise UserError(
            f"the inputs ran different profiles ({', '.join(sorted(profiles))}): "
            "their numbers are not comparable; merge runs of one profile"
        )
    digests = {s.manifest["matrix"]["sha256"] for s in sources}
    if len(digests) > 1:
        listing = "; ".join(f"{s.path}: {s.manifest['matrix']['sha256'][:12]}" for s in sources)
        raise UserError(f"the inputs ran different matrix files ({listing}): merge runs of one matrix.yaml")
    warnings = []
    if matrix is not None and digests and matrix.sha256 not in digests:
        warnings.append(
            f"{matrix.path} is not the matrix file the inputs ran (sha256 differs); "
            "the cells of missing interpreters are planned from it"
        )
    return (profiles.pop() if profiles else ""), warnings


def _machine_line(facts: Mapping[str, Any], what: str) -> str:
    runner_info = facts.get("github_runner") or {}
    parts = [
        f"host {facts.get('hostname') or '?'}",
        str(facts.get("machine") or "?"),
        str(facts.get("cpu_model") or "unknown CPU"),
        f"{facts.get('usable_cpus') or facts.get('cpu_count') or '?'} usable CPUs",
        f"kernel {facts.get('kernel') or '?'}",
    ]
    if runner_info.get("environment"):
        parts.append(f"{runner_info['environment']} runner {runner_info.get('name') or ''}".strip())
    return f"{', '.join(parts)} — ran {what or 'nothing'}"


@dataclass(slots=True)
class Expected:
    """What the merged run should hold, from ``--matrix`` (else only what the inputs hold)."""

    matrix: Matrix | None
    profile: str
    interpreters: list[str]  # --expect
    workloads: list[str]  # the plan's workload filter

    def cells(self) -> list[dict[str, Any]]:
        if self.matrix is None:
            return []
        known = {i.id for i in self.matrix.interpreters}
        interps = [i for i in self.interpreters if i in known] or sorted(known, key=interpreter_key)
        out = []
        for ident in interps:
            plan = plan_cells(self.matrix, self.profile or None, [ident, *self.workloads])
            for cell in plan.cells:
                skipped = cell.status == Status.SKIPPED
                out.append(
                    {
                        "interpreter": ident,
                        "id": cell.id,
                        "workload": cell.workload,
                        "executor": cell.executor,
                        "workers": cell.workers,
                        "status": Status.SKIPPED if skipped else Status.MISSING,
                        "reason": cell.reason if skipped else MISSING_REASON,
                        "elapsed": None,
                        "output_tail": None,
                    }
                )
        return out


def merge_runs(
    inputs: Sequence[Path],
    out: Path,
    *,
    run_id: str | None = None,
    expect: Sequence[str] = (),
    matrix: Matrix | None = None,
    profile: str | None = None,
    only: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> RunDir:
    """Merge the run folders ``inputs`` into ``out/results/<run_id>``; returns the new run."""
    sources = load_sources(expand_inputs(inputs))
    if not sources and matrix is None:
        raise UserError(
            "no run folder among the inputs: name run folders (or a folder of them), "
            "or give --matrix to record every expected interpreter as missing"
        )
    source_profile, warnings = _check_compatible(sources, matrix)
    profile = source_profile or profile or (matrix.default_profile if matrix else "")
    if profile and source_profile and source_profile != profile:
        raise UserError(f"--profile {profile} but the inputs ran profile {source_profile}")
    expect = list(dict.fromkeys(expect))
    if matrix is not None:
        known = {i.id for i in matrix.interpreters}
        unknown = [i for i in expect if i not in known]
        if unknown:
            raise UserError(
                f"--expect {unknown[0]}: not an interpreter of {matrix.path} ({', '.join(sorted(known))})"
            )
        workload_ids = {w.id for w in matrix.workloads}
        bad = [o for o in only if o not in workload_ids and o not in known]
        if bad:
            raise UserError(f"--only {bad[0]}: no interpreter or workload of that id in {matrix.path}")
    machines = name_machines(sources)
    numbers = sorted({s.replicate for s in sources}) or [1]
    replicates = [Replicate(n, [s for s in sources if s.replicate == n]) for n in numbers]
    for replicate in replicates:
        pick_cells(replicate)
    filters = [o for o in only if matrix is None or o not in {i.id for i in matrix.interpreters}]
    expected = Expected(matrix, profile, expect, filters or _workload_filters(sources, matrix))

    run_ids = {s.manifest.get("run_id") for s in sources}
    only_id = run_ids.pop() if len(run_ids) == 1 else None
    run_id = run_id or (str(only_id) if only_id else f"merged-{now()[:19]}".replace(":", ""))
    target = RunDir.create(out, run_id)
    entries: dict[str, str] = {}
    states: list[str] = []
    primary: dict[str, Any] = {}
    for index, replicate in enumerate(replicates):
        folder = target if index == 0 else RunDir.create_at(target.path / REPLICATES / str(replicate.number))
        manifest = _write_replicate(
            replicate, folder, machines, expected, warnings if index == 0 else [], log
        )
        if index:
            entries[str(replicate.number)] = f"{REPLICATES}/{replicate.number}"
        states.append(manifest["state"])
        primary = primary or manifest
    primary["state"] = run_state((), *states)
    primary[REPLICATES] = {"count": len(replicates), "runs": entries}
    primary["merge"]["replicates"] = {
        str(r.number): {"sources": [str(s.path) for s in r.sources], "machines": _machines_of(r)}
        for r in replicates
    }
    target.write_manifest(primary)
    missing = primary["merge"][Status.MISSING]
    log(
        f"merged {len(sources)} runs from {len(machines)} "
        f"machine{'s' if len(machines) != 1 else ''} into {target.path}: "
        f"{len(replicates)} replicate{'s' if len(replicates) != 1 else ''}, "
        f"{sum(1 for c in primary['cells'] if c['status'] not in _NOT_RUN)} cells ran"
        + (f", missing interpreters: {', '.join(missing)}" if missing else "")
    )
    for note in primary["merge"]["notes"]:
        log(f"note: {note}")
    return target


def _machines_of(replicate: Replicate) -> list[str]:
    return list(dict.fromkeys(s.machine for s in replicate.sources))


def _write_replicate(
    replicate: Replicate,
    target: RunDir,
    machines: Mapping[str, dict[str, Any]],
    expected: Expected,
    warnings: list[str],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """One replicate's inputs joined into the run folder ``target``; returns its manifest."""
    warnings = list(warnings)
    picks = replicate.picks
    cells: list[dict[str, Any]] = []
    for key in picks:
        pick = picks[key]
        cells.append({**pick.cell, "machine": pick.source.machine, "shard": pick.source.shard})
    # every expected cell that no input holds: missing (or skipped, as the plan says)
    held = set(picks)
    for cell in expected.cells():
        if (cell["interpreter"], cell["id"]) not in held:
            cells.append({**cell, "machine": None, "shard": None})
    order = {i: n for n, i in enumerate(sorted({c["interpreter"] for c in cells}, key=interpreter_key))}
    cells.sort(key=lambda c: order[c["interpreter"]])  # stable: each interpreter's cells keep their order

    interpreters: dict[str, Any] = {}
    missing: list[str] = []
    by_machine: dict[str, list[str]] = {}
    for ident in order:
        mine = [c for c in cells if c["interpreter"] == ident]
        contributors = [s for s in replicate.sources if ident in (s.manifest.get("interpreters") or {})]
        ran = [
            s
            for s in contributors
            if (s.manifest["interpreters"][ident] or {}).get("status") != Status.SKIPPED
        ]
        if not contributors:
            interpreters[ident] = {
                "status": Status.MISSING,
                "reason": "no results from any machine: no input holds this interpreter (its jobs failed "
                "before uploading, were cancelled, or their artifacts are absent)",
                "results": None,
                "environment": None,
                "host": None,
                "machine": None,
            }
            missing.append(ident)
            continue
        entry = dict((ran or contributors)[0].manifest["interpreters"][ident])
        used = list(dict.fromkeys(c["machine"] for c in mine if c["machine"] and c["status"] not in _NOT_RUN))
        for machine in used:
            by_machine.setdefault(machine, []).append(ident)
        results, lost = _join_suites(
            ident, [p for k, p in picks.items() if k[0] == ident], target.path, log, warnings
        )
        for cell in mine:  # their results could not be read: no result, and why
            if cell["id"] in lost:
                cell.update(status=Status.MISSING, reason=lost[cell["id"]])
        _copy_cells(ident, [p for k, p in picks.items() if k[0] == ident], target.path)
        interpreters[ident] = {
            **entry,
            "results": results,
            "host": machines[used[0]] if len(used) == 1 else None,
            "machine": used[0] if len(used) == 1 else None,
            "machines": used,
        }

    split = _split_workloads(cells)
    if split:
        count = len({m for ms in split.values() for m in ms})
        warnings.append(
            f"the cells of these workloads ran on {count} different machines ("
            + "; ".join(f"{w} ran on {', '.join(ms)}" for w, ms in split.items())
            + "): comparisons between cells of different machines mix hardware with interpreter, "
            "and the report does not make verdicts of them (run each workload's interpreters in one "
            "job: `gilmatrix plan --github` shards by workload)"
        )
    hosted = sorted(
        m
        for m in by_machine
        if (machines[m].get("github_runner") or {}).get("environment") == "github-hosted"
    )
    if hosted:
        warnings.append(
            f"{', '.join(hosted)}: shared GitHub-hosted runners, whose neighbours make timings "
            "noisy: prefer self-hosted runners for figures"
        )
    for source in replicate.sources:
        for warning in source.manifest.get("warnings") or []:
            text = f"{source.machine}: {warning}" if len(machines) > 1 else str(warning)
            if text not in warnings:
                warnings.append(text)

    statuses = {c["status"] for c in cells}
    source_states = {s.manifest.get("state") for s in replicate.sources}
    state = run_state(statuses, *source_states, *([PARTIAL] if missing else []))
    first = replicate.sources[0].manifest if replicate.sources else {}
    workloads: dict[str, Any] = {}
    for source in replicate.sources:
        workloads.update(source.manifest.get("workloads") or {})
    hosts = {
        m: {**facts, "interpreters": by_machine.get(m, [])}
        for m, facts in machines.items()
        if m in _machines_of(replicate)
    }
    manifest = new_manifest(
        run_id=target.path.name,
        schedule={"noise": _noise(replicate.sources)},
        started=min((s.manifest.get("started") or "" for s in replicate.sources), default=None) or None,
        finished=_latest(s.manifest.get("finished") for s in replicate.sources),
        state=state,
        matrix=_matrix_entry(first, expected),
        workloads=workloads,
        backend=_backend(replicate.sources),
        host=_host_display(hosts, by_machine),
        hosts=hosts,
        warnings=warnings,
        stages=_stages(replicate.sources),
        interpreters=interpreters,
        cells=cells,
        merge={
            "merged": now(),
            "replicate": replicate.number,
            "sources": [
                {
                    "path": str(s.path),
                    "run_id": s.manifest.get("run_id"),
                    "machine": s.machine,
                    "shard": s.shard,
                    "replicate": s.replicate,
                    "interpreters": list(s.manifest.get("interpreters") or {}),
                }
                for s in replicate.sources
            ],
            "expected": expected.interpreters,
            Status.MISSING: missing,
            "notes": replicate.notes,
        },
    )
    target.write_manifest(manifest)
    return manifest


def _noise(sources: Sequence[Source]) -> dict[str, Any]:
    """The merged run's noise figures: each input's (by its machine and shard), and for the
    report the largest floor and drift of them (the banner's noise; against a baseline, a
    difference smaller than any input's floor is not called a change — inside the run, 1% is:
    confidence.within_run_floor). A sentinel median only where one machine ran it all:
    sentinels of different machines are not comparable."""
    parts: dict[str, Any] = {}
    floors: list[float] = []
    drifts: list[float] = []
    medians: set[tuple[str, Any]] = set()
    for source in sources:
        noise = (source.manifest.get("schedule") or {}).get("noise")
        if not isinstance(noise, Mapping):
            continue
        parts[f"{source.machine} {source.shard or ''}".strip()] = dict(noise)
        for key, into in (("floor", floors), ("drift", drifts)):
            value = noise.get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                into.append(float(value))
        medians.add((source.machine, noise.get("sentinel_median_ms")))
    merged: dict[str, Any] = {"by_input": parts}
    if floors:
        merged["floor"] = max(floors)
    if drifts:
        merged["drift"] = max(drifts)
    if len({m for m, _ in medians}) == 1 and len(medians) == 1:
        merged["sentinel_median_ms"] = next(iter(medians))[1]
    merged["rule"] = "the largest floor and drift of the merged inputs (each input's in by_input)"
    return merged


def _split_workloads(cells: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Workloads whose cells (that ran) come from more than one machine: {workload: machines}."""
    seen: dict[str, list[str]] = {}
    for cell in cells:
        if cell["status"] in _NOT_RUN or not cell.get("machine"):
            continue
        workload = str(cell.get("workload") or str(cell["id"]).split("/")[0])
        machines = seen.setdefault(workload, [])
        if cell["machine"] not in machines:
            machines.append(cell["machine"])
    return {w: ms for w, ms in seen.items() if len(ms) > 1}


def _join_suites(
    ident: str, picks: Sequence[Pick], target: Path, log: Callable[[str], None], warnings: list[str]
) -> tuple[str | None, dict[str, str]]:
    """``<ident>.json`` of the merged run: the benchmarks of the picked cells, from the suites
    of the inputs that ran them, in the cells' order; and the cells whose suite could not be
    read, with the reason (they are merged as missing: the report lists them as problems). A
    suite that cannot be read is also named in a warning."""
    lost: dict[str, str] = {}
    wanted: dict[Source, set[str]] = {}
    for pick in picks:
        if pick.cell.get("status") == Status.OK:
            wanted.setdefault(pick.source, set()).add(pick.cell["id"])
    benchmarks: dict[str, Any] = {}
    for source, ids in wanted.items():
        results = (source.manifest["interpreters"].get(ident) or {}).get("results")
        if not results:
            continue
        path = source.path / results
        try:  # read once, safely (no link out, no FIFO, bounded); pyperf parses that text
            data = read_json(path, source.path)
            problem = suite_problem(data)
            suite = load_suite(data) if problem is None else None
        except FileProblem as exc:
            problem = str(exc)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            problem = f"not a pyperf suite pyperf can load ({type(exc).__name__}: {exc})"
        if problem is not None or suite is None:
            text = (
                f"{path}: {problem}: {ident}'s cells from it ({len(ids)}) are merged without "
                f"results and reported as problems; if {source.path / 'cells' / ident} is intact, "
                f"`gilmatrix run --resume {source.path}` rebuilds the file"
            )
            log(f"warning: {text}")
            warnings.append(text)
            lost.update((cell_id, f"its results file {results} is unreadable: {problem}") for cell_id in ids)
            continue
        for bench in suite.get_benchmarks():
            if bench.get_name() in ids:
                benchmarks[bench.get_name()] = bench
        lost.update(
            (cell_id, f"its result is absent from the results file {results}")
            for cell_id in ids
            if cell_id not in benchmarks
        )
    ordered = [benchmarks[p.cell["id"]] for p in picks if p.cell["id"] in benchmarks]
    if not ordered:
        return None, lost
    name = f"{ident}.json"
    pyperf.BenchmarkSuite(ordered).dump(str(target / name), replace=True)
    return name, lost


def _copy_cells(ident: str, picks: Sequence[Pick], target: Path) -> None:
    folder = target / "cells" / ident
    for pick in picks:
        for path in _cell_files(pick.source, ident, pick.cell["id"]):
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, folder / path.name)  # the content, never a link
    for source in dict.fromkeys(p.source for p in picks):
        for rel in (Path("cells") / f"{ident}.harness.log", Path("jobs") / f"{ident}.json"):
            if rel in source.files:
                out = target / rel
                if out.exists():  # several shards: keep each, named by its input
                    out = out.with_name(f"{out.stem}.{source.path.name}{out.suffix}")
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source.path / rel, out)  # the content, never a link


def _workload_filters(sources: Sequence[Source], matrix: Matrix | None) -> list[str]:
    """The workload ids the inputs were filtered to (``--only crunch``), when no input is a CI
    shard (a shard's filter is its share of the workloads, not the run's); interpreter ids of
    ``--only`` are what split the work between machines, so they are not kept."""
    if any(s.shard is not None for s in sources):
        return []
    interp_ids = {i.id for i in matrix.interpreters} if matrix else set()
    for source in sources:
        interp_ids.update(source.manifest.get("interpreters") or {})
    filters: list[str] = []
    for source in sources:
        for value in source.manifest["matrix"].get("only") or []:
            if value not in interp_ids and value not in filters:
                filters.append(value)
    return filters


def _latest(values: Iterable[str | None]) -> str | None:
    values = list(values)
    if not values or any(v is None for v in values):
        return None
    return max(v for v in values if v is not None)


def _matrix_entry(first: Mapping[str, Any], expected: Expected) -> dict[str, Any]:
    if first:
        return {**first["matrix"], "only": expected.workloads}
    assert expected.matrix is not None
    return {
        "path": str(expected.matrix.path),
        "sha256": expected.matrix.sha256,
        "profile": expected.profile,
        "only": expected.workloads,
        "settings": {},
    }


def _backend(sources: Sequence[Source]) -> dict[str, Any]:
    backends = [s.manifest.get("backend") or {} for s in sources]
    if not backends:
        return {"name": "none"}
    if all(b == backends[0] for b in backends):
        return backends[0]
    names = list(dict.fromkeys(str(b.get("name", "?")) for b in backends))
    return {"name": " + ".join(names), "by_machine": {s.machine: s.manifest.get("backend") for s in sources}}


def _host_display(
    hosts: Mapping[str, Mapping[str, Any]], by_machine: Mapping[str, Sequence[str]]
) -> dict[str, Any]:
    if len(hosts) == 1:
        facts = dict(next(iter(hosts.values())))
        facts.pop("interpreters", None)
        return facts
    return {
        "machines": len(hosts),
        **{name: _machine_line(facts, ", ".join(by_machine.get(name, ()))) for name, facts in hosts.items()},
    }


def _stages(sources: Sequence[Source]) -> dict[str, float]:
    """Stage timings summed over the inputs: machine time, not wall time (jobs ran in parallel)."""
    total: dict[str, float] = {}
    for source in sources:
        for key, value in (source.manifest.get("stages") or {}).items():
            if isinstance(value, int | float):
                total[key] = round(total.get(key, 0.0) + value, 3)
    return total
