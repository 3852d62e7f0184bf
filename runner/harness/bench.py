"""One cell as one pyperf benchmark: ``python -m runner.harness.bench --cell JSON [pyperf options]``.

pyperf spawns fresh worker processes that re-run this module with ``--worker``; each worker
builds the cell's pool once, warms it up, then times ``loops`` calls of the workload. The
answer of the last timed call is checked outside the timed region: a wrong answer fails the
cell (non-zero exit) instead of producing a number.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Dict, List, Mapping

import pyperf

from runner.harness.executors import Dispatcher, default_start_method
from runner.harness.facts import gil_enabled, interpreter_facts
from runner.harness.faults import inject
from runner.harness.workloads import WORKLOADS, resolve_params

MODULE = "runner.harness.bench"


def cell_metadata(cell: Mapping[str, Any], params: Mapping[str, Any]) -> Dict[str, Any]:
    """The cell's parameters and the interpreter's build facts, as pyperf metadata."""
    facts = interpreter_facts()
    enabled = gil_enabled()
    metadata: Dict[str, Any] = {
        "gilmatrix_interpreter": cell["interpreter"],
        "gilmatrix_workload": cell["workload"],
        "gilmatrix_implementation": cell["implementation"],
        "gilmatrix_workload_kind": WORKLOADS[cell["implementation"]].kind,
        "gilmatrix_executor": cell["executor"],
        "gilmatrix_workers": int(cell["workers"]),
        "gilmatrix_params": json.dumps(dict(params), sort_keys=True),
        "gilmatrix_tasks": int(params.get("tasks", 1)),
        "gilmatrix_pool_in_timing": "no",
        "gilmatrix_py_gil_disabled": facts["py_gil_disabled"],
        "gilmatrix_gil_enabled": "n/a" if enabled is None else ("true" if enabled else "false"),
        "gilmatrix_sys_version": facts["sys_version"],
    }
    if facts["config_args"]:  # pyperf rejects empty metadata strings
        metadata["gilmatrix_config_args"] = facts["config_args"]
    if cell["executor"] == "processes":
        metadata["gilmatrix_start_method"] = cell.get("start_method") or default_start_method()
    return metadata


class CellTimer:
    """The pyperf time function of one cell; the pool lives as long as the worker process."""

    def __init__(self, cell: Mapping[str, Any]) -> None:
        self.workload = WORKLOADS[cell["implementation"]]
        self.params = resolve_params(self.workload, cell["params"])
        self.tasks: List[Any] = self.workload.make_tasks(self.params)
        self.cell = cell
        self.dispatcher: Dispatcher | None = None

    def __call__(self, loops: int) -> float:
        if self.cell.get("fault"):
            inject(self.cell["fault"])
        if self.dispatcher is None:
            self.dispatcher = Dispatcher(
                self.cell["executor"], int(self.cell["workers"]), self.cell.get("start_method")
            )
            self.dispatcher.warm_up(self.workload.run_task, self.tasks)
        run, fn, tasks = self.dispatcher.run, self.workload.run_task, self.tasks
        results: List[Any] = []
        start = time.perf_counter()
        for _ in range(loops):
            results = run(fn, tasks)
        elapsed = time.perf_counter() - start
        self.workload.check(self.params, self.tasks, results)
        return elapsed


def main(argv: List[str] | None = None) -> None:
    runner = pyperf.Runner(
        program_args=("-m", MODULE),
        add_cmdline_args=lambda cmd, args: cmd.extend(("--cell", args.cell)),
    )
    runner.argparser.add_argument("--cell", required=True, help="the cell, as JSON")
    args = runner.parse_args(argv)
    cell = json.loads(args.cell)
    timer = CellTimer(cell)
    runner.bench_time_func(cell["id"], timer, metadata=cell_metadata(cell, timer.params))


if __name__ == "__main__":
    main(sys.argv[1:])
