"""The ``local`` backend: interpreters already on this machine, each with a venv holding pyperf.

Discovery order for an interpreter id such as ``3.12`` or ``3.13t``: ``--python ID=PATH``, the
matrix' ``python:``, ``$(pyenv root)/versions/3.12.*`` (newest final release first), uv's managed
interpreters, then ``python3.12`` / ``python3.13t`` on PATH (pyenv shims excluded: they run
whatever version is active). Every candidate is asked for its facts and must report the version
and GIL build the id names.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gilmatrix.backends.base import Backend, Environment, WorkloadSetup
from gilmatrix.backends.staging import stage_harness
from gilmatrix.backends.usercode import pip_reason, requirements_digest, stage_workload
from gilmatrix.errors import EnvironmentUnavailable
from gilmatrix.matrix.model import Interpreter, Workload

_RELEASE = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:(a|b|rc)(\d+))?(t?)$")
# The same pyperf as in the images (images/sources.toml [harness_requirements]; a test checks):
# 2.10.0 is the newest that still runs on 3.10, and one version everywhere keeps runs comparable.
PYPERF_REQUIREMENT = "pyperf==2.10.0"


def pyenv_root() -> Path:
    env = os.environ.get("PYENV_ROOT")
    return Path(env) if env else Path.home() / ".pyenv"


def _release_key(name: str) -> tuple[int, ...] | None:
    match = _RELEASE.match(name)
    if not match:
        return None
    major, minor, micro, level, serial, _ = match.groups()
    level_rank = {"a": 0, "b": 1, "rc": 2, None: 3}[level]
    # Final releases sort before pre-releases: a matrix id means the released interpreter.
    return (int(major), int(minor), int(level is None), int(micro), level_rank, int(serial or 0))


def managed_candidates(interp: Interpreter) -> list[Path]:
    """pyenv and uv installs of ``interp``, newest first."""
    found: list[tuple[tuple[int, ...], Path]] = []
    suffix = "t" if interp.free_threaded else ""
    versions = pyenv_root() / "versions"
    if versions.is_dir():
        for entry in versions.iterdir():
            key = _release_key(entry.name)
            if key and key[:2] == interp.version and entry.name.endswith("t") == interp.free_threaded:
                found.append((key, entry / "bin" / f"python{interp.minor}{suffix}"))
    uv_dir = Path(os.environ.get("UV_PYTHON_INSTALL_DIR", Path.home() / ".local/share/uv/python"))
    if uv_dir.is_dir():
        for entry in uv_dir.iterdir():  # cpython-3.13.1+freethreaded-linux-x86_64-gnu
            parts = entry.name.split("-")
            if len(parts) < 2 or parts[0] != "cpython":
                continue
            version, _, variant = parts[1].partition("+")
            key = _release_key(version)
            if key and key[:2] == interp.version and (variant == "freethreaded") == interp.free_threaded:
                found.append((key, entry / "bin" / f"python{interp.minor}{suffix}"))
    return [path for _, path in sorted(found, reverse=True)]


def path_candidates(interp: Interpreter) -> list[Path]:
    shims = str(pyenv_root() / "shims")
    search = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p and not p.startswith(shims)
    )
    name = f"python{interp.minor}{'t' if interp.free_threaded else ''}"
    found = shutil.which(name, path=search)
    return [Path(found)] if found else []


def found_locally(minors: Sequence[int] = tuple(range(8, 17))) -> list[str]:
    """The interpreter ids (3.12, 3.13t, ...) this backend's discovery has a candidate for on
    this machine (pyenv, uv, PATH), without running them: what a matrix could name here."""
    found = []
    for minor in minors:
        for free_threaded in (False, True):
            interp = Interpreter(
                id=f"3.{minor}{'t' if free_threaded else ''}", version=(3, minor), free_threaded=free_threaded
            )
            if managed_candidates(interp) or path_candidates(interp):
                found.append(interp.id)
    return found


def read_facts(python: str, harness_path: Path) -> dict[str, Any]:
    """Run the harness' facts command with ``python`` (isolated from the user's site and env)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from gilmatrix.harness.facts import main; sys.exit(main())"
    )
    proc = subprocess.run(
        [python, "-I", "-c", code, str(harness_path)], capture_output=True, text=True, timeout=60
    )
    if proc.returncode != 0:
        raise EnvironmentUnavailable(
            f"{python} failed to report its facts: {(proc.stderr or proc.stdout).strip()[-300:]}"
        )
    facts: dict[str, Any] = json.loads(proc.stdout)
    return facts


def purelib_of(python: str) -> Path:
    """The site-packages folder of ``python`` (a venv's: where a .pth line is read)."""
    code = "import json, sysconfig; print(json.dumps(sysconfig.get_paths()['purelib']))"
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return Path(json.loads(proc.stdout))


def facts_mismatch(interp: Interpreter, facts: dict[str, Any]) -> str | None:
    version = tuple(facts["version_info"][:2])
    if facts.get("implementation") != "cpython":
        return f"is {facts.get('implementation')}, not CPython"
    if version != interp.version:
        return f"is Python {facts['version']}, not {interp.minor}"
    if bool(facts["py_gil_disabled"]) != interp.free_threaded:
        build = "free-threaded" if facts["py_gil_disabled"] else "default (GIL)"
        return f"is a {build} build, but {interp.id!r} asks for the other kind"
    return None


class LocalBackend(Backend):
    name = "local"

    def _harness_path(self) -> Path:
        # absolute: a .pth line is read relative to site-packages (`--out out` must work)
        return stage_harness(self.options.work_dir.resolve() / "harness")

    def find(self, interp: Interpreter) -> tuple[str, dict[str, Any]]:
        """The first candidate interpreter whose facts match ``interp``."""
        explicit = self.options.explicit_pythons.get(interp.id) or interp.python
        candidates = (
            [Path(os.path.expanduser(explicit))]
            if explicit
            else (managed_candidates(interp) + path_candidates(interp))
        )
        if not candidates:
            where = f"{pyenv_root() / 'versions'}, uv's interpreters or PATH"
            raise EnvironmentUnavailable(
                f"no CPython {interp.id} found in {where}; install one (e.g. `pyenv install "
                f"{interp.minor}{'t' if interp.free_threaded else ''}`) or pass --python "
                f"{interp.id}=/path/to/python"
            )
        problems = []
        for candidate in candidates:
            if not os.access(candidate, os.X_OK):
                problems.append(f"{candidate} is not an executable file")
                continue
            facts = read_facts(str(candidate), self._harness_path())
            mismatch = facts_mismatch(interp, facts)
            if mismatch is None:
                return str(candidate), facts
            problems.append(f"{candidate} {mismatch}")
        raise EnvironmentUnavailable(f"no usable CPython {interp.id}: " + "; ".join(problems))

    def prepare(self, interpreter: Interpreter) -> Environment:
        python, facts = self.find(interpreter)
        venv = self._venv(interpreter, python, facts)
        harness = self._harness_path()
        site = purelib_of(str(venv / "bin" / "python"))
        # A .pth file, not PYTHONPATH: pyperf strips the environment of its workers, and pool
        # processes must import the harness by name too.
        (site / "gilmatrix-harness.pth").write_text(f"{harness}\n")
        return Environment(
            interpreter_id=interpreter.id,
            backend=self.name,
            python=str(venv / "bin" / "python"),
            facts=facts,
            extra={"base_python": python, "venv": str(venv)},
        )

    def _venv(self, interp: Interpreter, python: str, facts: dict[str, Any]) -> Path:
        key = hashlib.sha256(f"{python}\0{facts['sys_version']}\0{PYPERF_REQUIREMENT}".encode())
        venv = self.options.work_dir / "venvs" / f"{interp.id}-{key.hexdigest()[:12]}"
        marker = venv / ".gilmatrix-ready"
        if marker.exists():
            return venv
        self.options.log(f"[{interp.id}] creating a virtual environment with pyperf: {venv}")
        shutil.rmtree(venv, ignore_errors=True)
        self._check(interp, [python, "-m", "venv", str(venv)], "could not create a venv")
        install = self._pip_install(str(venv / "bin" / "python"))
        self._check(interp, [*install, PYPERF_REQUIREMENT], "could not install pyperf")
        marker.write_text(python + "\n")
        return venv

    def _pip_install(self, python: str) -> list[str]:
        install = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        if self.options.wheelhouse:
            install += ["--no-index", "--find-links", str(self.options.wheelhouse)]
        return install

    def prepare_workloads(self, env: Environment, workloads: Sequence[Workload]) -> dict[str, WorkloadSetup]:
        """Each user workload's files, staged under OUT/workloads/; its requirements installed
        with the interpreter's pip into a folder of their own (OUT/deps/<interpreter>-<hash>),
        first on its workers' PYTHONPATH after the module's folder."""
        out: dict[str, WorkloadSetup] = {}
        for workload in workloads:
            if workload.module is None:
                continue
            folder = stage_workload(workload, self.options.work_dir / "workloads")
            paths, problem = [str(folder)], None
            if workload.requirements:
                key = f"{env.facts.get('sys_version')}\0{requirements_digest(workload)}"
                digest = hashlib.sha256(key.encode()).hexdigest()[:16]
                deps = self.options.work_dir / "deps" / f"{env.interpreter_id}-{digest}"
                problem = self._install(env, workload, deps)
                paths.append(str(deps))
            out[workload.id] = WorkloadSetup(
                module=workload.module.name,
                pythonpath=tuple(paths),
                module_file=str(workload.module.path),
                problem=problem,
            )
        return out

    def _install(self, env: Environment, workload: Workload, deps: Path) -> str | None:
        """pip-install the workload's requirements into ``deps`` (once); the reason on failure."""
        marker = deps / ".gilmatrix-ready"
        if marker.exists():
            return None
        self.options.log(
            f"[{env.interpreter_id}] {workload.id}: installing {', '.join(workload.requirements)}"
        )
        shutil.rmtree(deps, ignore_errors=True)
        command = [*self._pip_install(env.python), "--target", str(deps), *workload.requirements]
        wanted = ", ".join(workload.requirements)
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        except subprocess.TimeoutExpired:
            shutil.rmtree(deps, ignore_errors=True)
            return f"pip could not install {wanted}: it took over 30 minutes"
        if proc.returncode != 0:
            shutil.rmtree(deps, ignore_errors=True)
            return f"pip could not install {wanted}: {pip_reason(proc.stderr + proc.stdout)}"
        marker.write_text(" ".join(workload.requirements) + "\n")
        return None

    @staticmethod
    def _check(interp: Interpreter, command: list[str], what: str) -> None:
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise EnvironmentUnavailable(f"{interp.id}: {what}: {' | '.join(tail)}")

    def harness_command(self, env: Environment, run_dir: Path, job_name: str) -> list[str]:
        # --cpuset (or a profile's placement): the driver and all it starts on those CPUs
        pin = []
        if self.options.cpuset:
            if shutil.which("taskset"):
                pin = ["taskset", "--cpu-list", self.options.cpuset]
            else:
                self.options.log(
                    f"warning: no taskset (util-linux) here: --cpuset {self.options.cpuset} ignored"
                )
        return [
            *pin,
            env.python,
            "-m",
            "gilmatrix.harness",
            "serve",
            "--job",
            str(run_dir / "jobs" / job_name),
            "--out",
            str(run_dir),
        ]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "host_python": sys.executable}
