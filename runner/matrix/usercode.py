"""A user workload's file, read on the host without importing it.

The host may lack the module's requirements (they are installed per interpreter), and importing
user code just to plan a run would run it in gilmatrix's own process: so the matrix loader reads
the module's syntax tree instead — its module-level functions and its ``PARAMS``, ``KIND``,
``UNSUPPORTED`` and ``DESCRIPTION`` literals — and says what is wrong with ``file:line``.
``gilmatrix validate`` also imports the file, in a subprocess (:func:`import_check`).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gilmatrix.errors import UserError
from gilmatrix.harness.usercode import (
    CONSTANTS,
    OPTIONAL_FUNCTIONS,
    REQUIRED,
    check_constants,
    first_paragraph,
    param_from_spec,
)
from gilmatrix.harness.workloads import Param

MAX_BYTES = 1 << 20  # a workload module is code, not data
MAX_FILES, MAX_SHIPPED = 2000, 64 << 20  # what its folder may ship to every interpreter
# Names a user module may not take: it would hide what the harness or the stdlib imports.
_RESERVED = frozenset({"gilmatrix", "pyperf", "psutil", "__main__"})


@dataclass(frozen=True, slots=True)
class UserModule:
    """What the host knows of a user workload's file."""

    path: Path  # resolved
    name: str  # the import name: the file's stem
    kind: str
    description: str
    params: Mapping[str, Param]
    unsupported: Mapping[str, str]
    has_check: bool
    has_async: bool
    lines: Mapping[str, int] = field(default_factory=dict)  # top-level name -> its line

    @property
    def declares_params(self) -> bool:
        """Whether the file declares ``PARAMS``: if not, the matrix' ``params`` are passed to
        ``make_tasks`` as they are, unchecked (there is nothing to check them against)."""
        return "PARAMS" in self.lines

    @property
    def folder(self) -> Path:
        return self.path.parent

    def files(self) -> list[Path]:
        """The files shipped with the workload, so that its local imports work: the ``.py``
        files beside it and the packages (folders with ``__init__.py``) beside it, whole."""
        out: list[Path] = []
        for path in sorted(self.folder.iterdir()):
            if path.name.startswith(".") or path.name == "__pycache__":
                continue
            if path.is_file() and path.suffix == ".py":
                out.append(path)
            elif path.is_dir() and (path / "__init__.py").is_file():
                out.extend(
                    p
                    for p in sorted(path.rglob("*"))
                    if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")
                )
        if len(out) > MAX_FILES or sum(p.stat().st_size for p in out) > MAX_SHIPPED:
            raise UserError(
                f"{self.path}: its folder holds over {MAX_FILES} files or {MAX_SHIPPED >> 20} MiB "
                "of Python code and packages, all shipped to every interpreter: put the "
                "workload in a folder of its own"
            )
        return out


def _stdlib_names() -> frozenset[str]:
    return frozenset(getattr(sys, "stdlib_module_names", ()))


def read_module(path: Path, where: str) -> UserModule:
    """Read ``path`` (``where``: the matrix' file:line naming it, for errors)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{where}: no such file: {path}") from None
    except OSError as exc:
        raise UserError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None
    if path.suffix != ".py":
        raise UserError(f"{where}: {path} is not a Python file (.py)")
    if len(data) > MAX_BYTES:
        raise UserError(f"{where}: {path} is over {MAX_BYTES >> 20} MiB")
    name = path.stem
    if not name.isidentifier():
        raise UserError(f"{where}: {path.name}: the file name must be a Python module name")
    if name in _RESERVED or name in _stdlib_names():
        raise UserError(
            f"{where}: {path.name} would hide the module {name!r} that Python or gilmatrix "
            "imports: rename the file"
        )
    try:
        tree = ast.parse(data, filename=str(path))
    except SyntaxError as exc:
        raise UserError(f"{path}:{exc.lineno}: {exc.msg}") from None
    functions: dict[str, tuple[int, bool]] = {}  # name -> (line, async)
    constants: dict[str, ast.expr] = {}
    lines: dict[str, int] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions[node.name] = (node.lineno, isinstance(node, ast.AsyncFunctionDef))
            lines[node.name] = node.lineno
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and target.id in CONSTANTS and node.value is not None:
                    constants[target.id] = node.value
                    lines[target.id] = node.lineno
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:  # `from helpers import run_task` defines it too
                bound = alias.asname or alias.name.split(".")[0]
                if bound in REQUIRED + OPTIONAL_FUNCTIONS and bound not in functions:
                    functions[bound] = (node.lineno, False)
                    lines[bound] = node.lineno
    for required in REQUIRED:
        if required not in functions:
            signature = "params" if required == "make_tasks" else "task"
            raise UserError(
                f"{path}: no module-level function {required}({signature}): the harness calls "
                f"{', '.join(f'{r}()' for r in REQUIRED)} by name"
            )
    if "async_task" in functions and not functions["async_task"][1] and "async_task" in lines:
        line = functions["async_task"][0]
        raise UserError(f"{path}:{line}: async_task must be an `async def` (a native awaitable)")

    def literal(name: str, default: Any) -> Any:
        if name not in constants:
            return default
        try:
            return ast.literal_eval(constants[name])
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise UserError(
                f"{path}:{lines[name]}: {name} must be a literal (numbers, strings, lists, dicts), "
                "so that gilmatrix can read it without running the file"
            ) from None

    def fail(name: str, message: str) -> UserError:
        return UserError(f"{path}:{lines.get(name, 1)}: {message}")

    raw_params = literal("PARAMS", {})
    if not isinstance(raw_params, dict) or not all(isinstance(k, str) for k in raw_params):
        raise fail("PARAMS", "PARAMS must be a dict of parameter names")
    params: dict[str, Param] = {}
    for param, spec in raw_params.items():
        try:
            params[param] = param_from_spec(param, spec)
        except ValueError as exc:
            raise fail("PARAMS", str(exc)) from None
    kind, unsupported = literal("KIND", "cpu"), literal("UNSUPPORTED", {})
    for constant in ("KIND", "UNSUPPORTED"):
        try:
            check_constants(
                kind if constant == "KIND" else "cpu", unsupported if constant == "UNSUPPORTED" else {}
            )
        except ValueError as exc:
            raise fail(constant, str(exc)) from None
    description = literal("DESCRIPTION", first_paragraph(ast.get_docstring(tree)) or f"{name} ({path.name})")
    if not isinstance(description, str):
        raise fail("DESCRIPTION", "DESCRIPTION must be a string")
    return UserModule(
        path=path.resolve(),
        name=name,
        kind=kind,
        description=description,
        params=params,
        unsupported=dict(unsupported),
        has_check="check" in functions,
        has_async="async_task" in functions,
        lines=lines,
    )


_IMPORT_CHECK = r"""
import json, sys, traceback
sys.path.insert(0, sys.argv[1])
try:
    from gilmatrix.harness.usercode import workload_from_module
    import importlib
    module = importlib.import_module(sys.argv[2])
    workload = workload_from_module(module)
    params = {name: p.default for name, p in workload.params.items()}
    params.update(json.loads(sys.argv[3]))
    tasks = workload.make_tasks(params)
    results = [workload.run_task(task) for task in tasks[:2]]
    if len(tasks) <= 2:
        workload.check(params, tasks, results)
    print(json.dumps({"ok": True, "tasks": len(tasks)}))
except BaseException as exc:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(sys.argv[1])]
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else None
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    print(json.dumps({"ok": False, "where": where, "error": f"{type(exc).__name__}: {exc}",
                      "missing": missing}))
"""


def import_check(
    module: UserModule,
    harness: Path,
    params: Mapping[str, Any] | None = None,
    python: str = sys.executable,
    timeout: float = 120,
) -> dict[str, Any]:
    """Import ``module`` in a subprocess of ``python`` (``harness``: a staged copy of the
    harness, see backends.staging) and run its first two tasks at ``params`` (over its defaults):
    ``{"ok": True, "tasks": N}`` or
    ``{"ok": False, "where": "file:line", "error": ..., "missing": name of a module it could not
    import}``."""
    code = f"import sys; sys.path.insert(0, {str(harness)!r})\n" + _IMPORT_CHECK
    try:
        proc = subprocess.run(
            [python, "-I", "-c", code, str(module.folder), module.name, json.dumps(dict(params or {}))],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=module.folder,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "where": None, "error": f"importing it took over {timeout:g} s", "missing": None}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = (proc.stderr or proc.stdout).strip()[-300:]
        return {"ok": False, "where": None, "error": f"exit code {proc.returncode}: {tail}", "missing": None}
    result: dict[str, Any] = json.loads(lines[-1])
    return result
