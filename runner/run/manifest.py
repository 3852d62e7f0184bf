"""A run folder's ``manifest.json``: its format version, its writer and its reader, once.

Three things write a manifest — a run (``run.execute``), a merge of runs (``merge``) and, for the
report's tests, a synthetic run (``devtools/synthetic.py``) — and two read one (resume, the
report): all of them go through :func:`new_manifest`, :func:`write_manifest` and
:func:`read_manifest`, so the keys, their order and the refusal of another format are the same
everywhere.

A run folder may come from elsewhere (a CI artifact a fork's workflow wrote): every JSON file of
it that gilmatrix reads goes through :func:`read_json`, and every file merge copies through
:func:`file_problem` — no link out of the folder is followed, nothing but a regular file of at
most :data:`MAX_FILE_BYTES` is opened (a FIFO would block, a sparse file of gigabytes would be
read whole), JSON nested deeper than :data:`MAX_DEPTH` is refused (Python's parser and every
reader after it recurse), and what goes wrong is a message, never an exception of the parser.
"""

from __future__ import annotations

import json
import math
import os
import stat
import sys
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

# The largest file of a run folder read or copied: 64 MiB, 25 times the largest gilmatrix writes
# (the 10,000 cells of devtools/report_bench.py: a 2.5 MB manifest, 0.8 MB per interpreter's
# suite). Measured on a 2-core VM: read_json of a 63 MiB pyperf suite took 2.0 s (0.7 s of it the
# depth check) and the process peaked at 365 MB.
MAX_FILE_BYTES = 64 * 1024 * 1024
# The deepest nesting of a JSON file read: the files of gilmatrix and pyperf nest 7 levels.
MAX_DEPTH = 64


class FileProblem(ValueError):
    """A file of a run folder that is not read, or not as JSON: the message says why; the
    caller names the file."""


def _inside(path: Path, root: Path) -> Path:
    """``path`` with every link resolved; FileProblem when that leaves the folder ``root``."""
    try:
        real, real_root = Path(path).resolve(), Path(root).resolve()
    except (OSError, RuntimeError) as exc:  # a loop of links
        raise FileProblem(f"cannot be resolved ({exc})") from None
    if not real.is_relative_to(real_root):
        raise FileProblem(f"resolves to {real}, outside the run folder {root}")
    return real


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((name for test, name in _KINDS if test(mode)), "not a file")


def _regular_problem(info: os.stat_result, limit: int) -> str | None:
    if not stat.S_ISREG(info.st_mode):
        return f"not a regular file ({_kind(info.st_mode)})"
    if info.st_size > limit:
        return f"larger than {limit // 1024 // 1024} MiB ({info.st_size:,} bytes): not read"
    return None


def file_problem(path: Path, root: Path, limit: int = MAX_FILE_BYTES) -> str | None:
    """Why the file ``path`` of the run folder ``root`` may not be read or copied — it is
    absent, leads out of the folder, is not a regular file, or is larger than ``limit`` —
    or None. Only ``stat``: nothing is opened."""
    try:
        info = os.stat(_inside(path, root))
    except FileProblem as exc:
        return str(exc)
    except FileNotFoundError:
        return "absent"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    return _regular_problem(info, limit)


def folder_problem(path: Path, root: Path) -> str | None:
    """Why the folder ``path`` of the run folder ``root`` may not be walked — it leads out of
    the folder, or is not a folder — or None."""
    try:
        info = os.stat(_inside(path, root))
    except FileProblem as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if not stat.S_ISDIR(info.st_mode):
        return f"not a folder ({_kind(info.st_mode)})"
    return None


def read_json(path: Path, root: Path, limit: int = MAX_FILE_BYTES) -> Any:
    """The JSON value of the file ``path`` of the run folder ``root``; FileProblem saying what
    is wrong (see :func:`file_problem`, then: not UTF-8, not JSON, nested too deep)."""
    problem = file_problem(path, root, limit)
    if problem is not None:
        raise FileProblem(problem)
    try:  # no blocking open, no link followed: whatever replaced the file since, it is refused
        fd = os.open(_inside(path, root), os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise FileProblem(f"cannot be read ({exc.strerror})") from None
    with open(fd, "rb") as handle:
        problem = _regular_problem(os.fstat(fd), limit)
        data = b"" if problem else handle.read(limit + 1)
    if problem is not None or len(data) > limit:
        raise FileProblem(problem or f"larger than {limit // 1024 // 1024} MiB: not read")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileProblem(f"not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start})") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise FileProblem("not valid JSON: nested deeper than Python's parser goes") from None
    except ValueError as exc:
        raise FileProblem(f"not valid JSON ({exc})") from None
    if _deeper_than(value, MAX_DEPTH):
        raise FileProblem(f"nested deeper than {MAX_DEPTH} levels: not a file gilmatrix or pyperf writes")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether the JSON ``value`` nests lists and mappings more than ``limit`` levels (no
    recursion: the value may be as deep as the parser allowed)."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a file of a run folder (an interpreter id builds
    ``cells/<id>/`` and ``jobs/<id>.json``; a results entry is a file of the folder), or None."""
    if name in ("", ".", "..") or any(c in name for c in "/\\\0") or len(name.encode()) > 200:
        return (
            f"{_show(name)} is not a file name of the run folder (not '.' or '..', no '/', "
            "backslash or NUL, at most 200 bytes)"
        )
    return None


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
    cannot be read (see :func:`read_json`), it has another format or another shape."""
    path = Path(run_dir) / MANIFEST
    if not os.path.lexists(path):
        raise UserError(
            f"{run_dir}: no {MANIFEST} - not a gilmatrix run folder. Point at "
            "OUT/results/<run-id>/ as written by `gilmatrix run`."
        )
    try:
        manifest = read_json(path, Path(run_dir))
    except FileProblem as exc:
        raise UserError(f"{path}: cannot read the manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise UserError(
            f"{path}: manifest format {_show(found)}, this gilmatrix reads format "
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
# are free (a cell's extra facts, the environment's), and only read as text.


class _ListOf:
    """A list whose items are all of ``types``."""

    def __init__(self, *types: type) -> None:
        self.types = types

    def __repr__(self) -> str:  # the wanted type, in an error
        names = [_PLURALS[t] for t in self.types if not (t is int and float in self.types)]
        return f"a list of {' or '.join(names)}"


Types = tuple[type | _ListOf, ...]
Spec = Mapping[str, tuple[Types, bool]]

_STR, _INT, _NUM, _LIST, _DICT, _NONE = (str,), (int,), (int, float), (list,), (dict,), (type(None),)
_BOOL = (bool,)
_STRS, _NUMS = (_ListOf(str),), (_ListOf(int, float),)
_TYPE_NAMES = {
    str: "a string",
    int: "a whole number",
    float: "a number",
    list: "a list",
    dict: "a mapping",
    bool: "true or false",
}
_PLURALS = {str: "strings", int: "whole numbers", float: "numbers"}
_TOP: Spec = {
    "run_id": (_STR, True),
    "started": (_STR + _NONE, True),
    "finished": (_STR + _NONE, False),
    "state": (_STR, False),
    "tool": (_DICT, False),
    "matrix": (_DICT, True),
    "workloads": (_DICT, False),
    "schedule": (_DICT, False),
    "hosts": (_DICT, False),
    "merge": (_DICT, False),
    "ci": (_DICT, False),
    "replicates": (_DICT, False),
    "backend": (_DICT, False),
    "host": (_DICT, False),
    "warnings": (_STRS, False),
    "stages": (_DICT, False),
    "interpreters": (_DICT, True),
    "cells": (_LIST, True),
}
_MATRIX: Spec = {
    "sha256": (_STR, True),
    "profile": (_STR, True),
    "only": (_STRS, False),
    "path": (_STR, False),
    "overrides": (_STRS, False),
    "settings": (_DICT, False),
}
_WORKLOAD: Spec = {
    "description": (_STR + _NONE, False),
    "kind": (_STR + _NONE, False),
    "implementation": (_STR + _NONE, False),
}
_SCHEDULE: Spec = {
    "seed": (_INT, False),
    "order": (_STR, False),
    "pairing": (_STR, False),
    "rounds": (_LIST, False),
    "windows": (_LIST, False),
    "window_seconds": (_NUM + _NONE, False),
    "sampling": (_DICT, False),
    "noise": (_DICT + _NONE, False),  # null until the run has measured it
}
_SAMPLING: Spec = {
    "mode": (_STR, False),
    "processes": (_INT + _NONE, False),
    "target": (_NUM + _NONE, False),
    "min_processes": (_INT + _NONE, False),
    "max_processes": (_INT + _NONE, False),
    "max_seconds": (_NUM + _NONE, False),
    "run_minutes": (_NUM + _NONE, False),
    "prior_processes": (_INT + _NONE, False),
}
_NOISE: Spec = {
    "floor": (_NUM + _NONE, False),
    "drift": (_NUM + _NONE, False),
    "sentinel_median_ms": (_NUM + _NONE, False),
    "sentinel_spread": (_NUM + _NONE, False),
}
# the facts of a machine: those merge tells machines apart by, and those the report counts with
_HOST: Spec = {
    "hostname": (_STR + _NONE, False),
    "machine": (_STR + _NONE, False),
    "platform": (_STR + _NONE, False),
    "cpu_model": (_STR + _NONE, False),
    "kernel": (_STR + _NONE, False),
    "cpu_count": (_INT + _NONE, False),
    "usable_cpus": (_INT + _NONE, False),
    "physical_cores": (_INT + _NONE, False),
}
_INTERPRETER: Spec = {
    "status": (_STR, False),
    "reason": (_STR + _NONE, False),
    "results": (_STR + _NONE, False),
    "environment": (_DICT + _NONE, False),
    "load_before": (_NUMS + _NONE, False),
    "load_after": (_NUMS + _NONE, False),
    "elapsed": (_NUM + _NONE, False),
    "host": (_DICT + _NONE, False),
    "machine": (_STR + _NONE, False),
}
_FACTS: Spec = {"py_gil_disabled": (_INT + _BOOL + _NONE, False)}
_CELL: Spec = {
    "interpreter": (_STR, True),
    "id": (_STR, True),
    "status": (_STR, True),
    "workload": (_STR, False),
    "executor": (_STR, False),
    "workers": (_INT, False),
    "reason": (_STR + _NONE, False),
    "elapsed": (_NUM + _NONE, False),
    "output_tail": (_STR + _NONE, False),
    "warnings": (_STRS, False),
    "worker_seconds": (_NUMS, False),
    "processes": (_INT + _NONE, False),
    "precision": (_NUM + _NONE, False),
    "target": (_NUM + _NONE, False),
    "stopped": (_STR + _NONE, False),
    "rounds": (_INT + _NONE, False),
    "discarded": (_INT + _NONE, False),
}

# a cell's ``<slug>.status.json``, as the harness writes it: the same keys as its manifest entry
CELL_STATUS: Spec = {
    key: (types, key == "status") for key, (types, _) in _CELL.items() if key not in ("interpreter", "id")
}
# ``github-runner.json`` (gilmatrix.github.runner_facts), which merge keeps with the host's facts
RUNNER_FACTS_SHAPE: Spec = {
    **{
        key: (_STR + _NONE, False)
        for key in ("name", "environment", "os", "arch", "repository", "run_id", "run_attempt", "job", "sha")
    },
    "run_url": (_STR + _NONE, False),
    "labels": (_STRS, False),
}
# whole numbers beyond this are not figures gilmatrix writes (pandas keeps int64)
_LARGEST = 2**63 - 1


def _of_type(item: Any, types: Types) -> bool:
    for wanted in types:
        if isinstance(wanted, _ListOf):
            if isinstance(item, list) and all(_of_type(v, wanted.types) for v in item):
                return True
        elif isinstance(item, wanted) and (wanted is bool or not isinstance(item, bool)):
            return True
    return False


def _number_problem(item: Any) -> str | None:
    """NaN, infinity and integers past int64: out of range for every reader."""
    numbers = item if isinstance(item, list) else [item]
    for number in numbers:
        if isinstance(number, float) and not math.isfinite(number):
            return f"expected a finite number, found {_show(item)}"
        if isinstance(number, int) and not isinstance(number, bool) and abs(number) > _LARGEST:
            return f"a number out of range ({len(str(abs(number)))} digits)"
    return None


def shape_problem(value: Any, spec: Spec, at: str = "") -> str | None:
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
        if not _of_type(item, types):
            wanted = " or ".join(
                repr(t) if isinstance(t, _ListOf) else _TYPE_NAMES.get(t, "null") for t in types
            )
            return f"{where}: expected {wanted}, found {_show(item)}"
        problem = _number_problem(item)
        if problem is not None:
            return f"{where}: {problem}"
    return None


def _show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except ValueError:  # an integer too long for str()
        text = f"a number of more than {sys.get_int_max_str_digits()} digits"
    return text if len(text) <= 40 else text[:37] + "..."


def _key(name: str) -> str:
    """A key of the manifest in a message: quoted as Python does (control characters escaped),
    cut at 60 characters."""
    return repr(name) if len(name) <= 60 else repr(name[:57]) + "..."


def _mapping_problem(value: Any, spec: Spec, at: str) -> str | None:
    """shape_problem of ``value`` when it is there (None when it is absent or null)."""
    return None if value is None else shape_problem(value, spec, at)


def manifest_problem(manifest: Mapping[str, Any]) -> str | None:
    """The first key of ``manifest`` a reader would trip on (missing, of the wrong type, out of
    range, a path out of the folder, a cell twice), as ``key: what is wrong``; None when its
    shape is what gilmatrix writes."""
    problem = shape_problem(manifest, _TOP, "") or shape_problem(manifest["matrix"], _MATRIX, "matrix")
    for name, value in (manifest.get("workloads") or {}).items():
        problem = problem or shape_problem(value, _WORKLOAD, f"workloads[{_key(name)}]")
    host = manifest.get("host")
    problem = problem or _mapping_problem(host, _HOST, "host")
    for key, value in (manifest.get("stages") or {}).items():
        if problem is None and value is not None and not _of_type(value, _NUM):
            problem = f"stages[{_key(key)}]: expected a number or null, found {_show(value)}"
    if problem is None and "schedule" in manifest:
        schedule = manifest["schedule"]
        problem = (
            shape_problem(schedule, _SCHEDULE, "schedule")
            or _mapping_problem(schedule.get("sampling"), _SAMPLING, "schedule.sampling")
            or _mapping_problem(schedule.get("noise"), _NOISE, "schedule.noise")
        )
        sampling = schedule.get("sampling") or {}
        if problem is None and sampling.get("mode") == "adaptive" and sampling.get("target") is None:
            problem = "schedule.sampling.target: missing (adaptive sampling has a target)"
    if problem is not None:
        return problem
    for ident, entry in manifest["interpreters"].items():
        where = f"interpreters[{_key(ident)}]"
        problem = name_problem(ident)
        if problem is not None:
            return f"{where}: the interpreter id {problem}"
        problem = shape_problem(entry, _INTERPRETER, where) or _mapping_problem(
            entry.get("host"), _HOST, f"{where}.host"
        )
        if problem is None and entry.get("results") is not None:
            problem = name_problem(entry["results"])
            problem = problem and f"{where}.results: {problem}"
        if problem is None and isinstance(entry.get("environment"), dict):
            facts = entry["environment"].get("facts")
            problem = _mapping_problem(facts, _FACTS, f"{where}.environment.facts")
        if problem is not None:
            return problem
    seen: dict[tuple[str, str], int] = {}
    for index, cell in enumerate(manifest["cells"]):
        problem = shape_problem(cell, _CELL, f"cells[{index}]")
        if problem is not None:
            return problem
        key = (cell["interpreter"], cell["id"])
        if key in seen:
            return (
                f"cells[{index}]: {_show(key[1])} of {_show(key[0])} is listed twice "
                f"(also cells[{seen[key]}])"
            )
        seen[key] = index
    return None
