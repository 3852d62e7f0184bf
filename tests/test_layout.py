"""The shape of the code: an import graph without cycles, a harness that needs nothing of the
host, developer tools the shipped package never imports, one registry of metadata keys."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"gilmatrix": ROOT / "runner", "gilmatrix.reports": ROOT / "reports"}


def modules() -> dict[str, Path]:
    found = {}
    for name, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if name == "gilmatrix" and parts[:1] == ["reports"]:
                continue
            found[".".join([name, *parts])] = path
    return found


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Every gilmatrix/devtools module ``path`` imports, at the top or inside a function."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known)
    return {m for m in out if m.split(".")[0] in ("gilmatrix", "devtools")}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    edges = {}
    for name, path in mods.items():
        targets = set()
        for target in imports(path, name, known):
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target != name and (target in known or target.startswith("devtools")):
                targets.add(target)
        edges[name] = targets
    return edges


def test_the_import_graph_has_no_cycle() -> None:
    edges = graph()
    assert len(edges) > 30  # the walk found the package
    # package __init__ modules are imported on the way to their children: not a dependency
    # in the design's sense, unless the __init__ itself imports something
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    sys.setrecursionlimit(10_000)
    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_harness_imports_nothing_of_the_host() -> None:
    edges = graph()
    harness = {m for m in edges if m.startswith("gilmatrix.harness")}
    outside = {
        (m, t)
        for m in harness
        for t in edges[m]
        if not t.startswith("gilmatrix.harness") and t != "gilmatrix"
    }
    assert outside == set()
    for name in harness:  # and only the standard library and pyperf beyond itself
        tree = ast.parse(modules()[name].read_text())
        tops = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        tops |= {
            (n.module or "").split(".")[0]
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and not n.level
        }
        third = tops - set(sys.stdlib_module_names) - {"gilmatrix", "pyperf", "__future__", ""}
        assert third == set(), (name, third)


def test_the_report_reads_runs_only_through_its_results_module() -> None:
    """The report's stages (results -> analysis -> view model -> payloads -> I/O) take a run
    folder's files from gilmatrix.reports.results alone, and nothing of the matrix loader or the
    run loop: the shapes they share are the contract's."""
    edges = graph()
    report = {m for m in edges if m.startswith("gilmatrix.reports")}
    allowed_outside = {"gilmatrix", "gilmatrix.harness", "gilmatrix.harness.contract", "gilmatrix.confidence"}
    allowed_outside |= {"gilmatrix.errors"}  # a UserError for a path that is not a run
    allowed_outside |= {"gilmatrix.comparisons"}  # which cells are compared: the run loop's too
    readers = {"gilmatrix.run.manifest", "gilmatrix.run.store"}  # the run folder's readers
    found = {
        (m, t)
        for m in report
        for t in edges[m]
        if not t.startswith("gilmatrix.reports")
        and t not in allowed_outside
        and not (m == "gilmatrix.reports.results" and t in readers)
    }
    assert found == set()


def test_the_shipped_package_never_imports_the_developer_tools() -> None:
    edges = graph()
    assert {(m, t) for m, ts in edges.items() for t in ts if t.startswith("devtools")} == set()


def test_every_metadata_key_the_harness_writes_is_registered() -> None:
    from gilmatrix.harness.contract import METADATA

    written = set()
    for path in (ROOT / "runner" / "harness").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value.startswith("gilmatrix_")
                and path.name != "contract.py"
            ):
                written.add(node.value)
    assert written, "no gilmatrix_ keys found in the harness"
    assert written <= set(METADATA), written - set(METADATA)
    assert set(METADATA) <= written, set(METADATA) - written  # and no key nobody writes
