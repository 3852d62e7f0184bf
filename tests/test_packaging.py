"""What ``pip install .`` gives, as a user outside the checkout gets it: the wheel is built for
real, installed into a fresh venv (non-editable), and its ``gilmatrix`` is run from a folder that
is not the checkout — validate, plan, and ``gilmatrix images`` up-to-date-checking (or building)
the 3.14t image with the Dockerfile, scripts and lock that shipped inside the wheel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import docker_and_mirror

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
OFFLINE = ROOT / "examples" / "offline-mirror.yaml"
IMAGES_WORK = ROOT / "_build" / "test-images"  # shared with test_docker_images (wheel cache)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = out / "src"  # a clean copy: no build/ or egg-info of the work tree leaks in
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", "_build", ".nox", "__pycache__", "*.egg-info", "build", ".pytest_cache"
        ),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        check=True,
        timeout=600,
    )
    (found,) = out.glob("gilmatrix-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed (not editable); its dependencies come from this
    environment through a .pth line, so the test needs no index."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    purelib = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    # Appended after the venv's own site-packages, so the wheel's gilmatrix is the one imported
    # (and the .pth files there, such as an editable install's finder, are not run).
    Path(purelib, "zz_test_dependencies.pth").write_text("".join(f"{p}\n" for p in ours))
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        timeout=300,
    )
    return venv


def user_environ() -> dict[str, str]:
    """A user's environment: nothing pointing at this checkout."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GILMATRIX_OVERRIDE")}


def gilmatrix(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = user_environ()
    return subprocess.run(
        [str(venv / "bin" / "gilmatrix"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )


def test_the_wheel_holds_one_import_package_with_the_image_files(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names}
    assert top == {"gilmatrix", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    for shipped in (
        "gilmatrix/_images/Dockerfile",
        "gilmatrix/_images/build-python.sh",
        "gilmatrix/_images/check-python.py",
        "gilmatrix/_images/sources.toml",
        "gilmatrix/matrix/schema.json",
        "gilmatrix/reports/templates/report.html.j2",
        "gilmatrix/harness/bench.py",
        "gilmatrix/cli.py",
        "gilmatrix/run/execute.py",
    ):
        assert shipped in names, shipped
    # every module of the checkout's packages is in it (a package left out of pyproject's list
    # would be missing only from the installed command)
    root = Path(__file__).resolve().parent.parent
    for folder, package in (("runner", "gilmatrix"), ("reports", "gilmatrix/reports")):
        for path in (root / folder).rglob("*.py"):
            rel = path.relative_to(root / folder).as_posix()
            if folder == "runner" and rel.startswith("reports/"):
                continue
            assert f"{package}/{rel}" in names, rel
    # developer tools stay in the checkout
    assert not [n for n in names if "selfbench" in n or "synthetic" in n or "rehearsal" in n]


def test_installed_gilmatrix_works_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [
            str(installed / "bin" / "python"),
            "-c",
            "import gilmatrix, gilmatrix.images.sources as s; "
            "print(gilmatrix.__file__); print(s.packaged_images_dir())",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env=user_environ(),
    )
    module, images_dir = where.stdout.split()
    assert str(installed) in module and not module.startswith(str(ROOT))
    assert images_dir == str(Path(module).parent / "_images")
    shutil.copy(ROOT / "matrix.yaml", tmp_path / "matrix.yaml")  # no images/ beside it
    proc = gilmatrix(installed, "validate", "matrix.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = gilmatrix(installed, "plan", "--profile", "smoke", "--only", "3.14t", cwd=tmp_path)
    assert proc.returncode == 0 and "3.14t" in proc.stdout, proc.stderr


@pytest.mark.docker
def test_installed_gilmatrix_builds_an_image_from_its_packaged_files(installed: Path, tmp_path: Path) -> None:
    mirror = docker_and_mirror()
    shutil.copy(ROOT / "matrix.yaml", tmp_path / "matrix.yaml")
    proc = gilmatrix(
        installed,
        "images",
        "--override",
        str(OFFLINE),
        "--only",
        "3.14t",
        "--sources",
        str(mirror),
        "--out",
        str(IMAGES_WORK),
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (result,) = json.loads(proc.stdout[proc.stdout.index("[") :])
    assert result["status"] in ("built", "cached") and result["tag"].startswith(
        "gilmatrix/cpython:3.14t-fast-"
    )
    assert result["source_lock"].startswith(str(installed))  # the wheel's lock, not the checkout's
    assert result["source_file"] == "Python-3.14.7.tar.xz"
    assert result["source_origin"] == f"mirror {mirror}"
