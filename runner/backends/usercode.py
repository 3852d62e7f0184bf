"""User workloads (``module:`` in matrix.yaml) as the backends ship them: the module's files,
copied into a content-addressed folder, and its requirements, installed per interpreter."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from gilmatrix.matrix.model import Workload


def workload_digest(workload: Workload) -> str:
    """What the workload's cells depend on: its files (names and bytes) and its requirements."""
    assert workload.module is not None
    digest = hashlib.sha256(workload.module.name.encode() + b"\0")
    for path in workload.module.files():
        digest.update(path.relative_to(workload.module.folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    for requirement in workload.requirements:
        digest.update(b"requirement\0" + requirement.encode() + b"\0")
    return digest.hexdigest()


def requirements_digest(workload: Workload) -> str:
    return hashlib.sha256("\0".join(workload.requirements).encode()).hexdigest()


def stage_workload(workload: Workload, dest_root: Path) -> Path:
    """Copy the workload's files into ``dest_root/<id>-<digest>/``; return that folder (the one
    to put on the workers' PYTHONPATH). A copy, so that editing the file while a run goes on
    cannot mix two versions of it in one cell."""
    assert workload.module is not None
    target = dest_root / f"{workload.id}-{workload_digest(workload)[:16]}"
    if not (target / f"{workload.module.name}.py").is_file():
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for path in workload.module.files():
            dest = tmp / path.relative_to(workload.module.folder)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return target


def pip_reason(output: str) -> str:
    """The telling lines of a failed pip install."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR") or "error:" in line.lower()]
    chosen = errors[-3:] if errors else lines[-3:]
    return " | ".join(chosen)[:600] or "pip failed without a message"
