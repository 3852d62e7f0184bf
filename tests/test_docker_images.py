"""Real image builds and containers (a Docker engine is needed; ~5 min on 2 cores when cold).

Builds ONE source image (3.14t, fast profile, from the offline mirror) and one prefix image
(3.12 from pyenv, when present), then checks what the interpreters in them report, that a
second build is a cache hit, that a harness change rebuilds only the last layer, that a failed
build keeps its log, and that the job container is locked down as documented.

Skipped without an engine, unless GILMATRIX_REQUIRE_DOCKER=1 (CI sets it): then a missing
engine fails the tests instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pyperf
import pytest

from gilmatrix.backends.base import BackendOptions
from gilmatrix.backends.docker import DockerBackend, harness_command
from gilmatrix.images import build as images
from gilmatrix.images import docker as images_docker
from gilmatrix.images.build import ImageBuilder, ImageError
from gilmatrix.images.sources import load_lock
from gilmatrix.matrix.model import Interpreter, load_matrix

pytestmark = [pytest.mark.docker, pytest.mark.integration]

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "_build" / "test-images"  # kept between runs: the wheelhouse cache lives here
PYENV_312 = Path("~/.pyenv/versions/3.12.1").expanduser()


def _mirror() -> Path | None:
    for candidate in (
        os.environ.get("GILMATRIX_SOURCES"),
        ROOT.parent / "shared" / "cpython-sources",
        "/work/shared/cpython-sources",
    ):
        if candidate and (Path(candidate) / "Python-3.14.7.tar.xz").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="module")
def builder() -> ImageBuilder:
    if not images_docker.engine_answers():
        if os.environ.get("GILMATRIX_REQUIRE_DOCKER") == "1":
            pytest.fail("GILMATRIX_REQUIRE_DOCKER=1 but no Docker engine answers `docker info`")
        pytest.skip("no Docker engine answers")
    mirror = _mirror()
    if mirror is None:
        pytest.skip("no CPython source mirror (set GILMATRIX_SOURCES)")
    lines: list[str] = []
    b = ImageBuilder(
        work_dir=WORK,
        build_profile="fast",
        sources=mirror,
        log=lambda s: (lines.append(s), print(s, flush=True)),
    )
    b.lines = lines  # type: ignore[attr-defined]
    return b


OFFLINE = ROOT / "examples" / "offline-mirror.yaml"  # the mirror's releases, pyenv's prefixes


def _matrix_interp(interp_id: str) -> Interpreter:
    return load_matrix(ROOT / "matrix.yaml", [OFFLINE]).interpreter(interp_id)


@pytest.fixture(scope="module")
def image_314t(builder):
    return builder.ensure(_matrix_interp("3.14t"))


def _labels(builder, tag: str) -> dict[str, str]:
    return images_docker.image_inspect(builder.client, tag)["Config"]["Labels"]


def test_free_threaded_image_is_the_locked_release_with_the_gil_disabled(builder, image_314t):
    assert image_314t.ok and image_314t.tag.startswith("gilmatrix/cpython:3.14t-fast-")
    backend = DockerBackend(BackendOptions(work_dir=WORK))
    facts = backend.image_facts(image_314t.tag, image_314t.python)
    assert facts["version"] == "3.14.7"
    assert facts["py_gil_disabled"] == 1
    assert facts["gil_enabled"] is False
    assert "--disable-gil" in facts["config_args"]
    assert facts["pyperf"] == load_lock().harness_requirements["pyperf"]
    labels = _labels(builder, image_314t.tag)
    assert labels["io.gilmatrix.build-profile"] == "fast"
    assert labels["io.gilmatrix.source-sha256"] == load_lock().release("3.14.7").sha256
    assert labels["io.gilmatrix.inputs-hash"].startswith(image_314t.tag.rsplit("-", 1)[1])
    assert image_314t.size_bytes < 400e6  # trimmed: no test suite, static lib or debug info


def test_unchanged_image_is_not_rebuilt(builder, image_314t):
    started = time.monotonic()
    again = builder.ensure(_matrix_interp("3.14t"))
    assert again.status == "cached" and again.tag == image_314t.tag
    assert again.image_id == image_314t.image_id
    assert time.monotonic() - started < 20


def test_harness_change_rebuilds_only_the_last_layer(builder, image_314t, monkeypatch, tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(f"MARK = {time.time_ns()}\n")
    shipped = images.harness_files()
    monkeypatch.setattr(
        images, "harness_files", lambda: {**shipped, "gilmatrix/harness/_probe_for_test.py": probe}
    )
    result = builder.ensure(_matrix_interp("3.14t"))
    assert result.status == "built" and result.tag != image_314t.tag
    assert result.seconds < 120, "the compile step should have come from the layer cache"
    log = result.log_path.read_text()
    assert "make -j" not in log  # the compile did not run again
    out = subprocess.run(
        [
            builder.client.path,
            "run",
            "--rm",
            "--network",
            "none",
            result.tag,
            result.python,
            "-c",
            "import gilmatrix.harness._probe_for_test as p; print(p.MARK)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.strip() == probe.read_text().split("= ")[1].strip()
    # Leave things as they were: the probe image gone, the moving alias on the real image again.
    subprocess.run([builder.client.path, "rmi", result.tag], capture_output=True, timeout=60)
    subprocess.run(
        [builder.client.path, "tag", image_314t.tag, f"{images.IMAGE_REPO}:3.14t-fast"],
        capture_output=True,
        timeout=60,
    )


@pytest.mark.skipif(not (PYENV_312 / "bin" / "python3").exists(), reason="no pyenv 3.12.1 here")
def test_prefix_image_runs_the_copied_interpreter_at_its_own_path(builder):
    interp = Interpreter(id="3.12", version=(3, 12), free_threaded=False, prefix=str(PYENV_312))
    result = builder.ensure(interp)
    assert result.ok and result.python == f"{PYENV_312}/bin/python3"
    facts = DockerBackend(BackendOptions(work_dir=WORK)).image_facts(result.tag, result.python)
    assert facts["version"] == "3.12.1" and facts["gil_enabled"] is None
    assert f"--prefix={PYENV_312}" in facts["config_args"]
    assert _labels(builder, result.tag)["io.gilmatrix.kind"] == "prefix"


def test_failed_build_keeps_its_log_and_says_where(builder, tmp_path):
    # A prefix whose python cannot run: the build stage fails quickly, after docker started.
    prefix = tmp_path / "broken" / "3.13.99"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "python3").write_text("#!/bin/sh\necho 'this python is broken' >&2\nexit 3\n")
    (prefix / "bin" / "python3").chmod(0o755)
    (prefix / "lib" / "python3.13" / "site-packages").mkdir(parents=True)
    (prefix / "include" / "python3.13").mkdir(parents=True)
    header = prefix / "include" / "python3.13" / "patchlevel.h"
    header.write_text('#define PY_VERSION "3.13.99"\n')
    interp = Interpreter(id="3.13", version=(3, 13), free_threaded=False, prefix=str(prefix))
    with pytest.raises(ImageError) as failure:
        builder.ensure(interp)
    assert failure.value.log_path is not None and failure.value.log_path.is_file()
    assert str(failure.value.log_path) in str(failure.value)
    assert "this python is broken" in failure.value.log_path.read_text()


def test_job_container_is_locked_down(builder, image_314t, tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "jobs").mkdir(parents=True)
    command = harness_command(
        builder.client.path,
        image_314t.tag,
        image_314t.python,
        run_dir,
        "job-1",
        user="10001:10001" if os.getuid() == 0 else f"{os.getuid()}:{os.getgid()}",
        cpuset="0",
    )
    assert command[command.index("--network") + 1] == "none"
    if os.getuid() == 0:
        os.chown(run_dir, 10001, 10001)
    probe = (
        "import json, os, socket\n"
        "out = {'uid': os.getuid(), 'cpus': sorted(os.sched_getaffinity(0))}\n"
        "try:\n    open('/etc/x', 'w'); out['root_fs'] = 'writable'\n"
        "except OSError:\n    out['root_fs'] = 'read-only'\n"
        "open('/tmp/scratch', 'w').write('ok')\n"
        "out['nics'] = sorted(os.listdir('/sys/class/net'))\n"
        "from gilmatrix.harness.executors import run_queue_seconds\n"
        "out['schedstat'] = run_queue_seconds() is not None\n"
        "open('/results/written.json', 'w').write(json.dumps(out))\n"
    )
    image_at = command.index(image_314t.tag)
    result = subprocess.run(
        [*command[: image_at + 1], image_314t.python, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads((run_dir / "written.json").read_text())
    assert seen["uid"] != 0 and seen["root_fs"] == "read-only"
    assert seen["cpus"] == [0] and seen["nics"] == ["lo"]
    assert seen["schedstat"]  # the calls' run-queue wait can be read in the locked-down container
    (run_dir / "written.json").unlink()  # the host user can delete what the container wrote


def test_a_docker_run_keeps_going_past_an_injected_fault(builder, image_314t, tmp_path):
    """`gilmatrix run --backend docker` end to end, in the 3.14t image built above: the fault
    named on the host reaches the container, fails its one cell, and every other cell runs."""
    from tests.conftest import docker_run, small_matrix

    matrix = small_matrix(tmp_path, ["3.14t"], executors="[sequential, threads]")
    matrix.write_text(matrix.read_text().replace('  - id: "3.14t"', '  - id: "3.14t"\n    source: "3.14.7"'))
    env = {**os.environ, "GILMATRIX_FAULTS": "crunch/threads/2=raise"}
    run_id = f"test-fault-{os.getpid()}-{time.time_ns()}"
    proc = docker_run(matrix, WORK, run_id, builder.sources, env=env)
    assert proc.returncode == 1, proc.stderr  # finished, one cell failed
    run_dir = WORK / "results" / run_id
    manifest = json.loads((run_dir / "manifest.json").read_text())
    by_id = {c["id"]: c for c in manifest["cells"]}
    assert by_id["crunch/threads/2"]["status"] == "failed"
    assert "InjectedFault" in by_id["crunch/threads/2"]["reason"]
    others = [c for c in manifest["cells"] if c["id"] != "crunch/threads/2"]
    assert len(others) == 8 and all(c["status"] == "ok" for c in others), others
    # processes: 1, loops fixed; a process taken in a disturbed window (a busy CI machine) is
    # set aside and run again, so a cell may have lived through more than one
    for cell in others:
        assert cell["processes"] == 1, cell
        assert len(cell["worker_seconds"]) == 1 + cell["discarded"], cell
    suite = pyperf.BenchmarkSuite.load(str(run_dir / "3.14t.json"))
    assert {b.get_metadata()["gilmatrix_gil_enabled"] for b in suite.get_benchmarks()} == {"false"}
    shutil.rmtree(run_dir)


def test_image_facts_are_read_once_per_image_then_cached(builder, image_314t, tmp_path):
    backend = DockerBackend(BackendOptions(work_dir=tmp_path, sources=builder.sources))
    interp = _matrix_interp("3.14t")
    first = backend.prepare(interp)
    assert first.facts["py_gil_disabled"] == 1 and first.facts["gil_enabled"] is False
    cache = backend.facts_cache(first.image_id)
    assert json.loads(cache.read_text()) == first.facts
    # The second prepare reads the file, not a container: a value planted there comes back.
    cache.write_text(json.dumps({**first.facts, "planted": True}))
    assert backend.prepare(interp).facts["planted"] is True
