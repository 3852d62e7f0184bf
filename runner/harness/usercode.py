"""Workloads from the user's own files: a module the harness imports by name and calls.

The contract (docs/own-code.md): module-level ``make_tasks(params) -> list``
and ``run_task(task) -> result``; optionally ``check(params, tasks, results)`` (raise on a
wrong answer), ``async_task(task)`` (a native awaitable for asyncio), ``PARAMS`` (names,
defaults and bounds), ``KIND`` (what bounds the work: cpu, io, ...), ``UNSUPPORTED`` (execution
models it cannot run on, with the reason), ``DESCRIPTION`` (else the docstring's first paragraph),
``FRESH_TASKS`` (``make_tasks`` again before every timed call: tasks that one call mutates).

The module's folder (and the folder its requirements were installed into) reach every process
on ``PYTHONPATH``, set by the driver for the cell's pyperf workers: pool processes inherit it and
sub-interpreters read it, so all of them import the module by name. The host checks the file
without importing it (gilmatrix.matrix.usercode reads the same names from its syntax tree);
this module is what runs in the measured interpreter.
"""

from __future__ import annotations

import importlib
import math
import re
import sys
import warnings
from collections.abc import Mapping
from typing import Any

from gilmatrix.harness.facts import gil_enabled
from gilmatrix.harness.workloads import Param, Workload

KINDS = ("cpu", "io", "data", "native", "mixed", "contention", "startup")
MODELS = ("sequential", "threads", "processes", "interpreters", "asyncio")
REQUIRED = ("make_tasks", "run_task")
OPTIONAL_FUNCTIONS = ("check", "async_task")
CONSTANTS = ("PARAMS", "KIND", "UNSUPPORTED", "DESCRIPTION", "FRESH_TASKS")

# A pyperf worker whose cell cannot run (an extension refusing sub-interpreters) exits with
# this code after a line "gilmatrix-unsupported: REASON": the cell is skipped, not failed.
UNSUPPORTED_EXIT = 79
UNSUPPORTED_PREFIX = "gilmatrix-unsupported: "

_GIL_WARNING = re.compile(r"GIL\) has been enabled to load module '([^']+)'")


def param_from_spec(name: str, spec: Any) -> Param:
    """One entry of a module's ``PARAMS`` as a harness Param; ValueError says what is wrong.

    ``spec`` is a bare default (a number or a string: no bounds) or a mapping with ``default``
    and optionally ``min``, ``max``, ``doc``, ``choices``.
    """
    if not isinstance(spec, Mapping):
        spec = {"default": spec}
    unknown = sorted(set(spec) - {"default", "min", "max", "doc", "choices"})
    if unknown:
        raise ValueError(f"PARAMS[{name!r}]: unknown key {unknown[0]!r} (default, min, max, doc, choices)")
    if "default" not in spec:
        raise ValueError(f"PARAMS[{name!r}]: no 'default'")
    default, doc = spec["default"], str(spec.get("doc", name))
    if "choices" in spec:
        choices = spec["choices"]
        if (
            not isinstance(choices, (list, tuple))
            or not choices
            or not all(isinstance(c, str) for c in choices)
        ):
            raise ValueError(f"PARAMS[{name!r}]: 'choices' must be a non-empty list of strings")
        if default not in choices:
            raise ValueError(f"PARAMS[{name!r}]: default {default!r} is not one of its choices")
        return Param(default, doc=doc, choices=tuple(choices))
    if isinstance(default, str):
        return Param(default, doc=doc)
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        raise ValueError(f"PARAMS[{name!r}]: the default must be a number or a string, not {default!r}")
    low, high = spec.get("min", -math.inf), spec.get("max", math.inf)
    for label, bound in (("min", low), ("max", high)):
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            raise ValueError(f"PARAMS[{name!r}]: {label!r} must be a number, not {bound!r}")
    if not low <= default <= high:
        raise ValueError(f"PARAMS[{name!r}]: default {default!r} is outside [{low:g}, {high:g}]")
    return Param(default, low, high, doc)


def params_from_spec(spec: Any) -> dict[str, Param]:
    if spec is None:
        return {}
    if not isinstance(spec, Mapping) or not all(isinstance(k, str) for k in spec):
        raise ValueError("PARAMS must be a dict of parameter names")
    return {name: param_from_spec(name, value) for name, value in spec.items()}


def check_constants(kind: Any, unsupported: Any) -> None:
    if kind not in KINDS:
        raise ValueError(f"KIND {kind!r} is not one of {', '.join(KINDS)}")
    if not isinstance(unsupported, Mapping):
        raise ValueError("UNSUPPORTED must be a dict: execution model -> reason")
    for model, reason in unsupported.items():
        if model not in MODELS:
            raise ValueError(f"UNSUPPORTED: {model!r} is not an execution model ({', '.join(MODELS)})")
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"UNSUPPORTED[{model!r}]: give the reason, as a string")


def first_paragraph(doc: str | None) -> str:
    """A docstring's first paragraph, on one line: a user workload's description."""
    paragraph = (doc or "").strip().split("\n\n")[0]
    return " ".join(paragraph.split())


def workload_from_module(module: Any) -> Workload:
    """The harness Workload a user module defines (ValueError: what it lacks)."""
    for name in REQUIRED:
        if not callable(getattr(module, name, None)):
            raise ValueError(f"{module.__name__}: no module-level function {name}()")
    kind = getattr(module, "KIND", "cpu")
    unsupported = getattr(module, "UNSUPPORTED", {})
    check_constants(kind, unsupported)
    description = str(getattr(module, "DESCRIPTION", first_paragraph(module.__doc__) or module.__name__))
    user_check = getattr(module, "check", None)
    return Workload(
        name=module.__name__,
        kind=kind,
        description=description,
        params=params_from_spec(getattr(module, "PARAMS", None)),
        make_tasks=lambda params: list(module.make_tasks(dict(params))),
        run_task=module.run_task,  # by reference: processes and sub-interpreters import it
        check=user_check if callable(user_check) else _no_check,
        async_task=getattr(module, "async_task", None),
        fresh_tasks=bool(getattr(module, "FRESH_TASKS", False)),
        unsupported=dict(unsupported),
    )


def _no_check(params: Mapping[str, Any], tasks: list[Any], results: list[Any]) -> None:
    if len(results) != len(tasks):
        raise AssertionError(f"{len(tasks)} tasks gave {len(results)} results")


class Imported:
    """A user module imported in this process, with what the import did to the GIL."""

    def __init__(self, name: str) -> None:
        self.gil_before = gil_enabled()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.module = importlib.import_module(name)
        self.gil_after = gil_enabled()
        # "The global interpreter lock (GIL) has been enabled to load module 'x', which has
        # not declared that it can run safely without the GIL. ..." (a RuntimeWarning)
        self.reenabled_by = [m.group(1) for w in caught if (m := _GIL_WARNING.search(str(w.message)))]
        for w in caught:  # the others, through the filters that would have judged them
            if not _GIL_WARNING.search(str(w.message)):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self.workload = workload_from_module(self.module)

    def metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.gil_before is not None:
            out["gilmatrix_gil_before_import"] = "true" if self.gil_before else "false"
        if self.gil_before is False and self.gil_after:
            modules = ", ".join(self.reenabled_by) or "an unknown module"
            out["gilmatrix_gil_reenabled_by"] = modules
        return out


def _chain_text(exc: BaseException) -> str:
    """``exc`` and its causes, one "Type: message" each."""
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 20:
        seen.add(id(current))
        texts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return "\n".join(texts)


class SubinterpreterGlobalsError(NameError):
    """A name the task function's nested code uses is missing in a sub-interpreter."""


def missing_global_hint(exc: BaseException) -> str | None:
    """What a NameError raised in an InterpreterPoolExecutor worker most likely means, or None.

    CPython 3.14 runs a module-level function in a sub-interpreter with a globals dict holding
    only the names the function's own code refers to: names that only a nested generator
    expression, lambda or inner function uses are missing there (seen on 3.14.7, checked in
    tests/test_docker_usercode.py)."""
    match = re.search(r"NameError: name '(\w+)' is not defined", _chain_text(exc))
    if not match:
        return None
    return (
        f"name {match.group(1)!r} is not defined in the sub-interpreter: InterpreterPoolExecutor "
        "runs the task function with only the module globals its own code names, so a global "
        "that only a generator expression, lambda or inner function of it uses is missing; name "
        "it in the function itself (or loop instead of a generator expression)"
    )


def refusal(exc: BaseException) -> str | None:
    """Why a sub-interpreter pool could not run the module (an extension without multi-phase
    init: "module X does not support loading in subinterpreters"), or None if ``exc`` is not
    that.

    The refusal is rarely ``exc`` itself: on 3.14 an InterpreterPoolExecutor raises
    ``NotShareableError: args not shareable`` (the task's function could not be unpickled in the
    sub-interpreter), caused by ``NotShareableError: object could not be unpickled``, caused by
    an ``Exception`` whose text is the sub-interpreter's traceback, ending in ``ImportError:
    module legacy_ext does not support loading in subinterpreters``. So the whole chain of
    causes is searched."""
    text = _chain_text(exc)
    match = re.search(r"module '?([\w.]+)'? does not support loading in subinterpreters", text)
    if match:
        return f"module {match.group(1)} does not support sub-interpreters"
    if "subinterpreter" in text.lower() and ("ImportError" in text or "import" in text.lower()):
        return f"its import failed in a sub-interpreter: {text[:300]}"
    return None


def refuse(reason: str) -> None:
    """End this worker: its cell is unsupported (see UNSUPPORTED_EXIT)."""
    sys.stdout.flush()
    sys.stderr.write(f"\n{UNSUPPORTED_PREFIX}{reason}\n")
    sys.stderr.flush()
    raise SystemExit(UNSUPPORTED_EXIT)
