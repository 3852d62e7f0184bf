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
from gilmatrix.harness.contract import Status
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


COMPLETE, PARTIAL = "complete", "partial"


def run_state(statuses: Iterable[str], *parts: str | None) -> str:
    """A run's ``state``: complete when every cell is ok or skipped (with its reason) and every
    part it is made of (a merge's inputs, a merged run's replicates) is complete; else partial.
    The one place this rule is written (a run and a merge both use it)."""
    done = set(statuses) <= {Status.OK, Status.SKIPPED}
    return COMPLETE if done and all(p == COMPLETE for p in parts) else PARTIAL


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
    problem = manifest_problem(manifest)
    if problem is not None:
        raise UserError(
            f"{path}: {problem} - not what gilmatrix writes (edited by hand?): restore the file, or run again"
        )
    return manifest


# -- the shape every reader relies on ------------------------------------------------------
# What a reader (report, merge, resume) reads of a manifest, with its type: a manifest edited
# by hand is refused naming the key, instead of a TypeError deep in a reader. Keys not listed
# are free (``tool``, ``settings``, a cell's extra facts).

_STR, _INT, _NUM, _LIST, _DICT, _NONE = (str,), (int,), (int, float), (list,), (dict,), (type(None),)
_TYPE_NAMES = {str: "a string", int: "a whole number", float: "a number", list: "a list", dict: "a mapping"}
_TOP = {
    "run_id": (_STR, True),
    "started": (_STR + _NONE, True),
    "finished": (_STR + _NONE, False),
    "state": (_STR, False),
    "matrix": (_DICT, True),
    "workloads": (_DICT, False),
    "schedule": (_DICT, False),
    "hosts": (_DICT, False),
    "merge": (_DICT, False),
    "ci": (_DICT, False),
    "replicates": (_DICT, False),
    "backend": (_DICT, False),
    "host": (_DICT + _STR, False),
    "warnings": (_LIST, False),
    "stages": (_DICT, False),
    "interpreters": (_DICT, True),
    "cells": (_LIST, True),
}
_MATRIX = {
    "sha256": (_STR, True),
    "profile": (_STR, True),
    "only": (_LIST, False),
    "path": (_STR, False),
    "overrides": (_LIST, False),
}
_SCHEDULE = {"seed": (_INT, False), "rounds": (_LIST, False), "windows": (_LIST, False)}
_INTERPRETER = {
    "status": (_STR, False),
    "reason": (_STR + _NONE, False),
    "results": (_STR + _NONE, False),
    "environment": (_DICT + _NONE, False),
    "load_before": (_LIST + _NONE, False),
    "load_after": (_LIST + _NONE, False),
    "elapsed": (_NUM + _NONE, False),
    "host": (_DICT + _NONE, False),
    "machine": (_STR + _NONE, False),
}
_CELL = {
    "interpreter": (_STR, True),
    "id": (_STR, True),
    "status": (_STR, True),
    "workload": (_STR, False),
    "executor": (_STR, False),
    "workers": (_INT, False),
    "reason": (_STR + _NONE, False),
    "elapsed": (_NUM + _NONE, False),
    "output_tail": (_STR + _NONE, False),
    "warnings": (_LIST, False),
    "worker_seconds": (_LIST, False),
    "processes": (_INT + _NONE, False),
    "precision": (_NUM + _NONE, False),
    "target": (_NUM + _NONE, False),
    "stopped": (_STR + _NONE, False),
    "rounds": (_INT + _NONE, False),
    "discarded": (_INT + _NONE, False),
}


# a cell's ``<slug>.status.json``, as the harness writes it: the same keys as its manifest entry
CELL_STATUS = {
    key: (types, key == "status") for key, (types, _) in _CELL.items() if key not in ("interpreter", "id")
}


def shape_problem(value: Any, spec: Mapping[str, tuple[tuple[type, ...], bool]], at: str = "") -> str | None:
    """The first key of the mapping ``value`` that ``spec`` ({key: (types, required)}) refuses,
    as ``key: what is wrong``; None when there is none."""
    if not isinstance(value, dict):
        return f"{at or '(top level)'}: expected a mapping, found {_show(value)}"
    for key, (types, required) in spec.items():
        where = f"{at}.{key}" if at else key
        if key not in value:
            if required:
                return f"{where}: missing"
            continue
        item = value[key]
        if isinstance(item, bool) or not isinstance(item, types):
            wanted = " or ".join(_TYPE_NAMES.get(t, "null") for t in types)
            return f"{where}: expected {wanted}, found {_show(item)}"
    return None


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def manifest_problem(manifest: Mapping[str, Any]) -> str | None:
    """The first key of ``manifest`` a reader would trip on (missing, or of the wrong type),
    as ``key: what is wrong``; None when its shape is what gilmatrix writes."""
    problem = shape_problem(manifest, _TOP, "") or shape_problem(manifest["matrix"], _MATRIX, "matrix")
    if problem is None and "schedule" in manifest:
        problem = shape_problem(manifest["schedule"], _SCHEDULE, "schedule")
    if problem is not None:
        return problem
    for ident, entry in manifest["interpreters"].items():
        problem = shape_problem(entry, _INTERPRETER, f"interpreters[{ident!r}]")
        if problem is None and isinstance(entry.get("environment"), dict):
            facts = entry["environment"].get("facts")
            if facts is not None and not isinstance(facts, dict):
                problem = (
                    f"interpreters[{ident!r}].environment.facts: expected a mapping, found {_show(facts)}"
                )
        if problem is not None:
            return problem
    for index, cell in enumerate(manifest["cells"]):
        problem = shape_problem(cell, _CELL, f"cells[{index}]")
        if problem is not None:
            return problem
    return None
