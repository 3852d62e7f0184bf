"""Read one run directory (manifest.json + one pyperf suite per interpreter) into plain values.

This is the only module that touches the results format; everything after it works on the tidy
frame (one row per measured value) and the frozen dataclasses below.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyperf

from gilmatrix.harness import contract
from gilmatrix.harness.contract import CellId, Status, meta, model_of
from gilmatrix.run.manifest import read_json, read_manifest
from gilmatrix.run.store import load_suite, suite_problem

# per cell (constant over a cell's values), then per run, then per value
CELL_COLUMNS = (
    "interpreter",
    "workload",
    "kind",
    "executor",
    "workers",
    "cell",
    "tasks",
    "params",
    "free_threaded",
    "gil",
    "gil_reenabled_by",  # a user module's import turned a free-threaded build's GIL back on
    "model",
    "start_method",
    "async_mode",
    "pool_in_timing",
    "machine",  # the machine that ran the cell (cell_machine): comparisons stay on one machine
)
# per worker process (pyperf run) — except ``reference``, per value: the seconds of the harness'
# reference loop timed around that value's call (the machine's speed then; the process' median
# where a run has no per-call ones, NaN in results before them) — and ``round``, the host's round
# the process ran in (0: not recorded) — and ``partner``, per value: with pairing, the seconds per
# loop of the workload's sequential run timed around that value's call in the same process
# (harness/bench.py Partner; NaN where the cell was not paired) — and ``wait``, per value: the
# seconds its call's threads waited on a run queue per second on a CPU — and ``other``, per
# value: the share of the worker's CPUs other work used during its call (both NaN where not
# recorded)
RUN_COLUMNS = (
    "run", "cpu_time", "parallelism", "cpu_class", "peak_rss", "reference", "round", "partner", "wait",
    "other",
)  # fmt: skip
FRAME_COLUMNS = (*CELL_COLUMNS, *RUN_COLUMNS, "value", "loops")
# the columns _suite_rows fills from a suite; "machine" comes from the manifest (load_run)
PER_VALUE = tuple(c for c in FRAME_COLUMNS[:-2] if c != "machine")
# what the harness writes into each pyperf run (bench.py's hook), next to pyperf's mem_max_rss
RUN_KEYS = (*contract.RUN_KEYS, "mem_max_rss")


@dataclass(frozen=True, slots=True)
class Interpreter:
    """One interpreter of the run: whether it ran, and what it says about its build."""

    id: str
    status: str  # ran | skipped | failed
    reason: str | None
    results: str | None  # file name of its pyperf suite, relative to the run directory
    version: str = ""
    sys_version: str = ""
    config_args: str = ""
    py_gil_disabled: bool | None = None  # build: --disable-gil
    gil_enabled: str = "n/a"  # run time: "true" | "false" | "n/a" (no sys._is_gil_enabled)
    executable: str = ""
    image: str = ""
    image_id: str = ""
    backend: str = ""
    build: str = ""  # how the interpreter came to be: built from source, copied prefix, host
    load_before: tuple[float, ...] | None = None
    load_after: tuple[float, ...] | None = None
    elapsed: float | None = None


@dataclass(frozen=True, slots=True)
class CellProblem:
    """A planned cell without a measurement, and why (failed, timeout, skipped, missing)."""

    interpreter: str
    cell: str
    status: str
    reason: str
    output_tail: str | None = None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What the report says of a run beyond its values: the manifest, read here once (keys that
    an older run lacks read as empty). The views take these, never the manifest's dicts."""

    state: str
    started: str
    finished: str
    profile: str
    matrix_path: str
    matrix_sha256: str
    settings: Mapping[str, Any]  # the profile's pyperf settings, timeout, memory, python_gil
    backend: str
    tool: Mapping[str, Any]
    stages: Mapping[str, Any]  # seconds per stage
    host: Mapping[str, Any]
    warnings: tuple[str, ...]  # the runner's own
    schedule: Mapping[str, Any]  # sampling, order, seed, rounds, windows, noise
    workloads: Mapping[str, Any]  # workload id -> its entry (implementation, kind, ...)
    sampled: Mapping[tuple[str, str], Mapping[str, Any]]  # (interpreter, cell) -> its entry

    @classmethod
    def of(cls, manifest: Mapping[str, Any]) -> RunFacts:
        matrix = _mapping(manifest.get("matrix"))
        return cls(
            state=str(manifest.get("state") or "?"),
            started=str(manifest.get("started") or ""),
            finished=str(manifest.get("finished") or ""),
            profile=str(matrix.get("profile") or ""),
            matrix_path=str(matrix.get("path") or ""),
            matrix_sha256=str(matrix.get("sha256") or ""),
            settings=_mapping(matrix.get("settings")),
            backend=str(_mapping(manifest.get("backend")).get("name") or ""),
            tool=_mapping(manifest.get("tool")),
            stages=_mapping(manifest.get("stages")),
            host=_mapping(manifest.get("host")),
            warnings=tuple(str(w) for w in manifest.get("warnings") or []),
            schedule=_mapping(manifest.get("schedule")),
            workloads=_mapping(manifest.get("workloads")),
            sampled={
                (str(c.get("interpreter")), str(c.get("id"))): c
                for c in manifest.get("cells") or []
                if isinstance(c, Mapping)
            },
        )

    @property
    def synthetic(self) -> bool:
        return bool(self.tool.get("synthetic"))

    @property
    def python_gil(self) -> Any:
        return self.settings.get("python_gil")

    @property
    def noise(self) -> Mapping[str, Any]:
        return _mapping(self.schedule.get("noise"))

    @property
    def floor(self) -> float:
        """The relative difference below which this run calls nothing a change (0: not measured)."""
        return _floor(self.noise)


@dataclass(frozen=True, slots=True)
class RunResults:
    """Everything the report needs from one run directory."""

    run_dir: Path
    manifest: Mapping[str, Any]  # as read (merge, floors); the views read ``facts``
    interpreters: tuple[Interpreter, ...]
    problems: tuple[CellProblem, ...]
    frame: pd.DataFrame = field(compare=False)
    suites: tuple[Path, ...] = ()  # pyperf files, offered for download
    pyperf_metadata: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    facts: RunFacts = field(init=False, compare=False)  # the manifest as the views read it

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or self.run_dir.name)

    def __post_init__(self) -> None:
        object.__setattr__(self, "facts", RunFacts.of(self.manifest))  # read once, here


def _floats(value: Any) -> tuple[float, ...] | None:
    return tuple(float(v) for v in value) if isinstance(value, list | tuple) else None


def _build_label(env: Mapping[str, Any]) -> str:
    """One phrase on where the interpreter came from (the docker backend records its image's)."""
    kind = env.get("kind")
    if kind == "source":
        return f"built from {env.get('source_file') or 'source'} ({env.get('build_profile') or '?'} profile)"
    if kind == "prefix":
        return f"copied prefix {env.get('prefix') or '?'} (its own build flags)"
    return "host interpreter" if env.get("backend") == "local" else ""


def _flag(value: Any) -> bool | None:
    """A 0/1 fact (py_gil_disabled) of the manifest or of pyperf metadata; None when it is
    absent or not a number."""
    try:
        return None if value is None else bool(int(value))
    except (TypeError, ValueError, OverflowError):
        return None


def _interpreter(ident: str, entry: Mapping[str, Any], bench_md: Mapping[str, Any]) -> Interpreter:
    env = entry.get("environment") or {}
    facts = env.get("facts") or {}
    # The manifest's facts come from the interpreter itself; the pyperf metadata is the fallback
    # for runs whose manifest lacks them (older runner, hand-made directories).
    gil = facts.get("gil_enabled", bench_md.get("gilmatrix_gil_enabled"))  # "n/a" or a bool
    gil_text = "n/a" if gil is None else (str(gil).lower() if not isinstance(gil, str) else gil)
    disabled = facts.get("py_gil_disabled", bench_md.get("gilmatrix_py_gil_disabled"))
    version = facts.get("version") or str(bench_md.get("python_version", "")).split(" ")[0]
    return Interpreter(
        id=ident,
        status=str(entry.get("status", "ran")),
        reason=entry.get("reason"),
        results=entry.get("results"),
        version=str(version or ""),
        sys_version=str(facts.get("sys_version") or meta(bench_md, "gilmatrix_sys_version")),
        config_args=str(facts.get("config_args") or meta(bench_md, "gilmatrix_config_args")),
        py_gil_disabled=_flag(disabled),
        gil_enabled=gil_text,
        executable=str(facts.get("executable") or env.get("python") or ""),
        image=str(env.get("image") or ""),
        image_id=str(env.get("image_id") or ""),
        backend=str(env.get("backend") or ""),
        build=_build_label(env),
        load_before=_floats(entry.get("load_before")),
        load_after=_floats(entry.get("load_after")),
        elapsed=entry.get("elapsed"),
    )


@dataclass(frozen=True, slots=True)
class SuiteBenchmark:
    """What the report needs of one pyperf benchmark: its metadata and its runs' values."""

    name: str
    metadata: Mapping[str, Any]  # suite and benchmark metadata, as Benchmark.get_metadata()
    # per run: its values, its total loops and its RUN_KEYS (run metadata over benchmark's)
    runs: tuple[tuple[tuple[float, ...], int, Mapping[str, Any]], ...]


def read_suite(path: Path, root: Path | None = None) -> list[SuiteBenchmark]:
    """The benchmarks of a pyperf suite file of the run folder ``root`` (default: the file's
    folder), read as any JSON file of a run folder is (gilmatrix.run.manifest.read_json: no
    link out of the folder, a regular file of bounded size); ValueError saying what is wrong.

    pyperf.BenchmarkSuite.load checks every benchmark name against all earlier ones, which is
    quadratic: 2.5 s for 10,000 cells. For pyperf's current file format ("1.0", what pyperf
    2.x writes) this reads the JSON directly, merging metadata the way pyperf does (suite <
    benchmark < run); any other version goes through pyperf itself. The tests check that both
    paths agree."""
    data = read_json(path, path.parent if root is None else root)
    if isinstance(data, dict) and data.get("version") == "1.0":
        problem = suite_problem(data)
        if problem is not None:
            raise ValueError(problem)
        return _read_v1(data)
    if not isinstance(data, dict):
        raise ValueError(f"expected a pyperf suite (a JSON mapping), found a {type(data).__name__}")
    return [_from_pyperf(bench) for bench in load_suite(data)]


def _read_v1(data: Mapping[str, Any]) -> list[SuiteBenchmark]:
    suite_md = data.get("metadata") or {}
    out = []
    for bench in data["benchmarks"]:
        md = {**suite_md, **(bench.get("metadata") or {})}
        runs = []
        for run in bench["runs"]:
            values = tuple(run.get("values") or ())
            run_md = run.get("metadata") or {}
            loops = int(run_md.get("loops", md.get("loops", 1)))
            inner = int(run_md.get("inner_loops", md.get("inner_loops", 1)))
            facts = {k: run_md[k] if k in run_md else md[k] for k in RUN_KEYS if k in run_md or k in md}
            runs.append((values, loops * inner, facts))
        out.append(SuiteBenchmark(str(md.get("name", "")), md, tuple(runs)))
    return out


def _from_pyperf(bench: pyperf.Benchmark) -> SuiteBenchmark:
    runs = []
    for run in bench.get_runs():
        md = run.get_metadata()
        facts = {k: md[k] for k in RUN_KEYS if k in md}
        runs.append((tuple(run.values), int(run.get_total_loops()), facts))
    return SuiteBenchmark(bench.get_name(), dict(bench.get_metadata()), tuple(runs))


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan


LARGEST_COUNT = 2**31  # workers, tasks: beyond it a figure of the suite is no count


def _count(value: Any, what: str, cell: str) -> int:
    """A count of the suite's metadata (workers, tasks), as an int of the frame's int64."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < LARGEST_COUNT:
        raise ValueError(f"{cell}: {what} {str(value)[:40]} is not a count (out of range)")
    return value


def _params(text: str) -> dict[str, Any]:
    try:
        params = json.loads(text)
    except RecursionError:
        raise ValueError("gilmatrix_params: nested too deep") from None
    if not isinstance(params, dict):
        raise ValueError(f"gilmatrix_params: expected a JSON mapping, found {text[:40]}")
    return params


def run_facts(facts: Mapping[str, Any], loops: int, model: str) -> tuple[Any, ...]:
    """(cpu_time, parallelism, cpu_class, peak_rss, reference, round, partner, wait, other) of
    one run; NaN / "" / 0 where not recorded (partner, wait, other: NaN, the values' own are
    filled in by _suite_rows).

    cpu_time is per loop iteration, like pyperf's values: the harness records CPU seconds per
    call of its time function, which runs `loops` iterations. peak_rss is the benchmark
    process' peak plus, for process pools, the sum of its children's peaks; a process-pool
    run without the children's figure (older results, pools created inside the timed region)
    gets NaN rather than a figure that leaves most of the memory out."""
    cpu = meta(facts, "gilmatrix_cpu_time") / max(loops, 1)
    rss = _number(facts.get("mem_max_rss"))
    if model == "processes":
        rss += meta(facts, "gilmatrix_children_max_rss", fallback=math.nan)
    return (
        cpu,
        meta(facts, "gilmatrix_parallelism"),
        meta(facts, "gilmatrix_class"),
        rss,
        meta(facts, "gilmatrix_reference"),
        meta(facts, "gilmatrix_round"),
        math.nan,
        math.nan,
        math.nan,
    )


def value_references(
    facts: Mapping[str, Any],
    count: int,
    key: str = "gilmatrix_references",
    zero: bool = False,
    signed: bool = False,
) -> list[float] | None:
    """The reference seconds of a run's ``count`` values (``gilmatrix_references``: every call's
    at the final loop count, the values last; or, ``key`` gilmatrix_partners, the partner's, or
    gilmatrix_waits, each call's run-queue share, which may be 0 (``zero``), or gilmatrix_others,
    each call's share of other work, any finite number (``signed``: a clock tick's jitter can
    take it below 0)); None when the run did not record them."""
    text = meta(facts, key)
    try:
        found = [float(x) for x in text.split()]
    except ValueError:
        return None
    last = found[-count:]
    allowed = (lambda x: True) if signed else (lambda x: x >= 0) if zero else (lambda x: x > 0)
    if len(found) < count or not all(math.isfinite(x) and allowed(x) for x in last):
        return None
    return last


def _suite_rows(
    interp: str, benchmarks: list[SuiteBenchmark], columns: dict[str, list[Any]], seen: set[tuple[str, str]]
) -> dict[str, Any]:
    """Append one row per value of every benchmark to columns; return one benchmark's metadata."""
    first: dict[str, Any] = {}
    for bench in benchmarks:
        md = bench.metadata
        first = first or dict(md)
        cell = bench.name
        named = CellId.maybe(cell) or CellId(cell, "?", 1)
        workload = meta(md, "gilmatrix_workload", named.workload)
        executor = meta(md, "gilmatrix_executor", named.executor)
        workers = _count(meta(md, "gilmatrix_workers", named.workers), "gilmatrix_workers", cell)
        params_text = meta(md, "gilmatrix_params")
        params = _params(params_text)
        tasks = _count(meta(md, "gilmatrix_tasks", params.get("tasks", 1)), "gilmatrix_tasks", cell)
        model = meta(md, "gilmatrix_model", model_of(executor))
        seen.add((interp, cell))
        fixed = (
            interp,
            workload,
            meta(md, "gilmatrix_workload_kind"),
            executor,
            workers,
            cell,
            tasks,
            params_text,
            bool(meta(md, "gilmatrix_py_gil_disabled")),
            meta(md, "gilmatrix_gil_enabled"),
            meta(md, "gilmatrix_gil_reenabled_by"),
            model,
            meta(md, "gilmatrix_start_method"),
            meta(md, "gilmatrix_async_mode"),
            meta(md, "gilmatrix_pool_in_timing"),
        )
        for run_index, (values, loops, facts) in enumerate(bench.runs):
            if not values:  # calibration-only runs hold no timing
                continue
            count = len(values)
            per_run = (run_index, *run_facts(facts, loops, model))
            for name, item in zip(PER_VALUE, (*fixed, *per_run), strict=True):
                columns[name].extend([item] * count)
            columns["value"].extend(values)
            columns["loops"].extend([loops] * count)
            own = value_references(facts, count)
            if own is not None:  # each value's own reference, where the run recorded them
                columns["reference"][-count:] = own
            partners = value_references(facts, count, "gilmatrix_partners")
            if partners is not None:  # pairing: the partner's seconds around each value's call
                columns["partner"][-count:] = partners
            waits = value_references(facts, count, "gilmatrix_waits", zero=True)
            if waits is not None:  # each value's call: the run-queue share of its threads
                columns["wait"][-count:] = waits
            others = value_references(facts, count, "gilmatrix_others", signed=True)
            if others is not None:  # each value's call: the share of its CPUs other work used
                columns["other"][-count:] = others
    return first


def _name(value: Any) -> str:
    """A machine name from the manifest (untrusted text: a fork can write any artifact): a
    string, else nothing."""
    return value.strip() if isinstance(value, str) else ""


def cell_machines(manifest: Mapping[str, Any]) -> tuple[dict[tuple[str, str], str], dict[str, str], str]:
    """Where each cell ran: ({(interpreter, cell): machine} of the cells whose manifest entry
    names one, {interpreter: machine} of the interpreters whose entry names one (a merged run of
    one job per interpreter), the one host's name (a plain local run: its hostname; "" when
    the manifest names none)."""
    by_cell = {
        (str(c.get("interpreter")), str(c.get("id"))): _name(c.get("machine"))
        for c in manifest.get("cells") or []
        if isinstance(c, Mapping) and _name(c.get("machine"))
    }
    interpreters = manifest.get("interpreters") or {}
    by_interp = {
        str(ident): _name(entry.get("machine"))
        for ident, entry in interpreters.items()
        if isinstance(entry, Mapping) and _name(entry.get("machine"))
    }
    host = manifest.get("host")
    one = _name(host.get("hostname")) if isinstance(host, Mapping) else ""
    if not one:
        hosts = manifest.get("hosts")
        if isinstance(hosts, Mapping) and len(hosts) == 1:
            one = _name(next(iter(hosts)))
    return by_cell, by_interp, one


def cell_machine(
    machines: tuple[dict[tuple[str, str], str], dict[str, str], str], interpreter: str, cell: str
) -> str:
    """The machine of one cell: its own entry's, else its interpreter's, else the one host's."""
    by_cell, by_interp, one = machines
    return by_cell.get((interpreter, cell)) or by_interp.get(interpreter) or one


MAX_REPLICATES = 64  # more runners of one label than any CI has: a count past it is not read


@dataclass(frozen=True, slots=True)
class Replicates:
    """What a merged CI run says of its replicates (manifest["replicates"]): how many runners
    ran every shard, and the run folders of replicates 2..K inside the run folder. ``problems``:
    what of it cannot be used (a folder named outside the run, absent, a count without folders)."""

    count: int
    runs: tuple[tuple[int, Path], ...]  # (replicate number, run folder), in order
    problems: tuple[str, ...] = ()


def replicate_runs(results: RunResults) -> Replicates | None:
    """The replicates of a run; None for a run that is not a merged CI run (no "replicates").

    The folders are untrusted (a fork can write the artifact): only a relative path to a folder
    inside the run folder, with a manifest, is taken; anything else becomes a problem."""
    entry = results.manifest.get("replicates")
    if not isinstance(entry, Mapping):
        return None
    count = entry.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_REPLICATES:
        return Replicates(
            1, (), (f"replicates.count {str(count)[:40]!r} is not a whole number from 1 to {MAX_REPLICATES}",)
        )
    runs = entry.get("runs")
    if not isinstance(runs, Mapping):
        runs = {}
    root = results.run_dir.resolve()
    found: list[tuple[int, Path]] = []
    problems: list[str] = []
    named: set[int] = set()  # the replicates "runs" names
    for key, rel in runs.items():
        number = int(key) if isinstance(key, str) and key.isascii() and key.isdigit() else None
        if number is None or not 2 <= number <= count or number in named:
            problems.append(f"replicate {str(key)[:40]!r}: not a replicate number from 2 to {count}, once")
            continue
        named.add(number)
        if not isinstance(rel, str) or not rel or Path(rel).is_absolute():
            problems.append(f"replicate {number}: its folder is not a relative path")
            continue
        path = (results.run_dir / rel).resolve()
        if path == root or not path.is_relative_to(root):
            problems.append(f"replicate {number}: its folder {rel[:80]!r} is outside the run folder")
            continue
        if not (path / "manifest.json").is_file():
            problems.append(f"replicate {number}: {rel[:80]} holds no manifest.json")
            continue
        found.append((number, path))
    missing = [n for n in range(2, count + 1) if n not in named]
    if missing:
        problems.append(
            f"replicate{'s' * (len(missing) > 1)} {', '.join(map(str, missing))} of {count}: no "
            "run folder in the run (its jobs failed, or the merge found none)"
        )
    return Replicates(count, tuple(sorted(found)), tuple(problems))


def load_run(run_dir: Path) -> RunResults:
    """Read manifest and suites; cells the manifest planned but no suite holds become problems."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    columns: dict[str, list[Any]] = {name: [] for name in FRAME_COLUMNS}
    seen: set[tuple[str, str]] = set()
    interpreters, problems, suites, metadata = [], [], [], {}
    for ident, entry in (manifest.get("interpreters") or {}).items():
        bench_md: dict[str, Any] = {}
        results = entry.get("results")
        if results:
            path = run_dir / results
            # one interpreter's rows apart: a damaged suite leaves the others whole
            rows: dict[str, list[Any]] = {name: [] for name in FRAME_COLUMNS}
            found: set[tuple[str, str]] = set()
            try:
                bench_md = _suite_rows(ident, read_suite(path, run_dir), rows, found)
            except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
                bench_md = {}
                reason = f"results file {results} unreadable ({exc}): its cells are left out"
                if (run_dir / "cells" / ident).is_dir():  # a run folder, not a kept copy of one
                    reason += f"; `gilmatrix run --resume {run_dir}` rebuilds it from cells/{ident}/"
                print(f"warning: {path}: {reason}", file=sys.stderr)
                problems.append(CellProblem(ident, "*", Status.MISSING, reason))
            else:
                for name, items in rows.items():
                    columns[name].extend(items)
                seen.update(found)
                suites.append(path)
                metadata[ident] = bench_md
        interpreters.append(_interpreter(ident, entry, bench_md))
    for cell in manifest.get("cells") or []:
        key = (str(cell.get("interpreter")), str(cell.get("id")))
        status = str(cell.get("status", Status.MISSING))
        if key in seen:
            continue
        if status == Status.OK:  # the runner says it ran, but no suite holds it
            status, reason = Status.MISSING, "marked ok in the manifest but absent from the results file"
        else:
            reason = cell.get("reason") or "no reason recorded"
        problems.append(CellProblem(key[0], key[1], status, str(reason), cell.get("output_tail")))
    machines = cell_machines(manifest)
    keys = list(zip(columns["interpreter"], columns["cell"], strict=True))
    where = {key: cell_machine(machines, *key) for key in dict.fromkeys(keys)}
    columns["machine"] = [where[key] for key in keys]
    frame = pd.DataFrame(columns)
    frame = frame.astype(
        {
            "workers": "int64",
            "tasks": "int64",
            "run": "int64",
            "loops": "int64",
            "value": "float64",
            "free_threaded": "bool",
            "cpu_time": "float64",
            "parallelism": "float64",
            "peak_rss": "float64",
        }
    )
    return RunResults(run_dir, manifest, tuple(interpreters), tuple(problems), frame, tuple(suites), metadata)


def load_frame(run_dir: Path) -> pd.DataFrame:
    """The tidy frame of a run: one row per measured value (seconds per timed call)."""
    return load_run(Path(run_dir)).frame


def scaling_workloads(facts: RunFacts, implementations: tuple[str, ...]) -> set[str]:
    """The workloads of the run whose implementation is one of ``implementations`` (the
    ftscaling patterns), as the manifest's ``workloads`` entry records them."""
    entries = facts.workloads
    return {
        str(w)
        for w, e in entries.items()
        if isinstance(e, Mapping) and e.get("implementation") in implementations
    }


def noise(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    """The noise figures the run measured on itself (runner/run/schedule.py); {} for older runs."""
    value = (manifest.get("schedule") or {}).get("noise")
    return value if isinstance(value, Mapping) else {}


def noise_floor(manifest: Mapping[str, Any]) -> float:
    """The relative difference below which this run calls nothing a change (0: not measured)."""
    return _floor(noise(manifest))


def _floor(figures: Mapping[str, Any]) -> float:
    try:
        return float(figures.get("floor") or 0.0)
    except (TypeError, ValueError):
        return 0.0


def baseline_floor(manifest: Mapping[str, Any], baseline: Mapping[str, Any]) -> float:
    """The floor of a comparison between two runs: either run's own, or how much the machine
    itself differed between them (their sentinels' medians), whichever is larger."""
    floors = [noise_floor(manifest), noise_floor(baseline)]
    try:
        shift = (
            float(noise(manifest)["sentinel_median_ms"]) / float(noise(baseline)["sentinel_median_ms"]) - 1.0
        )
        floors.append(abs(shift))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        pass
    return max(floors)


def baseline_drift(manifest: Mapping[str, Any], baseline: Mapping[str, Any]) -> float:
    """The extra relative variance of a difference between the two runs' means: the mean of
    the runs' own drift estimates (squared; 0 where a run has none)."""
    values = []
    for m in (manifest, baseline):
        try:
            values.append(float(noise(m).get("drift") or 0.0) ** 2)
        except (TypeError, ValueError):
            values.append(0.0)
    return sum(values) / len(values)
