"""A run folder's ``manifest.json``: its format version, its writer and its reader, once.

Three things write a manifest — a run (``run.execute``), a merge of runs (``merge``) and, for the
report's tests, a synthetic run (``devtools/synthetic.py``) — and two read one (resume, the
report): all of them go through :func:`new_manifest`, :func:`write_manifest` and
:func:`read_manifest`, so the keys, their order and the refusal of another format are the same
everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import gilmatrix
from gilmatrix.errors import UserError
from gilmatrix.harness.drive import write_atomic

MANIFEST = "manifest.json"
# Bump on any incompatible change; readers refuse other versions with a clear message.
FORMAT = 1


def new_manifest(
    *,
    run_id: str,
    started: str | None,
    finished: str | None,
    state: str,
    matrix: Mapping[str, Any],
    backend: Mapping[str, Any],
    host: Mapping[str, Any] | str,
    interpreters: Mapping[str, Any],
    cells: Iterable[Mapping[str, Any]],
    workloads: Mapping[str, Any] | None = None,
    stages: Mapping[str, float] | None = None,
    warnings: Iterable[str] = (),
    tool: Mapping[str, Any] | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """A manifest, its keys in their order; ``sections`` (``schedule``, ``hosts``, ``merge``)
    go after ``host``. ``workloads``: id -> {"description", "kind", "implementation"}."""
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "tool": {"name": "gilmatrix", "version": gilmatrix.__version__, **(tool or {})},
        "run_id": run_id,
        "started": started,
        "finished": finished,
        "state": state,
        "matrix": dict(matrix),
        "workloads": dict(workloads or {}),
    }
    manifest.update(sections)
    manifest.update(
        {
            "backend": dict(backend),
            "host": host,
            "warnings": list(warnings),
            "stages": dict(stages or {}),
            "interpreters": dict(interpreters),
            "cells": list(cells),
        }
    )
    return manifest


def workload_entries(workloads: Iterable[Any]) -> dict[str, dict[str, str]]:
    """The manifest's ``workloads`` from the matrix' Workload objects: what the report says of
    each (its description, from matrix.yaml or the harness)."""
    return {
        w.id: {"description": w.description, "kind": w.kind, "implementation": w.implementation}
        for w in workloads
    }


def write_manifest(run_dir: Path, manifest: Mapping[str, Any]) -> None:
    write_atomic(str(Path(run_dir) / MANIFEST), json.dumps(manifest, indent=2) + "\n")


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The manifest of a run folder; a UserError saying what is wrong when there is none, it
    cannot be read, or it has another format."""
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise UserError(
            f"{run_dir}: no {MANIFEST} - not a gilmatrix run folder. Point at "
            "OUT/results/<run-id>/ as written by `gilmatrix run`."
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read the manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise UserError(
            f"{path}: manifest format {found!r}, this gilmatrix reads format "
            f"{FORMAT}: use the gilmatrix version that wrote it, or run again"
        )
    return manifest
