"""Results folders as CI receives them: GitHub Actions artifacts, which a fork's workflow can
write. A copy of one real run folder is damaged in one way per test (cut off, not JSON, wrong
types, paths and symlinks out of the folder, a FIFO, a directory, 300 MB, deep nesting, bytes
that are not UTF-8, numbers pyperf never writes, markup in every string the page shows, ids that
build paths, duplicates, another format, hostile runner facts), then both ``gilmatrix merge`` and
``gilmatrix report`` run on it, as subprocesses with a timeout. Each must end (no hang), without
a traceback, with exit 0 or 2; a refusal (2) names the damaged file, a report that goes on (0)
shows the damage on the page; a merge that goes on (0) writes a run the report reads, showing
the damage. Nothing outside the folder is read (a marker placed next to it never reaches an
output) or written, and markup comes out escaped.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gilmatrix.run.manifest import MAX_FILE_BYTES
from tests.conftest import RUNNING_ID, gilmatrix, local_run, small_matrix

pytestmark = pytest.mark.integration

GUARD = 60  # seconds: a hang guard; a report of this run takes about 5 s
MARKER = "OUTSIDE-THE-RUN-FOLDER-7f3a"  # in every file placed outside the run folder
PASSWD = "root:x:0:0:"  # what /etc/passwd holds, should it ever be copied or shown
SCRIPT = "<script>alert(1)</script>"
IMG_TAG = "<img src=x onerror=alert(2)>"
IMG = f'">{IMG_TAG}'
INJECTED = f"{SCRIPT}{IMG}"
ESCAPED = ("&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;img src=x onerror=alert(2)&gt;")
SUITE = f"{RUNNING_ID}.json"
CELLS = Path("cells") / RUNNING_ID


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run (local backend, the running interpreter): three workloads, sequential and
    threads, one worker: six cells."""
    base = tmp_path_factory.mktemp("real-run")
    matrix = small_matrix(base, executors="[sequential, threads]", workers="[1]")
    proc = gilmatrix(*local_run(matrix, base / "out", "r"), timeout=600)
    assert proc.returncode == 0, proc.stderr
    run = base / "out" / "results" / "r"
    (run / ".lock").unlink(missing_ok=True)
    return run


@pytest.fixture(scope="module")
def clean_page(real_run: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The text of the undamaged run's report: what a damaged one must show is not in it."""
    out = tmp_path_factory.mktemp("clean-report")
    proc = report(real_run, out)
    assert proc.returncode == 0, proc.stderr
    return page_text(out / "report" / "index.html")


# -- what each damage expects ---------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """What a command may do with the damaged folder.

    named: what an error (exit 2) must name, the damaged file (merge_named: when merge names
    something else); shown: what a page built anyway (exit 0) must show, absent from the
    undamaged run's page (None: a refusal is the only right end); render: the page must be
    built, markup escaped; harmless: both commands go on as with the undamaged folder;
    merge_only: a file only merge reads (cells/, jobs/, github-runner.json): the report of the
    folder itself goes on, the report of the merged run shows the damage; merged_shown: what
    the report of the merged run shows instead of ``shown`` (merge read the file itself)."""

    named: Path | str
    shown: str | None = None
    render: bool = False
    harmless: bool = False
    merge_only: bool = False
    merge_named: str | None = None
    merged_shown: str | None = None


Damage = Callable[[Path, Path], Expect]
DAMAGES: dict[str, Damage] = {}


def damage(name: str) -> Callable[[Damage], Damage]:
    def register(func: Damage) -> Damage:
        DAMAGES[name] = func
        return func

    return register


def read(path: Path) -> Any:
    return json.loads(path.read_text())


def write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1))


def edit(path: Path, change: Callable[[Any], Any]) -> None:
    data = read(path)
    change(data)
    write(path, data)


def sparse(path: Path, size: int) -> None:
    """A file of ``size`` bytes that takes no disk space, made with truncate(1)."""
    path.unlink(missing_ok=True)
    subprocess.run(["truncate", "-s", str(size), str(path)], check=True)
    assert path.stat().st_size == size and path.stat().st_blocks * 512 < 1 << 20


def outside(run: Path) -> Path:
    """Files next to the run folder (tmp/in/r): tmp/outside/ holds a valid pyperf suite whose
    workloads are named MARKER (read, it would show on the page), a cells-like folder and a
    text file; tmp/outside.json a job file."""
    root = run.parent.parent
    there = root / "outside"
    there.mkdir(exist_ok=True)
    suite = read(run / SUITE)
    suite["metadata"]["hostname"] = MARKER
    for bench in suite["benchmarks"]:
        bench["metadata"]["gilmatrix_workload"] = MARKER
        bench["metadata"]["name"] = bench["metadata"]["name"].replace("crunch", MARKER)
    write(there / "secret.json", suite)
    (there / "secret.txt").write_text(MARKER + "\n")
    shutil.copytree(run / CELLS, there / "cells")
    for path in (there / "cells").glob("*.json"):
        path.write_text(path.read_text().replace("crunch", MARKER))
    (root / "outside.json").write_text(json.dumps({"marker": MARKER}))
    return there


@damage("undamaged-control")
def _(run: Path, out: Path) -> Expect:
    return Expect(run, harmless=True)  # the rules below pass a whole folder


# -- the manifest -----------------------------------------------------------------------------


@damage("manifest-cut-off")
def _(run: Path, out: Path) -> Expect:
    path = run / "manifest.json"
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    return Expect(path)


@damage("manifest-not-json")
def _(run: Path, out: Path) -> Expect:
    (run / "manifest.json").write_text("<html>Bad gateway</html>\n")
    return Expect(run / "manifest.json")


@damage("manifest-empty-file")
def _(run: Path, out: Path) -> Expect:
    (run / "manifest.json").write_bytes(b"")
    return Expect(run / "manifest.json")


@damage("manifest-a-list")
def _(run: Path, out: Path) -> Expect:
    (run / "manifest.json").write_text("[1, 2, 3]")
    return Expect(run / "manifest.json")


def _strings_for_numbers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: v if k == "format" else _strings_for_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strings_for_numbers(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


@damage("manifest-strings-for-numbers")
def _(run: Path, out: Path) -> Expect:
    path = run / "manifest.json"
    write(path, _strings_for_numbers(read(path)))
    return Expect(path)


# Keys a reader uses beyond the checked top level, each given a wrong type: a refusal naming the
# manifest (or, where the report can do without the key, a page that still builds).
WRONG_TYPES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "load-before-strings": lambda m: m["interpreters"][RUNNING_ID].__setitem__("load_before", ["x", "y"]),
    "facts-a-list": lambda m: m["interpreters"][RUNNING_ID]["environment"].__setitem__("facts", [1]),
    "environment-facts-values": lambda m: m["interpreters"][RUNNING_ID]["environment"]["facts"].update(
        {"version": {"a": 1}, "gil_enabled": [1], "py_gil_disabled": "x"}
    ),
    "host-physical-cores-string": lambda m: m["host"].__setitem__("physical_cores", "many"),
    "host-cpu-count-a-list": lambda m: m["host"].__setitem__("cpu_count", [4]),
    "tool-a-string": lambda m: m.__setitem__("tool", "gilmatrix"),
    "settings-a-list": lambda m: m["matrix"].__setitem__("settings", [1, 2]),
    "stages-strings": lambda m: m.__setitem__("stages", {"run": "ten seconds"}),
    "workloads-lists": lambda m: m.__setitem__("workloads", {"crunch": [1], "fetch": "x"}),
    "schedule-noise-strings": lambda m: m["schedule"].__setitem__("noise", {"floor": "x", "drift": [1]}),
    "cell-worker-seconds-strings": lambda m: m["cells"][0].__setitem__("worker_seconds", ["x"]),
    "cell-warnings-mappings": lambda m: m["cells"][0].__setitem__("warnings", [{"a": 1}]),
    "warnings-mappings": lambda m: m.__setitem__("warnings", [{"a": [1]}, 5]),
    "only-numbers": lambda m: m["matrix"].__setitem__("only", [1, None]),
    "huge-integer-elapsed": lambda m: m["interpreters"][RUNNING_ID].__setitem__("elapsed", 10**4000),
}


def _wrong_type(key: str) -> Damage:
    def apply(run: Path, out: Path) -> Expect:
        path = run / "manifest.json"
        edit(path, WRONG_TYPES[key])
        return Expect(path)

    return apply


for _key in WRONG_TYPES:
    damage(f"manifest-wrong-type-{_key}")(_wrong_type(_key))


@damage("manifest-other-format")
def _(run: Path, out: Path) -> Expect:
    edit(run / "manifest.json", lambda m: m.__setitem__("format", 2))
    return Expect(run / "manifest.json")


@damage("manifest-a-fifo")
def _(run: Path, out: Path) -> Expect:
    (run / "manifest.json").unlink()
    os.mkfifo(run / "manifest.json")
    return Expect(run / "manifest.json")


@damage("manifest-a-directory")
def _(run: Path, out: Path) -> Expect:
    (run / "manifest.json").unlink()
    (run / "manifest.json").mkdir()
    return Expect(run / "manifest.json")


@damage("manifest-a-symlink-outside")
def _(run: Path, out: Path) -> Expect:
    there = outside(run)
    manifest = read(run / "manifest.json")
    manifest["run_id"] = MARKER
    write(there / "manifest.json", manifest)
    (run / "manifest.json").unlink()
    (run / "manifest.json").symlink_to(there / "manifest.json")
    return Expect(run / "manifest.json")


@damage("manifest-300MB-sparse")
def _(run: Path, out: Path) -> Expect:
    sparse(run / "manifest.json", 300_000_000)
    return Expect(run / "manifest.json")


@damage("manifest-nested-100000-deep")
def _(run: Path, out: Path) -> Expect:
    (run / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    return Expect(run / "manifest.json")


@damage("manifest-free-key-nested-900-deep")
def _(run: Path, out: Path) -> Expect:
    # parses (below the recursion limit), then every reader and writer walks it
    deep: Any = "bottom"
    for _ in range(900):
        deep = [deep]
    edit(run / "manifest.json", lambda m: m["tool"].__setitem__("extra", deep))
    return Expect(run / "manifest.json", shown=None)


@damage("manifest-not-utf8")
def _(run: Path, out: Path) -> Expect:
    path = run / "manifest.json"
    path.write_bytes(path.read_bytes().replace(b'"complete"', b'"compl\xff\xfete"'))
    return Expect(path)


@damage("manifest-nan-and-infinity")
def _(run: Path, out: Path) -> Expect:
    path = run / "manifest.json"
    manifest = read(path)
    manifest["interpreters"][RUNNING_ID]["elapsed"] = float("nan")
    manifest["cells"][0]["elapsed"] = float("inf")
    manifest["cells"][1]["precision"] = -float("inf")
    manifest["stages"] = {"run": float("nan")}
    path.write_text(json.dumps(manifest))  # NaN, Infinity: what json.dumps writes, not JSON
    return Expect(path)


@damage("manifest-empty-folder")
def _(run: Path, out: Path) -> Expect:
    shutil.rmtree(run)
    run.mkdir()
    return Expect(run, merge_named="no run folder")


# -- paths the manifest names -------------------------------------------------------------------


def _results(run: Path, value: str) -> Path:
    edit(run / "manifest.json", lambda m: m["interpreters"][RUNNING_ID].__setitem__("results", value))
    return run / "manifest.json"


@damage("results-path-../../etc/passwd")
def _(run: Path, out: Path) -> Expect:
    depth = len(run.resolve().parts) - 1
    return Expect(_results(run, "../" * depth + "etc/passwd"))


@damage("results-path-absolute")
def _(run: Path, out: Path) -> Expect:
    return Expect(_results(run, "/etc/passwd"))


@damage("results-path-to-a-suite-outside")
def _(run: Path, out: Path) -> Expect:
    outside(run)
    return Expect(_results(run, "../../outside/secret.json"))


@damage("results-a-symlink-to-/etc/passwd")
def _(run: Path, out: Path) -> Expect:
    (run / SUITE).unlink()
    (run / SUITE).symlink_to("/etc/passwd")
    return Expect(run / SUITE, shown="outside the run folder")


@damage("results-a-symlink-to-a-suite-outside")
def _(run: Path, out: Path) -> Expect:
    there = outside(run)
    (run / SUITE).unlink()
    (run / SUITE).symlink_to(there / "secret.json")
    return Expect(run / SUITE, shown="outside the run folder")


@damage("results-a-symlink-inside")
def _(run: Path, out: Path) -> Expect:
    # a symlink to a file of the run folder itself is harmless: read as the file it names
    (run / "copy.json").write_bytes((run / SUITE).read_bytes())
    (run / SUITE).unlink()
    (run / SUITE).symlink_to("copy.json")
    return Expect(run / SUITE, harmless=True)


@damage("cells-folder-a-symlink-outside")
def _(run: Path, out: Path) -> Expect:
    there = outside(run)
    shutil.rmtree(run / CELLS)
    (run / CELLS).symlink_to(there / "cells")
    return Expect(run / CELLS, shown="outside the run folder", merge_only=True)


@damage("cells-file-a-symlink-outside")
def _(run: Path, out: Path) -> Expect:
    there = outside(run)
    target = run / CELLS / "crunch__threads__1.json"
    target.unlink()
    target.symlink_to(there / "secret.json")
    (run / CELLS / "stolen.log").symlink_to("/etc/passwd")
    return Expect(target, shown="outside the run folder", merge_only=True)


@damage("job-and-log-symlinks-outside")
def _(run: Path, out: Path) -> Expect:
    outside(run)
    job = run / "jobs" / f"{RUNNING_ID}.json"
    job.unlink()
    job.symlink_to(run.parent.parent / "outside.json")
    log = run / "cells" / f"{RUNNING_ID}.harness.log"
    log.unlink()
    log.symlink_to("/etc/passwd")
    return Expect(job, shown="outside the run folder", merge_only=True)


@damage("results-a-fifo")
def _(run: Path, out: Path) -> Expect:
    (run / SUITE).unlink()
    os.mkfifo(run / SUITE)
    return Expect(run / SUITE, shown="not a regular file")


@damage("cells-file-a-fifo")
def _(run: Path, out: Path) -> Expect:
    target = run / CELLS / "crunch__threads__1.json"
    target.unlink()
    os.mkfifo(target)
    return Expect(target, shown="not a regular file", merge_only=True)


@damage("results-a-directory")
def _(run: Path, out: Path) -> Expect:
    (run / SUITE).unlink()
    (run / SUITE).mkdir()
    (run / SUITE / "x").write_text("{}")
    return Expect(run / SUITE, shown="not a regular file")


@damage("results-300MB-sparse")
def _(run: Path, out: Path) -> Expect:
    sparse(run / SUITE, 300_000_000)
    return Expect(run / SUITE, shown="larger than")


@damage("results-just-over-the-limit")
def _(run: Path, out: Path) -> Expect:
    path = run / SUITE
    with path.open("ab") as handle:  # valid JSON, then zero bytes to one past the limit
        handle.truncate(MAX_FILE_BYTES + 1)
    return Expect(path, shown="larger than")


@damage("cells-log-300MB-sparse")
def _(run: Path, out: Path) -> Expect:
    sparse(run / CELLS / "crunch__threads__1.log", 300_000_000)
    return Expect(run / CELLS / "crunch__threads__1.log", shown="larger than", merge_only=True)


@damage("interpreter-id-path-traversal")
def _(run: Path, out: Path) -> Expect:
    outside(run)
    evil = "../../../outside"  # cells/<id> and jobs/<id>.json: next to the run folder

    def rename(m: dict[str, Any]) -> None:
        m["interpreters"] = {evil: m["interpreters"][RUNNING_ID]}
        for cell in m["cells"]:
            cell["interpreter"] = evil

    edit(run / "manifest.json", rename)
    return Expect(run / "manifest.json")


@damage("interpreter-id-a-dot-dot")
def _(run: Path, out: Path) -> Expect:
    def rename(m: dict[str, Any]) -> None:
        m["interpreters"] = {"..": m["interpreters"][RUNNING_ID]}
        for cell in m["cells"]:
            cell["interpreter"] = ".."

    edit(run / "manifest.json", rename)
    return Expect(run / "manifest.json")


@damage("cell-id-path-traversal")
def _(run: Path, out: Path) -> Expect:
    evil = "../../../../etc/passwd"

    def change(m: dict[str, Any]) -> None:
        m["cells"][0].update({"id": evil, "status": "failed", "reason": "made up"})

    edit(run / "manifest.json", change)
    return Expect(run / "manifest.json", shown=evil)


@damage("cells-duplicated")
def _(run: Path, out: Path) -> Expect:
    edit(run / "manifest.json", lambda m: m.__setitem__("cells", m["cells"] + m["cells"]))
    return Expect(run / "manifest.json")


@damage("cells-conflicting")
def _(run: Path, out: Path) -> Expect:
    def change(m: dict[str, Any]) -> None:
        m["cells"].append({**m["cells"][0], "status": "failed", "reason": "also failed"})

    edit(run / "manifest.json", change)
    return Expect(run / "manifest.json")


# -- the pyperf suite -------------------------------------------------------------------------


@damage("suite-nested-100000-deep")
def _(run: Path, out: Path) -> Expect:
    (run / SUITE).write_text("[" * 100_000 + "]" * 100_000)
    return Expect(run / SUITE, shown="nested")


@damage("suite-metadata-nested-900-deep")
def _(run: Path, out: Path) -> Expect:
    deep: Any = "bottom"
    for _ in range(900):
        deep = [deep]
    edit(run / SUITE, lambda s: s["benchmarks"][0]["metadata"].__setitem__("cpu_model_name", deep))
    return Expect(run / SUITE, shown="nested")


@damage("suite-not-utf8")
def _(run: Path, out: Path) -> Expect:
    path = run / SUITE
    path.write_bytes(path.read_bytes().replace(b'"crunch"', b'"cr\xff\xfench"'))
    return Expect(path, shown="UTF-8")


@damage("suite-nan-infinity-negative-huge")
def _(run: Path, out: Path) -> Expect:
    path = run / SUITE
    suite = read(path)
    values = [float("nan"), float("inf"), -0.5, 1e308]
    for bench, value in zip(suite["benchmarks"], values, strict=False):
        bench["runs"][-1]["values"][0] = value
    path.write_text(json.dumps(suite))
    return Expect(path, shown="values: expected")


@damage("suite-negative-times")
def _(run: Path, out: Path) -> Expect:
    path = run / SUITE
    edit(path, lambda s: s["benchmarks"][2]["runs"][-1].__setitem__("values", [-1.0, -2.0]))
    return Expect(path, shown="values: expected")


@damage("suite-huge-number")
def _(run: Path, out: Path) -> Expect:
    path = run / SUITE
    suite = read(path)
    suite["benchmarks"][0]["runs"][-1]["values"][0] = 12345
    text = json.dumps(suite).replace("12345", "1" * 5000, 1)  # past int()'s 4300 digits
    path.write_text(text)
    return Expect(path, shown="not valid JSON")


@damage("suite-without-metadata")
def _(run: Path, out: Path) -> Expect:
    path = run / SUITE
    suite = read(path)
    suite["metadata"] = {}
    for bench in suite["benchmarks"]:
        bench["metadata"] = {}
        for one in bench["runs"]:
            one.pop("metadata", None)
    write(path, suite)
    # the report of the folder finds the cells absent; merge reads the suite and names why
    return Expect(path, shown="absent from the results file", merged_shown="A benchmark must have a name")


@damage("suite-duplicate-benchmarks")
def _(run: Path, out: Path) -> Expect:
    path = run / SUITE
    edit(path, lambda s: s["benchmarks"].append(s["benchmarks"][0]))
    return Expect(path, shown="twice")


@damage("suite-wrong-types")
def _(run: Path, out: Path) -> Expect:
    path = run / SUITE

    def change(s: dict[str, Any]) -> None:
        s["metadata"]["loops"] = "many"
        s["benchmarks"][0]["metadata"]["gilmatrix_params"] = "{not json"
        s["benchmarks"][1]["metadata"]["gilmatrix_workers"] = [1]
        s["benchmarks"][2]["runs"][-1]["metadata"] = {"loops": "x", "inner_loops": [2]}

    edit(path, change)
    return Expect(path, shown="unreadable")


@damage("suite-figures-out-of-range")
def _(run: Path, out: Path) -> Expect:
    path = run / SUITE

    def change(s: dict[str, Any]) -> None:
        md = s["benchmarks"][0]["metadata"]
        md["gilmatrix_workers"] = 10**30  # JSON, but past every int64
        md["gilmatrix_params"] = "[" * 100_000 + "]" * 100_000  # JSON in a string, too deep
        s["benchmarks"][1]["runs"][-1].setdefault("metadata", {})["mem_max_rss"] = 10**400

    edit(path, change)
    return Expect(path, shown="out of range")


# -- strings that reach the page --------------------------------------------------------------

HOSTILE_ID = f"3.99{IMG}"  # an id without '/': a file name, kept (and shown escaped)


@damage("markup-in-every-string")
def _(run: Path, out: Path) -> Expect:
    def change(m: dict[str, Any]) -> None:
        m["run_id"] = f"run{INJECTED}"
        m["state"] = f"partial{INJECTED}"
        m["warnings"] = [f"warning {INJECTED}"]
        m["host"].update({"hostname": f"host{INJECTED}", "cpu_model": f"cpu{INJECTED}"})
        m["backend"]["name"] = f"local{INJECTED}"
        m["workloads"]["crunch"]["description"] = f"description {INJECTED}"
        entry = m["interpreters"].pop(RUNNING_ID)
        entry["environment"]["facts"].update(
            {"sys_version": f"3.x {INJECTED}", "executable": f"/py{INJECTED}"}
        )
        m["interpreters"][HOSTILE_ID] = entry
        for cell in m["cells"]:
            cell["interpreter"] = HOSTILE_ID
        m["cells"][0].update(
            {
                "id": f"crunch{INJECTED}/sequential/1",
                "status": "failed",
                "reason": f"reason {INJECTED}",
                "output_tail": f"tail {INJECTED}",
            }
        )

    edit(run / "manifest.json", change)
    (run / CELLS).rename(run / "cells" / HOSTILE_ID)
    (run / "jobs" / SUITE).rename(run / "jobs" / f"{HOSTILE_ID}.json")
    suite = read(run / SUITE)
    suite["metadata"].update({"hostname": f"h{INJECTED}", "cpu_model_name": f"cpu{INJECTED}"})
    for bench in suite["benchmarks"][1:]:
        md = bench["metadata"]
        if md.get("gilmatrix_workload") == "fetch":
            md["gilmatrix_workload"] = f"fetch{INJECTED}"
            md["name"] = md["name"].replace("fetch", f"fetch{INJECTED}")
    write(run / SUITE, suite)
    return Expect(run / "manifest.json", render=True)


def _runner_facts(content: str | bytes) -> Damage:
    def apply(run: Path, out: Path) -> Expect:
        path = run / "github-runner.json"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return Expect(path, shown="github-runner.json", merge_only=True)

    return apply


damage("runner-facts-not-json")(_runner_facts("name=bare-metal\n"))
damage("runner-facts-not-utf8")(_runner_facts(b'{"name": "\xff\xfe"}'))
damage("runner-facts-nested")(_runner_facts("[" * 100_000 + "]" * 100_000))
damage("runner-facts-wrong-types")(
    _runner_facts(json.dumps({"name": ["a", "b"], "environment": {"x": 1}, "labels": "x"}))
)


@damage("runner-facts-markup")
def _(run: Path, out: Path) -> Expect:
    facts = {"name": f"runner{INJECTED}", "environment": "self-hosted", "labels": [INJECTED]}
    (run / "github-runner.json").write_text(json.dumps(facts))
    return Expect(run / "github-runner.json", render=True, merge_only=True)


@damage("runner-facts-a-fifo")
def _(run: Path, out: Path) -> Expect:
    os.mkfifo(run / "github-runner.json")
    return Expect(run / "github-runner.json", shown="github-runner.json", merge_only=True)


@damage("runner-facts-300MB-sparse")
def _(run: Path, out: Path) -> Expect:
    sparse(run / "github-runner.json", 300_000_000)
    return Expect(run / "github-runner.json", shown="github-runner.json", merge_only=True)


@damage("runner-facts-a-symlink-outside")
def _(run: Path, out: Path) -> Expect:
    outside(run)
    (run / "github-runner.json").symlink_to(run.parent.parent / "outside.json")
    return Expect(run / "github-runner.json", shown="outside the run folder", merge_only=True)


# -- running the commands -------------------------------------------------------------------


def report(run: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return gilmatrix("report", str(run), "--out", str(out), "--no-chart-images", timeout=GUARD)


def merge(run: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return gilmatrix("merge", str(run), "--out", str(out), "--run-id", "m", timeout=GUARD)


def page_text(index: Path) -> str:
    text = re.sub(r"<script.*?</script>", " ", index.read_text(encoding="utf-8"), flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)))


def files_below(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if not p.is_dir() or p.is_symlink()] if folder.exists() else []


def assert_nothing_from_outside(folder: Path) -> None:
    """No file below ``folder`` holds what lies outside the run folder, nor is a link or a
    special file (a copied FIFO, a link to /etc/passwd)."""
    for path in files_below(folder):
        assert path.is_file() and not path.is_symlink(), f"{path}: not a regular file"
        data = path.read_bytes()
        assert MARKER.encode() not in data, f"{path} holds a file from outside the run folder"
        assert PASSWD.encode() not in data, f"{path} holds /etc/passwd"


def assert_escaped(index: Path) -> None:
    page = index.read_text(encoding="utf-8")
    assert SCRIPT not in page and IMG_TAG not in page, "markup from the results folder in the page"
    for escaped in ESCAPED:
        assert escaped in page, f"{escaped} not on the page"


def ended(proc: subprocess.CompletedProcess[str], named: str) -> int:
    """No traceback, exit 0 or 2, and an error (2) on one line naming ``named``."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 2), (proc.returncode, proc.stderr)
    if proc.returncode == 2:
        assert named in proc.stderr, f"the error does not name {named}: {proc.stderr}"
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    return proc.returncode


def shows(index: Path, expect: Expect) -> None:
    """A page built from the damaged folder (or the merge of it) shows the damage."""
    if expect.render:
        assert_escaped(index)
    elif expect.harmless:
        assert "unreadable" not in page_text(index)
        rows = (index.parent / "data.csv").read_text().strip().splitlines()
        assert len(rows) == 1 + 6, rows  # the six cells, measured
    else:
        assert expect.shown is not None, "went on as if the folder were whole"
        assert expect.shown in page_text(index), f"the page does not show {expect.shown!r}"


@pytest.mark.parametrize("kind", list(DAMAGES))
def test_a_damaged_artifact_is_refused_or_shown(
    real_run: Path, clean_page: str, tmp_path: Path, kind: str
) -> None:
    run = tmp_path / "in" / "r"
    shutil.copytree(real_run, run, symlinks=True)
    expect = DAMAGES[kind](run, tmp_path)
    if expect.shown is not None:  # the page says something the undamaged run's page does not
        assert expect.shown not in clean_page
    before = set(os.listdir(tmp_path))

    try:
        merged = merge(run, tmp_path / "merged")
        reported = report(run, tmp_path / "report")
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{kind}: {exc.cmd[3]} still running after {GUARD} s (a hang)")

    # the report of the folder itself
    if ended(reported, str(expect.named)) == 0:
        if not expect.merge_only:
            shows(tmp_path / "report" / "report" / "index.html", expect)
    else:
        assert not (expect.render or expect.harmless or expect.merge_only), "refused: " + reported.stderr
    # merge, then the report of what it wrote: the CI path
    merged_run = tmp_path / "merged" / "results" / "m"
    if ended(merged, expect.merge_named or str(expect.named)) == 0:
        proc = report(merged_run, tmp_path / "report-merged")
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        merged_expect = dataclasses.replace(expect, shown=expect.merged_shown or expect.shown)
        shows(tmp_path / "report-merged" / "report" / "index.html", merged_expect)
    else:
        assert not (expect.render or expect.harmless), "refused: " + merged.stderr
        assert not merged_run.exists()

    for out in ("merged", "report", "report-merged"):
        assert_nothing_from_outside(tmp_path / out)
    created = set(os.listdir(tmp_path)) - before
    assert created <= {"merged", "report", "report-merged"}, created  # nothing written beside


def test_the_catalogue_is_wide_enough() -> None:
    assert len(DAMAGES) >= 17
