"""Merge runs made on several machines (one CI job per interpreter, say) into one run folder.

Each input is a run folder as ``gilmatrix run`` writes it (``manifest.json``, ``<interp>.json``,
``cells/<interp>/``, ``jobs/<interp>.json``). The output is one run folder of the same format,
so ``gilmatrix report`` and ``pyperf compare_to`` work on it unchanged. What the merge adds:

- ``interpreters[id]["host"]``: the facts of the machine that ran it, and ``["machine"]``, its
  name; ``manifest["hosts"]``: every machine with its facts and interpreters. ``manifest["host"]``
  stays the facts of the one machine when there is one; with several it is one line per machine
  (name -> summary), which is what the report's host table shows.
- interpreters expected (``--expect``) but absent from every input: ``status: "missing"`` with
  the reason, and — given the matrix — their planned cells ``missing`` too.
- ``manifest["merge"]``: the inputs, what was expected and what is missing.

An interpreter in two inputs is taken once if both copies are identical; if only one copy ran
(the others were skipped, e.g. not found on that machine) that copy is taken; two different
copies with results are an error: the merge cannot know which one to keep.
"""

from __future__ import annotations

import filecmp
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gilmatrix.errors import UserError
from gilmatrix.github import RUNNER_FACTS
from gilmatrix.harness.contract import Status
from gilmatrix.matrix.model import Matrix, interpreter_key
from gilmatrix.matrix.plan import plan_cells
from gilmatrix.run.manifest import MANIFEST, RUNNER_FACTS_SHAPE, file_problem, folder_problem, new_manifest
from gilmatrix.run.store import RunDir, now, read_facts, result_problem

MISSING_REASON = (
    "no results from any machine: no input holds this interpreter (its job "
    "failed before uploading, was cancelled, or its artifact is absent)"
)
_IDENTITY = ("hostname", "machine", "platform", "cpu_model", "cpu_count", "kernel")


@dataclass(slots=True)
class Source:
    """One input run folder and what it holds."""

    path: Path
    manifest: dict[str, Any]
    machine: str = ""  # name given to its host in the merged run
    runner: dict[str, Any] | None = None  # github-runner.json, when a CI job wrote one

    @property
    def host(self) -> dict[str, Any]:
        facts = dict(self.manifest.get("host") or {})
        if self.runner:
            facts["github_runner"] = self.runner
        return facts


@dataclass(slots=True)
class Pick:
    """The copy of one interpreter that goes into the merged run."""

    interpreter: str
    source: Source
    entry: dict[str, Any]
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
            warnings.extend(_interpreter_files(path, ident)[1])
        manifest["warnings"] = warnings
        sources.append(Source(path, manifest, runner=runner_facts))
    return sources


def name_machines(sources: Sequence[Source]) -> dict[str, dict[str, Any]]:
    """Give each distinct machine a name (its hostname; ``host#2`` when two differ in facts but
    share a hostname); returns {name: facts}. Runs from one machine share its name."""
    machines: dict[str, dict[str, Any]] = {}
    identities: dict[tuple[Any, ...], str] = {}
    for source in sources:
        facts = source.host
        runner_name = (source.runner or {}).get("name")
        identity = (*(facts.get(k) for k in _IDENTITY), runner_name)
        if identity not in identities:
            base = str(facts.get("hostname") or runner_name or "unknown-host")
            name, n = base, 1
            while name in machines:
                n += 1
                name = f"{base}#{n}"
            identities[identity] = name
            machines[name] = facts
        source.machine = identities[identity]
    return machines


def _same_copy(a: Pick, b: Pick) -> bool:
    if a.entry != b.entry:
        return False
    cells_a = [c for c in a.source.manifest.get("cells", []) if c["interpreter"] == a.interpreter]
    cells_b = [c for c in b.source.manifest.get("cells", []) if c["interpreter"] == b.interpreter]
    if cells_a != cells_b:
        return False
    results = a.entry.get("results")
    return not results or filecmp.cmp(a.source.path / results, b.source.path / results, shallow=False)


def pick_interpreters(sources: Sequence[Source]) -> dict[str, Pick]:
    candidates: dict[str, list[Pick]] = {}
    for source in sources:
        for ident, entry in (source.manifest.get("interpreters") or {}).items():
            candidates.setdefault(ident, []).append(Pick(ident, source, dict(entry)))
    picks: dict[str, Pick] = {}
    for ident, copies in candidates.items():
        distinct: list[Pick] = []
        for copy in copies:
            if not any(_same_copy(copy, kept) for kept in distinct):
                distinct.append(copy)
        ran = [c for c in distinct if c.entry.get("status") != Status.SKIPPED]
        if len(distinct) == 1:
            picks[ident] = distinct[0]
        elif len(ran) == 1:
            picks[ident] = ran[0]
            picks[ident].notes = [
                f"{ident}: skipped in {c.source.path} ({c.entry.get('reason')}); "
                f"taken from {ran[0].source.path}"
                for c in distinct
                if c is not ran[0]
            ]
        elif not ran:
            picks[ident] = distinct[0]
        else:
            where = ", ".join(str(c.source.path) for c in ran)
            raise UserError(
                f"interpreter {ident} has different results in several inputs "
                f"({where}): merge one of them, or re-run it once"
            )
    return picks


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


def _machine_line(facts: Mapping[str, Any], interpreters: Sequence[str]) -> str:
    runner_info = facts.get("github_runner") or {}
    parts = [
        str(facts.get("machine") or "?"),
        str(facts.get("cpu_model") or "unknown CPU"),
        f"{facts.get('usable_cpus') or facts.get('cpu_count') or '?'} usable CPUs",
        f"kernel {facts.get('kernel') or '?'}",
    ]
    if runner_info.get("environment"):
        parts.append(f"{runner_info['environment']} runner {runner_info.get('name') or ''}".strip())
    return f"{', '.join(parts)} — ran {', '.join(interpreters) or 'nothing'}"


def merge_runs(
    inputs: Sequence[Path],
    out: Path,
    *,
    run_id: str | None = None,
    expect: Sequence[str] = (),
    matrix: Matrix | None = None,
    profile: str | None = None,
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
    machines = name_machines(sources)
    picks = pick_interpreters(sources)
    missing = [i for i in dict.fromkeys(expect) if i not in picks]
    if matrix is not None:
        known = {i.id for i in matrix.interpreters}
        unknown = [i for i in missing if i not in known]
        if unknown:
            raise UserError(
                f"--expect {unknown[0]}: not an interpreter of {matrix.path} ({', '.join(sorted(known))})"
            )

    run_ids = {s.manifest.get("run_id") for s in sources}
    only_id = run_ids.pop() if len(run_ids) == 1 else None
    run_id = run_id or (str(only_id) if only_id else f"merged-{now()[:19]}".replace(":", ""))
    target = RunDir.create(out, run_id)

    order = sorted({*picks, *missing}, key=interpreter_key)
    by_machine: dict[str, list[str]] = {m: [] for m in machines}
    interpreters: dict[str, Any] = {}
    cells: list[dict[str, Any]] = []
    notes: list[str] = []
    workload_filters = _workload_filters(sources, matrix)
    for ident in order:
        pick = picks.get(ident)
        if pick is None:
            interpreters[ident] = {
                "status": Status.MISSING,
                "reason": MISSING_REASON,
                "results": None,
                "environment": None,
                "host": None,
                "machine": None,
            }
            cells.extend(_missing_cells(matrix, profile, ident, workload_filters))
            continue
        _copy_interpreter(pick, target.path)
        damaged = _damaged_results(pick)
        if damaged:
            log(f"warning: {damaged}")
            warnings.append(damaged)
        interpreters[ident] = {
            **pick.entry,
            "host": machines[pick.source.machine],
            "machine": pick.source.machine,
        }
        if pick.entry.get("status") != Status.SKIPPED:
            by_machine[pick.source.machine].append(ident)
        cells.extend(c for c in pick.source.manifest.get("cells", []) if c["interpreter"] == ident)
        notes.extend(pick.notes)

    used = {m: ids for m, ids in by_machine.items() if ids}
    if len(used) > 1:
        warnings.append(
            f"these interpreters ran on {len(used)} different machines ("
            + "; ".join(f"{m}: {', '.join(ids)}" for m, ids in used.items())
            + "): differences between interpreters of different machines mix "
            "hardware with interpreter"
        )
    hosted = [
        ident
        for m, ids in used.items()
        for ident in ids
        if (machines[m].get("github_runner") or {}).get("environment") == "github-hosted"
    ]
    if hosted:
        warnings.append(
            f"{', '.join(hosted)} ran on shared GitHub-hosted runners, whose "
            "neighbours make timings noisy: prefer self-hosted runners for figures"
        )
    for source in sources:
        for warning in source.manifest.get("warnings") or []:
            text = f"{source.machine}: {warning}" if len(machines) > 1 else str(warning)
            if text not in warnings:
                warnings.append(text)

    statuses = {c["status"] for c in cells}
    states = {s.manifest.get("state") for s in sources}
    state = (
        "complete"
        if (statuses <= {Status.OK, Status.SKIPPED} and not missing and states <= {"complete"})
        else "partial"
    )
    first = sources[0].manifest if sources else {}
    workloads: dict[str, Any] = {}
    for source in sources:
        workloads.update(source.manifest.get("workloads") or {})
    manifest = new_manifest(
        run_id=run_id,
        started=min((s.manifest.get("started") or "" for s in sources), default=None) or None,
        finished=_latest(s.manifest.get("finished") for s in sources),
        state=state,
        matrix=_matrix_entry(first, matrix, profile, workload_filters),
        workloads=workloads,
        backend=_backend(sources),
        host=_host_display(machines, used),
        hosts={m: {**facts, "interpreters": by_machine[m]} for m, facts in machines.items()},
        warnings=warnings,
        stages=_stages(sources),
        interpreters=interpreters,
        cells=cells,
        merge={
            "merged": now(),
            "sources": [
                {
                    "path": str(s.path),
                    "run_id": s.manifest.get("run_id"),
                    "machine": s.machine,
                    "interpreters": list(s.manifest.get("interpreters") or {}),
                }
                for s in sources
            ],
            "expected": list(dict.fromkeys(expect)),
            Status.MISSING: missing,
            "notes": notes,
        },
    )
    target.write_manifest(manifest)
    log(
        f"merged {len(sources)} runs from {len(used)} machines into {target.path}: "
        f"{len(picks)} interpreters" + (f", missing: {', '.join(missing)}" if missing else "")
    )
    for note in notes:
        log(f"note: {note}")
    return target


def _damaged_results(pick: Pick) -> str | None:
    """A warning when the picked interpreter's suite cannot be read: it is merged as it is (the
    other interpreters go on; the report lists its cells as problems), never dropped."""
    results = pick.entry.get("results")
    if not results:
        return None
    path = pick.source.path / results
    problem = result_problem(path)
    if problem is None:
        return None
    return (
        f"{path}: {problem}: {pick.interpreter}'s results are merged as they are and its cells "
        f"reported as problems; if {pick.source.path / 'cells' / pick.interpreter} is intact, "
        f"`gilmatrix run --resume {pick.source.path}` rebuilds the file"
    )


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


def _copy_interpreter(pick: Pick, target: Path) -> None:
    """Copy the results file and the files of ``_interpreter_files`` (load_sources checked
    them, and warned of those left out): their content, never a link."""
    src, ident = pick.source.path, pick.interpreter
    results = pick.entry.get("results")
    if results:
        problem = file_problem(src / results, src)  # None: load_sources left out any other
        if problem is not None:
            raise UserError(f"{src / results}: {problem}")
        shutil.copy2(src / results, target / results)
    for rel in _interpreter_files(src, ident)[0]:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, target / rel)


def _workload_filters(sources: Sequence[Source], matrix: Matrix | None) -> list[str]:
    """The workload ids the inputs were filtered to (``--only crunch``); interpreter ids of
    ``--only`` are what split the work between machines, so they are not kept."""
    interp_ids = {i.id for i in matrix.interpreters} if matrix else set()
    for source in sources:
        interp_ids.update(source.manifest.get("interpreters") or {})
    filters: list[str] = []
    for source in sources:
        for value in source.manifest["matrix"].get("only") or []:
            if value not in interp_ids and value not in filters:
                filters.append(value)
    return filters


def _missing_cells(
    matrix: Matrix | None, profile: str, ident: str, workload_filters: Sequence[str]
) -> list[dict[str, Any]]:
    if matrix is None:
        return []
    plan = plan_cells(matrix, profile or None, [ident, *workload_filters])
    out = []
    for cell in plan.cells:
        status, reason = (
            (Status.SKIPPED, cell.reason)
            if cell.status == Status.SKIPPED
            else (Status.MISSING, MISSING_REASON)
        )
        out.append(
            {
                "interpreter": ident,
                "id": cell.id,
                "workload": cell.workload,
                "executor": cell.executor,
                "workers": cell.workers,
                "status": status,
                "reason": reason,
                "elapsed": None,
                "output_tail": None,
            }
        )
    return out


def _latest(values: Iterable[str | None]) -> str | None:
    values = list(values)
    if not values or any(v is None for v in values):
        return None
    return max(v for v in values if v is not None)


def _matrix_entry(
    first: Mapping[str, Any], matrix: Matrix | None, profile: str, workload_filters: list[str]
) -> dict[str, Any]:
    if first:
        return {**first["matrix"], "only": workload_filters}
    assert matrix is not None
    return {
        "path": str(matrix.path),
        "sha256": matrix.sha256,
        "profile": profile,
        "only": workload_filters,
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
    machines: Mapping[str, Mapping[str, Any]], used: Mapping[str, Sequence[str]]
) -> dict[str, Any]:
    if len(machines) == 1:
        return dict(next(iter(machines.values())))
    return {
        "machines": len(machines),
        **{name: _machine_line(facts, used.get(name, ())) for name, facts in machines.items()},
    }


def _stages(sources: Sequence[Source]) -> dict[str, float]:
    """Stage timings summed over the inputs: machine time, not wall time (jobs ran in parallel)."""
    total: dict[str, float] = {}
    for source in sources:
        for key, value in (source.manifest.get("stages") or {}).items():
            if isinstance(value, int | float):
                total[key] = round(total.get(key, 0.0) + value, 3)
    return total
