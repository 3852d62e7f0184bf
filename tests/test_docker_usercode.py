"""User workloads (``module:``, ``requirements:``) on the docker backend, in real containers.

One 3.14t run (the fast-profile image of tests/test_docker_images.py, from the offline mirror)
with four user workloads: one needing a single-phase-init C extension that exists only as an
sdist (tests/fixtures/legacy_ext, built here: no PyPI), compiled in the workload image; one
whose requirement does not exist; one whose sdist does not compile; one with no requirements.
Then the workload image's tag follows an edit of the user's file while the interpreter's image
stays as it is. ~2-3 min on 2 cores when the interpreter image is cached.

Skipped without an engine, unless GILMATRIX_REQUIRE_DOCKER=1 (CI sets it).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pyperf
import pytest

from tests.conftest import ROOT, docker_and_mirror, docker_run

pytestmark = [pytest.mark.docker, pytest.mark.integration]

WORK = ROOT / "_build" / "test-images"  # shared with test_docker_images.py: images, caches
FIXTURES = Path(__file__).resolve().parent / "fixtures"
BROKEN_C = '#error "broken_ext does not compile, on purpose"\n'


def make_sdist(dest: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    """An sdist as setuptools lays it out: NAME-VERSION/{PKG-INFO, setup.py, ...}."""
    root = f"{name}-{version}"
    pkg_info = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    path = dest / f"{root}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for rel, data in {"PKG-INFO": pkg_info, **files}.items():
            info = tarfile.TarInfo(f"{root}/{rel}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def wheelhouse() -> Path:
    """An offline wheelhouse for the run: the two fixture sdists, setuptools and wheel (and
    what they need)."""
    mirror = docker_and_mirror()
    del mirror
    house = WORK / "usercode-wheelhouse"
    shutil.rmtree(house, ignore_errors=True)
    house.mkdir(parents=True)
    legacy = FIXTURES / "legacy_ext"
    make_sdist(
        house,
        "legacy_ext",
        "1.0",
        {name: (legacy / name).read_bytes() for name in ("setup.py", "legacy_ext.c")},
    )
    setup_py = b'from setuptools import Extension, setup\nsetup(name="broken_ext", version="1.0", '
    setup_py += b'ext_modules=[Extension("broken_ext", ["broken_ext.c"])])\n'
    make_sdist(house, "broken_ext", "1.0", {"setup.py": setup_py, "broken_ext.c": BROKEN_C.encode()})
    cache = WORK / "usercode-build-backend"  # downloaded once, kept between runs
    if not list(cache.glob("setuptools-*.whl")) or not list(cache.glob("wheel-*.whl")):
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--only-binary=:all:"]
            + ["--dest", str(cache), "setuptools", "wheel"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot download setuptools and wheel: {proc.stderr[-300:]}")
    for wheel in cache.glob("*.whl"):
        shutil.copy2(wheel, house / wheel.name)
    return house


def write_matrix(folder: Path, extra_workloads: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("uses_legacy.py", "plain_sum.py", "nested_globals.py"):
        shutil.copy2(FIXTURES / "usercode" / name, folder / name)
    text = f"""format: 1
interpreters:
  - {{id: "3.14t", source: "3.14.7"}}
workloads:
  legacy:
    module: uses_legacy.py
    requirements: ["legacy_ext==1.0"]
    params: {{tasks: 2, n: 20000}}
  plain:
    module: plain_sum.py
    params: {{tasks: 2, n: 2000}}
{extra_workloads}executors: [sequential, threads, interpreters]
workers: [1, 2]
profiles:
  default:
    pyperf: {{processes: 1, values: 2, warmups: 0, loops: 1}}
    timeout: 120
"""
    (folder / "matrix.yaml").write_text(text)
    return folder / "matrix.yaml"


UNINSTALLABLE = """  missing:
    module: plain_sum.py
    requirements: ["gilmatrix-no-such-package-xyz==1.0"]
  broken:
    module: plain_sum.py
    requirements: ["broken_ext==1.0"]
  nested:
    module: nested_globals.py
"""


@pytest.fixture(scope="module")
def user_run(wheelhouse, tmp_path_factory) -> dict:
    """`gilmatrix run --backend docker` of the four user workloads on 3.14t."""
    mirror = docker_and_mirror()
    matrix = write_matrix(tmp_path_factory.mktemp("code"), UNINSTALLABLE)
    run_id = f"test-usercode-{os.getpid()}-{time.time_ns()}"
    proc = docker_run(matrix, WORK, run_id, mirror, "--wheelhouse", str(wheelhouse), timeout=900)
    print(proc.stdout[-6000:], proc.stderr[-6000:], sep="\n")
    run_dir = WORK / "results" / run_id
    assert (run_dir / "manifest.json").is_file(), proc.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    yield {"proc": proc, "run_dir": run_dir, "manifest": manifest}
    shutil.rmtree(run_dir, ignore_errors=True)


def cells_of(manifest: dict, workload: str) -> dict[str, dict]:
    return {c["id"]: c for c in manifest["cells"] if c["workload"] == workload}


def test_an_sdist_only_extension_is_built_in_the_image_and_its_gil_effect_recorded(user_run):
    proc, manifest = user_run["proc"], user_run["manifest"]
    failed = sorted(c["id"] for c in manifest["cells"] if c["status"] not in ("ok", "skipped"))
    assert failed == ["nested/interpreters/1", "nested/interpreters/2"], proc.stderr[-3000:]
    assert proc.returncode == 1  # those two: see the next test
    cells = cells_of(manifest, "legacy")
    interp = {k: c for k, c in cells.items() if "/interpreters/" in k}
    ran = {k: c for k, c in cells.items() if k not in interp}
    assert len(ran) == 3 and all(c["status"] == "ok" for c in ran.values()), ran
    assert len(interp) == 2 and all(c["status"] == "skipped" for c in interp.values()), interp
    for cell in interp.values():
        assert "does not support sub-interpreters" in cell["reason"], cell["reason"]
    suite = pyperf.BenchmarkSuite.load(str(user_run["run_dir"] / "3.14t.json"))
    legacy = [b for b in suite.get_benchmarks() if b.get_metadata()["gilmatrix_workload"] == "legacy"]
    assert len(legacy) == 3
    for bench in legacy:
        meta = bench.get_metadata()
        assert meta["gilmatrix_gil_before_import"] == "false"
        assert "legacy_ext" in meta["gilmatrix_gil_reenabled_by"]
        assert meta["gilmatrix_gil_enabled"] == "true"
    env = manifest["interpreters"]["3.14t"]["environment"]
    assert env["workload_image"].startswith(env["image"] + "-u")
    assert env["workload_image_id"].startswith("sha256:") and env["workload_image_id"] != env["image_id"]
    assert env["workloads"]["legacy"]["problem"] is None


def test_a_global_only_a_generator_expression_uses_is_missing_in_a_sub_interpreter(user_run):
    """CPython 3.14's InterpreterPoolExecutor runs the task function with only the globals its
    own code names: the cell fails, and its reason says why and what to change."""
    nested = cells_of(user_run["manifest"], "nested")
    assert {k: c["status"] for k, c in nested.items()} == {
        "nested/sequential/1": "ok",
        "nested/threads/1": "ok",
        "nested/threads/2": "ok",
        "nested/interpreters/1": "failed",
        "nested/interpreters/2": "failed",
    }
    for cell in (nested["nested/interpreters/1"], nested["nested/interpreters/2"]):
        assert "SubinterpreterGlobalsError: name '_shifted' is not defined" in cell["reason"], cell["reason"]
        assert "generator expression" in cell["reason"]


def test_a_requirement_that_cannot_be_had_skips_only_its_workloads_cells(user_run):
    manifest = user_run["manifest"]
    missing, broken = cells_of(manifest, "missing"), cells_of(manifest, "broken")
    assert len(missing) == len(broken) == 5
    for cell in missing.values():  # not downloadable: pip's reason, from the host
        assert cell["status"] == "skipped"
        assert "gilmatrix-no-such-package-xyz" in cell["reason"] and "pip could not" in cell["reason"]
    for cell in broken.values():  # downloaded, failed to compile in the image's build
        assert cell["status"] == "skipped"
        assert "pip could not install broken_ext==1.0" in cell["reason"], cell["reason"]
    plain = cells_of(manifest, "plain")
    assert len(plain) == 5 and all(c["status"] == "ok" for c in plain.values()), plain  # sub-interps too
    workloads = manifest["interpreters"]["3.14t"]["environment"]["workloads"]
    assert workloads["plain"]["problem"] is None and workloads["missing"]["problem"]


def test_editing_the_file_changes_only_the_workload_image(wheelhouse, tmp_path):
    from gilmatrix.backends.base import BackendOptions
    from gilmatrix.backends.docker import DockerBackend
    from gilmatrix.matrix.model import load_matrix

    mirror = docker_and_mirror()
    matrix = write_matrix(tmp_path / "code")
    lines: list[str] = []
    options = BackendOptions(work_dir=WORK, sources=mirror, wheelhouse=wheelhouse, log=lines.append)

    def prepare() -> tuple[str, str, dict]:
        loaded = load_matrix(matrix)
        backend = DockerBackend(options)
        env = backend.prepare(loaded.interpreter("3.14t"))
        setups = backend.prepare_workloads(env, [w for w in loaded.workloads if w.id == "plain"])
        cmd = backend.harness_command(env, tmp_path / "run", "3.14t.json")
        derived = backend.workload_images["3.14t"]
        assert derived.tag in cmd and env.image not in cmd
        return env.image_id, derived.tag, setups

    base_before, tag_before, setups = prepare()
    assert setups["plain"].pythonpath[0].startswith("/opt/gilmatrix/workloads/plain-")
    assert setups["plain"].problem is None
    base_again, tag_again, _ = prepare()
    assert (base_again, tag_again) == (base_before, tag_before)
    assert any("workload image up to date" in line for line in lines)
    code = tmp_path / "code" / "plain_sum.py"
    code.write_text(code.read_text().replace("VERSION = 1", "VERSION = 2"))
    lines.clear()
    base_after, tag_after, setups_after = prepare()
    assert base_after == base_before and tag_after != tag_before
    assert setups_after["plain"].pythonpath != setups["plain"].pythonpath
    assert any("building workload image" in line for line in lines)
    assert not any("building gilmatrix/cpython" in line for line in lines)  # the interpreter's: kept
    shown = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", tag_after, "cat"]
        + [f"{setups_after['plain'].pythonpath[0]}/plain_sum.py"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "VERSION = 2" in shown.stdout, shown.stderr
    for tag in (tag_before, tag_after):  # images this test made
        subprocess.run(["docker", "rmi", tag], capture_output=True, timeout=60)
