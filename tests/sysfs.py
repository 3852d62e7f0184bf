"""Fixture /sys trees of real many-core machines, written from a compact description.

What Linux shows of each CPU N (``sys/devices/system/cpu/cpuN/topology/{physical_package_id,
die_id,core_id,thread_siblings_list,core_cpus_list}``, ``cpu_capacity``), the machine's online
CPUs and, by gilmatrix's fixture convention, the allowed CPUs a cgroup v2 cpuset leaves the
process (``sys/fs/cgroup/cpuset.cpus.effective``). The shapes follow machines whose /sys
hwloc's test suite captured (open-mpi/hwloc, tests/hwloc/linux/): the descriptions are facts,
the trees are ours. The lists are written as the kernel writes them (ranges: ``0-3,8``), by
this module's own code, not gilmatrix's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Cpu:
    cpu: int
    package: int
    core_id: int
    siblings: tuple[int, ...]  # the CPUs of its core, itself included
    die: int = 0
    capacity: int | None = None  # cpu_capacity (Arm big.LITTLE): None, not written


def kernel_list(cpus: Iterable[int]) -> str:
    """``0-3,8,10-11``, as /sys writes a CPU list."""
    ordered = sorted(set(cpus))
    runs: list[list[int]] = []
    for cpu in ordered:
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def machine(
    packages: int,
    cores: int,
    threads: int,
    *,
    numbering: str = "apart",
    dies: int = 1,
    core_id: Callable[[int, int, int, int], int] | None = None,
) -> list[Cpu]:
    """``packages`` x ``dies`` x ``cores`` (per die) x ``threads`` CPUs, numbered as Linux does:

    - ``apart`` (x86's usual): the first thread of every core, package by package, then the
      second threads in the same order: on 1 x 64 x 2, CPU N and N + 64 are one core's;
    - ``round-robin``: packages interleaved, then cores, then threads (16em64t-4s2c2t: core 0
      of socket 0 is CPUs 0 and 8, core 1 CPUs 4 and 12, socket 1 starts at CPU 1);
    - ``consecutive``: a core's threads next to each other (POWER; hybrid P-cores).

    core_id(package, die, core, first CPU) gives the core's id; by default its index in its
    die, restarting in every die and package, as the kernel's does (32amd64-4s2n4c: two dies
    per package, core ids 0-3 in each)."""
    total = packages * dies * cores
    out: list[Cpu] = []
    for p in range(packages):
        for d in range(dies):
            for c in range(cores):
                index = (p * dies + d) * cores + c
                if numbering == "apart":
                    numbers = [t * total + index for t in range(threads)]
                elif numbering == "round-robin":
                    numbers = [p + packages * ((d * cores + c) + dies * cores * t) for t in range(threads)]
                elif numbering == "consecutive":
                    numbers = [index * threads + t for t in range(threads)]
                else:
                    raise ValueError(numbering)
                ident = core_id(p, d, c, numbers[0]) if core_id else c
                out += [Cpu(n, p, ident, tuple(sorted(numbers)), d) for n in numbers]
    return sorted(out, key=lambda cpu: cpu.cpu)


def write_tree(
    root: Path,
    cpus: list[Cpu],
    *,
    allowed: Iterable[int] | None = None,
    atom: Iterable[int] | None = None,
    lists: tuple[str, ...] = ("thread_siblings_list", "core_cpus_list"),
    die_ids: bool = True,
) -> Path:
    """Write the /sys of ``cpus`` under ``root`` (which then holds ``sys/``); ``allowed``: the
    cgroup's cpuset (else none is written: every online CPU is allowed); ``atom``: an Intel
    hybrid's efficiency-core CPUs (sys/devices/cpu_atom/cpus, the others cpu_core/cpus);
    ``lists``: the sibling lists written (older kernels: thread_siblings_list only; none: the
    reader must key cores by package, die and core id). Returns ``root``."""
    base = root / "sys" / "devices" / "system" / "cpu"
    numbers = [c.cpu for c in cpus]
    base.mkdir(parents=True, exist_ok=True)
    for name in ("online", "possible", "present"):
        (base / name).write_text(kernel_list(numbers) + "\n")
    for cpu in cpus:
        topo = base / f"cpu{cpu.cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "physical_package_id").write_text(f"{cpu.package}\n")
        (topo / "core_id").write_text(f"{cpu.core_id}\n")
        if die_ids:
            (topo / "die_id").write_text(f"{cpu.die}\n")
        for name in lists:
            (topo / name).write_text(kernel_list(cpu.siblings) + "\n")
        if cpu.capacity is not None:
            (topo.parent / "cpu_capacity").write_text(f"{cpu.capacity}\n")
    if allowed is not None:
        cgroup = root / "sys" / "fs" / "cgroup"
        cgroup.mkdir(parents=True)
        (cgroup / "cpuset.cpus.effective").write_text(kernel_list(allowed) + "\n")
    if atom is not None:
        atom = set(atom)
        for pmu, members in (("cpu_atom", atom), ("cpu_core", set(numbers) - atom)):
            (root / "sys" / "devices" / pmu).mkdir(parents=True)
            (root / "sys" / "devices" / pmu / "cpus").write_text(kernel_list(members) + "\n")
    return root


# -- the machines --------------------------------------------------------------------------------


def epyc_64c(root: Path) -> Path:
    """64 cores with SMT on one socket (an AMD EPYC 7763's shape): 128 CPUs, CPU N and N + 64
    one core's."""
    return write_tree(root, machine(1, 64, 2))


def xeon_2s32c(root: Path) -> Path:
    """Two sockets of 32 cores with SMT: 128 CPUs; socket 0 holds CPUs 0-31 and their siblings
    64-95, socket 1 CPUs 32-63 and 96-127; core ids restart at 0 in each socket."""
    return write_tree(root, machine(2, 32, 2))


def em64t_4s2c2t(root: Path, **options: Any) -> Path:
    """hwloc's 16em64t-4s2c2t: 4 sockets x 2 cores x 2 threads, numbered round-robin."""
    return write_tree(root, machine(4, 2, 2, numbering="round-robin"), **options)


def opteron_cgroup(root: Path, **options: Any) -> Path:
    """hwloc's 32amd64-4s2n4c-cgroup2: 4 Opteron 6134 packages of 2 dies x 4 cores, no SMT,
    core ids 0-3 in each die; the cgroup v2 cpuset leaves CPUs 0-5 (package 0's first die and
    two cores of its second)."""
    cpus = machine(4, 4, 1, dies=2, numbering="consecutive")
    return write_tree(root, cpus, allowed=range(6), **options)


def power_4t(root: Path) -> Path:
    """256 CPUs in cores of 4 threads (hwloc's 256ppc-8n8s4t count and SMT width): 8 packages
    x 8 cores x 4 threads, a core's threads consecutive and its id its first CPU's number."""
    return write_tree(root, machine(8, 8, 4, numbering="consecutive", core_id=lambda p, d, c, first: first))


def hybrid_1p6c2t_8e(root: Path) -> Path:
    """hwloc's 20em64t-hybrid-1p6c2t+2ca4co1t (an i7-1370P): 6 performance cores with SMT
    (CPUs 0-11, threads consecutive, core ids 0, 4, ... 20) and 8 efficiency cores without
    (CPUs 12-19, core ids 24-31); the kernel lists the latter in sys/devices/cpu_atom/cpus."""
    cpus = [Cpu(n, 0, 4 * (n // 2), (n - n % 2, n - n % 2 + 1)) for n in range(12)]
    cpus += [Cpu(n, 0, n + 12, (n,)) for n in range(12, 20)]
    return write_tree(root, cpus, atom=range(12, 20))


def big_little(root: Path) -> Path:
    """An Arm big.LITTLE part as arm64 shows it: 4 little cores (cpu_capacity 446, CPUs 0-3)
    then 4 big ones (1024, CPUs 4-7), one package, no SMT."""
    cpus = [Cpu(n, 0, n, (n,), capacity=446 if n < 4 else 1024) for n in range(8)]
    return write_tree(root, cpus)
