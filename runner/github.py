"""GitHub Actions glue: the plan as a job matrix, and what a job records about its runner.

``gilmatrix plan --github`` turns the plan into ``{"include": [entry, ...]}``, one entry per
interpreter that has runnable cells, so ``.github/workflows/matrix.yml`` never repeats the
interpreter list. An entry says where the job runs:

- ``runs_on``: the interpreter's ``runs_on`` labels in matrix.yaml, else the labels given to
  the command (the workflow's ``runner_labels`` input), else ``ubuntu-latest``;
- ``self_hosted``: whether those labels name a self-hosted runner (GitHub gives every
  self-hosted runner the ``self-hosted`` label; anything else is a shared GitHub-hosted VM,
  whose neighbours make timings noisy).

``python -m gilmatrix.github runner-facts RUN_DIR`` (run by the bench job) writes
``RUN_DIR/github-runner.json`` from the runner's environment; ``gilmatrix merge`` keeps it
with that machine's host facts.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gilmatrix.errors import UserError
from gilmatrix.matrix.plan import Plan

DEFAULT_RUNS_ON = ("ubuntu-latest",)
SELF_HOSTED_LABEL = "self-hosted"
RUNNER_FACTS = "github-runner.json"
ARTIFACT_PREFIX = "results-"


@dataclass(frozen=True, slots=True)
class Job:
    """One entry of the job matrix: one interpreter on one runner."""

    interpreter: str
    profile: str
    runs_on: tuple[str, ...]
    self_hosted: bool
    cells: int  # planned (runnable) cells
    skipped: int  # cells planned as skipped (e.g. an executor this version lacks)
    only: str  # space-separated ids for `gilmatrix run --only`: the interpreter, then workloads
    artifact: str  # name of the artifact that carries its results

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["runs_on"] = list(self.runs_on)
        return data


def parse_runner_labels(text: str | None) -> tuple[str, ...] | None:
    """Labels from a JSON list (``["self-hosted", "x64"]``), a JSON string, or ``a, b, c``.

    Empty or blank text means "no override" (None).
    """
    if text is None or not text.strip():
        return None
    text = text.strip()
    if text[0] in '[{"':
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise UserError(
                f"--runner-labels {text!r}: not valid JSON ({exc}); give a JSON list "
                'such as ["self-hosted", "linux", "x64"] or a comma-separated list'
            ) from None
        labels = [value] if isinstance(value, str) else value
        if not isinstance(labels, list) or not all(isinstance(v, str) for v in labels):
            raise UserError(f"--runner-labels {text!r}: expected a JSON list of strings")
    else:
        labels = text.split(",")
    cleaned = tuple(label.strip() for label in labels if label.strip())
    if not cleaned:
        raise UserError(f"--runner-labels {text!r}: no label in it")
    return cleaned


def is_self_hosted(labels: Sequence[str]) -> bool:
    return SELF_HOSTED_LABEL in labels


def job_matrix(plan: Plan, runner_labels: Sequence[str] | None = None, only: Sequence[str] = ()) -> list[Job]:
    """One job per interpreter of ``plan`` with at least one runnable cell, in plan order.

    ``only`` is the plan's filter; its workload ids are handed on to each job's run, so a job
    runs exactly the cells of its interpreter that the plan has.
    """
    interp_ids = {i.id for i in plan.interpreters}
    workload_filters = [o for o in only if o not in interp_ids]
    jobs = []
    for interp in plan.interpreters:
        runnable = plan.cells_for(interp.id)
        if not runnable:
            continue
        labels = tuple(interp.runs_on) or tuple(runner_labels or ()) or DEFAULT_RUNS_ON
        jobs.append(
            Job(
                interpreter=interp.id,
                profile=plan.profile.name,
                runs_on=labels,
                self_hosted=is_self_hosted(labels),
                cells=len(runnable),
                skipped=len(plan.cells_for(interp.id, "skipped")),
                only=" ".join([interp.id, *workload_filters]),
                artifact=f"{ARTIFACT_PREFIX}{interp.id}",
            )
        )
    return jobs


def matrix_json(jobs: Sequence[Job]) -> dict[str, Any]:
    return {"include": [job.to_json() for job in jobs]}


def github_outputs(plan: Plan, jobs: Sequence[Job]) -> dict[str, str]:
    """The plan job's outputs: the matrix, and what the report job needs to know."""
    without = [i.id for i in plan.interpreters if i.id not in {j.interpreter for j in jobs}]
    return {
        "matrix": json.dumps(matrix_json(jobs), separators=(",", ":")),
        "count": str(len(jobs)),
        "interpreters": ",".join(j.interpreter for j in jobs),
        "not_runnable": ",".join(without),
        "profile": plan.profile.name,
    }


def write_github_output(path: str | Path, outputs: Mapping[str, str]) -> None:
    """Append ``key=value`` lines to $GITHUB_OUTPUT (values are single-line JSON or ids)."""
    with open(path, "a", encoding="utf-8") as handle:
        for key, value in outputs.items():
            if "\n" in value:
                raise ValueError(f"output {key} spans several lines")
            handle.write(f"{key}={value}\n")


def plan_summary(plan: Plan, jobs: Sequence[Job]) -> str:
    """Markdown for the plan job's summary: which job runs where."""
    lines = [
        f"### gilmatrix plan: profile `{plan.profile.name}`, {len(jobs)} jobs",
        "",
        "| interpreter | cells | skipped | runs on | runner |",
        "|---|---|---|---|---|",
    ]
    for job in jobs:
        kind = "self-hosted" if job.self_hosted else "GitHub-hosted (shared, noisy)"
        lines.append(
            f"| {job.interpreter} | {job.cells} | {job.skipped} | `{', '.join(job.runs_on)}` | {kind} |"
        )
    idle = [i.id for i in plan.interpreters if i.id not in {j.interpreter for j in jobs}]
    if idle:
        lines += ["", f"No runnable cells (no job): {', '.join(idle)}."]
    return "\n".join(lines) + "\n"


def emit(
    plan: Plan,
    runner_labels: Sequence[str] | None,
    only: Sequence[str],
    environ: Mapping[str, str] = os.environ,
) -> dict[str, Any]:
    """Build the job matrix; write it to $GITHUB_OUTPUT and a table to $GITHUB_STEP_SUMMARY
    when those are set (i.e. inside a GitHub Actions step). Returns the matrix."""
    jobs = job_matrix(plan, runner_labels, only)
    if environ.get("GITHUB_OUTPUT"):
        write_github_output(environ["GITHUB_OUTPUT"], github_outputs(plan, jobs))
    if environ.get("GITHUB_STEP_SUMMARY"):
        with open(environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as handle:
            handle.write(plan_summary(plan, jobs))
    return matrix_json(jobs)


# -- the runner a job ran on ------------------------------------------------------------------

_RUNNER_ENV = {
    "name": "RUNNER_NAME",
    "environment": "RUNNER_ENVIRONMENT",
    "os": "RUNNER_OS",
    "arch": "RUNNER_ARCH",
    "repository": "GITHUB_REPOSITORY",
    "run_id": "GITHUB_RUN_ID",
    "run_attempt": "GITHUB_RUN_ATTEMPT",
    "job": "GITHUB_JOB",
    "sha": "GITHUB_SHA",
}


def runner_facts(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """What GitHub says about the runner of this job (RUNNER_ENVIRONMENT is ``github-hosted``
    or ``self-hosted``), plus the labels the job asked for ($GILMATRIX_RUNS_ON, a JSON list)."""
    facts: dict[str, Any] = {key: environ.get(var) for key, var in _RUNNER_ENV.items()}
    labels = parse_runner_labels(environ.get("GILMATRIX_RUNS_ON")) or ()
    facts["labels"] = list(labels)
    if facts["environment"] is None and labels:
        facts["environment"] = "self-hosted" if is_self_hosted(labels) else "github-hosted"
    server, repo, run_id = (environ.get("GITHUB_SERVER_URL"), facts["repository"], facts["run_id"])
    facts["run_url"] = f"{server}/{repo}/actions/runs/{run_id}" if server and repo and run_id else None
    return facts


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "runner-facts":
        print("usage: python -m gilmatrix.github runner-facts RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(args[1])
    if not run_dir.is_dir():
        print(f"error: {run_dir}: not a folder", file=sys.stderr)
        return 2
    facts = runner_facts()
    (run_dir / RUNNER_FACTS).write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(facts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
