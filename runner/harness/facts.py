"""What an interpreter says about its own build: version, flags, GIL at build and at run time;
and what the machine's CPUs are (:func:`cpu_topology`)."""

from __future__ import annotations

import json
import os
import platform
import sys
import sysconfig
from typing import Any, NamedTuple


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


# -- CPU topology ---------------------------------------------------------------------------------
#
# Read from Linux's /sys under a root ("/" for this machine, a folder for a fixture tree holding
# sys/...). Cores are the kernel's sibling sets (cpuN/topology/core_cpus_list, or the older
# thread_siblings_list): core_id alone is not unique (it restarts in every package, and on
# multi-die packages such as AMD's Magny-Cours in every die), so without the lists a core is
# keyed by (physical_package_id, die_id, core_id).

SYS_CPU = os.path.join("sys", "devices", "system", "cpu")
# A fixture's allowed CPUs, as a cgroup v2 cpuset would give them (this machine: the process'
# affinity, which the kernel already restricts to the cgroup's cpuset).
FIXTURE_CPUSET = os.path.join("sys", "fs", "cgroup", "cpuset.cpus.effective")
# Intel hybrid (Alder Lake and later): the efficiency cores' CPUs (perf's cpu_atom PMU).
INTEL_ATOM_CPUS = os.path.join("sys", "devices", "cpu_atom", "cpus")


class CpuTopology(NamedTuple):
    """The CPUs this process may use and how they share cores (see :func:`cpu_topology`)."""

    cpus: tuple[int, ...]  # usable CPUs
    cores: tuple[tuple[int, ...], ...]  # the usable CPUs of each physical core, every package
    physical: tuple[int, ...]  # placement: one CPU per performance core of ``package``
    package: str  # the package (socket) ``physical`` is on
    sockets: int  # packages with usable CPUs
    smt: bool  # a core has more than one usable CPU
    efficiency: tuple[int, ...]  # usable CPUs of efficiency cores (hybrid), never placed on
    root: str = "/"

    def summary(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "cpus": len(self.cpus),
            "cores": len(self.cores),
            "sockets": self.sockets,
            "smt": self.smt,
            "efficiency_cpus": len(self.efficiency),
            "package": self.package,
            "physical": list(self.physical),
        }


def parse_cpulist(text: str) -> list[int]:
    """A kernel CPU list (``0-3,8,10-11``) as sorted CPU numbers; ValueError if it is not one."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        first, sep, last = part.partition("-")
        low, high = int(first), int(last) if sep else int(first)
        if low < 0 or high < low:
            raise ValueError(f"{text!r}: {part!r} is not a CPU range")
        cpus.update(range(low, high + 1))
    return sorted(cpus)


def format_cpulist(cpus: Any) -> str:
    """CPU numbers as a kernel CPU list, ranges joined: [0, 1, 2, 3, 8] -> ``0-3,8``."""
    ordered = sorted(set(cpus))
    parts: list[str] = []
    start = prev = None
    for cpu in [*ordered, None]:
        if cpu is not None and prev is not None and cpu == prev + 1:
            prev = cpu
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = cpu
    return ",".join(parts)


def _read(path: str) -> str | None:
    try:
        with open(path) as stream:
            return stream.read().strip()
    except OSError:
        return None


def _cpulist_at(path: str) -> list[int] | None:
    text = _read(path)
    if text is None:
        return None
    try:
        return parse_cpulist(text)
    except ValueError:
        return None


def _usable_cpus(root: str, cpu_dir: str) -> list[int]:
    """This machine: the process' affinity. A fixture: its cgroup cpuset, else its online CPUs
    (else its cpuN folders)."""
    online = _cpulist_at(os.path.join(cpu_dir, "online"))
    if os.path.realpath(root) == os.path.realpath(os.sep):
        if hasattr(os, "sched_getaffinity"):
            return sorted(os.sched_getaffinity(0))
        return online or list(range(os.cpu_count() or 1))
    if online is None:
        try:
            names = os.listdir(cpu_dir)
        except OSError:
            names = []
        online = sorted(int(n[3:]) for n in names if n.startswith("cpu") and n[3:].isdigit())
    allowed = _cpulist_at(os.path.join(root, FIXTURE_CPUSET))
    return online if allowed is None else sorted(set(allowed) & set(online))


def cpu_topology(root: str = os.sep) -> CpuTopology:
    """The CPUs this process may use and how they share cores, read from Linux's /sys under
    ``root`` (a fixture tree holding ``sys/devices/system/cpu/...`` for another machine, its
    allowed CPUs in ``sys/fs/cgroup/cpuset.cpus.effective``, else all its online CPUs); where
    /sys says nothing, each CPU counts as a core of one package.

    ``physical`` is where ``placement: physical-cores`` pins a run and what
    ``max_workers: physical-cores`` counts: the first usable CPU (lowest number) of each core,
    on **one** package - the one with the most usable performance cores (ties: the package of
    the lowest CPU) - and on performance cores only, as CPython's Tools/ftscalingbench places
    its threads (one NUMA node, distinct cores, the fastest kind): threads on two sockets would
    measure the interconnect between them, SMT siblings and efficiency cores each other's
    speed, not the interpreter's scaling. Efficiency cores are those of Intel's hybrid parts
    (``sys/devices/cpu_atom/cpus``) and, where ``cpuN/cpu_capacity`` differs (Arm big.LITTLE),
    every CPU below the largest capacity; if no other core is usable, all of them count."""
    root = str(root)
    cpu_dir = os.path.join(root, SYS_CPU)
    cpus = _usable_cpus(root, cpu_dir)
    usable = set(cpus)
    cores: dict[Any, list[int]] = {}
    package_of: dict[int, str] = {}
    for cpu in cpus:
        topo = os.path.join(cpu_dir, f"cpu{cpu}", "topology")
        package_of[cpu] = _read(os.path.join(topo, "physical_package_id")) or "0"
        siblings = _cpulist_at(os.path.join(topo, "core_cpus_list"))
        if siblings is None:
            siblings = _cpulist_at(os.path.join(topo, "thread_siblings_list"))
        core_id = _read(os.path.join(topo, "core_id"))
        if siblings:
            key: Any = ("siblings", tuple(siblings))
        elif core_id is not None:
            die = _read(os.path.join(topo, "die_id")) or "0"
            key = ("core", package_of[cpu], die, core_id)
        else:
            key = ("cpu", cpu)
        cores.setdefault(key, []).append(cpu)
    members = sorted((tuple(sorted(m)) for m in cores.values()), key=lambda m: m[0])
    efficiency = set(_cpulist_at(os.path.join(root, INTEL_ATOM_CPUS)) or ()) & usable
    capacity: dict[int, int] = {}
    for cpu in cpus:
        text = _read(os.path.join(cpu_dir, f"cpu{cpu}", "cpu_capacity"))
        if text is not None and text.isdigit():
            capacity[cpu] = int(text)
    if capacity:
        top = max(capacity.values())
        efficiency |= {cpu for cpu, value in capacity.items() if value < top}
    performance = [m for m in members if not efficiency & set(m)] or members
    by_package: dict[str, list[tuple[int, ...]]] = {}
    for core in performance:
        by_package.setdefault(package_of[core[0]], []).append(core)
    package = max(by_package, key=lambda p: (len(by_package[p]), -by_package[p][0][0]), default="0")
    physical = tuple(sorted(core[0] for core in by_package.get(package, [])))
    return CpuTopology(
        cpus=tuple(cpus),
        cores=tuple(members),
        physical=physical,
        package=package,
        sockets=len(set(package_of.values())),
        smt=any(len(m) > 1 for m in members),
        efficiency=tuple(sorted(efficiency)),
        root=root,
    )


def main() -> int:
    json.dump(interpreter_facts(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0
