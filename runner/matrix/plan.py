"""The plan: a matrix and a profile expanded into cells, each with a stable id.

``interpreter x workload x executor x workers``; a cell an interpreter cannot run is planned as
*skipped* with the reason, never dropped, so the report can say what was not measured and why.
Sequential execution ignores the worker count: it is planned once, at 1 worker.

The machine's CPUs (``max_workers`` and ``placement`` of a profile) are data: the topology is
read once (:func:`gilmatrix.harness.facts.cpu_topology`, this machine's or a fixture's) and
the plan keeps it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from gilmatrix.errors import UserError
from gilmatrix.harness.contract import EXECUTORS, CellId
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
    status: str = "planned"  # planned | skipped
    reason: str | None = None

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

    def cells_for(self, interpreter_id: str, status: str = "planned") -> list[Cell]:
        return [c for c in self.cells if c.interpreter == interpreter_id and c.status == status]

    def to_json(self) -> dict[str, Any]:
        pinned = format_cpulist(self.cpuset) if self.cpuset else None
        out: dict[str, Any] = {
            "profile": self.profile.name,
            "interpreters": [i.id for i in self.interpreters],
            "counts": {
                "planned": sum(c.status == "planned" for c in self.cells),
                "skipped": sum(c.status == "skipped" for c in self.cells),
            },
        }
        if self.topology is not None:
            out["topology"] = self.topology.summary()
            out["max_workers"] = self.profile.max_workers
            out["dropped_workers"] = list(self.dropped)
        if pinned is not None:
            out["placement"] = {"policy": self.profile.placement, "cpuset": pinned, "cpus": list(self.cpuset)}
        out["cells"] = [
            {**c.to_json(), **({"cpuset": pinned} if pinned and c.status == "planned" else {})}
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
    for interp in interpreters:
        for workload in workloads:
            params = {**workload.params, **profile.params.get(workload.id, {})}
            unsupported = workload.unsupported
            for executor in executors:
                counts = worker_counts if EXECUTORS[executor].uses_workers else (1,)
                reason = unavailable_reason(executor, interp.version, unsupported)
                for workers in counts:
                    cells.append(
                        Cell(
                            interpreter=interp.id,
                            workload=workload.id,
                            implementation=workload.implementation,
                            kind=workload.kind,
                            executor=executor,
                            workers=workers,
                            params=params,
                            status="skipped" if reason else "planned",
                            reason=reason,
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
    )
