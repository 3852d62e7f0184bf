"""Unit tests of the docker backend's container command: no Docker engine needed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from gilmatrix.backends import docker
from gilmatrix.backends.base import BackendOptions, Environment


def command(tmp_path: Path, **kw) -> list[str]:
    kw.setdefault("user", "10001:10001")
    return docker.harness_command(
        "/usr/bin/docker",
        "gilmatrix/cpython:3.14t-fast-abc",
        "/usr/local/bin/python3",
        tmp_path / "run",
        "3.14t.json",
        **kw,
    )


def value_of(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def test_job_container_is_locked_down(tmp_path):
    cmd = command(tmp_path)
    assert cmd[:4] == ["/usr/bin/docker", "run", "--rm", "--interactive"]  # commands on stdin
    assert value_of(cmd, "--network") == "none"
    assert "--read-only" in cmd and value_of(cmd, "--tmpfs").startswith("/tmp:")
    assert value_of(cmd, "--user") == "10001:10001"
    assert value_of(cmd, "--cap-drop") == "ALL"
    assert value_of(cmd, "--security-opt") == "no-new-privileges"
    assert int(value_of(cmd, "--pids-limit")) > 0 and value_of(cmd, "--memory")
    assert "--cpuset-cpus" not in cmd
    mounts = [cmd[i + 1] for i, a in enumerate(cmd) if a in ("--mount", "-v", "--volume")]
    assert mounts == [f"type=bind,source={(tmp_path / 'run').resolve()},target=/results"]


def test_command_serves_the_harness_on_the_mounted_job(tmp_path):
    cmd = command(tmp_path)
    image_at = cmd.index("gilmatrix/cpython:3.14t-fast-abc")
    assert cmd[image_at + 1 :] == [
        "/usr/local/bin/python3",
        "-m",
        "gilmatrix.harness",
        "serve",
        "--job",
        "/results/jobs/3.14t.json",
        "--out",
        "/results",
    ]
    assert all(isinstance(a, str) for a in cmd)  # an argument list, never a shell string


def test_cpuset_and_memory_are_passed_through(tmp_path):
    cmd = command(tmp_path, cpuset="0-1", memory="2g")
    assert value_of(cmd, "--cpuset-cpus") == "0-1"
    assert value_of(cmd, "--memory") == "2g" and value_of(cmd, "--memory-swap") == "2g"


def test_faults_and_gil_settings_reach_the_container(tmp_path):
    environ = {
        "GILMATRIX_FAULTS": "crunch/threads/2=raise",
        "PYTHON_GIL": "1",
        "HOME": "/root",
        "PYTHONPATH": "/x",
    }
    env = docker.forwarded_env(environ)
    assert env == {"GILMATRIX_FAULTS": "crunch/threads/2=raise", "PYTHON_GIL": "1"}
    cmd = command(tmp_path, env=env)
    pairs = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--env"]
    assert pairs == ["HOME=/tmp", "GILMATRIX_FAULTS=crunch/threads/2=raise", "PYTHON_GIL=1"]
    assert cmd.index("--env") < cmd.index("gilmatrix/cpython:3.14t-fast-abc")  # docker's options


def test_container_names_are_valid_and_stable(tmp_path):
    name = docker.container_name(tmp_path / "2026-01-01 12:00 smoke", "3.14t/job.json")
    assert name == docker.container_name(tmp_path / "2026-01-01 12:00 smoke", "3.14t/job.json")
    assert name.startswith("gilmatrix-") and all(c.isalnum() or c in "_.-" for c in name)


def test_container_user_lets_the_host_user_own_or_read_the_results(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "jobs").mkdir(parents=True)
    user = docker.container_user(run_dir)
    if os.getuid() == 0:
        assert user == docker.IMAGE_USER
        for d in (run_dir, run_dir / "jobs", run_dir / "cells"):
            assert (d.stat().st_uid, d.stat().st_gid) == (10001, 10001)
    else:
        assert user == f"{os.getuid()}:{os.getgid()}"


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client")
def test_backend_harness_command_uses_the_environment_image(tmp_path):
    backend = docker.DockerBackend(BackendOptions(work_dir=tmp_path, cpuset="1"))
    env = Environment("3.13", "docker", "/usr/local/bin/python3", {}, image="img:tag", image_id="sha256:x")
    cmd = backend.harness_command(env, tmp_path / "run", "3.13.json")
    assert "img:tag" in cmd and value_of(cmd, "--cpuset-cpus") == "1"
    with pytest.raises(docker.EnvironmentUnavailable):
        backend.harness_command(Environment("3.13", "docker", "python", {}), tmp_path, "j")
