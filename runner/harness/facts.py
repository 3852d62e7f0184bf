"""What an interpreter says about its own build: version, flags, GIL at build and at run time."""

from __future__ import annotations

import json
import os
import platform
import sys
import sysconfig
from typing import Any


def gil_enabled() -> bool | None:
    """The GIL's state at run time; None on interpreters that cannot disable it (before 3.13)."""
    probe = getattr(sys, "_is_gil_enabled", None)
    return bool(probe()) if probe is not None else None


def py_gil_disabled() -> int:
    """1 for a free-threaded (--disable-gil) build, else 0."""
    return int(bool(sysconfig.get_config_var("Py_GIL_DISABLED")))


def interpreter_facts() -> dict[str, Any]:
    try:
        import pyperf

        pyperf_version: str | None = pyperf.__version__
    except ImportError:  # facts must work before pyperf is installed (image checks)
        pyperf_version = None
    return {
        "implementation": sys.implementation.name,
        "version": platform.python_version(),
        "version_info": list(sys.version_info[:3]) + [sys.version_info.releaselevel],
        "sys_version": sys.version,
        "executable": sys.executable,
        "prefix": sys.prefix,
        "base_prefix": sys.base_prefix,
        "config_args": sysconfig.get_config_var("CONFIG_ARGS") or "",
        "cc": sysconfig.get_config_var("CC") or "",
        "cflags": sysconfig.get_config_var("CFLAGS") or "",
        "py_gil_disabled": py_gil_disabled(),
        "gil_enabled": gil_enabled(),
        "jit": _jit_enabled(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "pyperf": pyperf_version,
    }


def _jit_enabled() -> bool | None:
    jit = getattr(sys, "_jit", None)
    return bool(jit.is_enabled()) if jit is not None else None


def cpu_topology() -> dict[str, Any]:
    """The CPUs this process may use and how they share cores (Linux /sys; elsewhere each CPU
    counts as a core): ``cpus``, ``physical`` (one CPU per physical core of the first CPU's
    socket, as CPython's Tools/ftscalingbench places its threads), ``smt`` (a core has more
    than one of the usable CPUs)."""
    cpus = (
        sorted(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else list(range(os.cpu_count() or 1))
    )
    cores: dict[tuple[str, str], list[int]] = {}
    for cpu in cpus:
        base = f"/sys/devices/system/cpu/cpu{cpu}/topology/"
        try:
            with open(base + "physical_package_id") as package, open(base + "core_id") as core:
                key = (package.read().strip(), core.read().strip())
        except OSError:
            key = ("0", f"cpu{cpu}")
        cores.setdefault(key, []).append(cpu)
    socket = next(iter(cores))[0] if cores else "0"
    physical = sorted(members[0] for (package, _), members in cores.items() if package == socket)
    return {
        "cpus": cpus,
        "physical": physical,
        "smt": any(len(members) > 1 for members in cores.values()),
        "sockets": len({package for package, _ in cores}),
    }


def main() -> int:
    json.dump(interpreter_facts(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0
