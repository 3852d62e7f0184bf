"""Resuming a run: what a resume must keep (the backend, its settings, the matrix) and the
checks that refuse a resume that would measure the rest of the run another way; then the run
loop again, from what is on disk. Stage: run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gilmatrix.backends.base import Backend
from gilmatrix.errors import UserError
from gilmatrix.matrix.model import Matrix
from gilmatrix.matrix.plan import Plan
from gilmatrix.run.execute import MatrixRun
from gilmatrix.run.store import RunDir


def resumed_settings(
    manifest: dict[str, Any],
    run_path: Path,
    *,
    backend: str | None,
    pythons: dict[str, str],
    cpuset: str | None,
    build_profile: str | None,
) -> tuple[str, dict[str, str], str | None, str]:
    """The backend and settings a resume continues with: the run's own, from its manifest. An
    explicit option that differs is refused (UserError): the run's remaining cells would be
    measured elsewhere, or another way, than its finished ones (``--backend auto`` means
    "the run's own"). Returns (backend name, --python map, cpuset, build profile)."""
    recorded = manifest.get("backend") or {}
    name = recorded.get("name")
    if name not in ("local", "docker"):
        raise UserError(
            f"{run_path}: its manifest's backend.name is {name!r}, not local or docker (a merged "
            "run?): it cannot be resumed"
        )
    if backend not in (None, "auto", name):
        raise UserError(
            f"{run_path}: this run was made with the {name} backend; --resume continues with it "
            f"(its finished cells were measured there), not --backend {backend}: drop --backend, "
            "or start a new run"
        )
    settings = recorded.get("settings") or {}  # absent in manifests of earlier versions
    kept_pythons = dict(settings.get("python") or {})
    for interp, path in pythons.items():
        if interp in kept_pythons and kept_pythons[interp] != path:
            raise UserError(
                f"{run_path}: this run measured {interp} with --python {interp}={kept_pythons[interp]}; "
                f"--resume continues with it, not {path} (or start a new run)"
            )
    for option, given in (("cpuset", cpuset), ("build_profile", build_profile)):
        if name == "docker" and given is not None and option in settings and settings[option] != given:
            flag = "--" + option.replace("_", "-")
            raise UserError(
                f"{run_path}: this run was made with {flag} {settings[option] or '(none)'}; "
                f"--resume continues with it, not {flag} {given} (or start a new run)"
            )
    return (
        name,
        {**kept_pythons, **pythons},
        settings.get("cpuset", cpuset),
        settings.get("build_profile") or build_profile or "fast",
    )


def resume_run(
    matrix: Matrix, plan: Plan, backend: Backend, run_dir: RunDir, log: Callable[[str], None] = print
) -> int:
    run_dir.acquire("resume")  # taken already by the command, before the backend started
    try:
        return _resume(matrix, plan, backend, run_dir, log)
    finally:
        run_dir.release()


def _resume(matrix: Matrix, plan: Plan, backend: Backend, run_dir: RunDir, log: Callable[[str], None]) -> int:
    manifest = run_dir.manifest()
    if manifest["matrix"]["sha256"] != matrix.sha256:
        given = manifest["matrix"].get("overrides") or []
        raise UserError(
            f"{run_dir.path}: {matrix.path} changed since this run started; resume "
            "needs the same matrix file"
            + (f" and overrides ({', '.join(given)})" if given else "")
            + " (or start a new run)"
        )
    problem = backend.resume_problem(manifest.get("backend") or {})
    if problem is not None:
        raise UserError(f"{run_dir.path}: {problem}")
    run = MatrixRun(
        matrix, plan, backend, run_dir, manifest["run_id"], manifest["matrix"].get("only", []), log
    )
    run.started = manifest["started"]
    schedule = manifest.get("schedule") or {}
    if "seed" in schedule:
        run.seed = int(schedule["seed"])
    run.rounds = list(schedule.get("rounds") or [])
    run.windows = list(schedule.get("windows") or [])
    run.noise = schedule.get("noise")
    run.ci = manifest.get("ci")
    return run.execute()
