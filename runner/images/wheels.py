"""The harness' dependencies for one image, as files: a wheelhouse per target ABI.

Images install pyperf and psutil with ``pip install --no-index`` from files downloaded here, on
the host (which has the network and the CA bundle), so image builds need no index and no TLS
trust. Versions come from the source lock's ``[harness_requirements]``; pure-Python packages are
wheels checked against the target's Python version and ABI, psutil is its sdist, compiled in the
image's build stage (no cp315t wheel exists, and abi3 wheels do not load in free-threaded builds).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

# Packages installed from source inside the image (compiled against the image's interpreter).
BUILT_IN_IMAGE = frozenset({"psutil"})


class WheelError(Exception):
    """The wheelhouse lacks a required file and it cannot be downloaded."""


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _matches(path: Path, name: str, version: str) -> bool:
    """Is ``path`` a wheel or sdist of exactly ``name==version``?"""
    stem = path.name
    for suffix in (".whl", ".tar.gz", ".zip"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    else:
        return False
    if path.name.endswith(".whl"):
        parts = stem.split("-")
        return len(parts) >= 5 and _normal(parts[0]) == _normal(name) and parts[1] == version
    dist, _, ver = stem.rpartition("-")
    return _normal(dist) == _normal(name) and ver == version


def find_files(folder: Path, requirements: Mapping[str, str]) -> tuple[list[Path], list[str]]:
    """Files in ``folder`` that satisfy ``requirements`` (sdist for BUILT_IN_IMAGE, wheel else),
    and the requirements with no file."""
    found, missing = [], []
    files = sorted(folder.iterdir()) if folder.is_dir() else []
    for name, version in requirements.items():
        want_sdist = _normal(name) in {_normal(n) for n in BUILT_IN_IMAGE}
        hits = [p for p in files if _matches(p, name, version) and (p.name.endswith(".whl") != want_sdist)]
        if hits:
            found.append(hits[0])
        else:
            missing.append(f"{name}=={version}{' (sdist)' if want_sdist else ''}")
    return found, missing


def download(
    requirements: Mapping[str, str],
    abi: str,
    python_version: str,
    dest: Path,
    log: Callable[[str], None] = print,
) -> None:
    """`pip download` the requirements for the target ABI (e.g. cp315t) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    major_minor = ".".join(python_version.split(".")[:2])
    wheels = [f"{n}=={v}" for n, v in requirements.items() if n not in BUILT_IN_IMAGE]
    sdists = [f"{n}=={v}" for n, v in requirements.items() if n in BUILT_IN_IMAGE]
    pip = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--dest",
        str(dest),
        "--disable-pip-version-check",
        "--quiet",
    ]
    commands = []
    if wheels:
        commands.append(
            [
                *pip,
                "--only-binary=:all:",
                "--implementation",
                "cp",
                "--python-version",
                major_minor,
                "--abi",
                abi,
                *wheels,
            ]
        )
    if sdists:
        commands.append([*pip, "--no-binary=:all:", *sdists])
    log(f"wheelhouse {dest}: downloading {', '.join(wheels + sdists)} for {abi}")
    for cmd in commands:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise WheelError(
                f"`{' '.join(cmd[2:])}` failed: {result.stderr.strip()[-1500:]}\n"
                "give a wheelhouse with these files with --wheelhouse DIR (or a "
                f"{abi}/ folder in it)"
            )


def collect_wheels(
    requirements: Mapping[str, str],
    abi: str,
    python_version: str,
    *,
    wheelhouse: Path | None,
    cache: Path,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """The files to install in an image for ``abi``: from ``wheelhouse`` (its ``<abi>/`` subfolder,
    then the folder itself) when it has them all, else from ``cache/<abi>``, downloading what is
    missing there (the error names --wheelhouse when that is not possible)."""
    if wheelhouse is not None:
        for folder in (wheelhouse / abi, wheelhouse):
            found, missing = find_files(folder, requirements)
            if not missing:
                return found
        log(f"wheelhouse {wheelhouse} lacks {', '.join(missing)} for {abi}; using {cache / abi}")
    folder = cache / abi
    found, missing = find_files(folder, requirements)
    if missing:
        download(requirements, abi, python_version, folder, log)
        found, missing = find_files(folder, requirements)
        if missing:
            raise WheelError(f"after downloading, {folder} still lacks {', '.join(missing)}")
    return found


# -- a user workload's requirements (``requirements:`` in matrix.yaml) ---------------------------

BUILD_BACKEND = ("setuptools", "wheel")  # what pip needs in the image to build an sdist


def _project(requirement: str) -> str:
    try:
        from packaging.requirements import InvalidRequirement, Requirement
    except ImportError:  # pragma: no cover - packaging is a dependency of gilmatrix
        return re.split(r"[^A-Za-z0-9._-]", requirement.strip(), maxsplit=1)[0]
    try:
        return Requirement(requirement).name
    except InvalidRequirement:
        return ":all:"


def host_platforms(machine: str | None = None) -> list[str]:
    """The manylinux platforms a wheel for the images may have (the host's architecture: the
    images run on this machine's engine; Debian bookworm's glibc is 2.36)."""
    import platform

    arch = machine or platform.machine()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(arch.lower(), arch)
    return [f"manylinux_2_17_{arch}", f"manylinux2014_{arch}", f"manylinux_2_28_{arch}"]


def _pip_download(args: list[str], timeout: float = 900) -> subprocess.CompletedProcess[str] | str:
    """`pip download ARGS` with the host's pip; its result, or the reason when it could not run."""
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"`pip download` took over {timeout / 60:.0f} minutes"


def requirement_files(
    requirements: tuple[str, ...] | list[str],
    abi: str,
    python_version: str,
    dest: Path,
    *,
    index: list[str] | None = None,
    machine: str | None = None,
) -> tuple[list[Path], list[Path], str | None]:
    """Download a workload's requirements for ``abi`` into ``dest`` (a folder of their own):
    wheels (with their dependencies) where the ABI has them, else the sdist (built in the image, with the
    setuptools and wheel wheels downloaded beside it). ``index``: pip's index options (e.g.
    ``["--no-index", "--find-links", DIR]``; default PyPI). Returns ``(files, sdists, problem)``;
    ``problem`` is pip's reason when some requirement has neither."""
    from gilmatrix.backends.usercode import pip_reason

    dest.mkdir(parents=True, exist_ok=True)
    major_minor = ".".join(python_version.split(".")[:2])
    target = ["--implementation", "cp", "--python-version", major_minor, "--abi", abi]
    for plat in host_platforms(machine):
        target += ["--platform", plat]
    wheels = ["--only-binary=:all:", *target, "--dest", str(dest), *(index or [])]

    def attempt(args: list[str]) -> str | None:
        result = _pip_download(args)
        if isinstance(result, str):
            return result
        return None if result.returncode == 0 else pip_reason(result.stderr + result.stdout)

    if attempt([*wheels, *requirements]) is None:
        return sorted(dest.iterdir()), [], None
    sdists: list[Path] = []
    for requirement in requirements:
        if attempt([*wheels, requirement]) is None:
            continue
        got = set(dest.iterdir())
        # --no-binary for this project only: pip builds its metadata, with setuptools' wheel
        sdist = [f"--no-binary={_project(requirement)}", "--no-deps", "--dest", str(dest)]
        why = attempt([*sdist, *(index or []), requirement])
        if why is not None:
            return [], [], f"pip could not download {requirement}: {why}"
        sdists += sorted(p for p in set(dest.iterdir()) - got if not p.name.endswith(".whl"))
    if sdists:
        why = attempt([*wheels, *BUILD_BACKEND])
        if why is not None:
            return [], [], f"pip could not download {' and '.join(BUILD_BACKEND)} to build an sdist: {why}"
    return sorted(dest.iterdir()), sdists, None
