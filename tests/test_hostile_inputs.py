"""Hostile or damaged inputs: matrix files built to exhaust the parser, results folders edited by
hand. Each ends in a clear error (exit 2, the file and what is wrong, no traceback), through the
real CLI in a subprocess; a subprocess timeout guards against a hang."""

from __future__ import annotations

import csv
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pyperf
import pytest

from tests.conftest import RUNNING_ID, gilmatrix, host_interpreters, local_run, small_matrix

GUARD = 120  # seconds: a hang guard only; each command here takes about a second


def billion_laughs() -> str:
    """Nine lines, 9^9 values once the aliases are expanded."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    return "\n".join(lines) + "\n"


def assert_user_error(proc, path: Path, *needles: str) -> str:
    """Exit 2, one line, no traceback, naming ``path`` (with its line for a YAML file)."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    line = r":\d+" if path.suffix == ".yaml" else ""
    assert re.search(rf"^error: {re.escape(str(path))}{line}: ", proc.stderr), proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr
    return proc.stderr


# -- hostile matrix files -------------------------------------------------------------------


def test_billion_laughs_is_refused_naming_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(billion_laughs())
    proc = gilmatrix("validate", str(path), timeout=GUARD)
    err = assert_user_error(proc, path, "more than 20,000 values", "aliases counted expanded")
    assert re.search(rf"{re.escape(str(path))}:[2-9]: [a-i]\[\d\]: ", err), err


def test_billion_laughs_in_an_override_file_is_refused(tmp_path: Path) -> None:
    matrix = small_matrix(tmp_path)
    override = tmp_path / "override.yaml"
    override.write_text(billion_laughs())
    proc = gilmatrix("validate", str(matrix), "--override", str(override), timeout=GUARD)
    assert_user_error(proc, override, "more than 20,000 values")


def test_thousands_of_nested_brackets_end_in_an_error_not_a_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("interpreters: " + "[" * 5000 + "]" * 5000 + "\n")
    proc = gilmatrix("validate", str(path), timeout=GUARD)
    err = assert_user_error(proc, path, "nested deeper than 50 levels")
    assert "RecursionError" not in err and "recursion" not in err.lower(), err
    mappings = tmp_path / "deep-mappings.yaml"
    mappings.write_text("a: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n")
    assert_user_error(gilmatrix("validate", str(mappings), timeout=GUARD), mappings, "deeper than 50")


def test_depth_reached_through_aliases_is_counted(tmp_path: Path) -> None:
    # each line is 30 levels deep, the second holds the first: 60 levels, no line deeper than 31
    path = tmp_path / "deep-aliases.yaml"
    path.write_text("a: &a " + "[" * 30 + "]" * 30 + "\nb: " + "[" * 30 + "*a" + "]" * 30 + "\n")
    assert_user_error(
        gilmatrix("validate", str(path), timeout=GUARD), path, "deeper than 50 levels with alias *a"
    )


def test_an_alias_inside_the_value_it_names_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("format: 1\nworkers: &w [1, *w]\n")
    assert_user_error(
        gilmatrix("validate", str(path), timeout=GUARD), path, "alias *w is inside the value it names"
    )


def test_an_oversize_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = small_matrix(tmp_path)
    with path.open("a") as out:  # a valid matrix followed by 2 MiB of comments
        out.write(("#" * 1023 + "\n") * 2048)
    assert_user_error(gilmatrix("validate", str(path), timeout=GUARD), path, "larger than 1024 KiB")


def test_an_integer_of_thousands_of_digits_is_a_yaml_error(tmp_path: Path) -> None:
    path = tmp_path / "digits.yaml"
    path.write_text("format: 1\nworkers: [" + "9" * 5000 + "]\n")
    assert_user_error(gilmatrix("validate", str(path), timeout=GUARD), path, "not valid YAML")


def test_a_matrix_with_legitimate_aliases_still_validates(tmp_path: Path) -> None:
    path = small_matrix(
        tmp_path,
        extra_profile="\n".join(
            [
                "    params: &small {fetch: {wait_ms: 1}}",
                "  base: &base",
                "    pyperf: &fast {processes: 1, values: 2, warmups: 0, loops: 1}",
                "    timeout: 30",
                "  other:",
                "    <<: *base",
                "    params: *small",
                "  third: {pyperf: *fast, timeout: 10, workloads: &wl [crunch, fetch]}",
                "  fourth: {pyperf: *fast, workloads: *wl}",
            ]
        ),
    )
    proc = gilmatrix("validate", str(path), timeout=GUARD)
    assert proc.returncode == 0, proc.stderr
    assert "profiles default, base, other, third, fourth" in proc.stdout, proc.stdout


# -- a results folder edited by hand ----------------------------------------------------------


@dataclass(frozen=True)
class RealRun:
    matrix: Path
    out: Path  # holds the venvs, reused by every resume
    run_dir: Path
    ids: list[str]

    def copy(self, tmp_path: Path) -> Path:
        run = tmp_path / "results" / "r"
        shutil.copytree(self.run_dir, run)
        return run

    def resume(self, run: Path):
        return gilmatrix(
            "run",
            "--matrix",
            str(self.matrix),
            "--backend",
            "local",
            "--out",
            str(self.out),
            "--resume",
            str(run),
            "--python",
            f"{RUNNING_ID}={sys.executable}",
            timeout=600,
        )


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> RealRun:
    """A real run (local backend) of two interpreters when this machine has two, three cells each."""
    base = tmp_path_factory.mktemp("real-run")
    out = base / "out"
    ids = host_interpreters(out, (12, 13, 10))[:2]
    matrix = small_matrix(base, ids, executors="[sequential]", workers="[1]")
    proc = gilmatrix(*local_run(matrix, out, "r"), timeout=600)
    assert proc.returncode == 0, proc.stderr
    return RealRun(matrix, out, out / "results" / "r", ids)


def cut_in_half(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


def edit_manifest(run: Path, change) -> None:
    path = run / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def report(run: Path, tmp_path: Path):
    return gilmatrix(
        "report", str(run), "--out", str(tmp_path / "report-out"), "--no-chart-images", timeout=GUARD
    )


def merge(run: Path, tmp_path: Path):
    return gilmatrix("merge", str(run), "--out", str(tmp_path / "merged"), "--run-id", "m", timeout=GUARD)


MANIFEST_DAMAGE = {
    "cells-removed": (lambda m: m.pop("cells"), "cells: missing"),
    "interpreters-removed": (lambda m: m.pop("interpreters"), "interpreters: missing"),
    "cells-a-number": (lambda m: m.__setitem__("cells", 5), "cells: expected a list, found 5"),
    "processes-a-string": (
        lambda m: m["cells"][1].__setitem__("processes", "x"),
        'cells[1].processes: expected a whole number or null, found "x"',
    ),
    "interpreter-a-string": (
        lambda m: m["interpreters"].__setitem__(RUNNING_ID, "x"),
        f"interpreters['{RUNNING_ID}']: expected a mapping",
    ),
}


@pytest.mark.parametrize("damage", list(MANIFEST_DAMAGE))
def test_a_manifest_edited_by_hand_is_refused_by_report_merge_and_resume(
    real_run: RealRun, tmp_path: Path, damage: str
) -> None:
    change, message = MANIFEST_DAMAGE[damage]
    run = real_run.copy(tmp_path)
    edit_manifest(run, change)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    for proc in (report(run, tmp_path), merge(run, tmp_path), real_run.resume(run)):
        assert_user_error(proc, run / "manifest.json", message, "edited by hand")
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before  # nothing ran, nothing lost
    assert not (tmp_path / "merged").exists()


def test_a_cut_off_manifest_is_refused_by_report_merge_and_resume(real_run: RealRun, tmp_path: Path) -> None:
    run = real_run.copy(tmp_path)
    cut_in_half(run / "manifest.json")
    for proc in (report(run, tmp_path), merge(run, tmp_path), real_run.resume(run)):
        assert_user_error(proc, run / "manifest.json", "cannot read the manifest")


def test_a_cut_off_suite_of_one_interpreter_is_a_problem_and_the_rest_goes_on(
    real_run: RealRun, tmp_path: Path
) -> None:
    if len(real_run.ids) < 2:
        pytest.skip("needs two interpreters on this machine (3.10, 3.12 or 3.13 next to the running one)")
    kept, damaged = real_run.ids
    run = real_run.copy(tmp_path)
    suite = run / f"{damaged}.json"
    cut_in_half(suite)

    proc = report(run, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"warning: {suite}: results file {damaged}.json unreadable" in proc.stderr, proc.stderr
    # a run folder (its cells/ kept): the suite can be rebuilt from them, and the warning says how
    assert (run / "cells" / damaged).is_dir()
    assert f"`gilmatrix run --resume {run}` rebuilds it from cells/{damaged}/" in proc.stderr
    page = tmp_path / "report-out" / "report"
    with open(page / "data.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["interpreter"] for r in rows} == {kept} and len(rows) == 3
    assert f"results file {damaged}.json unreadable" in (page / "index.html").read_text()

    proc = merge(run, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"warning: {suite}: not valid JSON" in proc.stderr, proc.stderr
    merged = json.loads((tmp_path / "merged" / "results" / "m" / "manifest.json").read_text())
    assert any(str(suite) in w for w in merged["warnings"]), merged["warnings"]
    assert set(merged["interpreters"]) == {kept, damaged}

    # the cell files are intact: a resume rebuilds the suite, nothing measured is lost
    proc = real_run.resume(run)
    assert proc.returncode == 0, proc.stderr
    assert len(pyperf.BenchmarkSuite.load(str(suite)).get_benchmarks()) == 3
    proc = report(run, tmp_path)
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr


def test_a_suite_with_values_of_the_wrong_type_is_a_problem_not_a_traceback(
    real_run: RealRun, tmp_path: Path
) -> None:
    run = real_run.copy(tmp_path)
    suite = run / f"{RUNNING_ID}.json"
    data = json.loads(suite.read_text())
    data["benchmarks"][0]["runs"][-1]["values"] = "x"
    suite.write_text(json.dumps(data))
    proc = report(run, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"warning: {suite}: results file {RUNNING_ID}.json unreadable" in proc.stderr, proc.stderr
    assert "benchmarks[0].runs[" in proc.stderr and "values: expected a list" in proc.stderr, proc.stderr


@pytest.mark.parametrize("which", ["result", "status"])
def test_resume_refuses_a_cut_off_cell_file_then_measures_the_cell_again_once_deleted(
    real_run: RealRun, tmp_path: Path, which: str
) -> None:
    run = real_run.copy(tmp_path)
    cells = run / "cells" / RUNNING_ID
    result, status = cells / "crunch__sequential__1.json", cells / "crunch__sequential__1.status.json"
    damaged = result if which == "result" else status
    cut_in_half(damaged)
    kept = {p.name: p.read_bytes() for p in cells.glob("*.json") if p not in (result, status)}

    proc = real_run.resume(run)
    assert_user_error(proc, damaged, "not valid JSON", "delete crunch__sequential__1.json and")
    assert "results:" not in proc.stderr  # refused before anything ran
    assert report(run, tmp_path).returncode == 0  # the report reads the suite, which is whole

    result.unlink()
    status.unlink()
    proc = real_run.resume(run)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    assert {c["status"] for c in manifest["cells"]} == {"ok"}, manifest["cells"]
    assert pyperf.BenchmarkSuite.load(str(result)).get_benchmarks()  # measured again
    for name, content in kept.items():  # the other cells were not run again
        if not name.endswith(".status.json"):
            assert (cells / name).read_bytes() == content, name
