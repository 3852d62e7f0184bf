"""Your own code in the matrix (``module:``): the file read without importing it, errors with
file:line, ``gilmatrix validate`` importing it, and real local runs — a module with a local
helper import and a dependency installed from a wheelhouse, a module that raises on import, a
wrong answer, a requirement that cannot be installed. (Docker, the GIL turned back on by an
import and sub-interpreter refusal: tests/test_docker_usercode.py.)"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import pyperf
import pytest

from gilmatrix.errors import UserError
from gilmatrix.harness.usercode import param_from_spec
from gilmatrix.matrix.model import load_matrix
from gilmatrix.matrix.plan import plan_cells
from tests.conftest import ROOT, RUNNING_ID, gilmatrix, local_run

FIXTURES = ROOT / "tests" / "fixtures" / "usercode"


def user_matrix(tmp_path: Path, workloads: str, *, executors: str = "[sequential, threads]") -> Path:
    path = tmp_path / "matrix.yaml"
    path.write_text(
        "format: 1\n"
        f'interpreters:\n  - id: "{RUNNING_ID}"\n'
        f"workloads:\n{workloads}"
        f"executors: {executors}\n"
        "workers: [1, 2]\n"
        "profiles:\n  default:\n    pyperf: {processes: 1, values: 2, warmups: 0, loops: 1}\n"
        "    timeout: 120\n"
    )
    return path


def module_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = "def make_tasks(params):\n    return [1, 2]\n\n\ndef run_task(task):\n    return task\n"


def load_error(tmp_path: Path, module_text: str, entry: str = "{module: mod.py}") -> str:
    module_file(tmp_path, "mod.py", module_text)
    with pytest.raises(UserError) as caught:
        load_matrix(user_matrix(tmp_path, f"  mine: {entry}\n"))
    return str(caught.value)


# -- the file, read without importing it ---------------------------------------------------------


def test_a_user_module_is_read_without_running_it(tmp_path: Path) -> None:
    module_file(
        tmp_path,
        "mod.py",
        '"""Doubles numbers."""\nraise SystemExit("imported!")\n'
        + GOOD
        + 'KIND = "io"\nPARAMS = {"n": {"default": 3, "min": 1, "max": 9}, "label": "x"}\n'
        'UNSUPPORTED = {"processes": "it shares a socket"}\n',
    )
    matrix = load_matrix(user_matrix(tmp_path, "  mine: {module: mod.py, params: {n: 5}}\n"))
    (workload,) = matrix.workloads
    assert workload.module is not None and workload.module.name == "mod"
    assert (workload.kind, workload.description, workload.params) == ("io", "Doubles numbers.", {"n": 5})
    assert workload.implementation == "module:mod.py"
    plan = plan_cells(
        load_matrix(user_matrix(tmp_path, "  mine: {module: mod.py}\n", executors="[sequential, processes]"))
    )
    skipped = {c.id: c.reason for c in plan.cells if c.status == "skipped"}
    assert skipped == {"mine/processes/1": "it shares a socket", "mine/processes/2": "it shares a socket"}


@pytest.mark.parametrize(
    ("module_text", "entry", "expected"),
    [
        ("def make_tasks(params):\n    return []\n", None, "mod.py: no module-level function run_task(task)"),
        (GOOD + "PARAMS = {'n': {'default': 10, 'max': 5}}\n", None, "mod.py:7: PARAMS['n']: default 10"),
        (GOOD + "PARAMS = dict(n=1)\n", None, "mod.py:7: PARAMS must be a literal"),
        (GOOD + "KIND = 'gpu'\n", None, "mod.py:7: KIND 'gpu' is not one of cpu, io"),
        (GOOD + "UNSUPPORTED = {'thread': 'no'}\n", None, "UNSUPPORTED: 'thread' is not an execution model"),
        (GOOD + "def async_task(task):\n    return task\n", None, "mod.py:7: async_task must be an `async"),
        ("def make_tasks(params:\n", None, "mod.py:1: "),
        (GOOD + "PARAMS = {'n': {'default': 3, 'max': 5}}\n", "{module: mod.py, params: {n: 6}}", "between"),
        (
            GOOD + "PARAMS = {'n': 3}\n",
            "{module: mod.py, params: {size: 6}}",
            "the workload has no parameter 'size'; it has: n (to give it one, declare it in the file's "
            "PARAMS, e.g. PARAMS = {'size': {\"default\": 6",
        ),
        (GOOD, "{module: nope.py}", "workloads.mine.module: no such file"),
        (GOOD, "{module: mod.py, workload: crunch}", "give `module` (your file) or `workload`"),
        (GOOD, "{module: mod.py, requirements: ['ujson >= ']}", "not a pip requirement"),
        (GOOD, "{module: mod.py, requirements: ['x @ https://e.org/x.whl']}", "not a URL"),
    ],
)
def test_what_is_wrong_with_a_user_module_is_said_with_file_and_line(
    tmp_path: Path, module_text: str, entry: str | None, expected: str
) -> None:
    message = load_error(tmp_path, module_text, entry or "{module: mod.py}")
    assert expected in message
    assert "mod.py:" in message or "matrix.yaml:" in message  # a place to go and fix


def test_a_file_without_params_takes_the_matrix_params_as_they_are(tmp_path: Path) -> None:
    module_file(
        tmp_path,
        "mine.py",
        "def make_tasks(params):\n    return [params['words']] * params['tasks']\n\n\n"
        "def run_task(task):\n    return task\n",
    )
    path = user_matrix(tmp_path, "  mine: {module: mine.py, params: {tasks: 8, words: 20000}}\n")
    override = "    timeout: 120\n    params: {mine: {words: 5}}\n"
    path.write_text(path.read_text().replace("    timeout: 120\n", override))
    matrix = load_matrix(path)
    (workload,) = matrix.workloads
    assert workload.params == {"tasks": 8, "words": 20000}
    assert workload.tasks({**workload.params, **matrix.profiles["default"].params["mine"]}, 2) == 8
    assert matrix.profiles["default"].params == {"mine": {"words": 5}}


def test_a_module_name_that_hides_a_module_python_imports_is_refused(tmp_path: Path) -> None:
    module_file(tmp_path, "json.py", GOOD)
    with pytest.raises(UserError, match=r"matrix.yaml:\d+: .*json.py would hide the module 'json'"):
        load_matrix(user_matrix(tmp_path, "  mine: {module: json.py}\n"))


def test_two_files_of_one_module_name_are_refused_one_file_twice_is_fine(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    module_file(tmp_path / "a", "mod.py", GOOD)
    module_file(tmp_path / "b", "mod.py", GOOD)
    twice = "  one: {module: a/mod.py}\n  two: {module: a/mod.py}\n"
    assert len(load_matrix(user_matrix(tmp_path, twice)).workloads) == 2
    with pytest.raises(UserError, match="two files of one module name 'mod'"):
        load_matrix(user_matrix(tmp_path, "  one: {module: a/mod.py}\n  two: {module: b/mod.py}\n"))


def test_params_specs() -> None:
    assert param_from_spec("n", 4).default == 4
    assert param_from_spec("s", {"default": "a", "choices": ["a", "b"]}).choices == ("a", "b")
    for bad, message in (
        ({"default": "c", "choices": ["a"]}, "not one of its choices"),
        ({"min": 1}, "no 'default'"),
        ({"default": [1]}, "must be a number or a string"),
        ({"default": 1, "step": 2}, "unknown key 'step'"),
    ):
        with pytest.raises(ValueError, match=message):
            param_from_spec("n", bad)


# -- gilmatrix validate imports it ---------------------------------------------------------------


def test_validate_imports_user_modules_and_says_where_they_fail(tmp_path: Path) -> None:
    module_file(tmp_path, "fine.py", GOOD)
    module_file(tmp_path, "bad.py", GOOD + "\n\nraise ValueError('bad at import')\n")
    module_file(tmp_path, "needs.py", "import gmtest_not_installed_here\n" + GOOD)
    entries = (
        "  fine: {module: fine.py}\n"
        "  bad: {module: bad.py}\n"
        "  needs: {module: needs.py, requirements: [gmtest-not-installed-here]}\n"
    )
    proc = gilmatrix("validate", str(user_matrix(tmp_path, entries)))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "fine: " in proc.stdout and "imports; two of its 2 tasks ran" in proc.stdout
    assert f"error: {tmp_path / 'bad.py'}:9: bad: ValueError: bad at import" in proc.stderr
    assert "needs 'gmtest_not_installed_here'" in proc.stdout and "per interpreter" in proc.stdout
    ok = gilmatrix("validate", str(user_matrix(tmp_path, "  fine: {module: fine.py}\n")))
    assert ok.returncode == 0, ok.stderr


# -- real runs ---------------------------------------------------------------------------------


def build_wheel(source: Path, name: str, version: str, dest: Path) -> Path:
    """A pure-Python wheel of the package folder ``source/<import name>``, written by hand (no
    build backend needed): what pip installs from a wheelhouse."""
    dest.mkdir(parents=True, exist_ok=True)
    dist = name.replace("-", "_")
    wheel = dest / f"{dist}-{version}-py3-none-any.whl"
    files: dict[str, bytes] = {}
    for path in sorted(source.rglob("*.py")):
        files[path.relative_to(source).as_posix()] = path.read_bytes()
    info = f"{dist}-{version}.dist-info"
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: gilmatrix-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = []
    for arcname, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{arcname},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(wheel, "w") as archive:
        for arcname, data in files.items():
            archive.writestr(arcname, data)
    return wheel


def cells_of(run_dir: Path) -> dict[str, dict]:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return {c["id"]: c for c in manifest["cells"]}


@pytest.mark.integration
def test_a_local_run_of_user_workloads_with_a_helper_a_dependency_and_failures(tmp_path: Path) -> None:
    folder = tmp_path / "bench"
    shutil.copytree(FIXTURES, folder, ignore=shutil.ignore_patterns("gmtest_dep_src", "__pycache__"))
    wheelhouse = tmp_path / "wheels"
    build_wheel(FIXTURES / "gmtest_dep_src", "gmtest-dep", "1.0", wheelhouse)
    matrix = user_matrix(
        tmp_path,
        "  words:\n"
        "    module: bench/scan_words.py\n"
        "    requirements: [gmtest-dep==1.0]\n"
        "    params: {words: 50, mode: upper}\n"
        "  wrong: {module: bench/wrong_answer.py}\n"
        "  broken: {module: bench/broken_import.py}\n"
        "  unobtainable: {module: bench/wrong_answer.py, requirements: [gmtest-no-such-package==9.9]}\n"
        "  crunch: {params: {tasks: 2, size: 1000}}\n",
        executors="[sequential, threads, processes]",
    )
    out = tmp_path / "out"
    # pip finds the test's wheel here (and pyperf, for the venv, on the index as usual)
    env = {**os.environ, "PIP_FIND_LINKS": str(wheelhouse)}
    proc = gilmatrix(*local_run(matrix, out, "r"), timeout=900, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # wrong and broken cells failed
    run_dir = out / "results" / "r"
    cells = cells_of(run_dir)
    for executor, workers in (("sequential", 1), ("threads", 1), ("threads", 2), ("processes", 2)):
        assert cells[f"words/{executor}/{workers}"]["status"] == "ok", cells[f"words/{executor}/{workers}"]
        assert cells[f"crunch/{executor}/{workers}"]["status"] == "ok"
        wrong = cells[f"wrong/{executor}/{workers}"]
        assert wrong["status"] == "failed" and "AssertionError: wrong_answer: got [10, 17]" in wrong["reason"]
        broken = cells[f"broken/{executor}/{workers}"]
        assert broken["status"] == "failed"
        assert "RuntimeError: broken_import: this module cannot be imported" in broken["reason"]
        missing = cells[f"unobtainable/{executor}/{workers}"]
        assert missing["status"] == "skipped"
        assert "pip could not install gmtest-no-such-package" in missing["reason"]
    assert "skipped, " in proc.stderr + proc.stdout  # the run says why before it measures
    # the results carry the user's module and its parameters like a built-in's
    suite = pyperf.BenchmarkSuite.load(str(run_dir / f"{RUNNING_ID}.json"))
    bench = suite.get_benchmark("words/processes/2")
    metadata = bench.get_metadata()
    assert metadata["gilmatrix_implementation"] == "module:scan_words.py"
    assert metadata["gilmatrix_module"] == str(folder / "scan_words.py")
    assert json.loads(metadata["gilmatrix_params"]) == {"tasks": 4, "words": 50, "mode": "upper"}
    assert metadata["gilmatrix_workload_kind"] == "cpu"
    # the report shows them beside the built-ins, and lists the failed and skipped cells
    report = gilmatrix("report", str(run_dir), "--out", str(out), "--no-chart-images")
    assert report.returncode == 0, report.stderr
    html = (out / "report" / "index.html").read_text()
    assert "words: time vs workers" in html and "crunch: time vs workers" in html
    assert "pip could not install gmtest-no-such-package" in html
    assert "broken_import: this module cannot be imported" in html
