"""The plan: a matrix and a profile expanded into cells, each with a stable id.

``interpreter x workload x executor x workers``; a cell an interpreter cannot run is planned as
*skipped* with the reason, never dropped, so the report can say what was not measured and why.
Sequential execution ignores the worker count: it is planned once, at 1 worker.

Each cell carries its ``tasks`` (one timed call's): a workload with ``tasks_per_worker`` gets
workers x that many, every worker the same work; one with a fixed ``params.tasks`` the same at
every worker count, and a cell with fewer tasks than workers is planned with a note and a
warning (:func:`idle_workers`): its extra workers have nothing to do.

The machine's CPUs (``max_workers`` and ``placement`` of a profile) are data: the topology is
read once (:func:`gilmatrix.harness.facts.cpu_topology`, this machine's or a fixture's) and
the plan keeps it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from gilmatrix.errors import UserError
from gilmatrix.harness.contract import EXECUTORS, CellId, Status
from gilmatrix.harness.executors import unavailable_reason
from gilmatrix.harness.facts import CpuTopology, cpu_topology, format_cpulist
from gilmatrix.matrix.model import Interpreter, Matrix, Profile, Workload, suggest


@dataclass(frozen=True, slots=True)
class Cell:
    interpreter: str
    workload: str
    implementation: str
    kind: str
    executor: str
    workers: int
    params: dict[str, Any] = field(default_factory=dict)
    status: str = Status.PLANNED  # PLANNED | SKIPPED
    reason: str | None = None
    tasks: int | None = None  # tasks of one timed call (None: the workload has no `tasks`)
    note: str | None = None  # a planned cell with fewer tasks than workers: why that matters

    @property
    def id(self) -> str:
        return str(CellId(self.workload, self.executor, self.workers))

    @property
    def key(self) -> tuple[str, str]:
        return (self.interpreter, self.id)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, **asdict(self)}


@dataclass(frozen=True, slots=True)
class Plan:
    profile: Profile
    interpreters: tuple[Interpreter, ...]
    cells: tuple[Cell, ...]
    topology: CpuTopology | None = None  # read when the profile depends on the machine
    cpuset: tuple[int, ...] = ()  # placement: the CPUs the run is pinned to (none: not pinned)
    dropped: tuple[int, ...] = ()  # worker counts above max_workers on this machine
    warnings: tuple[str, ...] = ()

    def cells_for(self, interpreter_id: str, status: str = Status.PLANNED) -> list[Cell]:
        return [c for c in self.cells if c.interpreter == interpreter_id and c.status == status]

    def to_json(self) -> dict[str, Any]:
        pinned = format_cpulist(self.cpuset) if self.cpuset else None
        out: dict[str, Any] = {
            "profile": self.profile.name,
            "interpreters": [i.id for i in self.interpreters],
            "counts": {
                "planned": sum(c.status == Status.PLANNED for c in self.cells),
                "skipped": sum(c.status == "skipped" for c in self.cells),
            },
            "warnings": list(self.warnings),
        }
        if self.topology is not None:
            out["topology"] = self.topology.summary()
            out["max_workers"] = self.profile.max_workers
            out["dropped_workers"] = list(self.dropped)
        if pinned is not None:
            out["placement"] = {"policy": self.profile.placement, "cpuset": pinned, "cpus": list(self.cpuset)}
        out["cells"] = [
            {**c.to_json(), **({"cpuset": pinned} if pinned and c.status == Status.PLANNED else {})}
            for c in self.cells
        ]
        return out


def select(items: Iterable[Any], only: Sequence[str], attr: str = "id") -> list[Any]:
    items = list(items)
    return [i for i in items if not only or getattr(i, attr) in only]


def check_filters(matrix: Matrix, only: Sequence[str]) -> None:
    """Every ``--only`` value must name an interpreter or a workload of the matrix."""
    known = [i.id for i in matrix.interpreters] + [w.id for w in matrix.workloads]
    for value in only:
        if value not in known:
            raise UserError(
                f"--only {value!r}: no interpreter or workload of that id in "
                f"{matrix.path}{suggest(value, known)}; known: {', '.join(known)}"
            )


def worker_limit(
    counts: Sequence[int], max_workers: int | str | None, topology: CpuTopology | None = None
) -> tuple[int, ...]:
    """The worker counts up to a profile's ``max_workers``: a number, ``cpus`` (the usable CPUs
    of ``topology``) or ``physical-cores`` (its placement cores: one socket's performance
    cores, see cpu_topology); the smallest count is kept whatever the machine."""
    if max_workers is None:
        return tuple(counts)
    if isinstance(max_workers, int):
        limit = max_workers
    else:
        if topology is None:
            raise ValueError(f"max_workers {max_workers!r} needs the machine's CPU topology")
        limit = len(topology.physical if max_workers == "physical-cores" else topology.cpus)
    kept = tuple(c for c in counts if c <= limit)
    return kept or (min(counts),)


def needs_topology(profile: Profile) -> bool:
    """Whether planning ``profile`` depends on the machine's CPUs."""
    return isinstance(profile.max_workers, str) or profile.placement is not None


def idle_workers(workload: str, executor: str, tasks: int, counts: Sequence[int], where: str = "") -> str:
    """The warning for cells of ``workload`` on ``executor`` planned with ``tasks`` tasks at
    worker counts ``counts``, each above ``tasks``: what happens, and the two ways out."""
    listed = ", ".join(map(str, counts))
    return (
        f"{where}{workload} on {executor}: {tasks} task{'s' * (tasks != 1)} per timed call at "
        f"{listed} workers: only {tasks} of the workers have work, the others sit idle, and "
        "the cell measures that rather than its workers' scaling. Set tasks_per_worker on the "
        f"workload (tasks = workers x it), or params.tasks to at least {max(counts)}"
    )


def _cell_work(workload: Workload, params: dict[str, Any], workers: int) -> tuple[dict[str, Any], int | None]:
    """A cell's parameters and tasks: ``tasks`` set to workers x tasks_per_worker when the
    workload has it."""
    tasks = workload.tasks(params, workers)
    if workload.tasks_per_worker is not None:
        params = {**params, "tasks": tasks}
    return params, tasks


def short_of_tasks(
    workload: Workload, params: dict[str, Any], executor: str, counts: Sequence[int]
) -> tuple[int, tuple[int, ...]] | None:
    """(tasks, the worker counts above them) when ``workload`` on ``executor`` would leave
    workers idle at some of ``counts``; None when every worker has a task, the executor does
    not use workers, or the workload times a fixed cost (startup: idle workers are its point)."""
    if not EXECUTORS[executor].uses_workers or workload.fixed_cost or workload.tasks_per_worker:
        return None
    tasks = workload.tasks(params, 1)
    if tasks is None:
        return None
    above = tuple(c for c in counts if c > tasks)
    return (tasks, above) if above else None


def matrix_warnings(matrix: Matrix) -> list[str]:
    """For every profile, the workloads whose cells would have fewer tasks than workers at the
    worker counts the profile lists (``max_workers`` as a number applies; ``cpus`` and
    ``physical-cores`` depend on the machine that plans the run, so they do not)."""
    out = []
    for profile in matrix.profiles.values():
        limit = profile.max_workers if isinstance(profile.max_workers, int) else None
        counts = worker_limit(profile.workers or matrix.workers, limit)
        for workload in matrix.workloads:
            if profile.workloads is not None and workload.id not in profile.workloads:
                continue
            params = {**workload.params, **profile.params.get(workload.id, {})}
            for executor in matrix.executors:
                if profile.executors is not None and executor not in profile.executors:
                    continue
                short = short_of_tasks(workload, params, executor, counts)
                if short is not None:
                    out.append(idle_workers(workload.id, executor, *short, where=f"profile {profile.name}: "))
    return out


def plan_cells(
    matrix: Matrix,
    profile_name: str | None = None,
    only: Sequence[str] = (),
    topology: CpuTopology | None = None,
) -> Plan:
    """Expand ``matrix`` under a profile; ``only`` filters by interpreter or workload id.

    ``topology``: the machine's CPUs, for a profile's ``max_workers`` and ``placement`` (default:
    this machine's, read once here when the profile needs them)."""
    profile = matrix.profile(profile_name)
    check_filters(matrix, only)
    if topology is None and needs_topology(profile):
        topology = cpu_topology()
    interp_ids = {i.id for i in matrix.interpreters}
    only_interps = [o for o in only if o in interp_ids]
    only_workloads = [o for o in only if o not in interp_ids]
    interpreters = select(matrix.interpreters, only_interps)
    workloads: list[Workload] = select(matrix.workloads, only_workloads)
    listed = profile.workers or matrix.workers
    worker_counts = worker_limit(listed, profile.max_workers, topology)
    if profile.workloads is not None:
        workloads = [w for w in workloads if w.id in profile.workloads]
    executors = [e for e in matrix.executors if profile.executors is None or e in profile.executors]
    cells: list[Cell] = []
    warnings: dict[str, None] = {}
    for interp in interpreters:
        for workload in workloads:
            params = {**workload.params, **profile.params.get(workload.id, {})}
            unsupported = workload.unsupported
            for executor in executors:
                counts = worker_counts if EXECUTORS[executor].uses_workers else (1,)
                reason = unavailable_reason(executor, interp.version, unsupported)
                short = None if reason else short_of_tasks(workload, params, executor, counts)
                if short is not None:
                    warnings[idle_workers(workload.id, executor, *short)] = None
                for workers in counts:
                    cell_params, tasks = _cell_work(workload, params, workers)
                    note = None
                    if short is not None and workers in short[1]:
                        note = f"{tasks} tasks for {workers} workers: {workers - short[0]} idle"
                    cells.append(
                        Cell(
                            interpreter=interp.id,
                            workload=workload.id,
                            implementation=workload.implementation,
                            kind=workload.kind,
                            executor=executor,
                            workers=workers,
                            params=cell_params,
                            status=Status.SKIPPED if reason else Status.PLANNED,
                            reason=reason,
                            tasks=tasks,
                            note=note,
                        )
                    )
    cpuset = topology.physical if topology is not None and profile.placement == "physical-cores" else ()
    return Plan(
        profile=profile,
        interpreters=tuple(interpreters),
        cells=tuple(cells),
        topology=topology,
        cpuset=cpuset,
        dropped=tuple(c for c in listed if c not in worker_counts),
        warnings=tuple(warnings),
    )
