"""The interface every backend implements, and the values it passes around."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from gilmatrix.errors import EnvironmentUnavailable
from gilmatrix.matrix.model import Interpreter, Workload


@dataclass(frozen=True, slots=True)
class BackendOptions:
    """Everything a backend may need from the command line and the run."""

    work_dir: Path  # where the backend may cache things (venvs, image build contexts): OUT/
    explicit_pythons: Mapping[str, str] = field(default_factory=dict)  # --python ID=PATH
    wheelhouse: Path | None = None  # offline wheels for pyperf & co.
    sources: Path | None = None  # offline mirror of CPython source tarballs
    download_base: str | None = None  # docker: python.org, or a mirror of its ftp/python/
    images_dir: Path | None = None  # docker: Dockerfile, scripts and source lock
    cpuset: str | None = None  # docker: --cpuset-cpus
    build_profile: str = "fast"  # docker: fast | release
    log: Callable[[str], None] = print

    def recorded(self) -> dict[str, Any]:
        """The options that decide what a run measures (the manifest's ``backend.settings``):
        a resume keeps them, so one run's cells are never measured two ways."""
        return {
            "python": dict(self.explicit_pythons),
            "cpuset": self.cpuset,
            "build_profile": self.build_profile,
        }


@dataclass(frozen=True, slots=True)
class Environment:
    """A ready interpreter: where its python is and what it reported about itself."""

    interpreter_id: str
    backend: str
    python: str  # the executable, as the harness command sees it (host path or path in the image)
    facts: Mapping[str, Any]  # the JSON printed by `python -m gilmatrix.harness facts`
    image: str | None = None  # docker: image tag
    image_id: str | None = None  # docker: image id (sha256:...)
    extra: Mapping[str, Any] = field(default_factory=dict)  # backend-specific facts for the manifest

    def describe(self) -> dict[str, Any]:
        """The manifest entry for this environment."""
        return {
            "backend": self.backend,
            "python": self.python,
            "image": self.image,
            "image_id": self.image_id,
            "facts": dict(self.facts),
            **dict(self.extra),
        }


@dataclass(frozen=True, slots=True)
class WorkloadSetup:
    """A user workload made ready in one environment: how its cells import it, or why not."""

    module: str  # the import name
    pythonpath: tuple[str, ...] = ()  # folders first on its workers' PYTHONPATH (as they see them)
    module_file: str = ""  # the file, as the matrix names it (recorded in the results)
    problem: str | None = None  # its requirements could not be installed: its cells are skipped

    def cell_fields(self) -> dict[str, Any]:
        """What the job's cells of this workload carry to the harness."""
        return {"module": self.module, "pythonpath": list(self.pythonpath), "module_file": self.module_file}


class Backend(abc.ABC):
    """Provides environments and runs the harness driver in them."""

    name: ClassVar[str]

    def __init__(self, options: BackendOptions) -> None:
        self.options = options

    @abc.abstractmethod
    def prepare(self, interpreter: Interpreter) -> Environment:
        """Make ``interpreter`` ready to run the harness.

        Raises :class:`gilmatrix.errors.EnvironmentUnavailable` with a reason a user can act on
        when it cannot (interpreter not found, image build failed, ...): the run records every
        cell of that interpreter as skipped with this reason and goes on.
        """

    @abc.abstractmethod
    def harness_command(self, env: Environment, run_dir: Path, job_name: str) -> list[str]:
        """Argument list that runs ``python -m gilmatrix.harness serve`` for one job: the
        interpreter's driver, which takes its commands on stdin for the whole run.

        The job file is ``run_dir/jobs/<job_name>``; the harness writes per-cell files below
        ``run_dir/cells/``. Paths inside the command are as the harness process sees them.
        """

    def prepare_workloads(self, env: Environment, workloads: Sequence[Workload]) -> dict[str, WorkloadSetup]:
        """Make the matrix' user workloads (``module:``) importable in ``env``: ship their
        files, install their requirements. One entry per workload id; a workload whose
        requirements cannot be installed there gets a ``problem`` (its cells are skipped on
        that interpreter, with pip's reason), the rest of the run goes on."""
        if any(w.module is not None for w in workloads):
            raise EnvironmentUnavailable(f"the {self.name} backend cannot run user workloads (module:)")
        return {}

    def describe_environment(self, env: Environment) -> dict[str, Any]:
        """The manifest entry of ``env`` once its workloads are prepared (docker: with the
        workload image its driver runs in)."""
        return env.describe()

    def reclaim(self, run_dir: Path) -> None:
        """Called when a run (new or resumed) starts, before it reads the run folder: remove
        what an earlier process on ``run_dir`` left running because it died without cleaning
        up (docker: its drivers' containers)."""
        return None  # the local backend's drivers die with the host's process group

    def explain_stop(self, run_dir: Path, reason: str) -> str:
        """The reason a driver stopped, as its cells will carry it: a backend may know more
        than the driver's end showed (the Docker engine went away)."""
        return reason

    def resume_problem(self, recorded: Mapping[str, Any]) -> str | None:
        """Why this backend, as configured now, cannot go on with a run whose manifest recorded
        ``recorded`` (its ``backend`` section: :meth:`describe` and the settings then), or
        None: a resume must measure the rest of the run as the run began."""
        return None

    def cleanup(self, run_dir: Path, job_name: str) -> None:
        """Called after a harness run was killed (watchdog, interrupt): remove what it left."""
        return None  # the local backend leaves nothing: the harness' process groups die with it

    def describe(self) -> dict[str, Any]:
        """Backend facts for the manifest."""
        return {"name": self.name}
