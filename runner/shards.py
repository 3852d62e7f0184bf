"""CI plan: a plan split into shards of workloads, each run on K runners, and the image jobs.

Every comparison the report makes (versions, builds, execution models, worker counts) is
between cells of one workload, so the axis that can be split between machines is the
workloads, and the one that must stay together is the interpreters. A **shard** is a set of
workloads; its bench job runs them on *every* interpreter, interleaved round by round as a
local run does, so each comparison is made between cells of one machine and the same
minutes. A shard runs on ``replicates`` runners of the same labels: their differences measure
how far a verdict moves from one runner to another (the merge pools them, the report says
whether each verdict holds on all). Images are built once per interpreter, in jobs of their
own, and restored by the bench jobs.

Shards are balanced by each cell's estimated seconds of worker-process life
(:func:`cell_seconds`: pyperf's settings and the profile's sampling, or the worker lives a
previous run recorded), longest workload first onto the least loaded shard. A profile with a
run budget (``precision.run_minutes``) gives each shard its share of it, so N shards take
about 1/N of the whole run each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gilmatrix.errors import UserError
from gilmatrix.harness.contract import Status, model_of
from gilmatrix.matrix.model import Matrix
from gilmatrix.matrix.plan import Cell, Plan

DEFAULT_RUNS_ON = ("ubuntu-latest",)
SELF_HOSTED_LABEL = "self-hosted"
RESULTS_PREFIX = "results-"
IMAGE_PREFIX = "image-"

# The cost model when no earlier run says better. Measured on this project's 2-core VMs (a
# worker process of the default profile lives ~0.5 s: start-up and imports ~0.35 s, then
# warm-up and values of ~min_time each); pools of processes and sub-interpreters cost more to
# make per call than threads or a loop. Only the ratios between cells matter for balancing.
PROCESS_START = 0.35
POOL_FACTOR = {"processes": 1.6, "interpreters": 1.6}


def is_self_hosted(labels: Sequence[str]) -> bool:
    return SELF_HOSTED_LABEL in labels


def expected_processes(plan: Plan) -> tuple[int, int]:
    """Worker processes a cell will have: (at least, expected). A fixed profile runs
    ``pyperf.processes``; an adaptive one at least ``min_processes`` and, without a run
    budget to stop it, half again as many, at most ``max_processes``."""
    precision = plan.profile.precision
    if precision is None:
        return plan.profile.pyperf.processes, plan.profile.pyperf.processes
    expected = min(precision.max_processes, math.ceil(precision.min_processes * 1.5))
    return precision.min_processes, expected


def process_seconds(cell: Cell, plan: Plan) -> float:
    """Estimated life of one worker process of ``cell`` (model, see module docstring)."""
    settings = plan.profile.pyperf
    per_value = settings.min_time
    values = settings.warmups + settings.values
    factor = POOL_FACTOR.get(model_of(cell.executor), 1.0)
    return PROCESS_START + values * per_value * factor


def recorded_seconds(manifest: Mapping[str, Any]) -> dict[tuple[str, str], float]:
    """(interpreter, cell id) -> seconds its worker processes lived, from an earlier run's
    manifest (``worker_seconds``); cells without them are left out."""
    out: dict[tuple[str, str], float] = {}
    for entry in manifest.get("cells") or []:
        if not isinstance(entry, Mapping):
            continue
        lives = entry.get("worker_seconds") or []
        if isinstance(lives, list) and lives and all(isinstance(v, int | float) for v in lives):
            out[(str(entry.get("interpreter")), str(entry.get("id")))] = float(sum(lives))
    return out


def cell_seconds(cell: Cell, plan: Plan, recorded: Mapping[tuple[str, str], float] | None = None) -> float:
    """Estimated seconds of worker-process life of one runnable cell."""
    if recorded and cell.key in recorded:
        return recorded[cell.key]
    return expected_processes(plan)[1] * process_seconds(cell, plan)


@dataclass(frozen=True, slots=True)
class Shard:
    id: str  # "s1", "s2", ...
    workloads: tuple[str, ...]
    runs_on: tuple[str, ...]
    why: str  # where its runner labels come from
    cells: int  # runnable cells (every interpreter)
    seconds: float  # estimated worker-process seconds of its cells
    run_minutes: float | None  # its share of the profile's run budget (None: no budget)
    floor_seconds: float = 0.0  # its cells at their fewest processes (a budget stops none sooner)

    @property
    def self_hosted(self) -> bool:
        return is_self_hosted(self.runs_on)

    @property
    def minutes(self) -> float:
        """Estimated measuring minutes: its cells' time, or its budget when that is shorter,
        but never less than its cells' fewest processes take (every cell gets those)."""
        estimate = self.seconds / 60.0
        if self.run_minutes is not None:
            estimate = min(estimate, self.run_minutes)
        return max(estimate, self.floor_seconds / 60.0)


@dataclass(frozen=True, slots=True)
class CiPlan:
    plan: Plan
    shards: tuple[Shard, ...]
    replicates: int
    interpreters: tuple[str, ...]  # with runnable cells: every bench job runs all of them
    image_interpreters: tuple[str, ...]  # built in image jobs (hosted runners restore them)
    only_interpreters: tuple[str, ...]  # the plan's interpreter filter, handed on to each job
    warnings: tuple[str, ...] = field(default=())

    def bench_jobs(self) -> list[dict[str, Any]]:
        """One entry per shard x replicate, for GitHub's job matrix (strings, lists, bools)."""
        jobs = []
        for shard in self.shards:
            for replicate in range(1, self.replicates + 1):
                jobs.append(
                    {
                        "shard": shard.id,
                        "replicate": replicate,
                        "replicates": self.replicates,
                        "profile": self.plan.profile.name,
                        "workloads": " ".join(shard.workloads),
                        "only": " ".join([*self.only_interpreters, *shard.workloads]),
                        "run_minutes": "" if shard.run_minutes is None else f"{shard.run_minutes:.2f}",
                        "runs_on": list(shard.runs_on),
                        "self_hosted": shard.self_hosted,
                        "cells": shard.cells,
                        "est_minutes": round(shard.minutes, 1),
                        "artifact": f"{RESULTS_PREFIX}{shard.id}-r{replicate}",
                    }
                )
        return jobs

    def image_jobs(self) -> list[dict[str, Any]]:
        return [{"interpreter": i, "artifact": f"{IMAGE_PREFIX}{i}"} for i in self.image_interpreters]


def _labels(
    matrix_workload: Any, plan: Plan, runner_labels: Sequence[str] | None
) -> tuple[tuple[str, ...], str]:
    if matrix_workload is not None and matrix_workload.runs_on:
        return tuple(matrix_workload.runs_on), f"workload {matrix_workload.id}'s runs_on"
    if plan.profile.ci.runs_on:
        return tuple(plan.profile.ci.runs_on), f"profile {plan.profile.name}'s ci.runs_on"
    if runner_labels:
        return tuple(runner_labels), "--runner-labels (the workflow's runner_labels input)"
    return DEFAULT_RUNS_ON, "the default (no runs_on in the matrix, no --runner-labels)"


def balance(weights: Mapping[str, float], count: int) -> list[list[str]]:
    """Split the items of ``weights`` into ``count`` bins of nearly equal weight: the longest
    first, each onto the lightest bin so far (LPT); bins come out heaviest first, items in the
    order they were given."""
    order = list(weights)
    bins: list[list[str]] = [[] for _ in range(min(count, len(order)))]
    loads = [0.0] * len(bins)
    for item in sorted(order, key=lambda k: (-weights[k], order.index(k))):
        target = min(range(len(bins)), key=lambda b: (loads[b], b))
        bins[target].append(item)
        loads[target] += weights[item]
    for content in bins:
        content.sort(key=order.index)
    return [b for _, b in sorted(zip(loads, bins, strict=True), key=lambda p: -p[0])]


def plan_shards(
    matrix: Matrix,
    plan: Plan,
    *,
    shards: int | None = None,
    job_minutes: float | None = None,
    replicates: int | None = None,
    runner_labels: Sequence[str] | None = None,
    only: Sequence[str] = (),
    recorded: Mapping[tuple[str, str], float] | None = None,
) -> CiPlan:
    """The CI plan of ``plan``: arguments win over the profile's ``ci:`` settings."""
    ci = plan.profile.ci
    if shards is None and job_minutes is None:  # either argument overrides both profile keys
        shards, job_minutes = ci.shards, ci.job_minutes
    replicates = replicates if replicates is not None else ci.replicates
    if shards is not None and shards < 1:
        raise UserError(f"--shards {shards}: give 1 or more")
    if job_minutes is not None and job_minutes <= 0:
        raise UserError(f"--job-minutes {job_minutes}: give a positive number of minutes")
    if replicates < 1:
        raise UserError(f"--replicates {replicates}: give 1 or more")

    runnable = [c for c in plan.cells if c.status == Status.PLANNED]
    by_id = {w.id: w for w in matrix.workloads}
    seconds: dict[str, float] = {}
    floors: dict[str, float] = {}
    cells: dict[str, int] = {}
    fewest = expected_processes(plan)[0]
    for cell in runnable:
        seconds[cell.workload] = seconds.get(cell.workload, 0.0) + cell_seconds(cell, plan, recorded)
        floors[cell.workload] = floors.get(cell.workload, 0.0) + fewest * process_seconds(cell, plan)
        cells[cell.workload] = cells.get(cell.workload, 0) + 1
    groups: dict[tuple[str, ...], list[str]] = {}
    whys: dict[tuple[str, ...], str] = {}
    for workload in seconds:
        labels, why = _labels(by_id.get(workload), plan, runner_labels)
        groups.setdefault(labels, []).append(workload)
        whys.setdefault(labels, why)

    total = sum(seconds.values())
    budget = plan.profile.precision.run_minutes if plan.profile.precision else None
    estimated_minutes = min(total / 60.0, budget) if budget is not None else total / 60.0
    estimated_minutes = max(estimated_minutes, sum(floors.values()) / 60.0)
    if shards is None:
        shards = math.ceil(estimated_minutes / job_minutes) if job_minutes else 1
    shards = max(shards, 1)

    warnings: list[str] = []
    interp_labels = [i.id for i in plan.interpreters if i.runs_on]
    if interp_labels:
        warnings.append(
            f"runs_on of interpreters {', '.join(interp_labels)} is not used: every CI job runs "
            "every interpreter of its workloads on one machine, so that they are compared on one "
            "machine; give runner labels to the profile (ci.runs_on) or to workloads instead"
        )
    # shards per label group, in proportion to the group's time, at least one each
    result: list[Shard] = []
    group_counts = {labels: 1 for labels in groups}
    spare = shards - len(groups)
    if spare < 0:
        warnings.append(
            f"{len(groups)} groups of runner labels need {len(groups)} shards at least; "
            f"{shards} were asked for"
        )
    while spare > 0:
        # give the next shard to the group whose shards are the longest, if it can still split
        splittable = [g for g in groups if group_counts[g] < len(groups[g])]
        if not splittable:
            break
        heaviest = max(
            splittable,
            key=lambda g: sum(seconds[w] for w in groups[g]) / group_counts[g],
        )
        group_counts[heaviest] += 1
        spare -= 1
    if spare > 0:
        warnings.append(
            f"{shards} shards asked for, {shards - spare} made: a shard holds one workload at least "
            f"and there are {len(seconds)}"
        )
    for labels, workloads in groups.items():
        for part in balance({w: seconds[w] for w in workloads}, group_counts[labels]):
            share = sum(seconds[w] for w in part)
            result.append(
                Shard(
                    id=f"s{len(result) + 1}",
                    workloads=tuple(part),
                    runs_on=labels,
                    why=whys[labels],
                    cells=sum(cells[w] for w in part),
                    seconds=share,
                    run_minutes=None if budget is None or not total else budget * share / total,
                    floor_seconds=sum(floors[w] for w in part),
                )
            )
    interpreters = tuple(i.id for i in plan.interpreters if any(c.interpreter == i.id for c in runnable))
    hosted = any(not s.self_hosted for s in result)
    interp_ids = {i.id for i in matrix.interpreters}
    return CiPlan(
        plan=plan,
        shards=tuple(result),
        replicates=replicates,
        interpreters=interpreters,
        image_interpreters=interpreters if hosted else (),
        only_interpreters=tuple(o for o in only if o in interp_ids),
        warnings=tuple(warnings),
    )


def describe(ci: CiPlan) -> str:
    """Plain text: which job runs what, where and why, and the estimated minutes."""
    plan = ci.plan
    lines = [
        f"profile {plan.profile.name}: {len(ci.shards)} shards x {ci.replicates} replicates = "
        f"{len(ci.shards) * ci.replicates} bench jobs, each running every interpreter "
        f"({', '.join(ci.interpreters) or 'none'}) on its workloads, interleaved on one runner"
    ]
    for shard in ci.shards:
        budget = f", run budget {shard.run_minutes:.1f} min" if shard.run_minutes is not None else ""
        lines.append(
            f"  {shard.id}: {shard.cells} cells, ~{shard.minutes:.1f} min{budget}; "
            f"{', '.join(shard.workloads)}; runs on [{', '.join(shard.runs_on)}] ({shard.why})"
        )
    if ci.image_interpreters:
        lines.append(
            f"image jobs: {len(ci.image_interpreters)} ({', '.join(ci.image_interpreters)}), built once "
            "(or restored from the cache) and restored by every GitHub-hosted bench job"
        )
    else:
        lines.append("image jobs: none (self-hosted runners build or find their images themselves)")
    if ci.replicates == 1:
        lines.append(
            "replicates: 1 - the report cannot tell how far a verdict would move on another runner "
            "of the same labels (give --replicates 2 or more, or ci.replicates in the profile)"
        )
    lines += [f"warning: {w}" for w in ci.warnings]
    return "\n".join(lines)
