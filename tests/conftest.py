from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNNING_ID = f"{sys.version_info[0]}.{sys.version_info[1]}"


def harness(command: str, job: Path, out: Path, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m gilmatrix.harness COMMAND --job JOB --out OUT``, as the host runs it."""
    return subprocess.run(
        [sys.executable, "-m", "gilmatrix.harness", command, "--job", str(job), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        input=input,
    )


def write_job(
    tmp_path: Path, cells: list[dict[str, Any]], timeout: float = 60, pyperf: dict[str, int] | None = None
) -> Path:
    """A harness job of ``cells`` on the host interpreter, written to tmp_path/job.json."""
    job = {
        "format": 1,
        "run_id": "t",
        "interpreter": "host",
        "timeout": timeout,
        "pyperf": pyperf or {"processes": 1, "values": 2, "warmups": 0, "loops": 1},
        "cells": cells,
    }
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    return path


def small_matrix(
    tmp_path: Path,
    interpreters: list[str] | None = None,
    *,
    executors: str = "[sequential, threads, processes]",
    workers: str = "[1, 2]",
    extra_profile: str = "",
) -> Path:
    """A real matrix file sized for tests: the three seed workloads, made small."""
    ids = interpreters or [RUNNING_ID]
    lines = (
        ["format: 1", "interpreters:"]
        + [f'  - id: "{i}"' for i in ids]
        + [
            "workloads:",
            "  crunch: {params: {tasks: 4, size: 5000}}",
            "  fetch: {params: {tasks: 4, wait_ms: 2}}",
            "  sum_squares: {params: {tasks: 4, batch: 1000}}",
            f"executors: {executors}",
            f"workers: {workers}",
            "profiles:",
            "  default:",
            "    pyperf: {processes: 1, values: 2, warmups: 0, loops: 1}",
            "    timeout: 60",
            extra_profile,
        ]
    )
    path = tmp_path / "matrix.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def local_run(
    matrix: Path,
    out: Path,
    run_id: str | None = None,
    *,
    resume: Path | None = None,
    python: bool = True,
    command: str = "run",
) -> list[str]:
    """The arguments of ``gilmatrix run`` (or ``command``: ``matrix``) of ``matrix`` on the local
    backend into ``out`` as ``run_id``, or ``--resume`` of the run folder ``resume`` (``python``:
    with this interpreter as RUNNING_ID)."""
    which = ["--resume", str(resume)] if resume is not None else ["--run-id", str(run_id)]
    args = [command, "--matrix", str(matrix), "--backend", "local", "--out", str(out), *which]
    return [*args, "--python", f"{RUNNING_ID}={sys.executable}"] if python else args


def gilmatrix(
    *args: str, cwd: Path | None = None, timeout: float = 600, **kwargs
) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "gilmatrix.cli", *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def docker_run(
    matrix: Path, out: Path, run_id: str, sources: Path, *extra: str, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """``gilmatrix run`` of ``matrix`` on the docker backend (fast builds from the offline
    mirror ``sources``) into ``out`` as ``run_id``."""
    args = ["run", "--matrix", str(matrix), "--backend", "docker", "--out", str(out), "--run-id", run_id]
    return gilmatrix(*args, "--sources", str(sources), "--build-profile", "fast", *extra, **kwargs)


def host_interpreters(work_dir: Path, minors: tuple[int, ...] = (10, 11, 12, 13)) -> list[str]:
    """Ids of the default-build CPythons among 3.<minors> this machine has, the running one
    first (it is always there)."""
    from gilmatrix.backends.base import BackendOptions
    from gilmatrix.backends.local import LocalBackend
    from gilmatrix.errors import EnvironmentUnavailable
    from gilmatrix.matrix.model import Interpreter

    found = [RUNNING_ID]
    backend = LocalBackend(BackendOptions(work_dir=work_dir))
    for minor in minors:
        interp_id = f"3.{minor}"
        if interp_id == RUNNING_ID:
            continue
        try:
            backend.find(Interpreter(id=interp_id, version=(3, minor), free_threaded=False))
        except EnvironmentUnavailable:
            continue
        found.append(interp_id)
    return found


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def docker_and_mirror(release_file: str = "Python-3.14.7.tar.xz") -> Path:
    """The offline CPython mirror for a test that needs a Docker engine and one: skips when
    either is missing, unless GILMATRIX_REQUIRE_DOCKER=1 (CI), where no engine is a failure."""
    import os

    import pytest

    from gilmatrix.images import docker as images_docker

    if not images_docker.engine_answers():
        if os.environ.get("GILMATRIX_REQUIRE_DOCKER") == "1":
            pytest.fail("GILMATRIX_REQUIRE_DOCKER=1 but no Docker engine answers `docker info`")
        pytest.skip("no Docker engine answers")
    for candidate in (
        os.environ.get("GILMATRIX_SOURCES"),
        ROOT.parent / "shared" / "cpython-sources",
        "/work/shared/cpython-sources",
    ):
        if candidate and (Path(candidate) / release_file).is_file():
            return Path(candidate)
    pytest.skip("no CPython source mirror (set GILMATRIX_SOURCES)")


# -- a browser for the report tests: Debian's chromium, headless, never a browser download ------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium driven by playwright, a fresh profile per module; skipped (with how to get
    it) where either is missing."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    with sync_api.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()
