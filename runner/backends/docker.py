"""The docker backend: one image per interpreter (runner/images/build.py), one container per job.

The container is locked down so that a benchmark can only compute and write its results:
no network, read-only root file system with a tmpfs /tmp, the run folder as the only writable
mount, an unprivileged user, no capabilities, bounded processes and memory, and the CPUs given
with ``--cpuset-cpus``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gilmatrix.backends.base import Backend, BackendOptions, Environment, WorkloadSetup
from gilmatrix.errors import EnvironmentUnavailable, UserError
from gilmatrix.harness.drive import write_atomic
from gilmatrix.images import docker as dk
from gilmatrix.images.build import ImageBuilder, ImageError
from gilmatrix.images.workloads import WorkloadImage, abi_of, ensure_workload_image
from gilmatrix.matrix.model import Interpreter, Workload

__all__ = ["DockerBackend", "container_name", "engine_answers", "harness_command"]

IMAGE_USER = "10001:10001"  # the `gilmatrix` user of images/Dockerfile
RESULTS = "/results"  # where the run folder is mounted in the container
DEFAULT_MEMORY = "8g"  # --memory; override with $GILMATRIX_DOCKER_MEMORY
# --cpus (a CPU quota: the container gets this many CPUs' worth of time); unset: none. For a
# runner shared with other work, or to see what a slower machine does to a run's verdicts.
CPUS_ENV = "GILMATRIX_DOCKER_CPUS"
DEFAULT_PIDS = 4096  # --pids-limit: free-threaded pools are threads, and threads count here
TMPFS = "/tmp:rw,exec,nosuid,size=1g"
SHM_SIZE = "512m"  # multiprocessing's semaphores and queues live in /dev/shm


def engine_answers() -> bool:
    """True when a Docker engine answers; `--backend auto` picks docker then."""
    return dk.engine_answers()


RUN_LABEL = "io.gilmatrix.run"  # the run folder (resolved path) a job container writes into
JOB_LABEL = "io.gilmatrix.job"
REMOVAL_WAIT = 60.0  # seconds a leftover container may take to go once removal has begun


def container_name(run_dir: Path, job_name: str) -> str:
    """A stable container name per run folder and job, so a stuck container can be found and
    removed. The run folder's path is hashed in: two folders of one run id (another ``--out``)
    never share a name, so removing one run's container cannot touch another's."""
    run_dir = Path(run_dir).resolve()
    digest = hashlib.sha256(str(run_dir).encode()).hexdigest()[:8]
    raw = f"gilmatrix-{run_dir.name[:60]}-{digest}-{job_name}"
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", raw)[:120]


def container_user(run_dir: Path) -> str:
    """Who the container runs as, so the host user can read and delete what it writes.

    A non-root host user: that uid:gid (files come out owned by the host user). Root: the image's
    unprivileged user, and the run folder's directories are handed to it so it may write there.
    """
    if os.getuid() != 0:
        return f"{os.getuid()}:{os.getgid()}"
    uid, gid = (int(x) for x in IMAGE_USER.split(":"))
    (run_dir / "cells").mkdir(parents=True, exist_ok=True)  # where the harness writes
    for directory in [run_dir, *(p for p in run_dir.rglob("*") if p.is_dir())]:
        os.chown(directory, uid, gid)
    return IMAGE_USER


# Read by the harness or by the interpreters: passed into the container when set on the host, as
# the local backend's driver inherits them (fault injection; PYTHON_GIL=1 re-enables the GIL of a
# free-threaded build, and the run's gilmatrix_gil_enabled metadata then says so).
FORWARDED_ENV = ("GILMATRIX_FAULTS", "PYTHON_GIL", "PYTHON_CPU_COUNT")


def forwarded_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {name: environ[name] for name in FORWARDED_ENV if name in environ}


def harness_command(
    client_path: str,
    image: str,
    python: str,
    run_dir: Path,
    job_name: str,
    *,
    user: str,
    cpuset: str | None = None,
    memory: str = DEFAULT_MEMORY,
    cpus: str | None = None,
    pids_limit: int = DEFAULT_PIDS,
    env: Mapping[str, str] | None = None,
    hostname: str | None = None,
) -> list[str]:
    """The `docker run` argument list of one interpreter's harness driver in ``image``: a
    long-lived container for the whole run, its commands on stdin (``--interactive``).

    ``hostname``: the container's (the host's, from the backend). pyperf records it in every
    run and refuses to merge runs of different hosts: without it each container has its own
    (its id), and a resumed run could not merge a cell's workers of the earlier containers."""
    run_dir = Path(run_dir).resolve()
    extra_env = [arg for name, value in sorted((env or {}).items()) for arg in ("--env", f"{name}={value}")]
    return [
        client_path,
        "run",
        "--rm",
        "--interactive",
        "--name",
        container_name(run_dir, job_name),
        "--network",
        "none",
        "--read-only",
        "--tmpfs",
        TMPFS,
        "--shm-size",
        SHM_SIZE,
        "--user",
        user,
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--pids-limit",
        str(pids_limit),
        "--memory",
        memory,
        "--memory-swap",
        memory,
        *(["--cpuset-cpus", cpuset] if cpuset else []),
        *(["--cpus", cpus] if cpus else []),
        *(["--hostname", hostname] if hostname else []),
        "--init",  # reaps orphans and forwards signals to the harness
        "--mount",
        f"type=bind,source={run_dir},target={RESULTS}",
        "--workdir",
        "/tmp",
        "--env",
        "HOME=/tmp",
        *extra_env,
        "--label",
        f"{JOB_LABEL}={job_name}",
        "--label",
        f"{RUN_LABEL}={run_dir}",
        image,
        python,
        "-m",
        "gilmatrix.harness",
        "serve",
        "--job",
        f"{RESULTS}/jobs/{job_name}",
        "--out",
        RESULTS,
    ]


class DockerBackend(Backend):
    name = "docker"

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        self.memory = os.environ.get("GILMATRIX_DOCKER_MEMORY", DEFAULT_MEMORY)
        self.cpus = os.environ.get(CPUS_ENV) or None
        if self.cpus is not None:
            try:
                if float(self.cpus) <= 0:
                    raise ValueError
            except ValueError:
                raise UserError(
                    f"${CPUS_ENV}={self.cpus!r}: give a positive number of CPUs (e.g. 1.5)"
                ) from None
        self.builder = ImageBuilder(
            work_dir=Path(options.work_dir),
            build_profile=options.build_profile,
            sources=options.sources,
            wheelhouse=options.wheelhouse,
            log=options.log,
            download_base=options.download_base,
            images_dir=options.images_dir,
        )
        self._reclaimed: set[Path] = set()  # run folders swept of leftover containers
        # interpreter id -> the workload image of its user workloads (prepare_workloads), the
        # image its driver then runs in
        self.workload_images: dict[str, WorkloadImage] = {}
        self._workload_bases: dict[str, str] = {}  # interpreter id -> the image id it is FROM

    def _client(self) -> dk.Client:
        if self.builder.client is None:
            try:
                self.builder.client = dk.find_client()
            except dk.DockerError as exc:
                raise EnvironmentUnavailable(str(exc)) from None
        return self.builder.client

    def prepare(self, interpreter: Interpreter) -> Environment:
        try:
            result = self.builder.ensure(interpreter)
        except ImageError as exc:
            raise EnvironmentUnavailable(f"no image: {exc}") from None
        assert result.tag and result.python and result.image_id
        facts = self.cached_facts(result.image_id, result.tag, result.python)
        return Environment(
            interpreter_id=interpreter.id,
            backend=self.name,
            python=result.python,
            facts=facts,
            image=result.tag,
            image_id=result.image_id,
            extra={
                **dict(result.details),
                "image_status": result.status,
                "image_size_bytes": result.size_bytes,
                "build_log": str(result.log_path) if result.log_path else None,
            },
        )

    def facts_cache(self, image_id: str) -> Path:
        """Where an image's facts are kept: an image id names its content, so they never change
        for that id on this machine (the key adds the host name and CPU count, which are facts)."""
        key = hashlib.sha256(f"{image_id}|{socket.gethostname()}|{os.cpu_count()}".encode())
        return Path(self.options.work_dir) / "images" / "facts" / f"{key.hexdigest()[:24]}.json"

    def cached_facts(self, image_id: str, image: str, python: str) -> dict[str, Any]:
        """The image's facts from the cache, else from a container (~0.3 s each, per interpreter
        and run: most of a warm docker run's time outside its cells)."""
        cache = self.facts_cache(image_id)
        try:
            cached: dict[str, Any] = json.loads(cache.read_text())
            return cached
        except (OSError, ValueError):
            pass
        facts = self.image_facts(image, python)
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(str(cache), json.dumps(facts, indent=1, sort_keys=True) + "\n")
        return facts

    def image_facts(self, image: str, python: str) -> dict[str, Any]:
        """`python -m gilmatrix.harness facts` in a throw-away container of ``image``."""
        client = self._client()
        base = [
            "run",
            "--rm",
            "--network",
            "none",
            "--read-only",
            "--tmpfs",
            TMPFS,
            "--user",
            IMAGE_USER,
            image,
            python,
        ]
        attempts = (
            ["-m", "gilmatrix.harness", "facts"],
            ["-c", "from gilmatrix.harness.facts import main; raise SystemExit(main())"],
        )
        errors = []
        for attempt in attempts:
            result = dk.docker(client, *base, *attempt, check=False, timeout=120)
            if result.returncode == 0:
                try:
                    facts: dict[str, Any] = json.loads(result.stdout)
                    return facts
                except json.JSONDecodeError:
                    errors.append(f"not JSON: {result.stdout[:200]!r}")
            else:
                errors.append(result.stderr.strip()[-500:])
        raise EnvironmentUnavailable(f"image {image}: the facts command failed: {errors}")

    def prepare_workloads(self, env: Environment, workloads: Sequence[Workload]) -> dict[str, WorkloadSetup]:
        """The user workloads of the run go into a workload image of their own, ``FROM`` the
        interpreter's (runner/images/workloads.py): their files in its last layer, their
        requirements installed with its interpreter from files downloaded here. The driver runs
        in that image (:meth:`harness_command`); a workload whose requirements could not be had
        gets pip's reason as its ``problem``, and if the image cannot be built at all every
        user workload does (the built-in ones still run, in the interpreter's image)."""
        users = [w for w in workloads if w.module is not None]
        self.workload_images.pop(env.interpreter_id, None)
        if not users:
            return {}
        if env.image is None or env.image_id is None:
            raise EnvironmentUnavailable(f"{env.interpreter_id}: environment has no image")
        version = tuple(env.facts["version_info"][:3])
        abi = abi_of(version, bool(env.facts.get("py_gil_disabled")))
        try:
            image = ensure_workload_image(
                self._client(),
                base_tag=env.image,
                base_id=env.image_id,
                python=env.python,
                abi=abi,
                python_version=".".join(str(v) for v in version),
                workloads=users,
                work_dir=self.builder.work_dir,
                wheelhouse=self.options.wheelhouse,
                label=env.interpreter_id,
                log=self.options.log,
            )
        except (dk.DockerError, OSError) as exc:
            problem = f"the workload image could not be built: {exc}"
            self.options.log(f"[{env.interpreter_id}] {problem}")
            return {w.id: self._setup(w, (), problem) for w in users}
        if image.tag is not None:
            self.workload_images[env.interpreter_id] = image
            self._workload_bases[env.interpreter_id] = env.image_id
        setups = {}
        for w in users:
            p = image.workloads[w.id]
            setups[w.id] = self._setup(w, (p.folder, *([p.deps] if p.deps else [])), p.problem)
        return setups

    @staticmethod
    def _setup(workload: Workload, pythonpath: tuple[str, ...], problem: str | None) -> WorkloadSetup:
        assert workload.module is not None
        return WorkloadSetup(
            module=workload.module.name,
            pythonpath=pythonpath,
            module_file=str(workload.module.path),
            problem=problem,
        )

    def image_for(self, env: Environment) -> str | None:
        """The image ``env``'s driver runs in: its workload image when the run has user
        workloads (made from this very interpreter image), else the interpreter's image."""
        derived = self.workload_images.get(env.interpreter_id)
        if derived is not None and self._workload_bases.get(env.interpreter_id) == env.image_id:
            return derived.tag
        return env.image

    def describe_environment(self, env: Environment) -> dict[str, Any]:
        out = super().describe_environment(env)
        derived = self.workload_images.get(env.interpreter_id)
        if derived is not None and self.image_for(env) == derived.tag:
            out.update(
                workload_image=derived.tag,
                workload_image_id=derived.image_id,
                workload_image_status=derived.status,
                workload_image_log=str(derived.log_path) if derived.log_path else None,
            )
        return out

    def harness_command(self, env: Environment, run_dir: Path, job_name: str) -> list[str]:
        image = self.image_for(env)
        if image is None:
            raise EnvironmentUnavailable(f"{env.interpreter_id}: environment has no image")
        run_dir = Path(run_dir)
        self.reclaim(run_dir)  # a no-op when the run already did it
        return harness_command(
            self._client().path,
            image,
            env.python,
            run_dir,
            job_name,
            user=container_user(run_dir),
            cpuset=self.options.cpuset,
            memory=self.memory,
            cpus=self.cpus,
            env=forwarded_env(os.environ),
            hostname=socket.gethostname(),
        )

    def cleanup(self, run_dir: Path, job_name: str) -> None:
        # Killing the `docker run` client does not stop its container.
        self.remove_container(run_dir, job_name)

    def remove_container(self, run_dir: Path, job_name: str) -> None:
        """Remove a job's container (call it after killing a timed-out `docker run` client)."""
        try:  # bounded: an engine that stopped answering must not hold the run up
            dk.docker(self._client(), "rm", "-f", container_name(run_dir, job_name), check=False, timeout=30)
        except dk.DockerError as exc:
            self.options.log(
                f"warning: could not remove container {container_name(run_dir, job_name)}: {exc}"
            )

    def leftover_containers(self, run_dir: Path) -> list[tuple[str, str, str]]:
        """``(id, name, state)`` of every container, running or not, labelled with this run
        folder."""
        result = dk.docker(
            self._client(),
            "ps",
            "--all",
            "--no-trunc",
            "--filter",
            f"label={RUN_LABEL}={Path(run_dir).resolve()}",
            "--format",
            "{{.ID}}\t{{.Names}}\t{{.State}}",
            timeout=60,
        )
        return [tuple(line.split("\t", 2)) for line in result.stdout.splitlines() if line.strip()]  # type: ignore[misc]

    def reclaim(self, run_dir: Path) -> None:
        """Remove the job containers an earlier gilmatrix process left on this run folder.

        A host process that was SIGKILLed (or lost its machine) could not stop its drivers'
        containers: they, and the pyperf workers in them, may still run and write into the run
        folder. Before this run reads what is on disk and starts its own drivers, they are found
        by their run label and removed (``docker rm --force`` kills every process in them); the
        files they wrote are kept. Once per run folder and process.
        """
        key = Path(run_dir).resolve()
        if key in self._reclaimed:
            return
        self._reclaimed.add(key)
        try:
            leftovers = self.leftover_containers(key)
        except (dk.DockerError, EnvironmentUnavailable) as exc:
            self.options.log(f"warning: could not look for leftover containers of {key}: {exc}")
            return
        for container_id, name, state in leftovers:
            try:
                dk.docker(self._client(), "rm", "--force", container_id, timeout=60)
            except dk.DockerError as exc:
                if not self.gone(container_id):  # else the engine removed it itself (--rm)
                    raise UserError(
                        f"{key}: container {name} ({state}) of an earlier process on this run folder is "
                        f"still there and could not be removed ({exc}); remove it "
                        f"(`docker rm -f {name}`), then run again"
                    ) from None
            self.options.log(
                f"== removed leftover container {name} ({state}): an earlier gilmatrix process "
                f"on {key} stopped without removing it; the results on disk are kept"
            )

    def gone(self, container_id: str, wait: float | None = None) -> bool:
        """Whether a container is gone, or goes within ``wait`` seconds. A job container runs
        with ``--rm``: ``docker rm --force`` kills it, its exit starts the engine's own removal,
        and the two can meet ("removal of container … is already in progress", a known race of
        the engine) — the container is then on its way out, not stuck. ``wait``: REMOVAL_WAIT."""
        deadline = time.monotonic() + (REMOVAL_WAIT if wait is None else wait)
        while True:
            try:
                found = dk.docker(self._client(), "inspect", "--format", "{{.Id}}", container_id, check=False)
            except dk.DockerError:
                return False  # the engine does not answer: not known to be gone
            if found.returncode != 0 and "no such" in (found.stderr or "").lower():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)

    def explain_stop(self, run_dir: Path, reason: str) -> str:
        """Why a driver stopped, for its cells: when the engine itself is gone (`docker run`
        exits as soon as it loses the engine), say that, and how to continue."""
        try:
            probe = dk.docker(
                self._client(), "version", "--format", "{{.Server.Version}}", check=False, timeout=15
            )
            answer = probe.stderr.strip() if probe.returncode != 0 or not probe.stdout.strip() else None
        except dk.DockerError as exc:
            answer = str(exc)
        except EnvironmentUnavailable:
            return reason
        if answer is None:
            return reason
        said = answer.splitlines()[-1][:300] if answer else "no reply"
        return (
            f"the Docker engine stopped answering ({said}); "
            f"the harness: {reason} — once the engine is back, `gilmatrix run --resume {Path(run_dir)}` "
            "measures the cells left"
        )

    def resume_problem(self, recorded: Mapping[str, Any]) -> str | None:
        memory = recorded.get("memory")
        if memory is not None and memory != self.memory:
            return (
                f"this run's containers had --memory {memory}; --resume continues with it, not "
                f"{self.memory}: set GILMATRIX_DOCKER_MEMORY={memory} (or start a new run)"
            )
        return None

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "name": self.name,
            "memory": self.memory,
            "cpus": self.cpus,
            "pids_limit": DEFAULT_PIDS,
            "cpuset": self.options.cpuset,
            "build_profile": self.options.build_profile,
        }
        try:
            client = self._client()
            version = dk.docker(client, "version", "--format", "{{json .}}", check=False)
            data = json.loads(version.stdout) if version.returncode == 0 else {}
            info.update(
                client=client.path,
                builder="buildkit" if client.buildkit else "legacy",
                client_version=(data.get("Client") or {}).get("Version"),
                server_version=(data.get("Server") or {}).get("Version"),
            )
        except (EnvironmentUnavailable, json.JSONDecodeError):
            pass
        return info
