"""The local backend with real interpreters: discovery, fact checks, venvs with pyperf."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gilmatrix.backends.base import BackendOptions
from gilmatrix.backends.local import LocalBackend, managed_candidates
from gilmatrix.errors import EnvironmentUnavailable
from gilmatrix.harness.contract import classify
from gilmatrix.matrix.model import Interpreter, parse_interpreter_id
from tests.conftest import RUNNING_ID


def interp(interp_id: str, **kw) -> Interpreter:
    version, ft = parse_interpreter_id(interp_id)
    return Interpreter(id=interp_id, version=version, free_threaded=ft, **kw)


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("local-backend")


def test_explicit_python_gets_a_venv_with_pyperf_and_the_harness(work_dir: Path) -> None:
    backend = LocalBackend(BackendOptions(work_dir=work_dir, explicit_pythons={RUNNING_ID: sys.executable}))
    env = backend.prepare(interp(RUNNING_ID))
    assert env.facts["executable"] == sys.executable
    assert Path(env.python).is_relative_to(work_dir / "venvs")
    # the venv's python imports pyperf and the harness without any PYTHONPATH
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [env.python, "-c", "import pyperf, gilmatrix.harness.bench; print('ok')"],
        capture_output=True,
        text=True,
        env=clean,
        cwd="/",
    )
    assert out.stdout.strip() == "ok", out.stderr
    command = backend.harness_command(env, work_dir / "run", "x.json")
    assert command[:4] == [env.python, "-m", "gilmatrix.harness", "serve"]
    # a second prepare reuses the venv
    assert backend.prepare(interp(RUNNING_ID)).python == env.python


def test_wrong_version_is_refused_with_the_reason(work_dir: Path) -> None:
    other = "3.10" if RUNNING_ID != "3.10" else "3.12"
    backend = LocalBackend(BackendOptions(work_dir=work_dir, explicit_pythons={other: sys.executable}))
    with pytest.raises(EnvironmentUnavailable, match=f"is Python {sys.version_info[0]}\\."):
        backend.prepare(interp(other))


def test_gil_build_mismatch_is_refused(work_dir: Path) -> None:
    if sys.version_info < (3, 13):
        pytest.skip("a free-threaded id needs a 3.13+ version to compare builds")
    ft = f"{RUNNING_ID}t" if not sysconfig_gil_disabled() else RUNNING_ID
    backend = LocalBackend(BackendOptions(work_dir=work_dir, explicit_pythons={ft: sys.executable}))
    with pytest.raises(EnvironmentUnavailable, match="build"):
        backend.prepare(interp(ft))


def sysconfig_gil_disabled() -> bool:
    import sysconfig

    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def test_not_found_names_where_it_looked(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    monkeypatch.setenv("UV_PYTHON_INSTALL_DIR", str(tmp_path / "no-uv"))
    monkeypatch.setenv("PATH", str(tmp_path))
    backend = LocalBackend(BackendOptions(work_dir=tmp_path))
    with pytest.raises(EnvironmentUnavailable, match=r"no CPython 3\.15t found.*--python 3\.15t="):
        backend.prepare(interp("3.15t"))


def test_pyenv_layout_is_discovered_newest_release_first(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "pyenv"
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for name in (f"{minor}.1", f"{minor}.10", f"{minor}.11rc1", f"{minor}.3t", "3.9.1"):
        bin_dir = root / "versions" / name / "bin"
        bin_dir.mkdir(parents=True)
        exe = f"python{minor}t" if name.endswith("t") else f"python{minor}"
        (bin_dir / exe).symlink_to(sys.executable)
    monkeypatch.setenv("PYENV_ROOT", str(root))
    found = managed_candidates(interp(RUNNING_ID))
    assert [p.parent.parent.name for p in found][:3] == [f"{minor}.10", f"{minor}.1", f"{minor}.11rc1"]
    assert all(not p.parent.parent.name.endswith("t") for p in found)
    if sys.version_info >= (3, 13):
        assert [p.parent.parent.name for p in managed_candidates(interp(f"{RUNNING_ID}t"))] == [f"{minor}.3t"]


def test_local_venvs_use_the_images_pyperf() -> None:
    import tomllib

    from gilmatrix.backends.local import PYPERF_REQUIREMENT
    from tests.conftest import ROOT

    lock = tomllib.loads((ROOT / "images" / "sources.toml").read_text())
    assert f"pyperf=={lock['harness_requirements']['pyperf']}" == PYPERF_REQUIREMENT


def test_cpu_metadata_with_pyperf_without_hooks(work_dir: Path) -> None:
    """pyperf 2.10 (the images' version) has no custom hooks: the fallback records CPU time."""
    import json

    from tests.conftest import ROOT

    backend = LocalBackend(BackendOptions(work_dir=work_dir, explicit_pythons={RUNNING_ID: sys.executable}))
    env = backend.prepare(interp(RUNNING_ID))
    version = subprocess.run(
        [env.python, "-c", "import pyperf; print(pyperf.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version == "2.10.0"
    out = work_dir / "hookless.json"
    out.unlink(missing_ok=True)
    cell = {
        "id": "crunch/threads/2",
        "interpreter": RUNNING_ID,
        "workload": "crunch",
        "implementation": "crunch",
        "executor": "threads",
        "workers": 2,
        "params": {"tasks": 4, "size": 20000},
    }
    subprocess.run(
        [
            env.python,
            "-m",
            "gilmatrix.harness.bench",
            "--cell",
            json.dumps(cell),
            "-p",
            "1",
            "-n",
            "2",
            "-w",
            "0",
            "-l",
            "2",
            "-q",
            "-o",
            str(out),
        ],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    import pyperf

    (run,) = pyperf.BenchmarkSuite.load(str(out)).get_benchmarks()[0].get_runs()
    meta = run.get_metadata()
    assert meta["gilmatrix_cpu_time"] > 0
    # threads on CPU-bound work: about one core, less when the machine is busy (a shared CI
    # runner): the class is the one the recorded ratio gives, whatever the load was
    assert 0.1 < meta["gilmatrix_parallelism"] < 2.5
    assert meta["gilmatrix_class"] == classify("cpu", meta["gilmatrix_parallelism"])
    # the machine's speed around the calls: the reference loop's seconds, a fraction of a call's
    assert 0 < meta["gilmatrix_reference"] < 0.05
    assert "gilmatrix_round" not in meta  # run by hand: no host, no round
