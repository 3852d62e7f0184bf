"""matrix.yaml: load, validate and turn into typed values.

A bad file stops here, before anything runs, with one message that names the file, the line
and the key (``matrix.yaml:12: interpreters[3].id: ...``), plus a suggestion for near-misses.
Validation has two layers: the JSON Schema shipped as ``runner/matrix/schema.json`` (which
editors use too) for shape and types, then checks the schema cannot express (unique ids,
known workloads and their parameters, free-threaded builds only from 3.13, ...).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

import jsonschema
import yaml
from packaging.requirements import InvalidRequirement, Requirement

from gilmatrix.errors import UserError
from gilmatrix.harness.workloads import WORKLOADS, Param
from gilmatrix.matrix.usercode import UserModule, read_module

SCHEMA_NAME = "schema.json"
_ID = re.compile(r"^3\.(\d{1,2})(t?)$")


@dataclass(frozen=True, slots=True)
class Interpreter:
    id: str  # "3.13" or "3.13t"
    version: tuple[int, int]
    free_threaded: bool
    python: str | None = None  # local: explicit executable
    source: str | None = None  # docker: exact release to build, e.g. "3.13.15"
    prefix: str | None = None  # docker: existing install prefix to copy into the image
    runs_on: tuple[str, ...] = ()  # GitHub Actions runner labels

    @property
    def minor(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"


@dataclass(frozen=True, slots=True)
class Workload:
    id: str  # the entry's name in matrix.yaml
    implementation: str  # harness workload name; a user module's: "module:<file name>"
    kind: str
    description: str
    params: Mapping[str, Any]
    module: UserModule | None = None  # a user workload: the file the matrix names
    requirements: tuple[str, ...] = ()  # pip requirements of a user workload
    runs_on: tuple[str, ...] = ()  # CI runner labels of the jobs that run it (plan --github)
    # tasks of a cell = its workers x this (every worker the same work: weak scaling); None:
    # params.tasks, the same for every worker count
    tasks_per_worker: int | None = None

    @property
    def param_specs(self) -> Mapping[str, Param]:
        return self.module.params if self.module is not None else WORKLOADS[self.implementation].params

    @property
    def fixed_cost(self) -> bool:
        """What it times is an execution model's fixed cost (its pool is created in the timed
        call, as ``startup``'s), not the throughput of its workers."""
        return self.module is None and WORKLOADS[self.implementation].pool_in_timing

    def tasks(self, params: Mapping[str, Any], workers: int) -> int | None:
        """The tasks of one timed call of a cell at ``workers`` workers (``params``: the
        workload's with the profile's overrides); None when the workload has no ``tasks``."""
        if self.tasks_per_worker is not None:
            return self.tasks_per_worker * workers
        spec = self.param_specs.get("tasks")
        if spec is None and not (self.module is not None and not self.module.declares_params):
            return None
        value = params.get("tasks", spec.default if spec is not None else None)
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    @property
    def unsupported(self) -> Mapping[str, str]:
        if self.module is not None:
            return self.module.unsupported
        return WORKLOADS[self.implementation].unsupported


@dataclass(frozen=True, slots=True)
class PyperfSettings:
    processes: int = 1
    values: int = 3
    warmups: int = 1
    loops: int | None = None  # None: pyperf calibrates
    min_time: float = 0.1


@dataclass(frozen=True, slots=True)
class PrecisionPolicy:
    """Adaptive sampling (runner/run/schedule.py): processes until the interval is this tight."""

    target: float  # relative half-width of the 95% interval of the cell's mean
    min_processes: int = 4
    max_processes: int = 16
    max_seconds: float | None = None
    # The whole run's measuring time: once spent, every cell with min_processes stops.
    run_minutes: float | None = None
    # a cell stops once every comparison it is part of is decided (runner/run/decide.py)
    decide: bool = False


@dataclass(frozen=True, slots=True)
class CiSettings:
    """How ``gilmatrix plan --github`` splits a profile into CI jobs (runner/shards.py)."""

    shards: int | None = None  # bench jobs per replicate (None: from job_minutes, else 1)
    job_minutes: float | None = None  # target measuring minutes per bench job
    replicates: int = 1  # runners each shard runs on
    runs_on: tuple[str, ...] = ()  # runner labels of the bench jobs


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    description: str
    pyperf: PyperfSettings
    timeout: float
    memory_mb: int | None  # None: no limit beyond the machine's
    workers: tuple[int, ...] | None  # None: the matrix' worker counts
    workloads: tuple[str, ...] | None  # None: all of the matrix' workloads
    executors: tuple[str, ...] | None  # None: all of the matrix' executors
    params: Mapping[str, Mapping[str, Any]]  # workload id -> overrides
    precision: PrecisionPolicy | None = None  # None: pyperf.processes per cell, fixed
    python_gil: int | None = None  # PYTHON_GIL for every worker process (None: not set)
    max_workers: int | str | None = None  # no worker count above: N, "cpus", "physical-cores"
    placement: str | None = None  # "physical-cores": one CPU per physical core (cpuset/taskset)
    ci: CiSettings = CiSettings()
    # a round's order: "blocks" (each workload's cells side by side) or "shuffle" (run.schedule)
    order: str = "shuffle"
    # "calls": each cell that is not sequential times its workload's sequential run around each
    # of its calls, in its own process (harness/bench.py Partner; reports/pairs.py); "none"
    pairing: str = "none"


@dataclass(frozen=True, slots=True)
class Matrix:
    path: Path
    sha256: str
    interpreters: tuple[Interpreter, ...]
    workloads: tuple[Workload, ...]
    executors: tuple[str, ...]
    workers: tuple[int, ...]
    profiles: Mapping[str, Profile]
    default_profile: str = "default"
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    overrides: tuple[Path, ...] = ()  # override files applied on top of ``path``, in order

    def profile(self, name: str | None) -> Profile:
        name = name or self.default_profile
        if name not in self.profiles:
            raise UserError(
                f"{self.path}: no profile {name!r}{suggest(name, self.profiles)}; "
                f"profiles: {', '.join(self.profiles)}"
            )
        return self.profiles[name]

    def interpreter(self, interpreter_id: str) -> Interpreter:
        for interp in self.interpreters:
            if interp.id == interpreter_id:
                return interp
        raise KeyError(interpreter_id)


def parse_interpreter_id(value: str) -> tuple[tuple[int, int], bool]:
    match = _ID.match(value)
    if not match:
        raise ValueError(value)
    return (3, int(match.group(1))), bool(match.group(2))


@cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(resources.files("gilmatrix.matrix").joinpath(SCHEMA_NAME).read_text())
    return loaded


# -- locating keys in the YAML text ---------------------------------------------------------


class _Locator:
    """Maps a path of keys/indexes to the line it appears on; detects duplicate keys."""

    def __init__(self, node: yaml.Node | None) -> None:
        self.lines: dict[tuple[Any, ...], int] = {}
        self.duplicates: list[tuple[tuple[Any, ...], int]] = []
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: yaml.Node, path: tuple[Any, ...]) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, value_node in node.value:
                key = key_node.value
                if key in seen:
                    self.duplicates.append((path + (key,), key_node.start_mark.line + 1))
                seen.add(key)
                self.lines[path + (key,)] = key_node.start_mark.line + 1
                self._walk(value_node, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, path + (index,))

    def line(self, path: tuple[Any, ...]) -> int:
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path, 1)


def format_key(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def suggest(word: Any, candidates: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Errors:
    def __init__(self, path: Path, locator: _Locator) -> None:
        self.path, self.locator = path, locator

    def fail(self, key: tuple[Any, ...], message: str) -> UserError:
        return UserError(f"{self.path}:{self.locator.line(key)}: {format_key(key)}: {message}")


# -- loading ------------------------------------------------------------------------------


def load_matrix(path: str | Path, overrides: Sequence[str | Path] = ()) -> Matrix:
    """Read and validate ``path`` with its ``overrides`` applied; raise :class:`UserError` naming
    file, line and key.

    An override file replaces fields of the matrix' interpreters, matched by id (see
    :func:`apply_override`): how one machine swaps a source build for an install prefix of its
    own without editing the shared matrix.
    """
    path = Path(path)
    text = _read(path, "matrix file")
    layers = [(Path(o), _read(Path(o), "override file")) for o in overrides]
    return parse_matrix(text, path, layers)


def _read(path: Path, what: str) -> str:
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)  # never more: the size limit bounds memory
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the {what}: {exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise UserError(
            f"{path}:1: (top level): the {what} is larger than {MAX_FILE_BYTES // 1024} KiB, "
            f"the limit of a matrix or override file (a matrix needs a few KiB)"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: cannot read the {what}: {exc}") from None


# Limits of a matrix or override file, whatever it holds: the shipped matrix is ~4 KiB, ~260
# values (YAML nodes) and 6 levels deep. Without them, a few lines of nested aliases ("billion
# laughs") expand to 10^9 values, and thousands of nested brackets overflow PyYAML's recursion.
MAX_FILE_BYTES = 1024 * 1024
MAX_NODES = 20_000  # values after alias expansion
MAX_DEPTH = 50  # nesting levels after alias expansion


class _LimitExceeded(yaml.YAMLError):
    def __init__(self, line: int, key: tuple[Any, ...], message: str) -> None:
        super().__init__(message)
        self.line, self.key, self.message = line, key, message


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting while it composes: the values of the document with every
    alias expanded, and its depth, each refused beyond its limit before any recursion or
    expansion happens (PyYAML's composer recurses once per level; the constructor shares an
    aliased value, but everything that walks the data afterwards expands it)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._total = 0  # values composed so far, aliases counted expanded
        self._level = 0  # nesting level of the node being composed
        self._reach = 0  # deepest level reached inside the node being composed
        self._path: list[Any] = []  # the key path, for messages
        self._open: set[str] = set()  # anchors of nodes still being composed
        self._sizes: dict[str, tuple[int, int]] = {}  # anchor -> (values, levels)

    def _refuse(self, mark: Any, message: str) -> NoReturn:  # a yaml Mark (of either parser)
        raise _LimitExceeded(mark.line + 1, tuple(self._path), message)

    def _count(self, values: int, mark: Any, alias: str | None) -> None:
        self._total += values
        if self._total > MAX_NODES:
            where = f"with alias *{alias} " if alias else ""
            self._refuse(
                mark,
                f"the file holds more than {MAX_NODES:,} values {where}(aliases counted "
                f"expanded), the limit of a matrix file (a matrix needs a few hundred)",
            )

    def _deep(self, levels: int, mark: Any, alias: str | None) -> None:
        if levels > MAX_DEPTH:
            where = f" with alias *{alias}" if alias else ""
            self._refuse(
                mark,
                f"nested deeper than {MAX_DEPTH} levels{where}, the limit of a matrix file "
                f"(a matrix needs fewer than 10)",
            )

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if isinstance(index, int):
            self._path.append(index)
        elif isinstance(index, yaml.ScalarNode):
            self._path.append(index.value)
        elif index is not None:
            self._path.append("?")
        try:
            return self._compose_counted(parent, index)
        finally:
            if index is not None:
                self._path.pop()

    def _compose_counted(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                self._refuse(event.start_mark, f"alias *{event.anchor} is inside the value it names (a loop)")
            if event.anchor in self._sizes:  # else undefined: PyYAML says so
                values, levels = self._sizes[event.anchor]
                self._count(values, event.start_mark, event.anchor)
                self._deep(self._level + levels, event.start_mark, event.anchor)
                self._reach = max(self._reach, self._level + levels)
            return super().compose_node(parent, index)
        anchor = getattr(event, "anchor", None)
        self._level += 1
        self._deep(self._level, event.start_mark, None)
        self._count(1, event.start_mark, None)
        outer_reach, self._reach = self._reach, self._level
        before = self._total
        if anchor is not None:
            self._open.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._open.discard(anchor)
        if anchor is not None:
            self._sizes[anchor] = (self._total - before + 1, self._reach - self._level + 1)
        self._reach = max(outer_reach, self._reach)
        self._level -= 1
        return node

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError as exc:  # e.g. more digits than int() accepts
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value[:20]}...: {exc}", node.start_mark
            ) from None


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def _load_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


def _compose(text: str, path: Path) -> tuple[Any, _Locator, _Errors]:
    try:
        node, data = _load_yaml(text)
    except _LimitExceeded as exc:
        key = format_key(exc.key[:6]) + (f"... ({len(exc.key)} levels)" if len(exc.key) > 6 else "")
        raise UserError(f"{path}:{exc.line}: {key}: {exc.message}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{mark.line + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"{path}:{where} not valid YAML: {problem}") from None
    locator = _Locator(node)
    errors = _Errors(path, locator)
    if data is None:
        raise UserError(f"{path}:1: (top level): the file is empty")
    if not isinstance(data, dict):
        raise errors.fail((), f"expected a mapping of keys, not a {type(data).__name__}")
    if locator.duplicates:
        twice, line = locator.duplicates[0]
        raise UserError(f"{path}:{line}: {format_key(twice)}: key given twice")
    return data, locator, errors


def parse_matrix(
    text: str, path: Path = Path("matrix.yaml"), overrides: Sequence[tuple[Path, str]] = ()
) -> Matrix:
    data, _, errors = _compose(text, path)
    _check_schema(data, errors)
    _check_interpreters(data["interpreters"], errors, _lock_releases(path))
    digest = hashlib.sha256(text.encode())
    for override_path, override_text in overrides:
        data = apply_override(data, override_path, override_text, _lock_releases(path))
        digest.update(b"\0override\0" + override_text.encode())
    matrix = _build(data, path, errors, digest.hexdigest())
    return replace(matrix, overrides=tuple(p for p, _ in overrides))


OVERRIDE_KEYS = ("format", "interpreters")


def apply_override(
    data: Mapping[str, Any], path: Path, text: str, releases: frozenset[str] | None
) -> dict[str, Any]:
    """``data`` with the override file's interpreter fields applied, by id.

    An override has ``format: 1`` and ``interpreters:``, a list of entries like the matrix'
    (``id`` plus any of ``source``, ``prefix``, ``python``, ``runs_on``). Each names an
    interpreter of the matrix; its fields replace the matrix' — ``source`` and ``prefix``
    replace each other, as an interpreter has one of the two.
    """
    override, _, errors = _compose(text, path)
    for key in override:
        if key not in OVERRIDE_KEYS:
            raise errors.fail(
                (key,),
                f"unknown key{suggest(key, OVERRIDE_KEYS)}; an override file has: {', '.join(OVERRIDE_KEYS)}",
            )
    if override.get("format", 1) != 1:
        raise errors.fail(("format",), f"{override['format']!r} is not a known format (1)")
    entries = override.get("interpreters")
    if not isinstance(entries, list) or not entries:
        raise errors.fail(("interpreters",), "expected a non-empty list of interpreter entries")
    item_schema = {**schema()["$defs"]["interpreter"], "$defs": schema()["$defs"]}
    validator = jsonschema.Draft202012Validator(item_schema)
    merged = [dict(entry) for entry in data["interpreters"]]
    by_id = {entry["id"]: entry for entry in merged}
    for index, entry in enumerate(entries):
        error = next(iter(sorted(validator.iter_errors(entry), key=lambda e: list(e.path))), None)
        if error is not None:
            _raise_schema_error(error, errors, ("interpreters", index))
        if entry["id"] not in by_id:
            raise errors.fail(
                ("interpreters", index, "id"),
                f"no interpreter {entry['id']!r} in the matrix"
                f"{suggest(entry['id'], by_id)}; an override changes interpreters "
                f"the matrix lists: {', '.join(by_id)}",
            )
        target = by_id[entry["id"]]
        if "source" in entry or "prefix" in entry:
            target.pop("source", None)
            target.pop("prefix", None)
        target.update(entry)
    _check_interpreters(entries, errors, releases)
    return {**data, "interpreters": merged}


@cache
def _lock_releases_at(lock: Path) -> frozenset[str] | None:
    from gilmatrix.images.sources import SourceError, load_lock

    try:
        return frozenset(load_lock(lock).releases)
    except SourceError:
        return None  # no readable lock: `gilmatrix images` says so, with the reason


def _lock_releases(matrix_path: Path) -> frozenset[str] | None:
    """The releases of the source lock the docker backend would use with this matrix."""
    from gilmatrix.images.sources import LOCK_NAME, images_dir

    return _lock_releases_at(images_dir(matrix_path) / LOCK_NAME)


def _schema_errors(data: Any) -> Iterator[jsonschema.ValidationError]:
    validator = jsonschema.Draft202012Validator(schema())
    return iter(sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))))


def _check_schema(data: Mapping[str, Any], errors: _Errors) -> None:
    error = next(_schema_errors(data), None)
    if error is not None:
        _raise_schema_error(error, errors)


def _raise_schema_error(
    error: jsonschema.ValidationError, errors: _Errors, at: tuple[Any, ...] = ()
) -> NoReturn:
    error = jsonschema.exceptions.best_match([error, *error.context]) if error.context else error
    key = at + tuple(error.absolute_path)
    # jsonschema types these as "possibly unset"; a validation error always has them
    schema: Any = error.schema
    instance: Any = error.instance
    expected: Any = error.validator_value
    parent = schema.get("properties", {})
    if error.validator == "additionalProperties":
        unknown = [k for k in instance if k not in parent]
        if unknown:
            extra = suggest(unknown[0], parent)
            known = ", ".join(parent)
            raise errors.fail(key + (unknown[0],), f"unknown key{extra}; allowed keys: {known}")
    if error.validator == "required":
        missing = [k for k in expected if k not in instance]
        raise errors.fail(key, f"missing required key {missing[0]!r}")
    if error.validator == "enum":
        raise errors.fail(
            key,
            f"{instance!r} is not one of {', '.join(map(repr, expected))}{suggest(instance, expected)}",
        )
    if "propertyNames" in error.schema_path:
        raise errors.fail(
            key + (instance,),
            f"{instance!r} is not a valid name (letters, digits, '_', '.', '-'; at most 64 characters)",
        )
    if error.validator == "pattern" and key and key[-1] == "id":
        raise errors.fail(key, f"{instance!r} is not a CPython version id like 3.13 or 3.13t")
    if error.validator == "pattern":
        raise errors.fail(key, f"{instance!r} does not match {expected}")
    raise errors.fail(key, error.message)


def _check_interpreters(
    entries: Sequence[Mapping[str, Any]], errors: _Errors, releases: frozenset[str] | None
) -> None:
    """What the schema cannot say about interpreter entries (of the matrix or an override)."""
    for index, entry in enumerate(entries):
        key = ("interpreters", index, "id")
        interp_id = entry["id"]
        version, free_threaded = parse_interpreter_id(interp_id)
        if version < (3, 10):
            raise errors.fail(key, f"{interp_id!r}: gilmatrix supports CPython 3.10 and newer")
        if free_threaded and version < (3, 13):
            raise errors.fail(key, f"{interp_id!r}: free-threaded builds exist from CPython 3.13 on")
        source = entry.get("source")
        if source is not None and not source.startswith(f"{version[0]}.{version[1]}."):
            raise errors.fail(
                ("interpreters", index, "source"), f"{source!r} is not a {version[0]}.{version[1]} release"
            )
        if source is not None and "prefix" in entry:
            raise errors.fail(
                ("interpreters", index, "prefix"),
                "give either source (build it) or prefix (copy it in), not both",
            )
        if source is not None and releases is not None and source not in releases:
            minor = f"{version[0]}.{version[1]}."
            known = sorted((r for r in releases if r.startswith(minor)), key=_release_key)
            raise errors.fail(
                ("interpreters", index, "source"),
                f"release {source!r} is not in the source lock (images/sources.toml"
                f"{suggest(source, known)}); it has {', '.join(known) or 'none'} "
                f"of {minor[:-1]}: add the release with python.org's sha256, or pick one",
            )


def _ci_settings(entry: Mapping[str, Any]) -> CiSettings:
    return CiSettings(
        shards=entry.get("shards"),
        job_minutes=entry.get("job_minutes"),
        replicates=entry.get("replicates", 1),
        runs_on=tuple(entry.get("runs_on", ())),
    )


def _release_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def _build(data: Mapping[str, Any], path: Path, errors: _Errors, digest: str) -> Matrix:
    interpreters: list[Interpreter] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(data["interpreters"]):
        interp_id = entry["id"]
        if interp_id in seen:
            raise errors.fail(
                ("interpreters", index, "id"),
                f"interpreter {interp_id!r} is listed twice (first as interpreters[{seen[interp_id]}])",
            )
        seen[interp_id] = index
        version, free_threaded = parse_interpreter_id(interp_id)
        interpreters.append(
            Interpreter(
                id=interp_id,
                version=version,
                free_threaded=free_threaded,
                python=entry.get("python"),
                source=entry.get("source"),
                prefix=entry.get("prefix"),
                runs_on=tuple(entry.get("runs_on", ())),
            )
        )

    workloads: list[Workload] = []
    modules: dict[str, tuple[str, Path]] = {}  # import name -> (the first workload, its file)
    for name, entry in data["workloads"].items():
        entry = entry or {}
        if "module" in entry:
            workload = _user_workload(name, entry, path, errors, data)
            assert workload.module is not None
            first, first_path = modules.setdefault(workload.module.name, (name, workload.module.path))
            if first_path != workload.module.path:
                raise errors.fail(
                    ("workloads", name, "module"),
                    f"workloads {first!r} and {name!r} name two files of one module name "
                    f"{workload.module.name!r} ({first_path}, {workload.module.path}): rename one",
                )
            workloads.append(workload)
            continue
        impl_name = entry.get("workload", name)
        if impl_name not in WORKLOADS:
            key = ("workloads", name, "workload") if "workload" in entry else ("workloads", name)
            raise errors.fail(
                key,
                f"unknown workload {impl_name!r}{suggest(impl_name, WORKLOADS)}; "
                f"the harness has: {', '.join(WORKLOADS)}",
            )
        impl = WORKLOADS[impl_name]
        params = _check_params(impl.params, entry.get("params") or {}, ("workloads", name, "params"), errors)
        workloads.append(
            Workload(
                name,
                impl_name,
                impl.kind,
                entry.get("description") or impl.description,
                params,
                runs_on=tuple(entry.get("runs_on", ())),
                tasks_per_worker=_tasks_per_worker(name, entry, impl.params, data, errors),
            )
        )

    workers = tuple(sorted(data["workers"]))
    workload_ids = {w.id: w for w in workloads}
    profiles: dict[str, Profile] = {}
    for name, entry in data["profiles"].items():
        entry = entry or {}
        overrides: dict[str, dict[str, Any]] = {}
        for wl_id, given in (entry.get("params") or {}).items():
            at_key = ("profiles", name, "params", wl_id)
            if wl_id not in workload_ids:
                raise errors.fail(
                    at_key, f"no workload {wl_id!r} in this matrix{suggest(wl_id, workload_ids)}"
                )
            module = workload_ids[wl_id].module
            if module is not None and not module.declares_params:
                overrides[wl_id] = dict(given)  # no PARAMS: passed as they are
            else:
                overrides[wl_id] = _check_params(
                    workload_ids[wl_id].param_specs, given, at_key, errors, user_file=module is not None
                )
            if "tasks" in given and workload_ids[wl_id].tasks_per_worker is not None:
                raise errors.fail(
                    at_key + ("tasks",),
                    f"workload {wl_id!r} has tasks_per_worker (its tasks are workers x "
                    f"{workload_ids[wl_id].tasks_per_worker}): a fixed tasks count here would undo it; "
                    "define another workload entry with params.tasks instead",
                )
        settings = entry.get("pyperf") or {}
        precision = None
        if "precision" in entry:
            precision = PrecisionPolicy(**entry["precision"])
            if precision.min_processes > precision.max_processes:
                raise errors.fail(
                    ("profiles", name, "precision", "max_processes"),
                    f"max_processes {precision.max_processes} is below "
                    f"min_processes {precision.min_processes}",
                )
            if "processes" in settings:
                raise errors.fail(
                    ("profiles", name, "pyperf", "processes"),
                    "give pyperf.processes (a fixed count) or precision "
                    "(processes until the interval is tight enough), not both",
                )
        profiles[name] = Profile(
            name=name,
            description=entry.get("description", ""),
            pyperf=PyperfSettings(**settings),
            timeout=float(entry.get("timeout", 600)),
            memory_mb=entry.get("memory_mb"),
            workers=tuple(sorted(entry["workers"])) if "workers" in entry else None,
            workloads=_subset(entry, "workloads", name, list(workload_ids), errors),
            executors=_subset(entry, "executors", name, list(data["executors"]), errors),
            params=overrides,
            precision=precision,
            python_gil=entry.get("python_gil"),
            max_workers=entry.get("max_workers"),
            placement=entry.get("placement"),
            ci=_ci_settings(entry.get("ci") or {}),
            order=entry.get("order", "shuffle"),
            pairing=entry.get("pairing", "none"),
        )
    default_profile = data.get("default_profile", "default")
    if default_profile not in profiles:
        raise errors.fail(
            ("default_profile",) if "default_profile" in data else ("profiles",),
            f"no profile {default_profile!r}{suggest(default_profile, profiles)}",
        )
    return Matrix(
        path=path,
        sha256=digest,
        interpreters=tuple(interpreters),
        workloads=tuple(workloads),
        executors=tuple(data["executors"]),
        workers=workers,
        profiles=profiles,
        default_profile=default_profile,
        raw=data,
    )


def _subset(
    entry: Mapping[str, Any], key: str, profile: str, known: list[str], errors: _Errors
) -> tuple[str, ...] | None:
    if key not in entry:
        return None
    for index, value in enumerate(entry[key]):
        if value not in known:
            raise errors.fail(
                ("profiles", profile, key, index),
                f"{value!r} is not in the matrix' {key}{suggest(value, known)}; it has: {', '.join(known)}",
            )
    return tuple(entry[key])


def _user_workload(
    name: str, entry: Mapping[str, Any], path: Path, errors: _Errors, data: Mapping[str, Any]
) -> Workload:
    """A workload entry naming a Python file (``module:``, relative to the matrix file)."""
    if "workload" in entry:
        raise errors.fail(
            ("workloads", name, "workload"), "give `module` (your file) or `workload` (a built-in), not both"
        )
    key = ("workloads", name, "module")
    where = f"{path}:{errors.locator.line(key)}: {format_key(key)}"
    module = read_module((path.parent / entry["module"]), where)
    given = entry.get("params") or {}
    if module.declares_params:
        params = _check_params(module.params, given, ("workloads", name, "params"), errors, user_file=True)
    else:  # no PARAMS: make_tasks gets the matrix' parameters as they are
        params = dict(given)
    requirements = tuple(entry.get("requirements") or ())
    for index, text in enumerate(requirements):
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            raise errors.fail(
                ("workloads", name, "requirements", index), f"not a pip requirement: {exc}"
            ) from None
        if requirement.url:
            raise errors.fail(
                ("workloads", name, "requirements", index),
                "give a name and version range (orjson>=3.10), not a URL: requirements are "
                "downloaded per interpreter ABI, into a wheelhouse that images install offline",
            )
    return Workload(
        id=name,
        implementation=f"module:{module.path.name}",
        kind=module.kind,
        description=entry.get("description") or module.description,
        params=params,
        module=module,
        requirements=requirements,
        runs_on=tuple(entry.get("runs_on", ())),
        tasks_per_worker=_tasks_per_worker(name, entry, module.params, data, errors),
    )


def _tasks_per_worker(
    name: str, entry: Mapping[str, Any], spec: Mapping[str, Param], data: Mapping[str, Any], errors: _Errors
) -> int | None:
    """A workload's ``tasks_per_worker``, checked: the workload has a whole-number ``tasks``
    parameter, the entry does not also fix it, and the largest worker count of the matrix and
    its profiles times it stays within that parameter's bounds."""
    if "tasks_per_worker" not in entry:
        return None
    per_worker = int(entry["tasks_per_worker"])
    key = ("workloads", name, "tasks_per_worker")
    tasks = spec.get("tasks")
    if tasks is None or not isinstance(tasks.default, int) or isinstance(tasks.default, bool):
        raise errors.fail(key, "the workload has no whole-number `tasks` parameter to set per worker")
    if "tasks" in (entry.get("params") or {}):
        raise errors.fail(
            key,
            "give tasks_per_worker (tasks = workers x it) or params.tasks (the same tasks "
            "at every worker count), not both",
        )
    counts = [*data["workers"]]
    for profile in (data.get("profiles") or {}).values():
        counts += (profile or {}).get("workers") or []
    largest = max(counts)
    if per_worker * largest > tasks.maximum:
        raise errors.fail(
            key,
            f"{per_worker} x {largest} workers (the largest worker count) = "
            f"{per_worker * largest} tasks, more than the workload's {tasks.maximum:g}",
        )
    return per_worker


def _declare_hint(param: str, value: Any) -> str:
    """How a user's file declares a parameter in its ``PARAMS`` (a default, or a dict of
    default, min, max, doc, choices)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        example = f'{{"default": {value!r}, "min": 1, "max": {max(value, 1) * 10!r}, "doc": "..."}}'
    else:
        example = repr(value) if isinstance(value, str) else '{"default": ...}'
    return f" (to give it one, declare it in the file's PARAMS, e.g. PARAMS = {{{param!r}: {example}}})"


def _check_params(
    spec: Mapping[str, Param],
    given: Mapping[str, Any],
    key: tuple[Any, ...],
    errors: _Errors,
    *,
    user_file: bool = False,
) -> dict[str, Any]:
    for param, value in given.items():
        if param not in spec:
            raise errors.fail(
                key + (param,),
                f"the workload has no parameter {param!r}"
                f"{suggest(param, spec)}; it has: {', '.join(spec) or 'none'}"
                f"{_declare_hint(param, value) if user_file else ''}",
            )
        limits = spec[param]
        if limits.choices:
            if value not in limits.choices:
                raise errors.fail(
                    key + (param,),
                    f"{value!r} is not one of "
                    f"{', '.join(map(repr, limits.choices))}"
                    f"{suggest(value, limits.choices)}",
                )
            continue
        if isinstance(limits.default, str):
            if not isinstance(value, str):
                raise errors.fail(key + (param,), f"expected a string, got {value!r}")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise errors.fail(key + (param,), f"expected a number, got {value!r}")
        if isinstance(limits.default, int) and not isinstance(value, int):
            raise errors.fail(key + (param,), f"expected a whole number, got {value!r}")
        if not limits.minimum <= value <= limits.maximum:
            raise errors.fail(
                key + (param,),
                f"{value!r} is out of range: "
                f"{limits.doc} must be between {limits.minimum:g} and {limits.maximum:g}",
            )
    return dict(given)
