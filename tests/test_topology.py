"""Many cores, measured right: the CPU topology of real many-core machines read from fixture
/sys trees (tests/sysfs.py), the cores placement pins and max_workers counts, the plan of the
ftscaling profile for another machine (``gilmatrix plan --sys-root``), and the warning for
cells that would leave workers without a task."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gilmatrix.cli import main
from gilmatrix.harness.facts import cpu_topology, format_cpulist, parse_cpulist
from gilmatrix.matrix.model import load_matrix
from gilmatrix.matrix.plan import plan_cells, worker_limit
from tests import sysfs
from tests.conftest import ROOT

MATRIX = ROOT / "matrix.yaml"


def fixture(tmp_path: Path, make, **options) -> Path:
    return make(tmp_path / "machine", **options)


def core_of(topology, cpu: int) -> tuple[int, ...]:
    return next(core for core in topology.cores if cpu in core)


# -- the topology of real shapes ---------------------------------------------------------------


def test_cpu_lists_read_and_write_as_the_kernel_does() -> None:
    assert parse_cpulist("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert parse_cpulist("") == []
    assert format_cpulist([11, 0, 1, 2, 3, 8, 10]) == "0-3,8,10-11"
    assert format_cpulist([]) == ""
    with pytest.raises(ValueError):
        parse_cpulist("3-1")
    with pytest.raises(ValueError):
        parse_cpulist("a")


def test_64_cores_with_smt_siblings_64_apart(tmp_path: Path) -> None:
    topology = cpu_topology(str(fixture(tmp_path, sysfs.epyc_64c)))
    assert topology.cpus == tuple(range(128))
    assert len(topology.cores) == 64 and topology.smt and topology.sockets == 1
    assert all(core == (core[0], core[0] + 64) for core in topology.cores)
    assert topology.physical == tuple(range(64))  # the first sibling of each core


def test_two_sockets_place_on_one_and_count_every_core(tmp_path: Path) -> None:
    topology = cpu_topology(str(fixture(tmp_path, sysfs.xeon_2s32c)))
    # core ids restart at 0 in each socket: 64 cores, not 32
    assert len(topology.cores) == 64 and topology.sockets == 2
    assert core_of(topology, 32) == (32, 96) and core_of(topology, 0) == (0, 64)
    assert topology.package == "0" and topology.physical == tuple(range(32))


def test_four_sockets_numbered_round_robin(tmp_path: Path) -> None:
    """16em64t-4s2c2t: core 0 of socket 0 is CPUs 0 and 8; socket 1 starts at CPU 1."""
    topology = cpu_topology(str(fixture(tmp_path, sysfs.em64t_4s2c2t)))
    assert topology.sockets == 4 and len(topology.cores) == 8 and topology.smt
    assert core_of(topology, 0) == (0, 8) and core_of(topology, 4) == (4, 12)
    assert core_of(topology, 1) == (1, 9)  # socket 1's core 0: not merged with socket 0's
    assert topology.physical == (0, 4)


@pytest.mark.parametrize(
    "lists", [("thread_siblings_list",), ()], ids=["older-kernel-thread-siblings", "core-ids-only"]
)
def test_without_core_cpus_list_cores_are_still_right(tmp_path: Path, lists: tuple[str, ...]) -> None:
    topology = cpu_topology(str(fixture(tmp_path, sysfs.em64t_4s2c2t, lists=lists)))
    assert len(topology.cores) == 8 and core_of(topology, 1) == (1, 9)
    assert topology.physical == (0, 4)


def test_a_cgroup_cpuset_hides_part_of_the_machine(tmp_path: Path) -> None:
    """32amd64-4s2n4c-cgroup2: CPUs 0-5 allowed of 32; core ids restart in each die, so CPU 4
    (die 1, core id 0) is not CPU 0's sibling."""
    topology = cpu_topology(str(fixture(tmp_path, sysfs.opteron_cgroup)))
    assert topology.cpus == tuple(range(6))
    assert topology.cores == tuple((n,) for n in range(6)) and not topology.smt
    assert topology.physical == tuple(range(6)) and topology.sockets == 1
    # an older kernel without sibling lists: the die id keeps the dies apart
    older = cpu_topology(str(fixture(tmp_path / "older", sysfs.opteron_cgroup, lists=())))
    assert older.cores == topology.cores


def test_placement_takes_the_first_allowed_sibling_and_the_fullest_socket(tmp_path: Path) -> None:
    root = sysfs.write_tree(tmp_path / "seconds", sysfs.machine(1, 64, 2), allowed=range(64, 128))
    topology = cpu_topology(str(root))
    assert topology.physical == tuple(range(64, 128)) and not topology.smt
    # the cpuset leaves 2 cores of socket 0 and all 32 of socket 1: socket 1
    root = sysfs.write_tree(tmp_path / "two", sysfs.machine(2, 32, 2), allowed=range(30, 64))
    topology = cpu_topology(str(root))
    assert topology.sockets == 2 and topology.package == "1"
    assert topology.physical == tuple(range(32, 64))


def test_four_threads_per_core(tmp_path: Path) -> None:
    topology = cpu_topology(str(fixture(tmp_path, sysfs.power_4t)))
    assert len(topology.cpus) == 256 and len(topology.cores) == 64
    assert all(len(core) == 4 for core in topology.cores) and core_of(topology, 6) == (4, 5, 6, 7)
    assert topology.sockets == 8 and topology.physical == tuple(range(0, 32, 4))


def test_hybrid_cores_place_on_performance_cores_only(tmp_path: Path) -> None:
    topology = cpu_topology(str(fixture(tmp_path, sysfs.hybrid_1p6c2t_8e)))
    assert len(topology.cores) == 14 and topology.efficiency == tuple(range(12, 20))
    assert topology.physical == (0, 2, 4, 6, 8, 10)
    little = cpu_topology(str(fixture(tmp_path / "arm", sysfs.big_little)))
    assert little.efficiency == (0, 1, 2, 3) and little.physical == (4, 5, 6, 7)


def test_only_efficiency_cores_allowed_are_placed_on_rather_than_none(tmp_path: Path) -> None:
    cpus = sysfs.machine(1, 8, 1)
    root = sysfs.write_tree(tmp_path / "m", cpus, allowed=[6, 7], atom=range(4, 8))
    topology = cpu_topology(str(root))
    assert topology.efficiency == (6, 7) and topology.physical == (6, 7)


def test_this_machine_is_read_from_the_real_root() -> None:
    topology = cpu_topology()
    assert topology.cpus == tuple(sorted(os.sched_getaffinity(0)))
    assert set(topology.physical) <= set(topology.cpus) and topology.physical
    assert sorted(cpu for core in topology.cores for cpu in core) == list(topology.cpus)


def test_max_workers_counts_the_cores_placement_pins(tmp_path: Path) -> None:
    counts = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    epyc = cpu_topology(str(fixture(tmp_path, sysfs.epyc_64c)))
    assert worker_limit(counts, "physical-cores", epyc) == (1, 2, 4, 8, 16, 32, 64)
    assert worker_limit(counts, "cpus", epyc) == (1, 2, 4, 8, 16, 32, 64, 128)
    hybrid = cpu_topology(str(fixture(tmp_path / "h", sysfs.hybrid_1p6c2t_8e)))
    assert worker_limit(counts, "physical-cores", hybrid) == (1, 2, 4)
    with pytest.raises(ValueError, match="topology"):
        worker_limit(counts, "physical-cores")


# -- the ftscaling plan of another machine -------------------------------------------------------


def test_ftscaling_plan_for_a_64_core_machine(tmp_path: Path) -> None:
    topology = cpu_topology(str(fixture(tmp_path, sysfs.epyc_64c)))
    plan = plan_cells(load_matrix(MATRIX), "ftscaling", topology=topology)
    threads = [c for c in plan.cells if c.executor == "threads"]
    assert {c.workers for c in threads} == {1, 2, 4, 8, 16, 32, 64}
    assert plan.dropped == (128,)
    assert all(c.tasks is not None and c.tasks >= c.workers for c in threads)
    assert all(c.tasks == c.workers and c.params["tasks"] == c.workers for c in threads)
    assert all(c.note is None for c in plan.cells) and not plan.warnings
    assert plan.cpuset == tuple(range(64))
    assert len({core_of(topology, cpu) for cpu in plan.cpuset}) == 64  # one per core


def test_plan_sys_root_prints_workers_tasks_and_the_pinned_cpus(tmp_path: Path, capsys) -> None:
    root = fixture(tmp_path, sysfs.epyc_64c)
    args = ["plan", "--matrix", str(MATRIX), "--profile", "ftscaling", "--sys-root", str(root)]
    assert main([*args, "--only", "3.14t"]) == 0
    out, err = capsys.readouterr()
    assert "warning" not in err
    lines = out.splitlines()
    cells = [line for line in lines if line.startswith("3.14t ")]
    assert len(cells) == 17 * 8  # 17 workloads x (sequential + threads at 1..64)
    for line in cells:
        fields = line.split()
        workers, tasks = int(fields[fields.index("workers") + 1]), int(fields[fields.index("tasks") + 1])
        assert tasks == workers and fields[-1] == "0-63", line
    assert not [line for line in cells if "/128" in line]
    assert "3.14t  ft_method_call/threads/64" in out
    assert (
        "worker counts 128 dropped: above max_workers physical-cores = 64 physical cores of socket 0" in out
    )
    assert "pinned to 64 CPUs 0-63: one per physical core of socket 0 (their SMT siblings stay idle)" in out
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["placement"]["cpuset"] == "0-63" and data["dropped_workers"] == [128]
    assert data["topology"]["cores"] == 64 and data["topology"]["cpus"] == 128
    assert all(c["tasks"] >= c["workers"] and c["cpuset"] == "0-63" for c in data["cells"])
    assert main([*args[:-2], "--sys-root", str(tmp_path / "nowhere")]) == 2


# -- fewer tasks than workers -------------------------------------------------------------------


def fixed_tasks_matrix(tmp_path: Path) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(
        "format: 1\n"
        'interpreters:\n  - id: "3.14t"\n'
        "workloads:\n"
        "  ft_fixed: {workload: ftscaling, params: {pattern: method_call, tasks: 8}}\n"
        "  ft_weak: {workload: ftscaling, tasks_per_worker: 2, params: {pattern: closure}}\n"
        "  startup: {params: {tasks: 1}}\n"
        "executors: [sequential, threads]\n"
        "workers: [1, 2, 4]\n"
        "profiles:\n"
        "  default: {}\n"
        "  wide: {workers: [1, 8, 16, 32], max_workers: 16}\n"
    )
    return path


def test_validate_and_plan_warn_where_workers_would_have_no_task(tmp_path: Path, capsys) -> None:
    path = fixed_tasks_matrix(tmp_path)
    assert main(["validate", str(path)]) == 0
    err = capsys.readouterr().err
    (warning,) = err.splitlines()  # ft_fixed on threads in profile wide; not startup, not ft_weak
    assert warning.startswith(
        "warning: profile wide: ft_fixed on threads: 8 tasks per timed call at 16 workers"
    )
    assert "tasks_per_worker" in warning and "params.tasks to at least 16" in warning
    assert main(["plan", str(path), "--profile", "wide", "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert len(data["warnings"]) == 1 and "ft_fixed on threads" in data["warnings"][0]
    assert "ft_fixed on threads" in captured.err
    by_id = {c["id"]: c for c in data["cells"]}
    assert by_id["ft_fixed/threads/16"]["note"] == "8 tasks for 16 workers: 8 idle"
    assert by_id["ft_fixed/threads/8"]["note"] is None and by_id["ft_fixed/threads/8"]["tasks"] == 8
    assert by_id["ft_weak/threads/16"]["tasks"] == 32 and by_id["ft_weak/threads/16"]["params"]["tasks"] == 32
    assert by_id["ft_weak/sequential/1"]["tasks"] == 2
    assert by_id["startup/threads/16"]["note"] is None  # a pool's fixed cost: idle workers are its point
    assert main(["plan", str(path), "--profile", "default"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_the_shipped_matrix_plans_no_idle_workers(capsys) -> None:
    assert main(["validate", str(MATRIX)]) == 0
    assert "warning" not in capsys.readouterr().err
