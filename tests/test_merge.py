"""`gilmatrix merge`: real runs of two interpreters, made as two machines would make them, merged
into one run whose report shows both machines and the interpreter that never arrived."""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import RUNNING_ID, gilmatrix, host_interpreters, local_run, small_matrix

pytestmark = pytest.mark.integration

SECOND_HOST = {
    "hostname": "bench-b",
    "cpu_model": "Simulated Xeon 8480+",
    "cpu_count": 56,
    "usable_cpus": 56,
    "kernel": "6.1.0-simulated",
}


def other_interpreter(work_dir: Path) -> str:
    others = host_interpreters(work_dir, (12, 13, 10, 11))[1:]
    if not others:
        pytest.skip("needs a second CPython (3.10-3.13) besides the running one")
    return others[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Two real runs, one interpreter each, as two CI jobs make them (`--only ID`, one run id);
    the second one's host facts rewritten to be another machine; a third interpreter of the
    matrix never runs."""
    base = tmp_path_factory.mktemp("merge")
    second = other_interpreter(base / "probe")
    missing = "3.13t"
    matrix = small_matrix(
        base, [RUNNING_ID, second, missing], executors="[sequential, threads]", workers="[2]"
    )
    dirs = {}
    for interp_id, job in ((RUNNING_ID, "job-a"), (second, "job-b")):
        out = base / job
        extra = ["--python", f"{RUNNING_ID}={sys.executable}"] if interp_id == RUNNING_ID else []
        proc = gilmatrix(
            "run",
            "--backend",
            "local",
            "--matrix",
            str(matrix),
            "--only",
            interp_id,
            "--out",
            str(out),
            "--run-id",
            "42",
            *extra,
        )
        assert proc.returncode == 0, proc.stderr
        dirs[interp_id] = out / "results" / "42"
    manifest_path = dirs[second] / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["host"].update(SECOND_HOST)
    manifest_path.write_text(json.dumps(manifest, indent=2))
    (dirs[second] / "github-runner.json").write_text(
        json.dumps(
            {
                "name": "bare-metal-1",
                "environment": "self-hosted",
                "labels": ["self-hosted", "linux", "x64", "bare-metal"],
            }
        )
    )
    return {
        "base": base,
        "matrix": matrix,
        "first": RUNNING_ID,
        "second": second,
        "missing": missing,
        "dirs": dirs,
    }


def merge(runs: dict, out: Path, *inputs: Path, expect: str | None = None, extra: tuple[str, ...] = ()):
    expect = expect or f"{runs['first']},{runs['second']},{runs['missing']}"
    return gilmatrix(
        "merge",
        *map(str, inputs),
        "--out",
        str(out),
        "--expect",
        expect,
        "--matrix",
        str(runs["matrix"]),
        *extra,
    )


def page_text(index: Path) -> str:
    text = index.read_text()
    text = re.sub(r"<script.*?</script>", " ", text, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)))


def test_merge_then_report_shows_both_machines_and_the_missing_interpreter(runs, tmp_path) -> None:
    first, second, missing = runs["first"], runs["second"], runs["missing"]
    out = tmp_path / "out"
    proc = merge(runs, out, runs["dirs"][first], runs["dirs"][second])
    assert proc.returncode == 0, proc.stderr
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    assert run_dir == out / "results" / "42"
    assert f"missing interpreters: {missing}" in proc.stderr

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["format"] == 1 and manifest["run_id"] == "42"
    interps = manifest["interpreters"]
    assert list(interps) == sorted(interps, key=lambda i: (i.rstrip("t"), i))  # version order
    assert interps[first]["status"] == "ran" and interps[second]["status"] == "ran"
    assert interps[second]["host"]["hostname"] == "bench-b"
    assert interps[second]["host"]["github_runner"]["environment"] == "self-hosted"
    assert interps[first]["host"]["hostname"] != "bench-b"
    assert interps[missing]["status"] == "missing" and "no results" in interps[missing]["reason"]
    # a CI runner's name names its machine (a hosted runner's hostname means nothing to a reader)
    assert set(manifest["hosts"]) == {interps[first]["machine"], "bare-metal-1"}
    assert manifest["hosts"]["bare-metal-1"]["interpreters"] == [second]
    assert manifest["merge"]["missing"] == [missing]
    assert manifest["state"] == "partial"
    by_interp: dict[str, set[str]] = {}
    for cell in manifest["cells"]:
        by_interp.setdefault(cell["interpreter"], set()).add(cell["status"])
    assert by_interp == {first: {"ok"}, second: {"ok"}, missing: {"missing"}}
    assert len([c for c in manifest["cells"] if c["interpreter"] == missing]) == 6
    for interp in (first, second):  # files copied: suites, per-cell files, logs, jobs
        assert (run_dir / f"{interp}.json").is_file()
        assert len(list((run_dir / "cells" / interp).glob("*.status.json"))) == 6
        assert (run_dir / "jobs" / f"{interp}.json").is_file()

    report = gilmatrix("report", str(run_dir), "--out", str(out))
    assert report.returncode == 0, report.stderr
    index = Path(report.stdout.strip().splitlines()[-1])
    text = page_text(index)
    assert "bench-b" in text and "Simulated Xeon 8480+" in text  # the second machine
    assert interps[first]["machine"] in text  # the first one
    assert "2 different machines" in text  # and the warning that they differ
    assert re.search(rf"{re.escape(missing)} missing: no results from any machine", text)
    summary = (index.parent / "summary.md").read_text()
    assert f"{missing} 6 cells: missing" in summary
    with open(index.parent / "data.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["interpreter"] for r in rows} == {first, second}


def test_merge_from_a_folder_of_artifacts(runs, tmp_path) -> None:
    """As the report job sees it: one folder per downloaded artifact."""
    artifacts = tmp_path / "artifacts"
    for interp in (runs["first"], runs["second"]):
        shutil.copytree(runs["dirs"][interp], artifacts / f"results-{interp}")
    proc = merge(runs, tmp_path / "out", artifacts, extra=("--run-id", "from-artifacts"))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "out/results/from-artifacts/manifest.json").read_text())
    assert [s["machine"] for s in manifest["merge"]["sources"]].count("bare-metal-1") == 1
    assert len(manifest["merge"]["sources"]) == 2


def test_no_artifact_at_all_is_a_run_of_missing_interpreters(runs, tmp_path) -> None:
    (tmp_path / "artifacts").mkdir()
    proc = merge(runs, tmp_path / "out", tmp_path / "artifacts", extra=("--run-id", "none"))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "out/results/none/manifest.json").read_text())
    assert {e["status"] for e in manifest["interpreters"].values()} == {"missing"}
    report = gilmatrix("report", str(tmp_path / "out/results/none"), "--out", str(tmp_path / "out"))
    assert report.returncode == 0, report.stderr


def test_identical_duplicates_merge_once(runs, tmp_path) -> None:
    first = runs["dirs"][runs["first"]]
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    proc = merge(runs, tmp_path / "out", first, copy, expect=runs["first"])
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "out/results/42/manifest.json").read_text())
    assert list(manifest["interpreters"]) == [runs["first"]]
    assert len(manifest["cells"]) == 6


def test_conflicting_duplicates_are_refused(runs, tmp_path) -> None:
    first = runs["dirs"][runs["first"]]
    other = tmp_path / "other"
    shutil.copytree(first, other)
    status = next((other / "cells" / runs["first"]).glob("*.status.json"))
    data = json.loads(status.read_text())
    data["elapsed"] = 999.0  # another run of the cell
    status.write_text(json.dumps(data))
    manifest = json.loads((other / "manifest.json").read_text())
    for cell in manifest["cells"]:
        if status.name.startswith(cell["id"].replace("/", "__") + "."):
            cell["elapsed"] = 999.0
    (other / "manifest.json").write_text(json.dumps(manifest))
    proc = merge(runs, tmp_path / "out", first, other)
    assert proc.returncode == 2, proc.stderr
    assert "different results in several inputs of replicate 1" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "results" / "42").exists()


def test_a_skipped_copy_yields_to_the_one_that_ran(runs, tmp_path) -> None:
    """A machine that could not find the interpreter (skipped) does not conflict with one that
    ran it."""
    first = runs["dirs"][runs["first"]]
    skipped = tmp_path / "skipped"
    shutil.copytree(first, skipped)
    manifest = json.loads((skipped / "manifest.json").read_text())
    manifest["interpreters"][runs["first"]] = {"status": "skipped", "reason": "not found", "results": None}
    for cell in manifest["cells"]:  # as a run that could not find the interpreter records them
        cell.update(status="skipped", reason="not found", elapsed=None)
    (skipped / "manifest.json").write_text(json.dumps(manifest))
    proc = merge(runs, tmp_path / "out", skipped, first, expect=runs["first"])
    assert proc.returncode == 0, proc.stderr
    merged = json.loads((tmp_path / "out/results/42/manifest.json").read_text())
    assert merged["interpreters"][runs["first"]]["status"] == "ran"
    assert merged["merge"]["notes"]


def test_different_profiles_or_matrices_are_refused(runs, tmp_path) -> None:
    first, second = runs["dirs"][runs["first"]], runs["dirs"][runs["second"]]
    other = tmp_path / "other"
    shutil.copytree(second, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["matrix"]["profile"] = "rigorous"
    (other / "manifest.json").write_text(json.dumps(manifest))
    proc = merge(runs, tmp_path / "out", first, other)
    assert proc.returncode == 2 and "different profiles" in proc.stderr
    manifest["matrix"]["profile"] = "default"
    manifest["matrix"]["sha256"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    proc = merge(runs, tmp_path / "out", first, other)
    assert proc.returncode == 2 and "different matrix files" in proc.stderr


def test_bad_inputs_exit_2(runs, tmp_path) -> None:
    proc = gilmatrix("merge", str(tmp_path / "nowhere"), "--out", str(tmp_path))
    assert proc.returncode == 2 and "no such folder" in proc.stderr
    proc = gilmatrix("merge", str(tmp_path), "--out", str(tmp_path))
    assert proc.returncode == 2 and "no run folder" in proc.stderr
    proc = merge(runs, tmp_path / "out", runs["dirs"][runs["first"]], expect="3.99")
    assert proc.returncode == 2 and "--expect 3.99" in proc.stderr


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict:
    """Three real CI bench jobs of one matrix, as `plan --github --shards 2 --replicates 2` makes
    them, on the running interpreter: shard s1 (crunch) twice, shard s2 (fetch) once (its
    second replicate's job "failed before uploading")."""
    base = tmp_path_factory.mktemp("shards")
    matrix = small_matrix(base, [RUNNING_ID], executors="[sequential, threads]", workers="[2]")
    dirs = {}
    for shard, workload, replicate in (("s1", "crunch", 1), ("s1", "crunch", 2), ("s2", "fetch", 1)):
        out = base / f"{shard}-r{replicate}"
        proc = gilmatrix(
            *local_run(matrix, out, "7"),
            "--only",
            workload,
            "--shard",
            shard,
            "--replicate",
            str(replicate),
        )
        assert proc.returncode == 0, proc.stderr
        run_dir = out / "results" / "7"
        (run_dir / "github-runner.json").write_text(
            json.dumps({"name": f"runner-{shard}-{replicate}", "environment": "github-hosted"})
        )
        dirs[(shard, replicate)] = run_dir
    return {"base": base, "matrix": matrix, "dirs": dirs}


def test_shards_are_joined_and_replicates_kept_apart(shards, tmp_path) -> None:
    out = tmp_path / "out"
    proc = gilmatrix(
        "merge", *(str(d) for d in shards["dirs"].values()), "--out", str(out),
        "--matrix", str(shards["matrix"]), "--expect", RUNNING_ID, "--only", "crunch", "--only", "fetch",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run_dir = out / "results" / "7"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["replicates"] == {"count": 2, "runs": {"2": "replicates/2"}}
    # replicate 1: both shards joined into one suite per interpreter, each cell with its machine
    machines = {c["id"]: c["machine"] for c in manifest["cells"]}
    assert {m for i, m in machines.items() if i.startswith("crunch/")} == {"runner-s1-1"}
    assert {m for i, m in machines.items() if i.startswith("fetch/")} == {"runner-s2-1"}
    suite = json.loads((run_dir / f"{RUNNING_ID}.json").read_text())
    names = [b["metadata"]["name"] for b in suite["benchmarks"]]
    assert sorted(names) == sorted(machines) and len(names) == 4
    assert manifest["interpreters"][RUNNING_ID]["machines"] == ["runner-s1-1", "runner-s2-1"]
    assert manifest["state"] == "partial"  # replicate 2 lacks its s2 shard
    # replicate 2: a run folder of its own; the fetch cells its failed job never uploaded are missing
    second = json.loads((run_dir / "replicates" / "2" / "manifest.json").read_text())
    by_status = {c["id"]: (c["status"], c["machine"]) for c in second["cells"]}
    assert {v for k, v in by_status.items() if k.startswith("crunch/")} == {("ok", "runner-s1-2")}
    assert {v[0] for k, v in by_status.items() if k.startswith("fetch/")} == {"missing"}
    # the report's floor is the largest of the shards' own (each kept, by machine and shard)
    noise = manifest["schedule"]["noise"]
    inputs = [shards["dirs"][("s1", 1)], shards["dirs"][("s2", 1)]]
    floors = [json.loads((d / "manifest.json").read_text())["schedule"]["noise"]["floor"] for d in inputs]
    assert noise["floor"] == max(floors)
    assert set(noise["by_input"]) == {"runner-s1-1 s1", "runner-s2-1 s2"}
    assert "sentinel_median_ms" not in noise  # two machines' sentinels are not comparable
    # no workload spans two machines in a replicate: no cross-machine warning
    assert not any("comparisons between cells of different machines" in w for w in manifest["warnings"])
    # both folders are runs the report reads
    for folder in (run_dir, run_dir / "replicates" / "2"):
        report = gilmatrix("report", str(folder), "--out", str(tmp_path / folder.name))
        assert report.returncode == 0, report.stderr


def test_a_workload_split_over_machines_is_named(shards, tmp_path) -> None:
    """Two inputs of one replicate whose cells of one workload ran on two machines: merged, and
    the warning names the workload and both machines."""
    first = shards["dirs"][("s1", 1)]
    other = tmp_path / "other"
    shutil.copytree(first, other)
    manifest = json.loads((other / "manifest.json").read_text())
    kept = [c for c in manifest["cells"] if c["id"].endswith("/2")]  # threads/2 only
    manifest["cells"] = kept
    manifest["host"]["hostname"] = "elsewhere"
    (other / "manifest.json").write_text(json.dumps(manifest))
    (other / "github-runner.json").unlink()
    for cell in manifest["cells"]:  # another run of that cell on the other machine
        status = other / "cells" / RUNNING_ID / (cell["id"].replace("/", "__") + ".status.json")
        data = json.loads(status.read_text())
        data["elapsed"] = 1234.5
        status.write_text(json.dumps(data))
        cell["elapsed"] = 1234.5
    (other / "manifest.json").write_text(json.dumps(manifest))
    trimmed = tmp_path / "trimmed"
    shutil.copytree(first, trimmed)
    trimmed_manifest = json.loads((trimmed / "manifest.json").read_text())
    trimmed_manifest["cells"] = [c for c in trimmed_manifest["cells"] if not c["id"].endswith("/2")]
    (trimmed / "manifest.json").write_text(json.dumps(trimmed_manifest))
    proc = gilmatrix("merge", str(trimmed), str(other), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    merged = json.loads((tmp_path / "out/results/7/manifest.json").read_text())
    (warning,) = [w for w in merged["warnings"] if "different machines" in w]
    assert "crunch ran on runner-s1-1, elsewhere" in warning
