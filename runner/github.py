"""GitHub Actions glue: the CI plan as job matrices, and what a job records about its runner.

``gilmatrix plan --github`` turns the plan into the workflow's job matrices
(:mod:`gilmatrix.shards` decides the shards), so ``.github/workflows/matrix.yml`` never repeats
the interpreter or workload lists:

- ``images``: ``{"include": [{"interpreter", "artifact"}, ...]}``, one image job per
  interpreter (GitHub-hosted bench jobs restore their images from these jobs' artifacts);
- ``bench``: ``{"include": [entry, ...]}``, one bench job per shard x replicate. An entry says
  what it runs (``only``: the shard's workloads, on every interpreter; ``run_minutes``: its
  share of the run budget) and where: ``runs_on`` and ``self_hosted`` (GitHub gives every
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
from pathlib import Path
from typing import Any

from gilmatrix.errors import UserError
from gilmatrix.shards import CiPlan, describe, is_self_hosted

RUNNER_FACTS = "github-runner.json"


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


def job_matrices(ci: CiPlan) -> dict[str, Any]:
    """The workflow's two job matrices."""
    return {
        "images": {"include": ci.image_jobs()},
        "bench": {"include": ci.bench_jobs()},
    }


def github_outputs(ci: CiPlan) -> dict[str, str]:
    """The plan job's outputs: the matrices, and what the report job needs to know."""
    matrices = job_matrices(ci)
    return {
        "images": json.dumps(matrices["images"], separators=(",", ":")),
        "images_count": str(len(ci.image_interpreters)),
        "bench": json.dumps(matrices["bench"], separators=(",", ":")),
        "count": str(len(matrices["bench"]["include"])),
        "interpreters": ",".join(ci.interpreters),
        "profile": ci.plan.profile.name,
        "replicates": str(ci.replicates),
    }


def write_github_output(path: str | Path, outputs: Mapping[str, str]) -> None:
    """Append ``key=value`` lines to $GITHUB_OUTPUT (values are single-line JSON or ids)."""
    with open(path, "a", encoding="utf-8") as handle:
        for key, value in outputs.items():
            if "\n" in value:
                raise ValueError(f"output {key} spans several lines")
            handle.write(f"{key}={value}\n")


def plan_summary(ci: CiPlan) -> str:
    """Markdown for the plan job's summary: which job runs what, where, and why."""
    plan = ci.plan
    jobs = len(ci.shards) * ci.replicates
    lines = [
        f"### gilmatrix plan: profile `{plan.profile.name}`, {len(ci.shards)} shards x "
        f"{ci.replicates} replicates = {jobs} bench jobs",
        "",
        f"Every bench job runs all {len(ci.interpreters)} interpreters "
        f"({', '.join(ci.interpreters) or 'none'}) on its workloads, interleaved on one runner: "
        "every comparison in the report is between cells of one machine.",
        "",
        "| shard | workloads | cells | est. minutes | run budget | runs on | runner | why there |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for shard in ci.shards:
        kind = "self-hosted" if shard.self_hosted else "GitHub-hosted (shared, noisy)"
        budget = "-" if shard.run_minutes is None else f"{shard.run_minutes:.1f} min"
        lines.append(
            f"| {shard.id} | {', '.join(shard.workloads)} | {shard.cells} | {shard.minutes:.1f} | "
            f"{budget} | `{', '.join(shard.runs_on)}` | {kind} | {shard.why} |"
        )
    lines.append("")
    if ci.image_interpreters:
        lines.append(
            f"Image jobs: {len(ci.image_interpreters)}, one per interpreter, built once (or restored "
            "from the Actions cache) and restored by every GitHub-hosted bench job."
        )
    if ci.replicates == 1:
        lines.append(
            "One replicate: the report cannot tell how far a verdict would move on another runner "
            "of the same labels (`replicates: 2` or more measures it)."
        )
    else:
        lines.append(
            f"{ci.replicates} replicates: each shard runs on {ci.replicates} runners of its labels; "
            "the report says whether each verdict holds on all of them."
        )
    lines += [f"- warning: {w}" for w in ci.warnings]
    return "\n".join(lines) + "\n"


def emit(ci: CiPlan, environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The job matrices; also written to $GITHUB_OUTPUT and a table to $GITHUB_STEP_SUMMARY
    when those are set (i.e. inside a GitHub Actions step)."""
    if environ.get("GITHUB_OUTPUT"):
        write_github_output(environ["GITHUB_OUTPUT"], github_outputs(ci))
    if environ.get("GITHUB_STEP_SUMMARY"):
        with open(environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as handle:
            handle.write(plan_summary(ci))
    print(describe(ci), file=sys.stderr)
    return job_matrices(ci)


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
