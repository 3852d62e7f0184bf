"""Machines and replicates in the report: a comparison of two cells that ran on different
machines is never a verdict, and a merged CI run's replicates (the same cells on other runners of
the label, ``replicates/<r>/``) say whether each verdict holds on every runner.

The inputs are real runs: the committed real smoke run (3.10-3.13), and a small run made here
with the local backend on the running interpreter. The merged layout (``machine`` and
``replicate`` per cell, ``replicates`` in the manifest) is laid over copies of them as
``gilmatrix merge`` writes it; where a replicate must disagree, one replicate's values of some
cells are scaled in its pyperf suite, by a known factor."""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from html import unescape
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from gilmatrix.confidence import within_run_floor
from gilmatrix.reports import build_report
from gilmatrix.reports.compare import free_threading, version_changes, with_speedup
from gilmatrix.reports.page import ONE_REPLICATE, ft_rows
from gilmatrix.reports.results import load_run, noise_floor
from gilmatrix.reports.stats import cell_table
from gilmatrix.reports.verdicts import decide
from tests.conftest import RUNNING_ID, gilmatrix, local_run

REAL = Path(__file__).parent / "fixtures" / "real-smoke"  # 3.10-3.13, one host ("vm")
QUICK = Path(__file__).parent / "fixtures" / "real-quick"  # 3.12, 3.13: every workload and executor
MATRIX = f"""format: 1
interpreters:
  - id: "{RUNNING_ID}"
workloads:
  crunch: {{params: {{tasks: 4, size: 20000}}}}
  fetch: {{params: {{tasks: 4, wait_ms: 2}}}}
executors: [sequential, threads]
workers: [1, 2]
profiles:
  default:
    pyperf: {{processes: 4, values: 3, warmups: 1, loops: 4}}
    timeout: 60
"""
# the next minor version: the id a relabelled copy of the running interpreter's results takes
NEXT_ID = f"{sys.version_info[0]}.{sys.version_info[1] + 1}"


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run: crunch (CPU) and fetch (waits) on sequential and threads, 4 processes each."""
    work = tmp_path_factory.mktemp("real")
    (work / "matrix.yaml").write_text(MATRIX)
    proc = gilmatrix(*local_run(work / "matrix.yaml", work / "out", "r"), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work / "out" / "results" / "r"


# -- the merged layout, laid over copies of real runs ------------------------------------------


def edit_manifest(run: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = run / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    change(manifest)
    path.write_text(json.dumps(manifest), encoding="utf-8")


def on_machine(run: Path, machine: str | Mapping[str, str], replicate: int) -> None:
    """Every cell of ``run`` ran on ``machine`` (or {cell id prefix: machine}, the first that
    matches, "" for the rest), as replicate ``replicate`` of shard s1."""

    def change(manifest: dict[str, Any]) -> None:
        hosts: dict[str, Any] = {}
        for cell in manifest["cells"]:
            if isinstance(machine, str):
                name = machine
            else:
                key = f"{cell['interpreter']} {cell['id']}"
                name = next((m for prefix, m in machine.items() if key.startswith(prefix)), "")
            cell.update(machine=name, shard="s1", replicate=replicate)
            hosts[name] = manifest.get("host") or {}
        manifest["hosts"] = hosts

    edit_manifest(run, change)


def merged(dst: Path, replicas: Sequence[tuple[Path, str]], count: int | None = None) -> Path:
    """A merged CI run at ``dst``: the first (run, machine) is replicate 1, the others
    replicates/2.. inside it; ``count`` (default: how many are given) as the manifest says."""
    shutil.copytree(replicas[0][0], dst)
    on_machine(dst, replicas[0][1], 1)
    runs = {}
    for number, (run, machine) in enumerate(replicas[1:], start=2):
        shutil.copytree(run, dst / "replicates" / str(number))
        on_machine(dst / "replicates" / str(number), machine, number)
        runs[str(number)] = f"replicates/{number}"
    edit_manifest(
        dst, lambda m: m.update(replicates={"count": len(replicas) if count is None else count, "runs": runs})
    )
    return dst


def scale(run: Path, interp: str, prefix: str, factor: float) -> None:
    """Every value of the cells of ``interp`` whose id starts with ``prefix``, times ``factor``."""
    suite = run / f"{interp}.json"
    data = json.loads(suite.read_text(encoding="utf-8"))
    hit = 0
    for bench in data["benchmarks"]:
        if bench["metadata"]["name"].startswith(prefix):
            hit += 1
            for one in bench["runs"]:
                if one.get("values"):
                    one["values"] = [v * factor for v in one["values"]]
    assert hit, f"no cell {prefix}* in {suite}"
    suite.write_text(json.dumps(data), encoding="utf-8")


def relabel(run: Path, old: str, new: str) -> None:
    """Add to ``run`` a copy of interpreter ``old``'s results as interpreter ``new`` (the
    report takes interpreter ids from the manifest): a second interpreter from one host."""
    shutil.copyfile(run / f"{old}.json", run / f"{new}.json")

    def change(manifest: dict[str, Any]) -> None:
        entry = dict(manifest["interpreters"][old], results=f"{new}.json")
        manifest["interpreters"][new] = entry
        manifest["cells"] += [dict(c, interpreter=new) for c in manifest["cells"] if c["interpreter"] == old]

    edit_manifest(run, change)


def report(run: Path, out: Path) -> tuple[str, str]:
    """The page as text (tags dropped, entities read) and summary.md."""
    index = build_report(run, out, chart_images=False)
    html = index.read_text(encoding="utf-8")
    return html, (out / "summary.md").read_text(encoding="utf-8")


def text(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def section(html: str, ident: str) -> str:
    start = html.index(f'<section id="{ident}"')
    return text(html[start : html.index("</section>", start)])


def best_vs_sequential(cells: pd.DataFrame, workload: str, executor: str = "threads") -> float:
    """The time ratio a card gives an executor at its best worker count against sequential:
    on the means adjusted by the reference covariate, as the report compares cells."""
    part = cells[cells["workload"] == workload]
    means = part["adj_mean"].where(part["adj_mean"].notna(), part["mean"])
    best = means[part["executor"] == executor].min()
    return float(best / means[part["executor"] == "sequential"].min())


# -- machines ----------------------------------------------------------------------------------


def test_every_cell_says_its_machine_cell_over_interpreter_over_host(tmp_path: Path) -> None:
    run = shutil.copytree(REAL, tmp_path / "run")
    assert set(cell_table(load_run(run).frame)["machine"]) == {"vm"}  # a local run: its hostname

    def change(manifest: dict[str, Any]) -> None:
        manifest["interpreters"]["3.12"]["machine"] = "runner-b"
        for cell in manifest["cells"]:
            if cell["interpreter"] == "3.12" and cell["id"].startswith("fetch/"):
                cell["machine"] = "runner-c"

    edit_manifest(run, change)
    cells = cell_table(load_run(run).frame).set_index(["interpreter", "cell"])["machine"]
    assert cells[("3.12", "fetch/threads/2")] == "runner-c"
    assert cells[("3.12", "crunch/threads/2")] == "runner-b"
    assert cells[("3.11", "crunch/threads/2")] == "vm"


def test_one_machine_changes_no_verdict(real_run: Path, tmp_path: Path) -> None:
    """All cells on one machine: the verdicts are those of the comparisons without machines,
    and nothing on the page speaks of machines other than where the cells ran. On the real
    smoke run (4 interpreters, one process a cell: ties), and on the small real run with a
    relabelled second interpreter whose fetch/sequential is 3x slower (a regression)."""
    smoke = shutil.copytree(REAL, tmp_path / "smoke")
    small = shutil.copytree(real_run, tmp_path / "small")
    relabel(small, RUNNING_ID, NEXT_ID)
    scale(small, NEXT_ID, "fetch/sequential", 3.0)
    for run, machine, sections in ((smoke, "vm", 3), (small, "runner-a", 2)):
        on_machine(run, machine, 1)  # the merged layout, one machine
        html, summary = report(run, tmp_path / f"out-{run.name}")
        results = load_run(run)
        floor = within_run_floor(noise_floor(results.manifest))  # the report's, inside a run
        cells = cell_table(results.frame)
        assert set(cells["machine"]) == {machine}
        blind = cells.drop(columns=["machine"])  # the comparisons of a table without machines
        page = text(html)
        seen = {(c.workload, c.interpreter): c for c in decide(cells, None, floor)}
        for card in decide(blind, None, floor):
            assert card.headline in page
            mine = seen[(card.workload, card.interpreter)]
            assert (mine.headline, mine.sentences) == (card.headline, card.sentences)
        changes = version_changes(cells, floor)
        assert changes["compared"].all()
        assert changes["change"].tolist() == version_changes(blind, floor)["change"].tolist()
        for words in ("different machines", "not compared", "not verdicts"):
            assert words not in html and words not in summary
        assert page.count(f"Ran on {machine}.") == sections  # one line per workload section
        assert 'id="replicates"' not in html and "Replicates" not in summary  # not a merged CI run
    # the small run's regression is a verdict, on its page (one machine: no machine column)
    assert "regression" in set(changes["change"])
    assert f"{NEXT_ID} {RUNNING_ID} fetch/sequential/1 3.000x" in section(html, "versions")
    assert "machine change" not in section(html, "versions")


def test_two_interpreters_on_two_machines_are_not_compared(tmp_path: Path) -> None:
    """A merge of one job per interpreter: 3.10 and 3.11 on one machine, 3.12 and 3.13 on
    another. 3.11 -> 3.12 is no verdict; 3.10 -> 3.11 and 3.12 -> 3.13 are."""
    run = shutil.copytree(REAL, tmp_path / "run")

    def change(manifest: dict[str, Any]) -> None:
        for interp, machine in (
            ("3.10", "runner-a"),
            ("3.11", "runner-a"),
            ("3.12", "runner-b"),
            ("3.13", "runner-b"),
        ):
            manifest["interpreters"][interp]["machine"] = machine

    edit_manifest(run, change)
    cells = cell_table(load_run(run).frame)
    changes = version_changes(cells)
    step = (changes["interpreter"] == "3.12") & (changes["previous"] == "3.11")
    shared = len(
        set(cells.loc[cells["interpreter"] == "3.11", "cell"])
        & set(cells.loc[cells["interpreter"] == "3.12", "cell"])
    )
    assert step.sum() == shared > 0
    assert (changes.loc[step, "change"] == "not compared").all() and not changes.loc[
        step, "significant"
    ].any()
    assert changes.loc[step, "ratio"].isna().all()  # no figure that could be read as a change
    assert changes.loc[~step, "compared"].all()
    assert not changes.loc[~step, "change"].eq("not compared").any()

    html, summary = report(run, tmp_path / "out")
    page = text(html)
    assert (
        f"{shared} comparisons between cells of different machines are not verdicts "
        f"({shared} version-over-version)" in page
    )
    versions = section(html, "versions")
    assert f"3.12 3.11 {shared} not compared: different machines (runner-a vs runner-b)" in versions
    assert "Ran on runner-a (3.10, 3.11); runner-b (3.12, 3.13)." in page
    assert f"{shared} comparisons between cells of different machines are not verdicts" in summary
    # the version-over-version chart draws only the verdicts
    payload = json.loads(re.search(r'id="gm-payload">(.*?)</script>', html, re.S).group(1))
    drawn = payload["datasets"]["changes"]
    column = drawn["columns"].index("interpreter")
    interps = {drawn["categories"]["interpreter"][row[column]] for row in drawn["rows"]}
    previous = drawn["columns"].index("previous")
    pairs = {
        (drawn["categories"]["interpreter"][r[column]], drawn["categories"]["previous"][r[previous]])
        for r in drawn["rows"]
    }
    assert ("3.12", "3.11") not in pairs and {"3.11", "3.13"} <= interps


def test_a_cell_of_another_machine_is_left_out_of_its_card(tmp_path: Path) -> None:
    run = shutil.copytree(REAL, tmp_path / "run")
    on_machine(run, {"3.13 crunch/processes": "runner-b", "": "vm"}, 1)
    cells = cell_table(load_run(run).frame)
    card = next(c for c in decide(cells) if (c.workload, c.interpreter) == ("crunch", "3.13"))
    assert card.machine == "vm" and {e for e, _, m in card.apart} == {"processes"}
    assert "processes" not in {s.executor for s in card.scores}
    apart = len(card.apart)
    html, _ = report(run, tmp_path / "out")
    page = text(html)
    assert "not compared: different machines (vm vs runner-b); left out of this card's verdicts" in page
    # and 3.12 -> 3.13 of those cells is no version change either
    versions = int((~version_changes(cells)["compared"]).sum())
    assert versions == apart == 3
    assert (
        f"{versions + apart} comparisons between cells of different machines are not verdicts "
        f"({versions} version-over-version, {apart} within a verdict card)" in page
    )


def test_a_sequential_cell_of_another_machine_gives_no_speedup(tmp_path: Path) -> None:
    """3.10's crunch/sequential/1 from another machine: the card is made on the machine of its
    other six cells, with no comparison against sequential and no speedup anywhere."""
    run = shutil.copytree(REAL, tmp_path / "run")
    on_machine(run, {"3.10 crunch/sequential": "runner-b", "": "vm"}, 1)
    cells = cell_table(load_run(run).frame)
    card = next(c for c in decide(cells) if (c.workload, c.interpreter) == ("crunch", "3.10"))
    assert card.machine == "vm" and card.apart == (("sequential", 1, "runner-b"),)
    assert card.threads_vs_sequential is None
    assert all(s.vs_sequential is None and s.speedup is None for s in card.scores)
    speed = with_speedup(cells)
    crunch = speed[(speed["interpreter"] == "3.10") & (speed["workload"] == "crunch")]
    pools = crunch["executor"] != "sequential"
    assert crunch.loc[pools, "speedup"].isna().all() and len(crunch[pools]) == 6
    assert crunch.loc[~pools, "speedup"].tolist() == [1.0]  # itself
    assert speed.loc[speed["interpreter"] == "3.11", "speedup"].notna().all()
    page = text(report(run, tmp_path / "out")[0])
    assert "sequential @ 1: not compared: different machines (vm vs runner-b)" in page
    assert (
        "2 comparisons between cells of different machines are not verdicts "
        "(1 version-over-version, 1 within a verdict card)" in page
    )


def test_free_threaded_and_default_builds_of_different_machines_are_not_compared() -> None:
    """A free-threaded build's cells from another machine (here: 3.13's real cells, taken as
    3.13t's) are no overhead figure; on one machine they are."""
    cells = cell_table(load_run(REAL).frame)
    ft_copy = cells[cells["interpreter"] == "3.13"].assign(interpreter="3.13t", machine="runner-b")
    both = pd.concat([cells, ft_copy], ignore_index=True)
    ft = free_threading(both)
    assert len(ft) == 3 and not ft["compared"].any() and ft["overhead"].isna().all()
    rows = ft_rows(both)
    assert {r[2] for r in rows} == {"not compared: different machines (vm vs runner-b)"}
    same = free_threading(pd.concat([cells, ft_copy.assign(machine="vm")], ignore_index=True))
    assert same["compared"].all() and (same["overhead"].abs() < 1e-12).all()  # the same cells


def test_changes_name_their_machine_when_the_run_has_several(real_run: Path, tmp_path: Path) -> None:
    """Two interpreters on runner-a, except the new one's crunch cells, on runner-b: the fetch
    changes are verdicts (with their machine), the crunch ones are not compared."""
    run = shutil.copytree(real_run, tmp_path / "run")
    relabel(run, RUNNING_ID, NEXT_ID)
    scale(run, NEXT_ID, "fetch/sequential", 3.0)  # a regression, far beyond any noise floor
    on_machine(run, {f"{NEXT_ID} crunch/": "runner-b", "": "runner-a"}, 1)
    html, _ = report(run, tmp_path / "out")
    versions = section(html, "versions")
    assert "machine change" in versions  # the change table's header has the machine column
    assert f"{NEXT_ID} {RUNNING_ID} fetch/sequential/1 3.000x" in versions
    assert "runner-a regression" in versions
    assert f"{NEXT_ID} {RUNNING_ID} 3 not compared: different machines (runner-a vs runner-b)" in versions
    assert (
        "3 comparisons between cells of different machines are not verdicts (3 version-over-version)"
        in text(html)
    )


# -- replicates --------------------------------------------------------------------------------


def test_two_agreeing_replicates_hold_on_2_of_2(real_run: Path, tmp_path: Path) -> None:
    run = merged(tmp_path / "run", [(real_run, "runner-a"), (real_run, "runner-b")])
    html, summary = report(run, tmp_path / "out")
    replicates = section(html, "replicates")
    # 2 workloads: a fastest executor and threads vs sequential each
    assert (
        "4 of 4 verdicts hold on 2 of 2 replicates (the same verdict on every one); 0 differ." in replicates
    )
    assert "replicate 1 (this page): runner-a" in replicates and "replicate 2: runner-b" in replicates
    # the same cells on both: nothing moved between the runners
    assert (
        "Between runners of this label, no group of cells moved beyond its intervals (4 groups;" in replicates
    )
    assert "with 1 degree of freedom" in replicates
    page = text(html)
    assert page.count("Replicates: this card's verdicts hold on 2 of 2 replicates.") == 2
    assert page.count("Ran on runner-a (replicate 1); replicate 2 on runner-b.") == 2
    assert (
        "**Replicates:** 2 (replicate 1 (this page): runner-a; replicate 2: runner-b): "
        "4 of 4 verdicts hold on 2 of 2 replicates, 0 differ." in summary
    )
    assert "different machines" not in html


def test_a_replicate_that_disagrees_is_listed_with_each_ratio(real_run: Path, tmp_path: Path) -> None:
    """Replicate 2's fetch threads cells 4x slower: waits that overlap on threads (faster than
    sequential, or at worst a tie on a busy machine) become slower than sequential there."""
    second = shutil.copytree(real_run, tmp_path / "second")
    scale(second, RUNNING_ID, "fetch/threads", 4.0)
    run = merged(tmp_path / "run", [(real_run, "runner-a"), (second, "runner-b")])
    first, second = load_run(run), load_run(run / "replicates" / "2")
    one, two = cell_table(first.frame), cell_table(second.frame)
    r1, r2 = best_vs_sequential(one, "fetch"), best_vs_sequential(two, "fetch")
    assert r2 == pytest.approx(4.0 * r1)
    # each replicate's verdicts against its own noise floor, as the report makes them
    floors = [within_run_floor(noise_floor(r.manifest)) for r in (first, second)]
    card1 = next(c for c in decide(one, None, floors[0]) if c.workload == "fetch")
    card2 = next(c for c in decide(two, None, floors[1]) if c.workload == "fetch")
    v1 = next(s.vs_sequential for s in card1.scores if s.executor == "threads")
    v2 = next(s.vs_sequential for s in card2.scores if s.executor == "threads")
    assert v1 is not None and v2 is not None
    assert v1.direction != "slower" and v2.direction == "slower", (v1, v2)

    html, summary = report(run, tmp_path / "out")
    replicates = section(html, "replicates")
    assert "0 differ" not in replicates
    differing = (  # the table's row: comparison, family, then each replicate's verdict
        f"fetch on {RUNNING_ID}: threads vs sequential vs sequential "
        f"{v1.direction}, {r1:.2f}x (runner-a) slower, {r2:.2f}x (runner-b)"
    )
    assert differing in replicates
    # crunch is the same on both: its card holds; fetch's does not
    page = text(html)
    assert page.count("Replicates: this card's verdicts hold on 2 of 2 replicates.") == 1
    assert (
        f"threads vs sequential (replicate 1 (runner-a): {v1.direction}, {r1:.2f}x; "
        f"replicate 2 (runner-b): slower, {r2:.2f}x)" in page
    )
    # only the fetch threads cells moved between the runners, and the report says which
    assert f"most fetch under threads on {RUNNING_ID}" in replicates and "(1 of 4 groups moved;" in replicates
    assert (
        f"| fetch on {RUNNING_ID}: threads vs sequential | vs sequential | "
        f"{v1.direction}, {r1:.2f}x (runner-a) | slower, {r2:.2f}x (runner-b) |" in summary
    )


def test_one_replicate_says_it_cannot_know(real_run: Path, tmp_path: Path) -> None:
    run = merged(tmp_path / "run", [(real_run, "runner-a")])
    html, summary = report(run, tmp_path / "out")
    assert ONE_REPLICATE in section(html, "replicates")
    assert f"**Replicates:** {ONE_REPLICATE}".replace("`", "\\`") in summary
    assert "hold on" not in html


def test_replicates_the_run_lacks_or_names_outside_it_are_problems_not_failures(
    real_run: Path, tmp_path: Path
) -> None:
    run = merged(tmp_path / "run", [(real_run, "runner-a"), (real_run, "runner-b")], count=4)
    outside = shutil.copytree(real_run, tmp_path / "elsewhere")
    edit_manifest(run, lambda m: m["replicates"]["runs"].update({"3": "../elsewhere", "4": str(outside)}))
    html, summary = report(run, tmp_path / "out")
    assert (
        "**Replicates:** 4, 2 of them read (replicate 1 (this page): runner-a; replicate 2: runner-b)"
        in summary
    )
    replicates = section(html, "replicates")
    assert "replicate 3: its folder '../elsewhere' is outside the run folder" in replicates
    assert "replicate 4: its folder is not a relative path" in replicates
    assert "Only 2 of the 4 replicates could be read" in replicates
    assert "4 of 4 verdicts hold on 2 of 2 replicates" in replicates


def test_machine_names_are_text_not_markup(real_run: Path, tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    run = merged(tmp_path / "run", [(real_run, f"a{evil}"), (real_run, f"b{evil}")])
    edit_manifest(run, lambda m: m["replicates"]["runs"].update({evil: evil}))
    html, summary = report(run, tmp_path / "out")
    assert evil not in html and evil not in summary
    assert "Ran on a&lt;script&gt;alert(1)&lt;/script&gt; (replicate 1)" in html
    assert "&lt;script&gt;" in summary


def test_scaling_of_a_cell_of_another_machine_is_not_compared(tmp_path: Path) -> None:
    """The real quick run (3.12, 3.13), its crunch taken as an ftscaling pattern, 3.13's
    crunch/threads/4 from another machine: its scaling over threads @ 1 is not compared, nor
    is it in its card or against 3.12."""
    run = shutil.copytree(QUICK, tmp_path / "run")
    edit_manifest(
        run,
        lambda m: m.update(
            workloads={"crunch": {"description": "", "kind": "cpu", "implementation": "ftscaling"}}
        ),
    )
    on_machine(run, {"3.13 crunch/threads/4": "runner-b", "": "vm"}, 1)
    html, _ = report(run, tmp_path / "out")
    versions = section(html, "versions")
    scaling = versions[versions.index("Where free-threading stops scaling") :]
    assert "not compared: different machines (vm vs runner-b)" in scaling
    assert re.search(r"crunch [0-9.]+x \(", scaling)  # 3.12's are figures (one process: no interval)
    assert (
        "3 comparisons between cells of different machines are not verdicts (1 version-over-version, "
        "1 within a verdict card, 1 ftscaling)" in text(html)
    )
