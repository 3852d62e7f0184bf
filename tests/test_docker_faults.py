"""Faults of the host and of the Docker engine under the docker backend, for real.

- The host process SIGKILLed mid-run: its drivers' containers (and the pyperf workers in them)
  live on; ``--resume`` finds them by the run folder's label, removes them, says so, and
  completes from the worker processes on disk.
- The engine stopped mid-run: a private ``dockerd`` (its own socket, data and exec roots, in
  a network namespace of its own) is started for the test and SIGKILLed, with its containerd
  and shims, part-way through a run against it; the machine's engine is never touched.

One interpreter: 3.12, an image copied from pyenv's 3.12.1 (a prefix image builds in seconds).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyperf
import pytest

from gilmatrix.errors import UserError
from tests.conftest import ROOT, docker_and_mirror

PREFIX_312 = Path("~/.pyenv/versions/3.12.1").expanduser()
RUN_LABEL = "io.gilmatrix.run"  # gilmatrix.backends.docker.RUN_LABEL, spelt out: what a user filters on


def needs_docker_312() -> None:
    docker_and_mirror()  # skips without an engine (fails under GILMATRIX_REQUIRE_DOCKER=1)
    if not (PREFIX_312 / "bin" / "python3").exists():
        pytest.skip(f"no {PREFIX_312} to copy into the 3.12 image")


def write_matrix(tmp_path: Path, crunch_size: int, profile: str) -> Path:
    """3.12 only, crunch and fetch on sequential and threads (1, 2 workers): six cells."""
    path = tmp_path / "matrix.yaml"
    path.write_text(
        "\n".join(
            [
                "format: 1",
                "interpreters:",
                '  - id: "3.12"',
                f"    prefix: {PREFIX_312}",
                "workloads:",
                f"  crunch: {{params: {{tasks: 4, size: {crunch_size}}}}}",
                "  fetch: {params: {tasks: 4, wait_ms: 2}}",
                "executors: [sequential, threads]",
                "workers: [1, 2]",
                "profiles:",
                "  default:",
                profile,
            ]
        )
        + "\n"
    )
    return path


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "gilmatrix.cli", *args]


def docker(*args: str, host: str | None = None, **kwargs) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"DOCKER_HOST": host} if host else {})}
    return subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=kwargs.pop("timeout", 120),
        env=env,
        **kwargs,
    )


def labelled(run_dir: Path, host: str | None = None) -> list[tuple[str, str]]:
    """(name, state) of the containers carrying this run folder's label."""
    out = docker(
        "ps",
        "--all",
        "--filter",
        f"label={RUN_LABEL}={run_dir.resolve()}",
        "--format",
        "{{.Names}}\t{{.State}}",
        host=host,
    )
    assert out.returncode == 0, out.stderr
    return [tuple(line.split("\t")) for line in out.stdout.splitlines() if line.strip()]  # type: ignore[misc]


def worker_files(cells_dir: Path) -> dict[str, list[tuple[float, ...]]]:
    """Kept worker files (``<cell>.runs/wNNNN.json``) by path: the value tuples of their runs."""
    found = {}
    for path in sorted(cells_dir.glob("*.runs/w[0-9][0-9][0-9][0-9].json")):
        try:
            (bench,) = pyperf.BenchmarkSuite.load(str(path)).get_benchmarks()
        except (OSError, ValueError):
            continue  # being written
        found[f"{path.parent.name}/{path.name}"] = [tuple(r.values) for r in bench.get_runs() if r.values]
    return found


def container_commands(container_id: str) -> list[str]:
    """The command lines of the processes in a container (by its cgroup; seen from the host)."""
    commands = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if container_id in Path(f"/proc/{entry}/cgroup").read_text():
                commands.append(Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return commands


def wait_for(what: str, condition, seconds: float, proc: subprocess.Popen | None = None) -> None:
    """Poll ``condition`` (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if proc is not None and proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the run ended ({proc.returncode}) before {what}: {err[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {seconds:.0f} s")
        time.sleep(0.05)


# -- what the backend gives the containers, and says (no engine needed) ------------------


def test_job_containers_carry_their_run_folder_and_the_host_name(tmp_path: Path) -> None:
    from gilmatrix.backends import docker as backend

    a, b = tmp_path / "a" / "results" / "r", tmp_path / "b" / "results" / "r"  # one run id, two --out
    cmd = backend.harness_command("docker", "img", "python3", a, "3.12.json", user="1:1", hostname="vm")
    labels = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--label"]
    assert f"{RUN_LABEL}={a.resolve()}" in labels and "io.gilmatrix.job=3.12.json" in labels
    assert cmd[cmd.index("--hostname") + 1] == "vm"  # pyperf merges only runs of one host name
    assert cmd.index("--hostname") < cmd.index("img")
    assert "--hostname" not in backend.harness_command("docker", "img", "python3", a, "j", user="1:1")
    name = cmd[cmd.index("--name") + 1]
    assert (
        name == backend.container_name(a, "3.12.json") == backend.container_name(a / ".." / "r", "3.12.json")
    )
    assert name != backend.container_name(b, "3.12.json")  # removing one run's never touches the other's


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client")
def test_an_engine_that_does_not_answer_is_named_as_the_reason_with_the_resume_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real client against a socket nobody listens on."""
    from gilmatrix.backends.base import BackendOptions
    from gilmatrix.backends.docker import DockerBackend

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nobody.sock")
    lines: list[str] = []
    backend = DockerBackend(BackendOptions(work_dir=tmp_path, log=lines.append))
    reason = backend.explain_stop(tmp_path / "run", "the harness exited with 125: unexpected EOF")
    assert reason.startswith("the Docker engine stopped answering (")
    assert "nobody.sock" in reason and "the harness exited with 125: unexpected EOF" in reason
    assert f"gilmatrix run --resume {tmp_path / 'run'}" in reason
    backend.reclaim(tmp_path / "run")  # cannot look: says so, does not raise
    assert len(lines) == 1 and lines[0].startswith("warning: could not look for leftover containers")


def test_a_stop_with_the_engine_answering_keeps_the_harness_reason(tmp_path: Path) -> None:
    from gilmatrix.backends.base import BackendOptions
    from gilmatrix.backends.docker import DockerBackend

    docker_and_mirror()
    backend = DockerBackend(BackendOptions(work_dir=tmp_path))
    assert (
        backend.explain_stop(tmp_path, "the harness exited with 1: boom") == "the harness exited with 1: boom"
    )


def test_a_leftover_container_already_on_its_way_out_counts_as_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race a CI run met (session 18): a job container runs with --rm, so `docker rm --force`
    of a leftover can meet the engine's own removal and fail with "removal of container … is
    already in progress". A resume must then wait for the container to go, not stop the run. A
    real container on the real engine, labelled with the run folder, removed for real in the
    background; only our own `rm`'s answer is the engine's race message. One that stays is
    still an error naming it."""
    from gilmatrix.backends import docker as backend_docker
    from gilmatrix.backends.base import BackendOptions
    from gilmatrix.backends.docker import DockerBackend
    from gilmatrix.images import docker as dk

    docker_and_mirror()
    lines: list[str] = []
    backend = DockerBackend(BackendOptions(work_dir=tmp_path, log=lines.append))
    base = dk.ensure_base(dk.find_client(), dk.DEFAULT_BASE, bootstrap=None, log=lines.append)
    real = dk.docker

    def leftover(run_dir: Path) -> str:
        started = docker(
            "run", "--detach", "--rm", "--label", f"{RUN_LABEL}={run_dir.resolve()}", base, "sleep", "600"
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        return started.stdout.strip()

    def racing(removing: bool):  # our rm answers with the race; the engine may be removing it
        def fake(client, *args, **kwargs):
            if args[:2] == ("rm", "--force"):
                if removing:
                    subprocess.Popen(["docker", "rm", "--force", args[2]], stdout=subprocess.DEVNULL)
                raise dk.DockerError(
                    f"`docker rm --force {args[2]}` failed: Error response from daemon: removal of "
                    f"container {args[2]} is already in progress"
                )
            return real(client, *args, **kwargs)

        return fake

    run_dir = tmp_path / "run"
    cid = leftover(run_dir)
    assert not backend.gone(cid, wait=1.0)  # it runs: not gone
    monkeypatch.setattr(dk, "docker", racing(removing=True))
    backend.reclaim(run_dir)
    monkeypatch.setattr(dk, "docker", real)
    assert docker("inspect", cid).returncode != 0 and backend.gone(cid, wait=0.0)
    assert any(line.startswith("== removed leftover container") for line in lines), lines

    stuck_dir = tmp_path / "stuck"
    cid = leftover(stuck_dir)
    try:
        monkeypatch.setattr(dk, "docker", racing(removing=False))
        monkeypatch.setattr(backend_docker, "REMOVAL_WAIT", 2.0)
        with pytest.raises(UserError, match=r"could not be removed .*already in progress"):
            DockerBackend(BackendOptions(work_dir=tmp_path)).reclaim(stuck_dir)
    finally:
        monkeypatch.setattr(dk, "docker", real)
        docker("rm", "--force", cid)


# -- the host SIGKILLed ----------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.docker
def test_host_killed_under_docker_then_resume_removes_its_leftover_container(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """SIGKILL of the host (no chance to clean up) while its container runs a worker: the
    container lives on. --resume removes it before measuring, says so, and completes every
    cell from what is on disk (every worker file kept before is in the results)."""
    needs_docker_312()
    matrix = write_matrix(
        tmp_path,
        5000,
        "    pyperf: {values: 2, warmups: 0, loops: 1}\n"
        "    precision: {target: 0.5, min_processes: 3, max_processes: 4}\n"
        "    timeout: 300",  # the hung worker of the second run outlives its host by this much
    )
    out = tmp_path / "out"
    run_dir = out / "results" / "k"
    cells_dir = run_dir / "cells" / "3.12"
    base = ["--matrix", str(matrix), "--backend", "docker", "--out", str(out)]

    def start(*args: str, faults: str | None = None) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if k != "GILMATRIX_FAULTS"}
        if faults:
            env["GILMATRIX_FAULTS"] = faults
        proc = subprocess.Popen(
            cli("run", *base, *args),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: the docker client dies with it
        )
        started.append(proc)
        return proc

    started: list[subprocess.Popen] = []

    def finalize() -> None:  # whatever happens: no run, no container of this test left
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for name, _ in labelled(run_dir):
            docker("rm", "--force", name)

    request.addfinalizer(finalize)

    # 1. a run killed after a few worker processes (the image is built here if missing)
    first = start("--run-id", "k")
    wait_for("4 worker files", lambda: len(worker_files(cells_dir)) >= 4, 900, first)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()

    # 2. resumed with a cell that hangs: killed while its worker hangs in the container
    hang_cell = "crunch/threads/2"
    second = start("--resume", str(run_dir), faults=f"{hang_cell}=hang")

    def hanging() -> bool:  # a pyperf worker of the hang cell runs in the run's container
        for name, state in labelled(run_dir):
            found = docker("inspect", "--format", "{{.Id}}", name) if state == "running" else None
            cid = found.stdout.strip() if found is not None and found.returncode == 0 else ""
            if cid and any('"fault": "hang"' in cmd for cmd in container_commands(cid)):
                return True
        return False

    wait_for("hanging worker in the container", hanging, 300, second)
    os.killpg(second.pid, signal.SIGKILL)
    second.wait()
    leftovers = labelled(run_dir)
    assert [state for _, state in leftovers] == ["running"], leftovers  # it outlived its host
    kept = worker_files(cells_dir)
    assert len(kept) >= 4, kept

    # 3. resumed for good: the leftover is removed first, every cell completes
    third = start("--resume", str(run_dir))
    _, stderr = third.communicate(timeout=900)
    assert third.returncode == 0, stderr[-4000:]
    ((name, _),) = leftovers
    assert f"removed leftover container {name} (running)" in stderr, stderr[-4000:]
    assert stderr.index("removed leftover container") < stderr.index("round ")  # before measuring
    assert labelled(run_dir) == []  # and the resumed run's own container is gone too
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["state"] == "complete"
    assert len(manifest["cells"]) == 6
    for cell in manifest["cells"]:
        assert cell["status"] == "ok" and 3 <= cell["processes"] <= 4, cell
        slug = cell["id"].replace("/", "__")
        bench = pyperf.Benchmark.load(str(cells_dir / f"{slug}.json"))
        runs = [tuple(r.values) for r in bench.get_runs() if r.values]
        assert len(runs) == cell["processes"]
        for key, values in kept.items():  # nothing on disk was lost
            if key.startswith(f"{slug}.runs/"):
                assert all(v in runs for v in values), (key, values, runs)
    assert not list(cells_dir.glob("*.runs"))


# -- the engine stopped --------------------------------------------------------------------


@dataclass
class Engine:
    root: Path
    host: str  # DOCKER_HOST

    def pids(self, container_processes: bool = True) -> list[int]:
        """dockerd, its containerd and shims (by the paths on their command lines) and, with
        ``container_processes``, every process whose root is in this engine's data root."""
        found = []
        root = str(self.root)
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
                proc_root = os.readlink(f"/proc/{entry}/root")
            except OSError:
                continue
            engine = f"{root}/exec/" in cmdline or f"{root}/d.sock" in cmdline
            if engine or (container_processes and proc_root.startswith(f"{root}/")):
                found.append(int(entry))
        return found

    def kill(self, container_processes: bool = False) -> list[int]:
        pids = self.pids(container_processes)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pids


@pytest.fixture
def private_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A Docker engine of the test's own: `dockerd` on a socket, data and exec roots in a temp
    folder. It runs in a network namespace of its own (`unshare --net`): `--bridge none`
    deletes the host's `docker0` otherwise, which the machine's engine needs to build images.
    Whatever happens, its processes (and its containers' processes) are killed and what it
    mounted is unmounted."""
    if os.geteuid() != 0:
        pytest.skip("starting a private dockerd needs root")
    for tool in ("dockerd", "containerd", "unshare", "docker"):
        if shutil.which(tool) is None:
            pytest.skip(f"no {tool} to start a private Docker engine with")
    root = tmp_path_factory.mktemp("engine")  # short: unix socket paths are limited to 108 bytes
    engine = Engine(root, f"unix://{root}/d.sock")
    log = open(root / "dockerd.log", "w")  # noqa: SIM115 - the daemon's whole life
    daemon = subprocess.Popen(
        [
            "unshare",
            "--net",
            "--",
            "dockerd",
            "--host",
            engine.host,
            "--data-root",
            f"{root}/data",
            "--exec-root",
            f"{root}/exec",
            "--pidfile",
            f"{root}/d.pid",
            "--bridge",
            "none",
            "--iptables=false",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while docker("info", "--format", "{{.ServerVersion}}", host=engine.host, timeout=30).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                tail = (root / "dockerd.log").read_text(errors="replace")[-1500:]
                pytest.skip(f"a private dockerd did not start: {tail}")
            time.sleep(0.5)
        yield engine
    finally:
        engine.kill(container_processes=True)
        daemon.kill()
        daemon.wait()
        log.close()
        deadline = time.monotonic() + 30
        while engine.pids() and time.monotonic() < deadline:
            engine.kill(container_processes=True)
            time.sleep(0.2)
        mounts = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].encode().decode("unicode_escape")
            if point == str(root) or point.startswith(f"{root}/"):
                mounts.append(point)
        for point in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.integration
@pytest.mark.docker
def test_engine_stopped_mid_run_fails_the_cells_left_and_ends_with_a_resume_hint(
    tmp_path: Path, private_engine: Engine
) -> None:
    """SIGKILL of the engine (dockerd, containerd, shims) after some cells finished: the cells
    still pending fail with the engine's reason, the finished ones are intact, the run ends
    (no hang) with exit 1, a whole manifest that says `partial`, and the resume hint."""
    needs_docker_312()
    # crunch: ~1 s per worker, its cells stop after ~6 rounds (max_seconds); fetch: ~0.3 s per
    # worker, its target out of reach, has used a third of its budget then: pending at the kill.
    # (Several rounds before the first cell stops: a window of a busy machine is set aside and
    # redone, a third of them at most, so the cells that stop keep processes of their own.)
    matrix = write_matrix(
        tmp_path,
        1_500_000,
        "    pyperf: {values: 2, warmups: 0, loops: 1}\n"
        "    precision: {target: 0.00001, min_processes: 2, max_processes: 40, max_seconds: 6}\n"
        "    timeout: 120",
    )
    out = tmp_path / "out"
    # The 3.12 image, made (or found) by the machine's engine, then loaded into the private one
    # with its base image (the tag hashes the base image's id, which `docker load` keeps).
    images = subprocess.run(
        cli("images", "--matrix", str(matrix), "--only", "3.12", "--out", str(out), "--json"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={k: v for k, v in os.environ.items() if k != "DOCKER_HOST"},
    )
    assert images.returncode == 0, images.stderr[-3000:]
    (tag,) = set(re.findall(r"gilmatrix/cpython:3\.12-prefix-[0-9a-f]+", images.stdout))
    save = subprocess.Popen(["docker", "save", tag, "debian:bookworm-slim"], stdout=subprocess.PIPE)
    load = docker("load", host=private_engine.host, stdin=save.stdout, timeout=600)
    save.stdout.close()
    assert save.wait(timeout=60) == 0 and load.returncode == 0, load.stderr

    run_dir = out / "results" / "e"
    cells_dir = run_dir / "cells" / "3.12"
    run = subprocess.Popen(
        cli("run", "--matrix", str(matrix), "--backend", "docker", "--out", str(out), "--run-id", "e"),
        cwd=ROOT,
        env={**os.environ, "DOCKER_HOST": private_engine.host},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )

    def results() -> dict[str, bytes]:
        return {
            p.name: p.read_bytes() for p in cells_dir.glob("*.json") if not p.name.endswith(".status.json")
        }

    try:
        wait_for("finished cell", lambda: bool(results()), 600, run)
        killed = private_engine.kill()  # dockerd, containerd, shims: not the containers' processes
        assert killed
        finished = results()
        _, stderr = run.communicate(timeout=900)  # the hang guard
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode == 1, stderr[-4000:]
    assert f"gilmatrix run --resume {run_dir}" in stderr, stderr[-4000:]
    from gilmatrix.run.manifest import read_manifest

    manifest = read_manifest(run_dir)  # whole, in its format
    assert manifest["state"] == "partial" and manifest["finished"] and len(manifest["cells"]) == 6
    by_status: dict[str, list[dict]] = {}
    for cell in manifest["cells"]:
        by_status.setdefault(cell["status"], []).append(cell)
    assert set(by_status) == {"ok", "failed"}, (by_status, stderr[-4000:])
    ok = {c["id"].replace("/", "__") + ".json" for c in by_status["ok"]}
    assert set(finished) <= ok
    for name, data in finished.items():  # finished before the kill: intact
        assert (cells_dir / name).read_bytes() == data
    assert {c["id"] for c in by_status["failed"]} >= {
        "fetch/sequential/1",
        "fetch/threads/1",
        "fetch/threads/2",
    }
    for cell in by_status["failed"]:
        assert "the Docker engine stopped answering" in cell["reason"], cell
    assert "the Docker engine stopped answering" in manifest["interpreters"]["3.12"]["reason"]
    suite = pyperf.BenchmarkSuite.load(str(run_dir / manifest["interpreters"]["3.12"]["results"]))
    assert len(suite.get_benchmarks()) == len(by_status["ok"])  # the finished cells, merged
